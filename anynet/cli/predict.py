"""``anynet predict``: classify images, read from PNG/JPEG or IDX files as Fashion-MNIST's
kind of 28x28 gray; or, for a model trained on your own data, samples of that kind (rows of a
CSV table, a .npz's X, images)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from anynet.cli.arguments import BACKEND_HELP, HelpFormatter, positive_int
from anynet.cli.data import class_names, load_classifier
from anynet.cli.own_data import as_model_input, images_in, model_format, read_for_model
from anynet.errors import AnynetError


def add_predict(subparsers) -> None:
    p = subparsers.add_parser(
        "predict",
        help="classify images (PNG/JPEG, or IDX files), or your own data's samples",
        description="Print the predicted class and top probabilities of each image. PNG and "
        "JPEG images must be 28x28, Fashion-MNIST style (a light object on a dark background; "
        "--invert for dark on light), and are read as 8-bit gray: 16-bit gray scaled by its "
        "bit depth, colour by its luma, transparent pixels (alpha, or the colour a PNG names "
        "transparent) as the background (black, or white with --invert); other modes, such "
        "as CMYK, are refused. An IDX file may hold many. A model trained on Fashion-MNIST's "
        "labels 0 to 9 answers with their names; any other model with its own class labels. A "
        "model trained with --data takes data of its kind: a .csv table with its columns, a "
        ".npz whose X has its samples' shape, or images of its size (files, or a folder of "
        "them or of class sub-folders).",
        formatter_class=HelpFormatter,
    )
    p.add_argument("model", type=Path, help="a model file written by anynet train / anynet.save")
    p.add_argument(
        "images",
        type=Path,
        nargs="+",
        metavar="INPUT",
        help="PNG, JPEG or IDX (.gz) files; .npz or .csv files, or folders of images",
    )
    p.add_argument("--top", type=positive_int, default=3, help="probabilities to show")
    p.add_argument("--invert", action="store_true", help="invert PNG/JPEG images first")
    p.add_argument("--backend", default=None, help=BACKEND_HELP)


#: The first bytes of each kind of file predict reads.
_PNG, _JPEG, _GZIP, _IDX = b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"\x1f\x8b", b"\x00\x00"
#: Images classified at once.
_CHUNK = 4096
#: Pillow's modes of 16-bit gray: a 16-bit gray PNG opens as 'I;16' (as 'I' before Pillow 10).
_GRAY16 = ("I;16", "I;16B", "I;16L", "I")


def _read_images(path: Path, invert: bool, n_features: int):
    """(N, H, W) uint8 images from an IDX file, or one 28x28 PNG/JPEG; DataError when
    unreadable, or when its images are not of the model's ``n_features`` pixels.

    Only a regular file is opened, and only its first bytes are read before its kind is known:
    a FIFO would block the read, /dev/zero never end it."""
    from anynet.errors import DataError

    with _open_regular(path) as f:
        head = f.read(len(_PNG))
        if head.startswith(_PNG) or head.startswith(_JPEG):
            f.seek(0)
            images = _read_picture(f, path, invert)[None]
            _check_pixels(path, images.shape, n_features)
            return images
    if head.startswith(_GZIP) or head.startswith(_IDX):
        return _read_idx_images(path, n_features)
    raise DataError(f"{path}: not a PNG/JPEG image or an IDX file (it begins {head[:4]!r})")


def _check_pixels(path: Path, shape: tuple[int, ...], n_features: int, header: str = "") -> None:
    """Refuse images of ``shape`` (N, H, W) whose H x W pixels are not the model's features."""
    from anynet.errors import DataError

    height, width = shape[1:]
    if height * width != n_features:
        raise DataError(
            f"{path}: images of {height}x{width} pixels{header}; the model takes {n_features} "
            "features (28x28 for Fashion-MNIST's); give images of its size"
        )


def _open_regular(path: Path):
    """``path`` open for reading, if it is a regular file; else DataError, saying what it is.

    The check is made on the open file (``fstat``), so what is checked is what is read; the
    open does not wait (``O_NONBLOCK``: opening a FIFO would wait for a writer), and a regular
    file's reads ignore that flag."""
    import stat

    from anynet.errors import DataError

    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot open it ({exc.strerror or exc})") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        kinds = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"))
        kind = next((name for test, name in kinds if test(mode)), "a device")
        raise DataError(f"{path}: {kind}, not a regular file; give an image or an IDX file")
    return os.fdopen(fd, "rb")


def _read_idx_images(path: Path, n_features: int):
    """The images of an IDX file, through anynet's IDX reader (regular files only, every read
    bounded). The header is read and checked first: a file of other values than 8-bit images,
    of images of another size than the model's, or that announces more than the reader takes
    (2 GiB), is refused before its payload is read or inflated."""
    import numpy as np

    from anynet.datasets import read_idx, read_idx_header
    from anynet.errors import DataError

    dtype, shape = read_idx_header(path)
    if dtype != np.uint8 or len(shape) not in (2, 3):  # an empty one the reader refuses
        raise DataError(
            f"{path}: its header announces {dtype} values of shape {shape}; predict takes "
            "uint8 images, (N, 28, 28) or one (28, 28), as Fashion-MNIST's image files hold"
        )
    images_shape = shape if len(shape) == 3 else (1, *shape)
    _check_pixels(path, images_shape, n_features, header=" (from its header)")
    # Held to the header's item shape: a file replaced since the header was read is refused.
    images = read_idx(path, item_shape=shape[1:]).reshape(images_shape)
    if images.dtype != np.uint8:
        raise DataError(f"{path}: expected uint8 images; got {images.dtype} {images.shape}")
    return images


def _read_picture(f, path: Path, invert: bool):
    """One 28x28 PNG or JPEG from the open file ``f``, as 8-bit gray (see :func:`_gray_pixels`).
    Its size is checked from the header, before any pixel is decoded."""
    import struct

    from anynet.errors import DataError

    try:
        from PIL import Image
    except ImportError:
        raise AnynetError("reading PNG/JPEG needs Pillow: pip install 'anynet-nn[image]'") from None
    # What Pillow raises for a damaged file, besides its OSErrors (a fuzzed PNG: SyntaxError).
    damaged = (
        OSError,
        SyntaxError,
        ValueError,
        EOFError,
        struct.error,
        Image.DecompressionBombError,
    )
    # Pillow's guard against decompression bombs is lifted while the header is read: nothing
    # but 28x28 is decoded here, and the size check says what is wrong in its own words.
    guard, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
    try:
        with Image.open(f, formats=("PNG", "JPEG")) as im:
            Image.MAX_IMAGE_PIXELS = guard
            if im.size != (28, 28):
                width, height = im.size
                raise DataError(
                    f"{path}: the image is {width}x{height} pixels; the model takes 28x28 "
                    "grayscale (resize it first)"
                )
            return _gray_pixels(im, invert, name=str(path))
    except DataError:
        raise  # a ValueError, but one of ours: already says what is wrong
    except damaged as exc:
        raise DataError(f"{path}: not a PNG/JPEG image anynet can read ({exc})") from None
    finally:
        Image.MAX_IMAGE_PIXELS = guard


def _gray_pixels(im, invert: bool, name: str = "the image"):
    """The pixels of a Pillow image as 8-bit gray, Fashion-MNIST's kind, inverted if ``invert``.

    - 8-bit gray as it is (and 1-bit: 0 and 255);
    - 16-bit gray scaled by its bit depth, 65535 to 255, rounded: not by the image's own
      maximum, which would brighten a dark image;
    - colour by Pillow's luma (ITU-R 601-2);
    - transparency composited on the picture's background: black, Fashion-MNIST's, or with
      ``invert`` (a dark object on a light ground) white, which the inversion then makes
      black. Transparency is alpha (LA, RGBA, PA), a palette's transparent entries, or the one
      colour a gray or RGB PNG names transparent (its tRNS chunk).

    Any other mode (CMYK, floats, premultiplied alpha...) raises DataError naming it (and the
    image's ``name``)."""
    import numpy as np

    from anynet.errors import DataError

    mode = im.mode
    background = 255 if invert else 0
    if mode in ("L", "1"):
        gray = values = np.asarray(im.convert("L"), dtype=np.uint8)
    elif mode in _GRAY16:
        values = np.asarray(im).astype(np.int64)
        if values.size and (values.min() < 0 or values.max() > 65535):
            raise DataError(
                f"{name}: mode {mode!r} with values from {values.min()} to {values.max()}, "
                "which is not 16-bit gray; save it as 8- or 16-bit gray"
            )
        gray = ((values * 255 + 32767) // 65535).astype(np.uint8)
    elif mode == "RGB":
        values = np.asarray(im)
        gray = np.asarray(im.convert("L"), dtype=np.uint8)
    elif mode in ("RGBA", "LA", "P", "PA"):
        if mode in ("P", "PA"):
            im = im.convert("RGBA")  # a palette's transparency becomes alpha
        if im.mode != "LA":
            im = im.convert("LA")
        la = np.asarray(im).astype(np.int64)
        luma, alpha = la[..., 0], la[..., 1]
        gray = ((luma * alpha + background * (255 - alpha) + 127) // 255).astype(np.uint8)
        return 255 - gray if invert else gray
    else:
        raise DataError(
            f"{name}: an image in mode {mode!r}, which anynet does not read as gray (it reads "
            "8- and 16-bit gray, RGB, gray or RGB with alpha, and palettes); save it as 8-bit gray"
        )
    # A PNG without alpha may still name one colour transparent (its tRNS chunk): those pixels
    # are the background too, as alpha 0 is.
    transparent = _transparent_colour(im, values, name)
    if transparent is not None:
        gray = np.where(transparent, background, gray).astype(np.uint8)
    return 255 - gray if invert else gray


def _transparent_colour(im, values, name: str):
    """Where the pixels ``values`` of a gray or RGB image are the colour its PNG tRNS chunk
    names transparent (Pillow's ``info['transparency']``), or None without one."""
    import numpy as np

    from anynet.errors import DataError

    colour = im.info.get("transparency")
    if colour is None:
        return None
    if im.mode == "RGB":
        if not (isinstance(colour, tuple) and len(colour) == 3):
            raise DataError(f"{name}: a transparent colour {colour!r}, not an (R, G, B) triple")
        return np.all(values == np.asarray(colour, dtype=values.dtype), axis=-1)
    if not isinstance(colour, int) or isinstance(colour, bool):
        raise DataError(f"{name}: a transparent gray level {colour!r}, not an integer")
    if im.mode == "1":  # 1-bit gray: level 1 is white, which Pillow reads as 255
        colour = 255 if colour else 0
    return values == colour


def cmd_predict(args: argparse.Namespace) -> int:
    import numpy as np

    clf = load_classifier(args.model, args.backend)
    own = model_format(clf) is not None  # trained with --data: its own kinds of input
    if own and args.invert:
        raise AnynetError("--invert is for Fashion-MNIST's kind of images; leave it out")
    classes = [str(c) for c in clf.classes_.tolist()] if own else class_names(clf.classes_)
    inputs = []
    for path in args.images:  # a folder of Fashion-MNIST's kind of images: each image in it
        inputs += images_in(path) if path.is_dir() and not own else [path]
    for path in inputs:
        if own or path.suffix.lower() in (".npz", ".csv"):
            images, _, labels = read_for_model(clf, path, "INPUT", labels=False)
            images = as_model_input(clf, images)
        else:
            images = _read_images(path, args.invert, clf.n_features_in_)
            labels = [f"{path}[{i}]" for i in range(len(images))] if len(images) > 1 else [path]
        # A chunk at a time: an IDX file may hold millions of images, and the network's floats
        # for all of them at once would take many times the file's bytes.
        for start in range(0, len(images), _CHUNK):
            proba = clf.predict_proba(images[start : start + _CHUNK])
            for i, p in enumerate(proba, start):
                order = np.argsort(p)[::-1][: args.top]
                label = labels[i]
                names = [classes[k] for k in order]
                top = ", ".join(f"{n} {p[k]:.1%}" for n, k in zip(names, order, strict=True))
                print(f"{label}: {names[0]}  ({top})")
    return 0
