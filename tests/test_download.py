"""Downloads against a real HTTP server on 127.0.0.1: good, corrupt, truncated, stalled mirrors.

The server runs in a thread of this process; timeouts are a fraction of a second, so a stalled
mirror costs the suite well under a second. Nothing here leaves 127.0.0.1.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import struct
import threading
import tracemalloc
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

import anynet.datasets.fashion_mnist as fm
from anynet.datasets import FASHION_MNIST_FILES, fashion_mnist_path, load_fashion_mnist
from anynet.datasets._fetch import DownloadFailed, download_verified
from anynet.errors import ChecksumError, DatasetNotFoundError

LABELS = "t10k-labels-idx1-ubyte"
IMAGES = "t10k-images-idx3-ubyte"
TIMEOUT = 0.5  # seconds a stalled mirror may keep us waiting


def _labels_file(labels: np.ndarray) -> bytes:
    raw = bytes([0, 0, 8, 1]) + len(labels).to_bytes(4, "big") + labels.astype(np.uint8).tobytes()
    return gzip.compress(raw)


def _real_or_synthetic() -> dict[str, bytes]:
    """The real test-set files when installed; else nothing (tests needing them skip)."""
    files = {}
    for name in (LABELS, IMAGES):
        path = fm.DEBIAN_DIR / f"{name}.gz"
        if path.is_file():
            files[name] = path.read_bytes()
    return files


@functools.cache
def labels_bomb() -> bytes:
    """1 MB of gzip: a labels file's header for 10,000 labels, then 1 GiB of zeros.

    After a full flush deflate starts afresh, so a MiB of zeros compresses to the same bytes
    each time: compress it once and repeat it; the trailer (CRC32, length) is computed here.
    """
    head, block, blocks = bytes([0, 0, 8, 1]) + (10000).to_bytes(4, "big"), 1 << 20, 1024
    deflate = zlib.compressobj(9, zlib.DEFLATED, 31)
    start = deflate.compress(head) + deflate.flush(zlib.Z_FULL_FLUSH)
    zeros = deflate.compress(bytes(block)) + deflate.flush(zlib.Z_FULL_FLUSH)
    end = deflate.flush()[:-8]
    crc, chunk = zlib.crc32(head), bytes(16 * block)
    for _ in range(blocks // 16):
        crc = zlib.crc32(chunk, crc)
    size = (len(head) + blocks * block) & 0xFFFFFFFF
    return start + zeros * blocks + end + struct.pack("<II", crc, size)


REAL = _real_or_synthetic()
needs_real = pytest.mark.skipif(
    LABELS not in REAL, reason="Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)"
)


class Mirrors:
    """Routes: /good/, /corrupt/, /bomb/, /truncated/, /cut/, /stall/, /missing/ + file name."""

    def __init__(self):
        self.release = threading.Event()  # set at teardown: stalled handlers give up
        self.requests: list[str] = []
        mirrors = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep pytest's output clean
                pass

            def do_GET(self):
                mirrors.requests.append(self.path)
                kind, _, name = self.path.strip("/").partition("/")
                name = name.removesuffix(".gz")
                good = REAL.get(name, _labels_file(np.zeros(10000, dtype=np.uint8)))
                if kind == "missing":
                    self.send_error(404)
                    return
                if kind == "good":
                    body = good
                elif kind == "bomb":
                    body = labels_bomb()
                elif kind == "corrupt":
                    # Well-formed gzip and IDX, wrong content: only the hash can tell.
                    body = _labels_file(np.ones(10000, dtype=np.uint8))
                elif kind == "truncated":
                    body = good[: len(good) // 2]  # honest length, half a file
                elif kind == "cut":
                    # Announces the whole file, sends half, hangs up.
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(good)))
                    self.end_headers()
                    self.wfile.write(good[: len(good) // 2])
                    return
                elif kind == "stall":
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(good)))
                    self.end_headers()
                    self.wfile.write(good[:10])
                    self.wfile.flush()
                    mirrors.release.wait(10)  # never more bytes while the test runs
                    return
                else:
                    self.send_error(400)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"

    def url(self, kind: str) -> str:
        return f"{self.base}/{kind}/"

    def close(self):
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def mirrors(monkeypatch):
    # A proxy in the environment must not intercept 127.0.0.1.
    for var in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    server = Mirrors()
    yield server
    server.close()


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """No local copy anywhere: every automatic source is an empty folder."""
    monkeypatch.delenv("ANYNET_DATA_DIR", raising=False)
    monkeypatch.setattr(fm, "default_cache_dir", lambda: tmp_path / "cache")
    monkeypatch.setattr(fm, "DEBIAN_DIR", tmp_path / "debian")
    return tmp_path


def leftovers(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


@needs_real
def test_falls_through_bad_mirrors_to_the_good_one(mirrors, isolated):
    order = ["stall", "missing", "truncated", "cut", "corrupt", "good"]
    path = fashion_mnist_path(LABELS, mirrors=[mirrors.url(k) for k in order], timeout=TIMEOUT)
    assert path == isolated / "cache" / f"{LABELS}.gz"
    assert (
        hashlib.sha256(gzip.decompress(path.read_bytes())).hexdigest()
        == (FASHION_MNIST_FILES[LABELS])
    )
    assert [r.split("/")[1] for r in mirrors.requests] == order  # in order, each once
    assert leftovers(path.parent) == [f"{LABELS}.gz"]  # no temporary file left behind


def test_all_mirrors_bad_reports_each_and_keeps_nothing(mirrors, isolated):
    order = ["stall", "missing", "truncated", "cut", "corrupt"]
    with pytest.raises(ChecksumError) as info:
        fashion_mnist_path(LABELS, mirrors=[mirrors.url(k) for k in order], timeout=TIMEOUT)
    message = str(info.value)
    for kind in order:
        assert mirrors.url(kind) in message
    assert "timed out" in message
    assert "404" in message
    assert "truncated gzip" in message
    assert FASHION_MNIST_FILES[LABELS] in message  # the expected hash ...
    wrong = hashlib.sha256(gzip.decompress(_labels_file(np.ones(10000, np.uint8)))).hexdigest()
    assert wrong in message  # ... and the one the corrupt mirror served
    assert ".part" not in message  # the temporary name means nothing to the user
    # Nothing at the final path, no partial file anywhere.
    assert leftovers(isolated / "cache") == []


def test_unreachable_mirrors_give_not_found_with_the_three_ways(mirrors, isolated):
    with pytest.raises(DatasetNotFoundError) as info:
        load_fashion_mnist(
            "test", mirrors=[mirrors.url("missing"), mirrors.url("stall")], timeout=TIMEOUT
        )
    message = str(info.value)
    assert "apt-get install dataset-fashion-mnist" in message
    assert "ANYNET_DATA_DIR" in message
    assert "download=True" in message
    assert leftovers(isolated / "cache") == []


@needs_real
def test_a_corrupt_cached_file_is_replaced_by_a_verified_download(mirrors, isolated):
    cached = isolated / "cache" / f"{LABELS}.gz"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"\x1f\x8b\x08 half a download")
    path = fashion_mnist_path(LABELS, mirrors=[mirrors.url("good")], timeout=TIMEOUT)
    assert path == cached and cached.read_bytes() == REAL[LABELS]


@needs_real
def test_download_into_data_dir_and_load(mirrors, isolated, tmp_path):
    target = tmp_path / "mine"
    X, y = load_fashion_mnist("test", data_dir=target, mirrors=[mirrors.url("good")])
    assert X.shape == (10000, 28, 28) and y.dtype == np.int64 and y[0] == 9
    assert leftovers(target) == [f"{IMAGES}.gz", f"{LABELS}.gz"]


@needs_real
def test_download_goes_to_anynet_data_dir_when_set(mirrors, isolated, monkeypatch):
    monkeypatch.setenv("ANYNET_DATA_DIR", str(isolated / "root"))
    path = fashion_mnist_path(LABELS, mirrors=[mirrors.url("good")], timeout=TIMEOUT)
    assert path == isolated / "root" / "fashion-mnist" / f"{LABELS}.gz"


def test_download_verified_rejects_and_cleans_up(mirrors, tmp_path):
    def refuse(path):
        assert path.name.endswith(".part") and path.stat().st_size > 0
        raise ValueError("not what I wanted")

    with pytest.raises(DownloadFailed) as info:
        download_verified([mirrors.url("good") + "x.gz"], tmp_path / "x.gz", refuse, timeout=1)
    assert info.value.rejected == [mirrors.url("good") + "x.gz"]
    assert "not what I wanted" in str(info.value)
    assert leftovers(tmp_path) == []


def test_download_verified_bounds_size(mirrors, tmp_path):
    with pytest.raises(DownloadFailed, match="larger than 100 bytes"):
        download_verified(
            [mirrors.url("good") + f"{LABELS}.gz"],
            tmp_path / "x.gz",
            lambda path: None,
            timeout=1,
            max_bytes=100,
        )
    assert leftovers(tmp_path) == []


def test_a_gzip_bomb_from_a_mirror_is_refused_in_bounded_memory(mirrors, isolated):
    assert len(labels_bomb()) < 2 << 20
    tracemalloc.start()
    try:
        with pytest.raises(ChecksumError) as info:
            fashion_mnist_path(LABELS, mirrors=[mirrors.url("bomb")], timeout=TIMEOUT)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert "more than the 10008 bytes its IDX header declares" in str(info.value)
    assert peak < 32 << 20  # the download's own buffers, not the GiB it inflates to
    # Old-style file: the bomb is a valid gzip file, and inflates to what it claims.
    assert zlib.decompressobj(wbits=31).decompress(labels_bomb(), 12)[:8] == bytes(
        [0, 0, 8, 1, 0, 0, 0x27, 0x10]
    )
    assert leftovers(isolated / "cache") == []


def test_a_destination_of_the_longest_legal_name_downloads(mirrors, tmp_path):
    # The temporary name must not grow with the destination's: 255 bytes is the usual limit.
    dest = tmp_path / ("x" * 251 + ".gz")
    path = download_verified([mirrors.url("good") + f"{LABELS}.gz"], dest, lambda p: None)
    assert path == dest and leftovers(tmp_path) == [dest.name]
