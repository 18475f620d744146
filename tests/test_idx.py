"""The IDX reader: every malformed or corrupt input gets one IDXFormatError naming the file."""

from __future__ import annotations

import gzip
import os
import struct
import subprocess
import sys
import tempfile
import threading
import tracemalloc
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from anynet.datasets import read_idx, read_idx_header, read_idx_pair
from anynet.datasets.idx import IDX_DTYPES, decompress_gzip, parse_idx, read_idx_bytes
from anynet.errors import DataError, IDXFormatError

CODES = {np.dtype(v.newbyteorder("=")): k for k, v in IDX_DTYPES.items()}


def idx_bytes(array: np.ndarray) -> bytes:
    """An IDX file holding ``array`` (the format written independently of the reader)."""
    array = np.asarray(array)
    code = CODES[array.dtype]
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


IMAGES = np.arange(3 * 4 * 5, dtype=np.uint8).reshape(3, 4, 5)
LABELS = np.array([0, 9, 4], dtype=np.uint8)


# --- what must be read -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "dtype", ["uint8", "int8", "int16", "int32", "float32", "float64"], ids=str
)
def test_every_idx_type_round_trips(tmp_path, dtype):
    values = (np.arange(24).reshape(2, 3, 4) - 7).astype(dtype)
    got = read_idx(write(tmp_path, "data-idx3", idx_bytes(values)))
    assert got.dtype == np.dtype(dtype)  # native byte order, the dtype the header named
    np.testing.assert_array_equal(got, values)
    got[0, 0, 0] = 1  # the caller owns a writable array, not a view of the file's bytes


def test_gzip_is_recognised_by_content_not_by_name(tmp_path):
    packed = gzip.compress(idx_bytes(IMAGES))
    np.testing.assert_array_equal(read_idx(write(tmp_path, "images.bin", packed)), IMAGES)
    # Plain MNIST-style raw file, no suffix at all.
    np.testing.assert_array_equal(read_idx(write(tmp_path, "raw", idx_bytes(IMAGES))), IMAGES)


def test_read_idx_pair_returns_int64_labels(tmp_path):
    images = write(tmp_path, "i.gz", gzip.compress(idx_bytes(IMAGES)))
    labels = write(tmp_path, "l", idx_bytes(LABELS))
    X, y = read_idx_pair(images, labels, num_classes=10)
    assert X.dtype == np.uint8 and X.shape == (3, 4, 5)
    assert y.dtype == np.int64
    np.testing.assert_array_equal(y, [0, 9, 4])


# --- what must be refused --------------------------------------------------------------------

GOOD = idx_bytes(IMAGES)

MALFORMED = {
    "empty": (b"", "too short"),
    "short header": (b"\x00\x00\x08", "too short"),
    "bad magic": (b"\x01\x00" + GOOD[2:], "magic"),
    "type 0x0A": (GOOD[:2] + b"\x0a" + GOOD[3:], "type code 0x0A"),
    "type 0x0F": (GOOD[:2] + b"\x0f" + GOOD[3:], "type code 0x0F"),
    "zero dimensions": (b"\x00\x00\x08\x00" + GOOD[16:], "0 dimensions"),
    "too many dimensions": (b"\x00\x00\x08\x21" + b"\x00\x00\x00\x01" * 33, "33 dimensions"),
    "truncated dims": (b"\x00\x00\x08\x03\x00\x00\x00\x03", "truncated header"),
    "zero dimension": (b"\x00\x00\x08\x03" + struct.pack(">3I", 3, 0, 5), "zero dimension"),
    "over the size cap": (
        b"\x00\x00\x0e\x03" + struct.pack(">3I", 2**32 - 1, 2**32 - 1, 2**32 - 1),
        "size cap",
    ),
    "truncated payload": (GOOD[:-1], "truncated payload"),
    "trailing bytes": (GOOD + b"\x00", "1 trailing bytes"),
}


@pytest.mark.parametrize("case", list(MALFORMED), ids=list(MALFORMED))
@pytest.mark.parametrize("wrap", ["raw", "gzip"])
def test_malformed_idx_is_refused(tmp_path, case, wrap):
    data, reason = MALFORMED[case]
    if wrap == "gzip":
        data = gzip.compress(data)
    path = write(tmp_path, "bad-idx-ubyte", data)
    with pytest.raises(IDXFormatError, match=reason) as info:
        read_idx(path)
    assert str(path) in str(info.value)
    assert isinstance(info.value, ValueError) and isinstance(info.value, DataError)


def test_size_cap_is_configurable(tmp_path):
    path = write(tmp_path, "x", GOOD)
    with pytest.raises(IDXFormatError, match="size cap"):
        read_idx(path, max_bytes=IMAGES.size - 1)
    assert read_idx(path, max_bytes=IMAGES.size).shape == IMAGES.shape


def _damaged_gzip() -> dict[str, tuple[bytes, str]]:
    packed = gzip.compress(idx_bytes(np.arange(4096, dtype=np.uint8).reshape(64, 64)))
    crc = bytearray(packed)
    crc[-8] ^= 0xFF  # the trailer's CRC32 (then ISIZE): the data itself is intact
    size = bytearray(packed)
    size[-4] ^= 0x01
    deflate = bytearray(packed)
    deflate[12:20] = b"\xff" * 8  # garbage in the deflate stream right after the header
    return {
        "truncated": (packed[: len(packed) // 2], "truncated gzip"),
        "truncated trailer": (packed[:-3], "truncated gzip"),
        "bad CRC": (bytes(crc), "CRC32 mismatch"),
        "bad length": (bytes(size), "length mismatch"),
        "corrupt deflate": (bytes(deflate), "corrupt gzip"),
        "two members": (packed + gzip.compress(b"more"), "second gzip member"),
        "trailing garbage": (packed + b"junk", "trailing bytes"),
        "header only": (packed[:10], "truncated gzip"),
    }


DAMAGED = _damaged_gzip()


@pytest.mark.parametrize("case", list(DAMAGED), ids=list(DAMAGED))
def test_damaged_gzip_is_refused(tmp_path, case):
    data, reason = DAMAGED[case]
    path = write(tmp_path, "data.gz", data)
    with pytest.raises(IDXFormatError, match=reason) as info:
        read_idx(path)
    assert str(path) in str(info.value)


def test_gzip_bomb_stops_at_the_cap():
    # 10 MB of zeros compress to ~10 kB; the cap must stop decompression, not run out of memory.
    bomb = gzip.compress(bytes(10_000_000))
    with pytest.raises(IDXFormatError, match="gzip bomb"):
        decompress_gzip(bomb, name="bomb.gz", max_bytes=1_000_000)


def test_not_gzip_is_refused_by_the_gzip_layer():
    with pytest.raises(IDXFormatError, match="not a gzip file"):
        decompress_gzip(GOOD, name="x.gz")


def test_a_non_gzip_non_idx_file_is_refused(tmp_path):
    path = write(tmp_path, "page.gz", b"<html>404 Not Found</html>")  # what a dead mirror sends
    with pytest.raises(IDXFormatError, match="magic"):
        read_idx(path)


@pytest.mark.parametrize(
    ("labels", "reason"),
    [
        (np.array([0, 1], dtype=np.uint8), "3 images but .* 2 labels"),
        (np.array([0, 1, 10], dtype=np.uint8), "label 10 is out of range; expected 0 to 9"),
        (np.array([0, -1, 2], dtype=np.int8), "label -1 is out of range"),
        (np.zeros((3, 1), dtype=np.uint8), "1-D integer"),
        (np.zeros(3, dtype=np.float32), "1-D integer"),
    ],
    ids=["count mismatch", "label too large", "negative label", "2-D labels", "float labels"],
)
def test_images_and_labels_must_belong_together(tmp_path, labels, reason):
    images = write(tmp_path, "images", idx_bytes(IMAGES))
    labels_path = write(tmp_path, "labels", idx_bytes(labels))
    with pytest.raises(IDXFormatError, match=reason):
        read_idx_pair(images, labels_path, num_classes=10)


def test_missing_file_is_an_oserror_not_a_format_error(tmp_path):
    # A missing file is not malformed data: callers (the dataset search) treat it differently.
    with pytest.raises(FileNotFoundError):
        read_idx(tmp_path / "absent")


# --- special files and hostile sizes: refused before they hang the reader or fill memory ------


def call_with_deadline(fn, fifo: Path, seconds: float = 10.0):
    """``fn()``, failing the test if it is still blocked on ``fifo`` after ``seconds``: then a
    writer opens and closes the FIFO's other end, which releases the reader, so a regression
    fails the suite instead of hanging it."""
    outcome: dict = {}

    def target():
        try:
            outcome["value"] = fn()
        except BaseException as exc:  # handed to the test's thread below
            outcome["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        thread.join(seconds)
        pytest.fail(f"reading the FIFO {fifo} blocked for {seconds} s")
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
@pytest.mark.parametrize("reader", [read_idx, read_idx_bytes])
def test_a_fifo_is_refused_without_blocking(tmp_path, reader):
    fifo = tmp_path / "train-images-idx3-ubyte"
    os.mkfifo(fifo)
    with pytest.raises(IDXFormatError, match="is a FIFO") as info:
        call_with_deadline(lambda: reader(fifo), fifo)
    assert str(fifo) in str(info.value) and "regular file" in str(info.value)


def test_a_directory_is_refused_as_not_a_regular_file(tmp_path):
    with pytest.raises(IDXFormatError, match="is a directory, not a regular file"):
        read_idx(tmp_path)


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="no /dev/zero here")
def test_a_device_is_refused_before_a_byte_is_read():
    # In a child process with a memory limit: a reader that regressed to reading /dev/zero
    # whole must fail this test, not exhaust the machine.
    code = (
        "import resource\n"
        "try:\n"  # not every system lets a process cap its address space
        "    resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))\n"
        "except (ValueError, OSError):\n"
        "    pass\n"
        "from anynet.datasets import read_idx\n"
        "from anynet.errors import IDXFormatError\n"
        "try:\n"
        "    read_idx('/dev/zero')\n"
        "except IDXFormatError as exc:\n"
        "    print(exc)\n"
    )
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    run = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert "/dev/zero: is a character device, not a regular file" in run.stdout


def peak_memory(fn) -> int:
    """The most bytes Python held at once while ``fn()`` ran (IDXFormatError swallowed)."""
    tracemalloc.start()
    try:
        fn()
    except IDXFormatError:
        pass
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return peak


def test_the_header_is_checked_against_the_file_size_before_the_payload_is_read(tmp_path):
    # A 3 GiB file (a hole: no disk) whose header declares 60 bytes of payload.
    path = tmp_path / "big-idx3-ubyte"
    with open(path, "wb") as f:
        f.write(GOOD)
        f.truncate(3 << 30)
    assert peak_memory(lambda: read_idx(path)) < 16 << 20
    with pytest.raises(IDXFormatError, match=f"{(3 << 30) - len(GOOD)} trailing bytes"):
        read_idx(path)


def gzip_bomb(head: bytes, zeros: int) -> bytes:
    """A valid gzip file of ``head`` then ``zeros`` zero bytes, made without ever holding them.

    After a full flush deflate starts afresh, so a MiB of zeros compresses to the same bytes
    each time: compress it once and repeat it. The trailer (CRC32, length) is computed here.
    """
    block = 1 << 20
    assert zeros % block == 0
    deflate = zlib.compressobj(9, zlib.DEFLATED, 31)
    start = deflate.compress(head) + deflate.flush(zlib.Z_FULL_FLUSH)
    zeros_block = deflate.compress(bytes(block)) + deflate.flush(zlib.Z_FULL_FLUSH)
    end = deflate.flush()[:-8]  # the last, empty block; the trailer is ours
    crc = zlib.crc32(head)
    chunk = bytes(16 * block)
    for _ in range(zeros // len(chunk)):
        crc = zlib.crc32(chunk, crc)
    crc = zlib.crc32(bytes(zeros % len(chunk)), crc)
    size = (len(head) + zeros) & 0xFFFFFFFF
    trailer = struct.pack("<II", crc, size)
    return start + zeros_block * (zeros // block) + end + trailer


def test_the_gzip_bomb_helper_makes_valid_gzip():
    bomb = gzip_bomb(b"head", 3 << 20)
    assert zlib.decompress(bomb, wbits=31) == b"head" + bytes(3 << 20)


def test_a_gzip_bomb_is_refused_at_the_size_its_header_declares(tmp_path):
    # 3 MB on disk, 3 GiB inflated, behind a header that declares 60 bytes of payload.
    path = write(tmp_path, "bomb-idx3-ubyte.gz", gzip_bomb(GOOD, 3 << 30))
    assert len(path.read_bytes()) < 4 << 20
    assert peak_memory(lambda: read_idx(path)) < 16 << 20
    with pytest.raises(IDXFormatError, match="more than the 76 bytes its IDX header declares"):
        read_idx(path)
    assert peak_memory(lambda: read_idx_bytes(path)) < 16 << 20


def test_a_header_no_gzip_of_that_size_could_fill_is_refused_before_inflating(tmp_path):
    # 2 GiB declared (under the cap) by a gzip file of a few hundred bytes: deflate cannot
    # compress better than 1032:1, so this file is cut short, or hostile.
    head = b"\x00\x00\x08\x01" + struct.pack(">I", 2**31 - 1)
    path = write(tmp_path, "labels.gz", gzip_bomb(head, 1 << 20))
    assert peak_memory(lambda: read_idx(path)) < 16 << 20
    with pytest.raises(IDXFormatError, match=r"more than a gzip file of \d+ bytes can hold"):
        read_idx(path)


def test_decompress_gzip_stops_at_its_cap_in_bounded_memory():
    bomb = gzip_bomb(b"", 1 << 30)
    peak = peak_memory(lambda: decompress_gzip(bomb, name="bomb.gz", max_bytes=1_000_000))
    assert peak < 16 << 20
    with pytest.raises(IDXFormatError, match="gzip bomb"):
        decompress_gzip(bomb, name="bomb.gz", max_bytes=1_000_000)


# --- fuzzing: nothing but IDXFormatError escapes ---------------------------------------------

SEEDS = [GOOD, idx_bytes(LABELS), idx_bytes(np.arange(6, dtype=np.float64).reshape(2, 3))]


def _mutate(data: bytes, edits: list[tuple[int, int]], cut: int | None, extra: bytes) -> bytes:
    out = bytearray(data)
    for position, value in edits:
        if out:
            out[position % len(out)] = value
    if cut is not None:
        out = out[: cut % (len(out) + 1)]
    return bytes(out) + extra


mutations = st.builds(
    _mutate,
    st.sampled_from(SEEDS),
    st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=6),
    st.one_of(st.none(), st.integers(0, 10_000)),
    st.binary(max_size=8),
)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=st.one_of(st.binary(max_size=200), mutations),
    compress=st.booleans(),
    damage=st.one_of(st.none(), st.tuples(st.integers(0, 10_000), st.integers(0, 255))),
)
def test_fuzz_only_idxformaterror_escapes(data, compress, damage):
    if compress:
        data = gzip.compress(data)
        if damage is not None:  # then damage the gzip wrapper or its deflate stream
            data = _mutate(data, [damage], None, b"")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "fuzz-idx-ubyte"
        path.write_bytes(data)
        try:
            array = read_idx(path, max_bytes=1 << 20)
        except IDXFormatError as exc:
            assert str(path) in str(exc)
        else:
            # Whatever was accepted is exactly what its header declares.
            raw = zlib.decompress(data, wbits=31) if data[:2] == b"\x1f\x8b" else data
            assert array.ndim == raw[3]
            assert array.nbytes == len(raw) - 4 - 4 * raw[3]


@settings(max_examples=150, deadline=None)
@given(data=st.binary(max_size=300))
def test_fuzz_parse_and_gunzip_on_bytes(data):
    for function in (parse_idx, decompress_gzip):
        try:
            function(data, name="fuzz", max_bytes=1 << 20)
        except IDXFormatError:
            pass


# --- the payload goes straight into the array; the header can be read alone ------------------


def test_a_truthful_gzip_inflates_into_the_array_with_no_other_copy(tmp_path):
    # 64 MiB of payload, every byte of it declared: the array returned is the only copy held
    # (inflating into bytes, then a bytearray, then an array held about three).
    shape = (64, 1024, 1024)
    head = b"\x00\x00\x08\x03" + struct.pack(">3I", *shape)
    path = write(tmp_path, "big-idx3-ubyte.gz", gzip_bomb(head, 64 << 20))
    held = {}
    peak = peak_memory(lambda: held.setdefault("x", read_idx(path)))
    assert held["x"].shape == shape and held["x"].dtype == np.uint8 and not held["x"].any()
    assert peak < (64 << 20) + (4 << 20), f"peak {peak / 2**20:.1f} MiB for a 64 MiB payload"


def test_a_raw_file_is_read_into_the_array_with_no_other_copy(tmp_path):
    values = np.arange(4 << 20, dtype=np.int32).reshape(4, 1 << 20)  # 16 MiB, big-endian
    path = write(tmp_path, "big-idx2-int", idx_bytes(values))
    held = {}
    peak = peak_memory(lambda: held.setdefault("x", read_idx(path)))
    np.testing.assert_array_equal(held["x"], values)
    assert peak < (16 << 20) + (2 << 20), f"peak {peak / 2**20:.1f} MiB for a 16 MiB payload"


@pytest.mark.parametrize("wrap", ["raw", "gzip"])
@pytest.mark.parametrize("dtype", ["uint8", "int16", "float64"])
def test_read_idx_header_gives_dtype_and_shape_without_the_payload(tmp_path, wrap, dtype):
    values = np.arange(3 * 4 * 5).reshape(3, 4, 5).astype(dtype)
    data = idx_bytes(values)
    path = write(tmp_path, "x-idx3", gzip.compress(data) if wrap == "gzip" else data)
    assert read_idx_header(path) == (np.dtype(dtype), (3, 4, 5))
    assert read_idx_header(path)[0].isnative


def test_read_idx_header_reads_only_the_header(tmp_path):
    # 2 GiB minus one of declared payload in a gzip file big enough to hold it, whose payload
    # is corrupt: the header alone is fine, and that is all that is read.
    head = b"\x00\x00\x08\x01" + struct.pack(">I", 2**31 - 1)
    bomb = gzip_bomb(head, 16 << 20)
    path = write(tmp_path, "labels.gz", bomb + bytes(2**31 // 1032))
    peak = peak_memory(lambda: read_idx_header(path))
    assert peak < 1 << 20
    assert read_idx_header(path) == (np.dtype(np.uint8), (2**31 - 1,))


@pytest.mark.parametrize("case", list(MALFORMED)[:10], ids=list(MALFORMED)[:10])
def test_read_idx_header_refuses_what_read_idx_refuses_in_the_header(tmp_path, case):
    data, reason = MALFORMED[case]
    path = write(tmp_path, "bad-idx-ubyte", data)
    with pytest.raises(IDXFormatError, match=reason) as info:
        read_idx_header(path)
    assert str(path) in str(info.value)


def test_read_idx_header_refuses_special_files_and_size_mismatches(tmp_path):
    with pytest.raises(IDXFormatError, match="is a directory, not a regular file"):
        read_idx_header(tmp_path)
    path = write(tmp_path, "short-idx3", GOOD[:-1])
    with pytest.raises(IDXFormatError, match="truncated payload"):
        read_idx_header(path)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_read_idx_header_refuses_a_fifo_without_blocking(tmp_path):
    fifo = tmp_path / "images-idx3-ubyte"
    os.mkfifo(fifo)
    with pytest.raises(IDXFormatError, match="is a FIFO"):
        call_with_deadline(lambda: read_idx_header(fifo), fifo)


@pytest.mark.parametrize("wrap", ["raw", "gzip"])
def test_item_shape_is_checked_from_the_header(tmp_path, wrap):
    data = idx_bytes(IMAGES)
    path = write(tmp_path, "images-idx3", gzip.compress(data) if wrap == "gzip" else data)
    np.testing.assert_array_equal(read_idx(path, item_shape=(4, 5)), IMAGES)
    with pytest.raises(IDXFormatError) as info:
        read_idx(path, item_shape=(28, 28))
    message = str(info.value)
    assert str(path) in message and "(4, 5)" in message and "(28, 28)" in message
    labels = write(tmp_path, "labels-idx1", idx_bytes(LABELS))
    assert read_idx(labels, item_shape=()).shape == (3,)
    with pytest.raises(IDXFormatError, match=r"expected items of shape \(\)"):
        read_idx(path, item_shape=())


def test_item_shape_refuses_before_the_payload_is_read(tmp_path):
    # A payload that is corrupt: a refusal for the shape must come first, and cost nothing.
    shape = (64, 1024, 1024)
    head = b"\x00\x00\x08\x03" + struct.pack(">3I", *shape)
    bomb = bytearray(gzip_bomb(head, 64 << 20))
    bomb[-8] ^= 0xFF  # the CRC32: only inflating the whole payload would find it
    path = write(tmp_path, "big-idx3-ubyte.gz", bytes(bomb))
    peak = peak_memory(lambda: read_idx(path, item_shape=(28, 28)))
    assert peak < 1 << 20
    with pytest.raises(IDXFormatError, match=r"expected items of shape \(28, 28\)"):
        read_idx(path, item_shape=(28, 28))
    with pytest.raises(IDXFormatError, match="CRC32"):
        read_idx(path, item_shape=(1024, 1024))
