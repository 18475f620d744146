"""The file container: every allowed dtype round trips; every kind of damage, foreign file and
hostile header is refused with one ModelFileError naming the file; writes are atomic."""

from __future__ import annotations

import fnmatch
import json
import os
import pickle
import signal
import subprocess
import sys
import tempfile
import threading
import tracemalloc
import warnings
from pathlib import Path

import numpy as np
import pytest
import safetensors.numpy
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import anynet
from anynet import io, nn
from anynet.errors import ModelFileError
from anynet.io import atomic, container


def make_model() -> nn.Sequential:
    return nn.Sequential(
        nn.Dense(5, 7),
        nn.LeakyReLU(0.1),
        nn.Dropout(0.25),
        nn.Dense(7, 3, init="he_normal"),
        nn.LogSoftmax(),
    )


def assert_same_arrays(actual: dict, desired: dict) -> None:
    assert sorted(actual) == sorted(desired)
    for k in desired:
        assert actual[k].dtype == desired[k].dtype, k
        assert actual[k].shape == desired[k].shape, k
        np.testing.assert_array_equal(actual[k], desired[k], err_msg=k)


@pytest.fixture
def saved(tmp_path) -> tuple[Path, nn.Sequential, dict[str, np.ndarray]]:
    """A valid network file written from NumPy, its model and its host parameters."""
    be = anynet.get_backend("numpy")
    model = make_model()
    params = model.init_params(rng=be.host_generator(0), backend=be)
    path = io.save_network(tmp_path / "model.safetensors", model, params, metadata={"seed": 0})
    return path, model, params


def raw_file(header: dict, data: bytes) -> bytes:
    """safetensors bytes with any header at all, valid or not."""
    text = json.dumps(header).encode()
    return len(text).to_bytes(8, "little") + text + data


def anynet_header(tensors: dict, metadata_json: str, data_views: dict) -> dict:
    """A header with anynet's metadata and a correct digest over the given tensors."""
    meta = {"format": "anynet", "format_version": "1", "anynet": metadata_json}
    digest_input = [(n, t["dtype"], t["shape"], data_views[n]) for n, t in tensors.items()]
    meta["sha256"] = container._digest(meta, digest_input)
    return {"__metadata__": meta, **tensors}


# --------------------------------------------------------------------------------------------
# Arrays: round trips, and what a file cannot hold


def test_arrays_round_trip_every_allowed_dtype(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {
        "f16": rng.normal(size=(2, 3)).astype(np.float16),
        "f32": rng.normal(size=(3,)).astype(np.float32),
        "f64": np.array(np.pi),  # 0-d
        "i32": np.arange(-3, 3, dtype=np.int32),
        "i64": np.array([2**62, -(2**62)], dtype=np.int64),
        "u8": np.arange(256, dtype=np.uint8),
        "u32": np.array([2**32 - 1], dtype=np.uint32),
        "bool": np.array([[True, False], [False, True]]),
        "empty": np.zeros((0, 4), dtype=np.float32),
        "strided": np.arange(20, dtype=np.float64).reshape(4, 5)[:, ::2],  # not contiguous
        "big_endian": np.arange(4, dtype=">f8"),
    }
    path = io.write_arrays(tmp_path / "a.safetensors", arrays, {"k": [1, "two", None]})
    loaded, meta = io.read_arrays(path)
    assert meta == {"k": [1, "two", None]}
    assert sorted(loaded) == sorted(arrays)
    for k, a in arrays.items():
        assert loaded[k].dtype == a.dtype.newbyteorder("="), k
        assert loaded[k].shape == a.shape, k
        np.testing.assert_array_equal(loaded[k], a, err_msg=k)
        assert loaded[k].flags.writeable
    # The file is ordinary safetensors: the reference reader agrees.
    reference = safetensors.numpy.load_file(path)
    for k, a in arrays.items():
        assert reference[k].shape == a.shape, k
        np.testing.assert_array_equal(reference[k], a, err_msg=k)


def test_write_arrays_takes_backend_arrays(backend, tmp_path):
    x = backend.asarray(np.arange(6.0).reshape(2, 3), dtype="float32")
    loaded, _ = io.read_arrays(io.write_arrays(tmp_path / "a", {"x": x}, {}))
    np.testing.assert_array_equal(loaded["x"], np.arange(6.0, dtype=np.float32).reshape(2, 3))


@pytest.mark.parametrize(
    ("arrays", "metadata", "match"),
    [
        ({"c": np.zeros(2, dtype=np.complex64)}, {}, "dtype complex64"),
        ({"o": np.array([object()])}, {}, "dtype object"),
        ({"__metadata__": np.zeros(1)}, {}, "not allowed"),
        ({"": np.zeros(1)}, {}, "not allowed"),
        ({}, {"x": float("nan")}, "not JSON"),
        ({}, {"x": object()}, "not JSON"),
    ],
)
def test_write_arrays_refuses_what_it_cannot_store(tmp_path, arrays, metadata, match):
    with pytest.raises(ValueError, match=match):
        io.write_arrays(tmp_path / "a", arrays, metadata)
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------------------------
# Damaged, foreign and hostile files: always one ModelFileError naming the file and the problem


def check_refused(path, match, loader=io.load_network):
    with pytest.raises(ModelFileError, match=match) as info:
        loader(path)
    assert str(path) in str(info.value)
    return info.value


def test_missing_file_directory_and_empty_file(tmp_path):
    check_refused(tmp_path / "nope.safetensors", "no such file")
    check_refused(tmp_path, "is a directory")
    (tmp_path / "empty").write_bytes(b"")
    check_refused(tmp_path / "empty", "is empty")
    check_refused(tmp_path / "empty", "is empty", io.load_checkpoint)


def test_plain_text_and_short_files_are_not_safetensors(tmp_path):
    (tmp_path / "t").write_text("hello, this is not a model at all\n")
    check_refused(tmp_path / "t", "not a safetensors file")
    (tmp_path / "s").write_bytes(b"\x05\x00")
    check_refused(tmp_path / "s", "too short")
    (tmp_path / "z").write_bytes(raw_file({}, b"")[:8] + b"{")
    check_refused(tmp_path / "z", "truncated")


class Boom:
    """Loading this pickle would create a file: proof that nothing unpickles it."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_a_pickle_is_refused_without_being_loaded(tmp_path):
    marker = tmp_path / "pwned"
    (tmp_path / "model.pkl").write_bytes(pickle.dumps(Boom(str(marker))))
    err = check_refused(tmp_path / "model.pkl", "pickle")
    assert "arbitrary code" in str(err)
    check_refused(tmp_path / "model.pkl", "pickle", io.load_checkpoint)
    assert not marker.exists()


def test_other_known_formats_are_named(tmp_path):
    np.save(tmp_path / "a.npy", np.zeros(3))
    check_refused(tmp_path / "a.npy", "NumPy .npy")
    np.savez(tmp_path / "a.npz", x=np.zeros(3))
    check_refused(tmp_path / "a.npz", "zip")


@pytest.mark.needs_backend("torch")
def test_torch_save_file_is_refused(tmp_path):
    import torch

    torch.save({"W": torch.zeros(2)}, tmp_path / "m.pt")
    check_refused(tmp_path / "m.pt", "zip")


def test_safetensors_files_anynet_did_not_write(tmp_path):
    safetensors.numpy.save_file({"W": np.zeros(2)}, tmp_path / "a")
    check_refused(tmp_path / "a", "anynet did not write")
    safetensors.numpy.save_file({"W": np.zeros(2)}, tmp_path / "b", metadata={"format": "pt"})
    check_refused(tmp_path / "b", "format 'pt'")


def test_a_newer_format_version_asks_for_an_upgrade(tmp_path):
    meta = {"format": "anynet", "format_version": "2", "anynet": "{}", "sha256": "0" * 64}
    safetensors.numpy.save_file({}, tmp_path / "a", metadata=meta)
    err = check_refused(tmp_path / "a", "newer anynet")
    assert "pip install -U anynet-nn" in str(err)  # PyPI's `anynet` is another project
    meta["format_version"] = "one"
    safetensors.numpy.save_file({}, tmp_path / "b", metadata=meta)
    check_refused(tmp_path / "b", "invalid format version")


def test_missing_digest_is_refused(tmp_path):
    meta = {"format": "anynet", "format_version": "1", "anynet": "{}"}
    safetensors.numpy.save_file({}, tmp_path / "a", metadata=meta)
    check_refused(tmp_path / "a", "lacks the 'sha256'")


def test_flipped_payload_byte_is_caught(saved):
    path, _, _ = saved
    raw = bytearray(path.read_bytes())
    raw[-5] ^= 0x01
    path.write_bytes(bytes(raw))
    err = check_refused(path, "modified or corrupted after it was written")
    assert "save the model again" in str(err)


def test_edited_header_is_caught(saved):
    path, _, _ = saved
    raw = path.read_bytes()
    assert raw.count(b"0.25") == 1  # Dropout's p, inside the architecture
    path.write_bytes(raw.replace(b"0.25", b"0.75"))
    check_refused(path, "modified or corrupted")


def test_flipped_header_bytes_are_caught(saved):
    path, _, _ = saved
    good = path.read_bytes()
    size = int.from_bytes(good[:8], "little")
    for i in range(8, 8 + size, 5):
        raw = bytearray(good)
        raw[i] ^= 0x20  # flips letter case, turns padding spaces into NULs
        path.write_bytes(bytes(raw))
        check_refused(path, None)  # each names its own problem; all name the file


def test_truncation_at_any_point_is_caught(saved):
    path, _, _ = saved
    good = path.read_bytes()
    size = int.from_bytes(good[:8], "little")
    for cut in (1, 7, 8, 9, 8 + size // 2, 8 + size - 1, 8 + size, 8 + size + 3, len(good) - 1):
        path.write_bytes(good[:cut])
        err = check_refused(path, "truncated|too short")
        assert "save the model again" in str(err)


def test_appended_bytes_are_caught(saved):
    path, _, _ = saved
    path.write_bytes(path.read_bytes() + b"\x00junk")
    check_refused(path, "5 unexpected bytes after its last tensor")


def write_raw(tmp_path, header, data=b""):
    path = tmp_path / "raw.safetensors"
    path.write_bytes(raw_file(header, data))
    return path


def test_hand_made_headers_are_checked(tmp_path):
    one = {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}
    views = {"a": memoryview(b"\x00" * 4)}
    good = anynet_header({"a": one}, "{}", views)
    assert io.read_arrays(write_raw(tmp_path, good, b"\x00" * 4))[0]["a"].tolist() == [0.0]

    cases = [
        ({**good, "a": {**one, "dtype": "C64"}}, b"\x00" * 4, "dtype 'C64'"),
        ({**good, "a": {**one, "shape": [-1]}}, b"\x00" * 4, "invalid shape"),
        ({**good, "a": {**one, "shape": [True]}}, b"\x00" * 4, "invalid shape"),
        ({**good, "a": {**one, "data_offsets": [4, 0]}}, b"\x00" * 4, "invalid data offsets"),
        ({**good, "a": {**one, "data_offsets": [0, 8]}}, b"\x00" * 8, "needs 4 bytes"),
        ({**good, "a": {**one, "extra": 1}}, b"\x00" * 4, "corrupt safetensors header"),
        ({**good, "b": {**one, "data_offsets": [0, 4]}}, b"\x00" * 4, "corrupt tensor offsets"),
        ({**good, "b": {**one, "data_offsets": [8, 12]}}, b"\x00" * 12, "corrupt tensor offsets"),
        ({**good, "__metadata__": {"format": 1}}, b"\x00" * 4, "not a mapping of strings"),
        ({"__metadata__": {"format": "anynet"}}, b"", "lacks the 'format_version'|invalid format"),
    ]
    for header, data, match in cases:
        check_refused(write_raw(tmp_path, header, data), match, io.read_arrays)

    path = tmp_path / "x"
    text = b'{"a": 1, "a": 2}'
    path.write_bytes(len(text).to_bytes(8, "little") + text)
    check_refused(path, "duplicate key", io.read_arrays)
    text = b"[1, 2]  "
    path.write_bytes(len(text).to_bytes(8, "little") + text)
    check_refused(path, "not valid JSON|not start", io.read_arrays)
    text = b'{"a": NaN}'
    path.write_bytes(len(text).to_bytes(8, "little") + text)
    check_refused(path, "NaN", io.read_arrays)
    text = b'{"\xff": 1}'
    path.write_bytes(len(text).to_bytes(8, "little") + text)
    check_refused(path, "not valid JSON", io.read_arrays)


def test_invalid_metadata_json_with_a_valid_digest(tmp_path):
    for text, match in (("{not json", "not valid JSON"), ("[1]", "not a JSON object")):
        path = write_raw(tmp_path, anynet_header({}, text, {}))
        check_refused(path, match, io.read_arrays)


def test_booleans_must_be_zero_or_one(tmp_path):
    entry = {"dtype": "BOOL", "shape": [2], "data_offsets": [0, 2]}
    path = write_raw(tmp_path, anynet_header({"m": entry}, "{}", {"m": b"\x01\x02"}), b"\x01\x02")
    check_refused(path, "booleans other than 0 and 1", io.read_arrays)


# --------------------------------------------------------------------------------------------
# Special files and hostile sizes: refused before they can hang the reader or fill memory


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
@pytest.mark.parametrize("loader", [io.read_arrays, io.load_network, io.load_checkpoint])
def test_a_fifo_is_refused_without_blocking(tmp_path, loader):
    fifo = tmp_path / "model.safetensors"
    os.mkfifo(fifo)
    with pytest.raises(ModelFileError, match="is a FIFO") as info:
        call_with_deadline(lambda: loader(fifo), fifo)
    assert str(fifo) in str(info.value) and "regular file" in str(info.value)


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="no /dev/zero here")
def test_a_device_is_refused_before_a_byte_is_read():
    # In a child process with a memory limit: a reader that regressed to reading /dev/zero
    # whole must fail this test, not exhaust the machine.
    code = (
        "import resource, sys\n"
        "try:\n"  # not every system lets a process cap its address space
        "    resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))\n"
        "except (ValueError, OSError):\n"
        "    pass\n"
        "from anynet import io\n"
        "from anynet.errors import ModelFileError\n"
        "try:\n"
        "    io.read_arrays('/dev/zero')\n"
        "except ModelFileError as exc:\n"
        "    print(exc)\n"
    )
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    run = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert "/dev/zero: is a character device, not a regular file" in run.stdout


def test_a_socket_is_refused(tmp_path):
    socket = pytest.importorskip("socket")
    if not hasattr(socket, "AF_UNIX"):
        pytest.skip("no Unix sockets here")
    # A socket's path is limited to about 100 bytes: tmp_path may be longer.
    folder = Path(tempfile.mkdtemp(prefix="anynet-"))
    path = folder / "s"
    server = socket.socket(socket.AF_UNIX)
    try:
        server.bind(str(path))
        check_refused(path, "is a socket, not a regular file", io.read_arrays)
    finally:
        server.close()
        path.unlink(missing_ok=True)
        folder.rmdir()


def sparse_file(path: Path, head: bytes, size: int) -> Path:
    """A file of ``size`` bytes starting with ``head``, the rest a hole: no disk used."""
    with open(path, "wb") as f:
        f.write(head)
        f.truncate(size)
    return path


def peak_memory(fn) -> int:
    """The most bytes Python held at once while ``fn()`` ran (its exception swallowed)."""
    tracemalloc.start()
    try:
        fn()
    except ModelFileError:
        pass
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return peak


def test_the_header_is_read_and_checked_before_the_rest(tmp_path):
    # 3 GiB whose first bytes are a broken header: refused after reading about 100 bytes.
    text = b'{"__metadata__": ' + b"x" * 80
    path = sparse_file(tmp_path / "big", len(text).to_bytes(8, "little") + text, 3 << 30)
    assert peak_memory(lambda: io.read_arrays(path)) < 16 << 20
    check_refused(path, "not valid JSON", io.read_arrays)
    # A good header whose tensors need more than the file holds: refused before reading them.
    one = {"dtype": "F32", "shape": [2**28], "data_offsets": [0, 2**30]}
    header = anynet_header({"a": one}, "{}", {"a": memoryview(b"")})
    path = write_raw(tmp_path, header, b"\x00" * 64)
    check_refused(path, "truncated: its tensors need 1073741824 bytes", io.read_arrays)


@pytest.mark.parametrize(
    ("shape", "data"),
    [
        ([2**62, 2**62, 0], b""),  # no bytes, but NumPy cannot make the array
        ([0] * 70, b""),  # more dimensions than NumPy has
        ([2**40, 2**40, 2**40, 0], b""),
    ],
    ids=["huge empty", "70 dimensions", "overflowing product"],
)
def test_shapes_nobody_could_store_are_refused_naming_the_file(tmp_path, shape, data):
    entry = {"dtype": "F32", "shape": shape, "data_offsets": [0, len(data)]}
    header = anynet_header({"a": entry}, "{}", {"a": memoryview(data)})
    check_refused(write_raw(tmp_path, header, data), "invalid shape", io.read_arrays)


# --------------------------------------------------------------------------------------------
# Atomic writes


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


@pytest.mark.parametrize(
    ("where", "error"),
    [("replace", OSError), ("fsync", OSError), ("fsync", KeyboardInterrupt)],
)
def test_a_crash_while_saving_leaves_the_old_file_intact(saved, monkeypatch, where, error):
    path, model, params = saved
    before = path.read_bytes()

    def crash(*args, **kwargs):
        raise error(28, "No space left on device") if error is OSError else error

    monkeypatch.setattr(os, where, crash)
    new = {k: v + 1 for k, v in params.items()}
    with pytest.raises(error) as info:
        io.save_network(path, model, new)
    if error is OSError:
        assert str(path) in str(info.value) and "No space left" in str(info.value)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert leftovers(path.parent) == []
    _, loaded, _ = io.load_network(path)
    assert_same_arrays(loaded, params)


def test_a_crash_mid_write_leaves_the_old_checkpoint_intact(tmp_path, monkeypatch):
    path = io.save_checkpoint(tmp_path / "c", params={}, opt_state=(), epoch=1, step=10)
    before = path.read_bytes()

    class HalfFile:
        """A file whose write dies halfway through, as in a kill -9 or a full disk."""

        def __init__(self, fd, mode):
            self.f = open(fd, mode)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def write(self, data):
            self.f.write(data[: len(data) // 2])
            raise OSError(5, "Input/output error")

    # Only the atomic writer: it looks `open` up in its own module before the builtins.
    monkeypatch.setattr(atomic, "open", HalfFile, raising=False)
    with pytest.raises(OSError, match="Input/output error"):
        io.save_checkpoint(path, params={}, opt_state=(), epoch=2, step=20)
    monkeypatch.undo()
    assert path.read_bytes() == before and leftovers(tmp_path) == []
    assert io.load_checkpoint(path).epoch == 1


def test_saving_replaces_the_old_file_and_respects_the_umask(saved):
    path, model, params = saved
    new = {k: v * 2 for k, v in params.items()}
    io.save_network(path, model, new)
    assert_same_arrays(io.load_network(path)[1], new)
    assert leftovers(path.parent) == []
    umask = os.umask(0)
    os.umask(umask)
    if os.name == "posix":
        assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_a_name_of_the_longest_legal_length_is_written(tmp_path):
    # The temporary name must not grow with the destination's: 255 bytes is the usual limit.
    limit = os.pathconf(tmp_path, "PC_NAME_MAX") if hasattr(os, "pathconf") else 255
    path = tmp_path / ("m" * min(limit, 255))
    io.save_checkpoint(path, params={}, opt_state=(), epoch=1, step=1)
    assert io.load_checkpoint(path).epoch == 1
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_temporary_files_match_the_documented_pattern(tmp_path, monkeypatch):
    seen = []

    def replace(src, dst):
        seen.append(Path(src))
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(OSError):
        io.save_checkpoint(tmp_path / "c", params={}, opt_state=(), epoch=0, step=0)
    (tmp,) = seen
    assert tmp.parent == tmp_path and fnmatch.fnmatchcase(tmp.name, io.TEMPORARY_FILES)
    assert len(tmp.name) <= 40
    # The writer's process id is in the name: what tells an orphan from a live write.
    assert atomic._writer_pid(tmp.name) == os.getpid()


def dead_pid() -> int:
    """The id of a process that has ended (and been reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


@pytest.mark.skipif(os.name == "nt", reason="os.kill cannot probe a process on Windows")
def test_remove_orphans_removes_only_the_files_of_writers_that_are_gone(tmp_path):
    name = atomic._temporary_name
    orphan = tmp_path / name(dead_pid(), "0badc0de")
    live_child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        live = tmp_path / name(live_child.pid, "00000001")
        mine = tmp_path / name(os.getpid(), "00000002")
        other_host = tmp_path / f".anynet-zzzzzzzz-{dead_pid()}-00000003.tmp"
        older = tmp_path / ".anynet-0123456789abcdef.tmp"  # an older anynet's: no pid
        not_ours = tmp_path / "model.safetensors"
        for path in (orphan, live, mine, other_host, older, not_ours):
            path.write_bytes(b"partial")
        folder = tmp_path / name(dead_pid(), "00000004")
        folder.mkdir()  # matches the pattern, but is no file of a write
        assert io.remove_orphans(tmp_path) == [orphan]
        assert not orphan.exists()
        assert all(p.exists() for p in (live, mine, other_host, older, not_ours, folder))
    finally:
        live_child.kill()
        live_child.wait()
    assert io.remove_orphans(tmp_path / "missing") == []


@pytest.mark.skipif(os.name == "nt", reason="no SIGKILL on Windows")
def test_a_write_killed_mid_way_is_cleaned_by_the_next_save(tmp_path):
    # A writer killed with SIGKILL while its temporary file exists: what anynet.save left.
    code = (
        "import os, signal, sys\n"
        "from anynet.io import atomic\n"
        "path = os.path.join(sys.argv[1], atomic._temporary_name(os.getpid(), 'deadbeef'))\n"
        "open(path, 'wb').write(b'half a model')\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    run = subprocess.run([sys.executable, "-c", code, str(tmp_path)], timeout=120)
    assert run.returncode == -signal.SIGKILL
    (left,) = tmp_path.glob(io.TEMPORARY_FILES)
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(20, 3)), rng.integers(0, 2, size=20)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf = anynet.NNClassifier((2,), max_iter=1, random_state=0).fit(X, y)
    anynet.save(clf, tmp_path / "model.safetensors")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors"]
    assert not left.exists()


def test_saving_to_a_directory_or_a_missing_directory(tmp_path):
    with pytest.raises(ModelFileError, match="is a directory"):
        io.save_network(tmp_path, nn.ReLU(), {})
    with pytest.raises(FileNotFoundError, match=r"cannot write .*nowhere"):
        io.save_network(tmp_path / "nowhere" / "m", nn.ReLU(), {})


# --------------------------------------------------------------------------------------------
# Fuzz: any damage gives a ModelFileError, or (padding, a no-op edit) the very same content

_FUZZ_MODEL = make_model()
_FUZZ_PARAMS = _FUZZ_MODEL.init_params(
    rng=np.random.default_rng(0), backend=anynet.get_backend("numpy")
)
with tempfile.TemporaryDirectory() as _tmp:
    _FUZZ_GOOD = io.save_network(
        Path(_tmp) / "good", _FUZZ_MODEL, _FUZZ_PARAMS, metadata={"note": "x", "a": np.arange(3)}
    ).read_bytes()

_FUZZ_HEADER_END = 8 + int.from_bytes(_FUZZ_GOOD[:8], "little")
mutation = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, _FUZZ_HEADER_END - 1), st.integers(1, 255)),
    st.tuples(st.just("flip"), st.integers(0, len(_FUZZ_GOOD) - 1), st.integers(1, 255)),
    st.tuples(st.just("cut"), st.integers(0, len(_FUZZ_GOOD) - 1), st.just(0)),
    st.tuples(st.just("insert"), st.integers(0, len(_FUZZ_GOOD)), st.integers(0, 255)),
    st.tuples(st.just("delete"), st.integers(0, len(_FUZZ_GOOD) - 1), st.just(0)),
)


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutations=st.lists(mutation, min_size=1, max_size=4))
def test_fuzzed_files_raise_model_file_error_or_load_unchanged(fuzz_dir, mutations):
    raw = bytearray(_FUZZ_GOOD)
    for kind, i, value in mutations:
        if not raw:
            break
        i = min(i, len(raw)) if kind == "insert" else min(i, len(raw) - 1)
        if kind == "flip":
            raw[i] ^= value
        elif kind == "cut":
            del raw[i:]
        elif kind == "insert":
            raw.insert(i, value)
        else:
            del raw[i]
    path = fuzz_dir / "fuzzed.safetensors"
    path.write_bytes(bytes(raw))
    try:
        model, params, meta = io.load_network(path)
    except ModelFileError as exc:
        assert str(path) in str(exc)
        return
    assert model == _FUZZ_MODEL
    assert_same_arrays(params, _FUZZ_PARAMS)
    assert meta["note"] == "x" and meta["a"].tolist() == [0, 1, 2]
