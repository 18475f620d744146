"""`anynet predict` reads an image as the 8-bit gray picture it shows, or refuses it.

A 16-bit PNG used to be clipped to mostly white, and transparency was dropped, and either still
got a confident class. Each image here is made by Pillow in a mode, next to the 8-bit gray PNG
it stands for; both must get the same prediction. Special files are refused before any read.
No Fashion-MNIST needed: the model is trained on made-up images whose class is their brightness.
"""

from __future__ import annotations

import gzip
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import anynet_cmd

import anynet

Image = pytest.importorskip("PIL.Image")
pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> str:
    # Ten classes of brightness: the answer, and every probability, follow the pixels.
    rng = np.random.default_rng(0)
    y = np.arange(3000) % 10
    level = y[:, None] * 25 + rng.integers(0, 25, (3000, 1))
    X = np.clip(level + rng.integers(-40, 41, (3000, 784)), 0, 255).astype(np.uint8)
    clf = anynet.NNClassifier((32,), max_iter=10, random_state=0).fit(X, y)
    return str(anynet.save(clf, tmp_path_factory.mktemp("model") / "m.safetensors"))


def picture(seed: int = 1) -> np.ndarray:
    """A 28x28 8-bit gray picture: a light object on a dark ground, as Fashion-MNIST's."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 40, (28, 28))
    image[6:22, 8:20] = rng.integers(120, 256, (16, 12))
    return image.astype(np.uint8)


def predictions(model: str, *paths: Path, extra: tuple[str, ...] = ()) -> list[str]:
    """What predict answers for each path: the class and all ten probabilities."""
    out = anynet_cmd("predict", model, *map(str, paths), "--top", "10", *extra)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert len(lines) == len(paths)
    return [line.split(": ", 1)[1] for line in lines]


def refused(out: subprocess.CompletedProcess, *needles: str) -> None:
    assert out.returncode == 1, (out.stdout, out.stderr)
    assert out.stdout == "" and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr
    for needle in needles:
        assert needle in out.stderr, (needle, out.stderr)


def save(tmp_path: Path, name: str, image, **kw) -> Path:
    path = tmp_path / name
    image.save(path, **kw)
    return path


def test_16_bit_gray_is_scaled_by_its_bit_depth(model, tmp_path):
    gray = picture()
    eight = save(tmp_path, "8.png", Image.fromarray(gray))
    # The same picture in 16 bits: each 8-bit value v is v * 257 (65535 / 255), plus a little
    # the 8-bit picture cannot hold.
    noise = np.random.default_rng(2).integers(0, 100, gray.shape)
    values = np.minimum(gray.astype(np.int64) * 257 + noise, 65535)
    sixteen = Image.fromarray(values.astype(np.uint16))
    assert sixteen.mode == "I;16"
    wide = save(tmp_path, "16.png", sixteen)
    big_endian = save(tmp_path, "16b.png", Image.fromarray(np.asarray(sixteen).astype(">u2")))
    a, b, c = predictions(model, eight, wide, big_endian)
    assert a == b == c


def test_a_dark_16_bit_image_stays_dark(model, tmp_path):
    # Scaled by the bit depth, not stretched to the image's own maximum.
    values = (picture(3).astype(np.uint16) * 4).astype(np.uint16)  # at most 1020 of 65535
    dark = save(tmp_path, "dark16.png", Image.fromarray(values))
    expected = ((values.astype(np.int64) * 255 + 32767) // 65535).astype(np.uint8)
    assert expected.max() <= 4
    eight = save(tmp_path, "dark8.png", Image.fromarray(expected))
    a, b = predictions(model, dark, eight)
    assert a == b


@pytest.mark.parametrize("invert", [False, True])
def test_transparency_is_the_background(model, tmp_path, invert):
    """Transparent pixels are the picture's background: black, Fashion-MNIST's; with --invert
    (a dark object on a light ground) white, which the inversion then makes black."""
    gray = picture(4)
    if invert:
        gray = 255 - gray
    opaque = np.zeros(gray.shape, dtype=bool)
    opaque[6:22, 8:20] = True  # the object
    background = 255 if invert else 0
    # Around the object, transparent pixels of the colour opposite to the background.
    rgba = np.zeros((28, 28, 4), np.uint8)
    rgba[..., :3] = np.where(opaque, gray, 255 - background)[..., None]
    rgba[..., 3] = np.where(opaque, 255, 0)
    expected = np.where(opaque, gray, background).astype(np.uint8)
    la = np.stack([rgba[..., 0], rgba[..., 3]], axis=-1)
    paths = [
        save(tmp_path, "expected.png", Image.fromarray(expected)),
        save(tmp_path, "rgba.png", Image.fromarray(rgba)),
        save(tmp_path, "la.png", Image.fromarray(la)),
    ]
    extra = ("--invert",) if invert else ()
    answers = predictions(model, *paths, extra=extra)
    assert answers[1:] == answers[:1] * 2


def test_palette_with_a_transparent_entry(model, tmp_path):
    gray = picture(5)
    levels = np.unique(gray)  # entry 0 is transparent (and white); the others gray levels
    palette = Image.new("P", (28, 28))
    palette.putpalette([255, 255, 255] + [int(v) for v in levels for _ in range(3)])
    index = (np.searchsorted(levels, gray) + 1).astype(np.uint8)
    index[:3] = 0  # three rows of transparency
    palette.putdata(index.ravel().tolist())
    expected = np.where(index == 0, 0, gray).astype(np.uint8)
    paths = [
        save(tmp_path, "expected.png", Image.fromarray(expected)),
        save(tmp_path, "p.png", palette, transparency=0),
    ]
    assert Image.open(paths[1]).mode == "P"
    a, b = predictions(model, *paths)
    assert a == b


def trns_pictures(tmp_path: Path) -> list[tuple[Path, np.ndarray]]:
    """PNGs without alpha whose tRNS chunk names one colour transparent (gray 8- and 16-bit,
    1-bit, RGB), each with its 8-bit gray picture and where it is transparent."""
    gray = picture(10)
    # Five columns in the colour named transparent: a mid gray, neither background (black, or
    # white with --invert); and any pixel of that gray elsewhere.
    gray[:, :5] = 77
    clear = gray == 77
    rgb = np.stack([gray] * 3, axis=-1)
    bits = gray >= 128
    out = [
        (save(tmp_path, "l.png", Image.fromarray(gray), transparency=77), gray, clear),
        (
            save(tmp_path, "rgb.png", Image.fromarray(rgb), transparency=(77, 77, 77)),
            gray,
            clear,
        ),
        (
            save(
                tmp_path,
                "16.png",
                Image.fromarray(gray.astype(np.uint16) * 257),
                transparency=77 * 257,
            ),
            gray,
            clear,
        ),
        (
            save(tmp_path, "1.png", Image.fromarray(bits), transparency=1),
            np.where(bits, 255, 0),
            bits,
        ),
    ]
    for path, _, _ in out:
        assert "transparency" in Image.open(path).info, path
    return out


@pytest.mark.parametrize("invert", [False, True])
def test_a_transparent_colour_is_the_background(tmp_path, invert):
    """A gray or RGB PNG without alpha may name one colour transparent: those pixels are the
    background, as alpha 0 is. They used to be read as that colour (a mid gray, here)."""
    from anynet.cli.predict import _gray_pixels

    for path, gray, clear in trns_pictures(tmp_path):
        with Image.open(path) as image:
            got = _gray_pixels(image, invert=invert)
        shown = 255 - gray if invert else gray
        np.testing.assert_array_equal(got, np.where(clear, 0, shown), err_msg=str(path))


def test_a_transparent_colour_is_read_as_predict_runs(model, tmp_path):
    path, gray, clear = trns_pictures(tmp_path)[0]
    expected = save(
        tmp_path, "expected.png", Image.fromarray(np.where(clear, 0, gray).astype(np.uint8))
    )
    a, b = predictions(model, expected, path)
    assert a == b


def test_a_malformed_transparent_colour_is_refused():
    from anynet.cli.predict import _gray_pixels
    from anynet.errors import DataError

    image = Image.fromarray(picture(11))
    image.info["transparency"] = b"\x00\x01"  # a palette's table, on a gray image
    with pytest.raises(DataError, match="transparent gray level"):
        _gray_pixels(image, invert=False)


def test_rgb_is_read_by_its_luma(model, tmp_path):
    rgb = np.random.default_rng(6).integers(0, 256, (28, 28, 3), dtype=np.uint8)
    color = save(tmp_path, "rgb.png", Image.fromarray(rgb))
    luma = save(tmp_path, "luma.png", Image.fromarray(rgb).convert("L"))
    a, b = predictions(model, color, luma)
    assert a == b


def test_modes_it_cannot_read_are_refused_by_name(model, tmp_path):
    rgb = Image.fromarray(np.full((28, 28, 3), 200, np.uint8))
    cmyk = save(tmp_path, "cmyk.jpg", rgb.convert("CMYK"))
    refused(anynet_cmd("predict", model, str(cmyk)), f"error: {cmyk}: an image in mode 'CMYK'")


def test_32_bit_values_are_not_16_bit_gray():
    from anynet.cli.predict import _gray_pixels
    from anynet.errors import DataError

    values = np.arange(784, dtype=np.int32).reshape(28, 28) * 80  # up to 62,640: 16-bit
    image = Image.fromarray(values)
    assert image.mode == "I"
    expected = ((values.astype(np.int64) * 255 + 32767) // 65535).astype(np.uint8)
    np.testing.assert_array_equal(_gray_pixels(image, invert=False), expected)
    with pytest.raises(DataError, match="'I'"):
        _gray_pixels(Image.fromarray(values * 100), invert=False)


@pytest.mark.parametrize("kind", ["fifo", "folder", "/dev/zero"])
def test_special_files_are_refused_before_reading(model, tmp_path, kind):
    # A FIFO used to block predict forever (read_bytes waits for a writer), /dev/zero to read
    # without end; the timeout keeps a regression from hanging the suite.
    if kind == "fifo":
        path = tmp_path / "fifo"
        os.mkfifo(path)
    elif kind == "folder":
        path = tmp_path
    else:
        path = Path(kind)
        if not path.exists():
            pytest.skip("no /dev/zero here")
    out = anynet_cmd("predict", model, str(path), timeout=60)
    # A folder is read as a folder of images (here, none).
    refused(out, str(path), "holds no .png" if kind == "folder" else "not a regular file")


def test_a_folder_of_images_is_each_image(model, tmp_path):
    for name in ("b.png", "sub/a.png"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        Image.fromarray(picture()).save(tmp_path / name)
    (tmp_path / "notes.txt").write_text("passed over")
    out = anynet_cmd("predict", model, str(tmp_path))
    assert out.returncode == 0, out.stderr
    said = [line.split(":")[0] for line in out.stdout.splitlines()]
    assert said == [str(tmp_path / "b.png"), str(tmp_path / "sub" / "a.png")]


def test_other_files_are_refused_by_their_first_bytes(model, tmp_path):
    text = tmp_path / "notes.png"  # the name does not matter; the content does
    text.write_text("not an image")
    refused(anynet_cmd("predict", model, str(text)), "not a PNG/JPEG image or an IDX file")


def test_a_huge_picture_is_refused_before_it_is_decoded(model, tmp_path):
    big = save(tmp_path, "big.png", Image.new("1", (30000, 30000)))  # small file, 900M pixels
    out = anynet_cmd("predict", model, str(big))
    refused(out, f"error: {big}: the image is 30000x30000 pixels; the model takes 28x28")


def test_idx_files_raw_and_gzipped(model, tmp_path):
    images = np.stack([picture(seed) for seed in (7, 8, 9)])
    idx = struct.pack(">HBB3I", 0, 0x08, 3, *images.shape) + images.tobytes()
    (tmp_path / "raw-idx3").write_bytes(idx)
    (tmp_path / "idx3.gz").write_bytes(gzip.compress(idx))
    pngs = [save(tmp_path, f"{i}.png", Image.fromarray(image)) for i, image in enumerate(images)]
    expected = predictions(model, *pngs)
    for name in ("raw-idx3", "idx3.gz"):
        out = anynet_cmd("predict", model, str(tmp_path / name), "--top", "10")
        assert out.returncode == 0, out.stderr
        assert out.stdout.splitlines() == [
            f"{tmp_path / name}[{i}]: {answer}" for i, answer in enumerate(expected)
        ]


def idx3(shape: tuple[int, ...], payload: bytes, code: int = 0x08) -> bytes:
    return struct.pack(f">HBB{len(shape)}I", 0, code, len(shape), *shape) + payload


def test_idx_of_another_image_size_is_refused_from_its_header(model, tmp_path):
    # The payload is damaged past the header: reading it would fail on that instead. Refused
    # from the header, it is never read (nor inflated).
    images = np.random.default_rng(12).integers(0, 256, (500, 32, 32), dtype=np.uint8)
    blob = bytearray(gzip.compress(idx3(images.shape, images.tobytes())))
    blob[len(blob) // 2 : len(blob) // 2 + 64] = bytes(64)
    (tmp_path / "32x32.gz").write_bytes(bytes(blob))
    out = anynet_cmd("predict", model, str(tmp_path / "32x32.gz"))
    refused(out, "32x32.gz: images of 32x32 pixels (from its header)", "the model takes 784")


@pytest.mark.parametrize(
    ("shape", "code", "needle"),
    [
        ((1, 28, 28), 0x0D, "announces float32 values of shape (1, 28, 28)"),
        ((1, 28, 28, 1), 0x08, "of shape (1, 28, 28, 1)"),
    ],
)
def test_idx_of_other_values_is_refused_from_its_header(model, tmp_path, shape, code, needle):
    size = int(np.prod(shape)) * (4 if code == 0x0D else 1)
    (tmp_path / "other.idx").write_bytes(idx3(shape, bytes(size), code))
    refused(anynet_cmd("predict", model, str(tmp_path / "other.idx")), needle, "takes uint8 images")


def test_idx_announcing_billions_of_images_is_refused_at_once(model, tmp_path):
    (tmp_path / "huge.gz").write_bytes(gzip.compress(idx3((2**31 - 1, 28, 28), bytes(784 * 8))))
    out = anynet_cmd("predict", model, str(tmp_path / "huge.gz"), timeout=60)
    refused(out, "huge.gz", "(2147483647, 28, 28)")


def test_idx_of_one_image_and_of_many_chunks(model, tmp_path):
    # One (28, 28) image; and more images than predict classifies at once, numbered on.
    from anynet.cli.predict import _CHUNK

    images = np.random.default_rng(13).integers(0, 256, (_CHUNK + 5, 28, 28), dtype=np.uint8)
    (tmp_path / "one.idx").write_bytes(idx3((28, 28), images[0].tobytes()))
    (tmp_path / "many.idx").write_bytes(idx3(images.shape, images.tobytes()))
    out = anynet_cmd("predict", model, str(tmp_path / "one.idx"), str(tmp_path / "many.idx"))
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert len(lines) == 1 + len(images)
    expected = anynet.load(model).predict(images.reshape(len(images), -1))
    assert lines[0].startswith(
        f"{tmp_path / 'one.idx'}: {anynet.datasets.FASHION_MNIST_CLASSES[expected[0]]}  ("
    )
    for i in (0, _CHUNK - 1, _CHUNK, len(images) - 1):
        name = anynet.datasets.FASHION_MNIST_CLASSES[expected[i]]
        assert lines[1 + i].startswith(f"{tmp_path / 'many.idx'}[{i}]: {name}  ("), lines[1 + i]


def test_a_reader_that_went_away_ends_predict_quietly(model, tmp_path):
    """``anynet predict ... | head -1``: once head has its line, the rest is nobody's; predict
    used to end with 'error: [Errno 32] Broken pipe'. Here stdout is a pipe whose reading end
    is closed before predict writes, so its first write fails."""
    from PIL import Image

    image = save(tmp_path, "a.png", Image.fromarray(picture()))
    script = (
        "import os, sys\n"
        "r, w = os.pipe(); os.close(r); os.dup2(w, 1)\n"
        "from anynet.cli import main\n"
        f"sys.exit(main(['predict', {model!r}, {str(image)!r}]))\n"
    )
    env = {**os.environ, "ANYNET_BACKEND": "numpy"}
    env.pop("ANYNET_DEBUG", None)
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=env
    )
    assert out.returncode == 141, out.stderr
    assert out.stderr == ""
