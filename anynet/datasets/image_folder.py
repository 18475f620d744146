"""A folder of images laid out one sub-folder per class (torchvision's ImageFolder layout)::

    flowers/
        daisy/001.png  daisy/002.jpg ...
        tulip/001.png ...

read as ``(n, channels, height, width)`` uint8 images and the sub-folders' names as labels.

Decided: every image must have the size of the first (no resizing: a resized image is other
data, and ``predict`` would have to resize the same way); the images are gray, one channel,
unless one of them has colour, then all are RGB, three channels (a gray image's value in each).
Transparency is composited on black; 16-bit gray is scaled by its bit depth. Only regular
files are opened, hidden files (``.DS_Store``) and files of other suffixes are passed over,
and an image that cannot be read is an error naming it, not skipped.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from anynet.datasets.tables import MAX_NAME_CHARS, open_data_file
from anynet.errors import AnynetError, DataError

__all__ = ["IMAGE_SUFFIXES", "image_files", "read_image_folder", "read_images"]

#: The files read as images, by suffix (case-insensitive).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
#: Pillow's modes of gray: 8-bit, 1-bit, 16-bit (and 32-bit integer, which 16-bit PNGs open
#: as before Pillow 10), with or without alpha.
_GRAY = ("L", "1", "LA", "I", "I;16", "I;16B", "I;16L")
# The largest image taken, in pixels: a decompression bomb's header asks for billions.
MAX_PIXELS = 1 << 26


def image_files(folder: Path) -> list[Path]:
    """The images directly in ``folder``, sorted by name."""
    return sorted(
        p
        for p in folder.iterdir()
        if not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES
    )


def read_image_folder(folder: Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """``(X, y, classes)``: the images of every class sub-folder of ``folder`` as uint8
    ``(n, channels, height, width)``, their labels (the sub-folders' names) and the classes,
    sorted. DataError for a folder without class sub-folders, a class without images, an image
    that cannot be read or of another size than the others."""
    if not folder.is_dir():
        raise DataError(f"{folder}: not a folder; expected a folder of class sub-folders")
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        loose = image_files(folder)
        hint = (
            f" (it holds {len(loose)} images directly: move them into one sub-folder per class)"
            if loose
            else ""
        )
        raise DataError(
            f"{folder}: has no sub-folders; expected one sub-folder of images per class, "
            f"such as {folder}/cat/1.png and {folder}/dog/1.png{hint}"
        )
    if any(len(name) > MAX_NAME_CHARS for name in classes):
        raise DataError(f"{folder}: a class folder's name is longer than {MAX_NAME_CHARS}")
    files, labels = [], []
    for name in classes:
        found = image_files(folder / name)
        if not found:
            raise DataError(
                f"{folder / name}: the class {name!r} has no images ({', '.join(IMAGE_SUFFIXES)}); "
                "add some, or remove the folder"
            )
        files += found
        labels += [name] * len(found)
    if len(classes) < 2:
        raise DataError(
            f"{folder}: has one class sub-folder ({classes[0]!r}); a classifier needs two or "
            "more classes"
        )
    return read_images(files), np.array(labels, dtype=str), classes


def read_images(files: list[Path], shape: tuple[int, int, int] | None = None) -> np.ndarray:
    """The images in ``files`` as uint8 ``(n, channels, height, width)``, all of ``shape``
    (channels, height, width) if given, else of the first one's size, with one channel if all
    are gray, else three."""
    pictures = [_read_picture(path) for path in files]
    if shape is not None:
        channels, height, width = shape
    else:
        height, width = pictures[0][0].shape[:2]
        channels = 3 if any(colour for _, colour in pictures) else 1
    out = np.empty((len(files), channels, height, width), dtype=np.uint8)
    for i, ((pixels, colour), path) in enumerate(zip(pictures, files, strict=True)):
        if pixels.shape[:2] != (height, width):
            first = "the model's images" if shape is not None else f"the first, {files[0]}"
            raise DataError(
                f"{path}: {pixels.shape[1]}x{pixels.shape[0]} pixels, and {first} are "
                f"{width}x{height}; anynet does not resize: give images of one size (resize "
                "them first, with Pillow or ImageMagick)"
            )
        if colour and channels == 1:
            raise DataError(
                f"{path}: a colour image; the model takes gray images (one channel): convert "
                "it to gray first"
            )
        out[i] = np.moveaxis(pixels, -1, 0) if pixels.ndim == 3 else pixels
    return out


def _read_picture(path: Path) -> tuple[np.ndarray, bool]:
    """One PNG or JPEG as (height, width) gray or (height, width, 3) RGB uint8 pixels, and
    whether it has colour."""
    import struct

    try:
        from PIL import Image
    except ImportError:
        raise AnynetError("reading PNG/JPEG needs Pillow: pip install 'anynet-nn[image]'") from None
    damaged = (
        OSError,
        SyntaxError,
        ValueError,
        EOFError,
        struct.error,
        Image.DecompressionBombError,
    )
    with open_data_file(path, "a PNG or JPEG image") as f:
        guard, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
        try:
            with Image.open(f, formats=("PNG", "JPEG")) as im:
                width, height = im.size
                if width * height > MAX_PIXELS:
                    raise DataError(
                        f"{path}: {width}x{height} pixels, more than anynet reads "
                        f"({MAX_PIXELS:,}); resize it first"
                    )
                return _pixels(im, path)
        except DataError:
            raise
        except damaged as exc:
            raise DataError(f"{path}: not a PNG/JPEG image anynet can read ({exc})") from None
        finally:
            Image.MAX_IMAGE_PIXELS = guard


def _pixels(im, path: Path) -> tuple[np.ndarray, bool]:
    if im.mode in ("I", "I;16", "I;16B", "I;16L"):
        values = np.asarray(im).astype(np.int64)
        if values.size and (values.min() < 0 or values.max() > 65535):
            raise DataError(f"{path}: mode {im.mode!r} with values beyond 16-bit gray")
        return ((values * 255 + 32767) // 65535).astype(np.uint8), False
    if im.mode in _GRAY:
        la = np.asarray(im.convert("LA")).astype(np.int64)
        return ((la[..., 0] * la[..., 1] + 127) // 255).astype(np.uint8), False
    rgba = np.asarray(im.convert("RGBA")).astype(np.int64)
    rgb = (rgba[..., :3] * rgba[..., 3:] + 127) // 255
    colour = not (np.all(rgb[..., 0] == rgb[..., 1]) and np.all(rgb[..., 1] == rgb[..., 2]))
    if not colour:  # an RGB or palette file of gray pixels is a gray image
        return rgb[..., 0].astype(np.uint8), False
    return rgb.astype(np.uint8), True
