"""The ``anynet`` command.

Each subcommand is a function ``cmd_<name>(args) -> int`` with an ``add_<name>(subparsers)``
that declares its arguments. Errors anynet raises on purpose become one line on stderr and a
non-zero exit, never a traceback; what a message adds after its first line (the ways to get
the data, a list of differences) follows it indented. Messages and warnings from the library
name the flags the user typed, not the Python arguments behind them.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import sys
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import anynet
from anynet.backends import backend_status, get_backend
from anynet.errors import AnynetError
from anynet.estimator.network import ACTIVATIONS

__all__ = ["main"]


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"anynet": anynet.__version__, "python": platform.python_version()}
    for dist in ("numpy", "array-api-compat", "array-api-extra"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = "not installed"
    return out


def add_info(subparsers) -> None:
    p = subparsers.add_parser(
        "info",
        help="version, and which backends and devices work here",
        description="Print anynet's version and, for each backend, whether it works on this "
        "machine, its library version and devices, or why it does not.",
    )
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")


def cmd_info(args: argparse.Namespace) -> int:
    from anynet.fast import cpu_path

    versions = _versions()
    status = backend_status()
    step, why = cpu_path()
    if args.json:
        print(
            json.dumps(
                {
                    "versions": versions,
                    "backends": [
                        {
                            "name": s.name,
                            "available": s.available,
                            "version": s.version,
                            "devices": list(s.devices),
                            "reason": s.reason,
                        }
                        for s in status
                    ],
                    "cpu_training_step": {"name": step, "why": why},
                },
                indent=2,
            )
        )
        return 0
    print(
        f"anynet {versions.pop('anynet')}  ("
        + ", ".join(f"{k} {v}" for k, v in versions.items())
        + ")"
    )
    print()
    rows = [("backend", "available", "version", "devices, or why not")]
    for s in status:
        detail = ", ".join(s.devices) if s.available else s.reason
        rows.append((s.name, "yes" if s.available else "no", s.version or "-", detail))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r[:3], widths, strict=True)) + "  " + r[3])
    print()
    print(f"training step on the CPU (numpy): {step} ({why})")
    return 0


# --- argument types: each error names the argument, what came and what is expected ---------


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return value


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    value = _non_negative_float(text)
    if value == 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}")
    return value


def _fraction(text: str) -> float:
    """A number in [0, 1): a dropout rate or a momentum (1 would never forget, or drop all)."""
    value = _non_negative_float(text)
    if value >= 1:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text!r}")
    return value


def _file_path(text: str) -> Path:
    # Path() drops a trailing slash: 'models/' would become a file called 'models'.
    if text.endswith(("/", os.sep)):
        raise argparse.ArgumentTypeError(
            f"expected a file name, got the folder {text!r}; give one inside it, such as "
            f"{text}model.safetensors"
        )
    return Path(text)


def _divergence_factor(text: str) -> float | None:
    if text.strip().lower() == "off":
        return None
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 1 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number > 1, or 'off'; got {text!r}")
    return value


def _sizes(text: str) -> tuple[int, ...]:
    # Every item must be digits: an empty one ('64,,32') is a slip, not a layer to drop, and
    # int()'s '1_000' or '+64' is nobody's layer size.
    parts = [part.strip() for part in text.split(",")]
    if not all(part.isascii() and part.isdigit() and int(part) > 0 for part in parts):
        why = " (an empty item)" if "" in parts else ""
        raise argparse.ArgumentTypeError(
            f"expected hidden layer sizes such as '256,128', positive integers separated by "
            f"commas; got {text!r}{why}"
        )
    return tuple(int(part) for part in parts)


# --- the library's words in the command line's ----------------------------------------------

#: The Python arguments anynet's messages name (``batch_size=256``, ``batch_size must be``), and
#: the keys of a checkpoint's run record, as the user of the command typed them.
_FLAGS = {
    "hidden_layer_sizes": "--hidden",
    "activation": "--activation",
    "output": "--output",
    "init": "--init",
    "dropout": "--dropout",
    "solver": "--solver",
    "learning_rate_init": "--lr",
    "momentum": "--momentum",
    "alpha": "--alpha",
    "l1": "--l1",
    "max_iter": "--epochs",
    "batch_size": "--batch-size",
    "standardize": "--scale",
    "random_state": "--seed",
    "seed": "--seed",
    "dtype": "--dtype",
    "backend": "--backend",
    "data_dir": "--data-dir",
    "checkpoint_dir": "--checkpoint-dir",
    "checkpoint_every": "--checkpoint-every",
    "checkpoint_steps": "--checkpoint-steps",
    "resume": "--resume",
    "divergence_factor": "--divergence-factor",
}
#: Run-record keys that no one flag sets (listed by a checkpoint that belongs to another run).
_RECORD_KEYS = {
    "network": "the network (--hidden, --activation, --dropout)",
    "data": "the data (--data-dir, --limit)",
    "classes": "the classes (--limit)",
}
#: Whole phrases first, where the generic rules below would read badly.
_PHRASES = (
    ("load_fashion_mnist(..., download=True)", "leave out --no-download"),
    ("pass data_dir= the folder holding them", "pass --data-dir, the folder holding them"),
    (" and download=False.", " and --no-download is given."),
    ("download=False", "--no-download"),
    ("divergence_factor=None", "--divergence-factor off"),
)
_NAMES = "|".join(sorted(_FLAGS, key=len, reverse=True))
_ASSIGNED = re.compile(rf"\b({_NAMES})=")  # batch_size=256 -> --batch-size 256
_MUST_BE = re.compile(rf"^({_NAMES}) must be\b")  # anynet.checks' wording
_LISTED = re.compile(rf"^([ \t]+)({_NAMES}|{'|'.join(_RECORD_KEYS)}):", re.MULTILINE)


def _flag_words(message: str) -> str:
    """``message`` with the Python arguments it names replaced by the command's flags."""
    for python, flags in _PHRASES:
        message = message.replace(python, flags)
    message = _ASSIGNED.sub(lambda m: _FLAGS[m[1]] + " ", message)
    message = _MUST_BE.sub(lambda m: _FLAGS[m[1]] + " must be", message)
    return _LISTED.sub(lambda m: m[1] + {**_FLAGS, **_RECORD_KEYS}[m[2]] + ":", message)


@contextlib.contextmanager
def _in_flags() -> Iterator[None]:
    """Around a call into the library: its errors come out naming flags, not arguments."""
    try:
        yield
    except (AnynetError, ValueError) as exc:
        raise AnynetError(_flag_words(str(exc))) from exc


# --- train ----------------------------------------------------------------------------------

#: The best default measured on a 2-core CPU (README's results table): see `anynet train -h`.
DEFAULTS = {
    "hidden": (256, 128),
    "epochs": 25,
    "batch_size": 128,
    "lr": 1e-3,
    "alpha": 1e-4,
    "dropout": 0.2,
    "scale": "standardize",
}


def add_train(subparsers) -> None:
    p = subparsers.add_parser(
        "train",
        help="train a classifier on Fashion-MNIST",
        description="Train an anynet classifier on Fashion-MNIST (found offline or downloaded "
        "and verified), report test accuracy each epoch, and save the model.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    g = p.add_argument_group("where")
    g.add_argument(
        "--backend",
        default=None,
        help="numpy, cupy, cupy:N, torch, torch:cuda, array_api_strict "
        "(default: $ANYNET_BACKEND, else numpy)",
    )
    g.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    g.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="folder holding the four Fashion-MNIST .gz files (searched alone)",
    )
    g.add_argument("--no-download", action="store_true", help="never download the data")
    g = p.add_argument_group("network")
    g.add_argument(
        "--hidden",
        type=_sizes,
        default=DEFAULTS["hidden"],
        metavar="SIZES",
        help="hidden layer sizes, comma separated",
    )
    g.add_argument("--activation", default="relu", choices=sorted(ACTIVATIONS))
    g.add_argument("--output", default="softmax", choices=["softmax", "log_softmax", "sigmoid"])
    g.add_argument(
        "--init",
        default="glorot_uniform",
        choices=[
            "glorot_uniform",
            "glorot_normal",
            "he_uniform",
            "he_normal",
            "uniform",
            "pytorch",
        ],
    )
    g.add_argument("--dropout", type=_fraction, default=DEFAULTS["dropout"])
    g = p.add_argument_group("training")
    g.add_argument("--solver", default="adam", choices=["adam", "adamw", "sgd"])
    g.add_argument("--lr", type=_positive_float, default=DEFAULTS["lr"], help="learning rate")
    g.add_argument("--momentum", type=_fraction, default=0.9, help="for sgd")
    g.add_argument(
        "--alpha",
        type=_non_negative_float,
        default=DEFAULTS["alpha"],
        help="L2 penalty, scikit-learn's scaling",
    )
    g.add_argument("--l1", type=_non_negative_float, default=0.0, help="L1 penalty")
    g.add_argument("--epochs", type=_positive_int, default=DEFAULTS["epochs"])
    g.add_argument("--batch-size", type=_positive_int, default=DEFAULTS["batch_size"])
    g.add_argument(
        "--scale",
        default=DEFAULTS["scale"],
        choices=["standardize", "unit", "symmetric", "none"],
        help="input scaling: per-feature z-score, [0, 1], or [-1, 1]",
    )
    g.add_argument("--seed", type=_non_negative_int, default=0)
    g.add_argument(
        "--limit",
        type=_positive_int,
        default=None,
        metavar="N",
        help="train on the first N training images only (quick trials)",
    )
    g.add_argument(
        "--divergence-factor",
        type=_divergence_factor,
        default=100.0,
        metavar="X",
        help="stop when a batch's loss exceeds X times the run's first (a learning rate far "
        "too high), before a checkpoint or --out holds the diverged model; 'off' to train on",
    )
    g = p.add_argument_group("output")
    g.add_argument(
        "--out",
        type=_file_path,
        default=Path("anynet-model.safetensors"),
        help="model file to write",
    )
    g.add_argument(
        "--checkpoint-dir",
        type=Path,
        default=None,
        help="write a checkpoint here every --checkpoint-every epochs and on Ctrl-C "
        "(a folder that holds one already needs --resume)",
    )
    g.add_argument("--checkpoint-every", type=_positive_int, default=1, metavar="EPOCHS")
    g.add_argument(
        "--checkpoint-steps",
        type=_positive_int,
        default=None,
        metavar="STEPS",
        help="also checkpoint every STEPS optimizer steps",
    )
    g.add_argument(
        "--resume",
        action="store_true",
        help="continue from the checkpoint in --checkpoint-dir (refused if there is none)",
    )
    g.add_argument(
        "--plots",
        type=Path,
        default=None,
        metavar="DIR",
        help="write learning curves, predictions, confusion matrix and t-SNE PNGs here",
    )
    g.add_argument("--quiet", action="store_true", help="no progress bar")


def _load_data(args: argparse.Namespace, splits: Sequence[str] = ("train", "test")) -> list:
    """``X, y`` of each split, found as ``--data-dir`` and ``--no-download`` say."""
    from anynet.datasets import load_fashion_mnist

    folder = args.data_dir
    if folder is not None and folder.exists() and not folder.is_dir():
        raise AnynetError(f"--data-dir {folder} is a file, not a folder")
    if folder is not None and not folder.exists() and args.no_download:
        # Without --no-download the data is downloaded into it: a new folder is fine then.
        raise AnynetError(f"--data-dir {folder} does not exist (and --no-download is given)")
    out = []
    with _in_flags():
        for split in splits:
            out += load_fashion_mnist(split, data_dir=folder, download=not args.no_download)
    return out


def cmd_train(args: argparse.Namespace) -> int:
    import time

    from sklearn.exceptions import ConvergenceWarning

    from anynet.estimator import NNClassifier

    if args.resume and args.checkpoint_dir is None:
        raise AnynetError("--resume needs --checkpoint-dir, the folder holding the checkpoint")
    if args.plots is not None:
        _check_can_plot()  # before the run, not after it
    # Every path the run will write, checked before the data is loaded: a bad one used to fail
    # only after training, and the trained model was lost.
    _check_output("--out", args.out)
    if args.plots is not None:
        _check_output("--plots", args.plots, folder=True)
    if args.checkpoint_dir is not None:
        _check_output("--checkpoint-dir", args.checkpoint_dir, folder=True)
        _check_resumable(args.checkpoint_dir, args.resume)
    X, y, X_test, y_test = _load_data(args)
    if args.limit:
        X, y = _first(args.limit, X, y)
    clf = NNClassifier(
        hidden_layer_sizes=args.hidden,
        activation=args.activation,
        solver=args.solver,
        alpha=args.alpha,
        batch_size=args.batch_size,
        learning_rate_init=args.lr,
        max_iter=args.epochs,
        random_state=args.seed,
        momentum=args.momentum,
        # Run every epoch asked for: a patience no run reaches. Not --epochs: the checkpoint
        # records it, and a run resumed with more epochs (extended) would be refused.
        n_iter_no_change=2**31 - 1,
        verbose=not args.quiet,
        backend=args.backend,
        dtype=args.dtype,
        l1=args.l1,
        init=args.init,
        output=args.output,
        standardize=False
        if args.scale == "none"
        else (True if args.scale == "standardize" else args.scale),
        dropout=args.dropout,
        checkpoint_dir=args.checkpoint_dir,
        checkpoint_every=args.checkpoint_every,
        checkpoint_steps=args.checkpoint_steps,
        resume=args.resume,
        divergence_factor=args.divergence_factor,
    )
    print(
        f"training {_describe(clf)} on {len(X):,} images, backend {get_backend(args.backend).spec}",
        file=sys.stderr,
    )
    t0 = time.perf_counter()
    try:
        with warnings.catch_warnings(), _in_flags():
            warnings.simplefilter("ignore", ConvergenceWarning)  # running all epochs is the plan
            clf.fit(X, y, validation_data=(X_test, y_test))
    except KeyboardInterrupt as exc:
        import signal

        signum = getattr(exc, "signum", signal.SIGINT)  # SIGTERM stops a run as Ctrl-C does
        where = (
            f"; checkpoint in {args.checkpoint_dir}, continue with --resume"
            if args.checkpoint_dir
            else " (no --checkpoint-dir: nothing saved)"
        )
        what = "interrupted" if signum == signal.SIGINT else f"stopped by {exc}"
        print(f"anynet train: {what}{where}", file=sys.stderr)
        return 128 + int(signum)
    seconds = time.perf_counter() - t0
    import anynet

    anynet.save(clf, args.out)
    history = clf.history_
    test_acc = history["val_accuracy"][-1]
    print(
        f"test accuracy {test_acc:.2%} after {clf.n_iter_} epochs "
        f"(best {max(history['val_accuracy']):.2%}), {seconds:.0f} s; model: {args.out}"
    )
    if args.plots is not None:
        _write_plots(clf, X_test, y_test, args.plots)
        print(f"plots: {args.plots}/")
    return 0


def _first(limit: int, X, y):
    """The first ``limit`` training images, refused if they leave a class out: the model could
    never predict it, and scoring on the test set, which holds them all, would fail."""
    import numpy as np

    classes, first_seen = np.unique(y, return_index=True)
    needed = int(first_seen.max()) + 1
    if limit < needed:
        held = np.unique(y[:limit])
        raise AnynetError(
            f"--limit {limit}: the first {limit} training images hold {len(held)} of the "
            f"{len(classes)} classes; the first {needed} hold them all, so use --limit {needed} "
            "or more"
        )
    return X[:limit], y[:limit]


# --- outputs: checked before the work -------------------------------------------------------


def _check_output(flag: str, path: Path, *, folder: bool = False) -> None:
    """Refuse ``path``, the value of ``flag``, if the run could not write it (a file, or a
    folder with ``folder``) once its work is done."""
    try:
        (_check_out_folder if folder else _check_out_file)(flag, path)
    except OSError as exc:  # even looking failed: a folder on the way that we may not enter
        raise AnynetError(f"{flag} {path}: {exc.strerror or exc}") from None


def _check_out_file(flag: str, path: Path) -> None:
    """Refuse a file path that could not be written once the work is done.

    The folder must exist: it is not created, as ``torch.save`` does not create it, because a
    typo in it would leave the model somewhere the user does not look.
    """
    _check_name_lengths(flag, path)
    if path.is_dir():
        raise AnynetError(
            f"{flag} {path} is a folder; give a file name inside it, such as "
            f"{path / 'model.safetensors'}"
        )
    if path.exists() and not path.is_file():
        # Writing replaces it: a FIFO or, for root, /dev/null would be swapped for a file.
        raise AnynetError(f"{flag} {path} exists and is not a regular file; give a file name")
    folder = path.parent
    if folder.exists() and not folder.is_dir():
        raise AnynetError(f"{flag} {path}: {folder} is a file, not a folder")
    if not folder.is_dir():
        raise AnynetError(f"{flag} {path}: the folder {folder} does not exist; create it first")
    _check_can_write_in(folder, f"{flag} {path}")


def _check_out_folder(flag: str, path: Path) -> None:
    """Refuse a folder the run could not write into. A missing one is fine (the run creates
    it, parents too), if it can be: nothing is created here, for a run that fails first."""
    _check_name_lengths(flag, path)
    if path.exists() and not path.is_dir():
        raise AnynetError(f"{flag} {path} is a file, not a folder")
    existing = path  # the nearest folder that exists: the run's mkdir creates the rest there
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise AnynetError(f"{flag} {path} cannot be created: {existing} is a file")
    _check_can_write_in(
        existing, f"{flag} {path}" + ("" if existing == path else " cannot be created")
    )


def _check_name_lengths(flag: str, path: Path) -> None:
    """Refuse a name longer than its file system allows (255 bytes, mostly), which would fail
    only at the write, and which makes even asking whether the path exists fail."""
    folder, parts = (Path(path.anchor), path.parts[1:]) if path.anchor else (Path("."), path.parts)
    for part in parts:
        try:
            limit = os.pathconf(folder, "PC_NAME_MAX")
        except (AttributeError, ValueError, OSError):  # no pathconf (Windows), or no answer
            return
        size = len(os.fsencode(part))
        if size > limit:
            raise AnynetError(
                f"{flag}: the file name {part[:16]}... is {size} bytes long; the file system of "
                f"{folder} allows at most {limit}"
            )
        if (folder / part).is_dir():  # else the limit of the last folder that exists
            folder = folder / part


def _check_can_write_in(folder: Path, what: str) -> None:
    """Create (and at once delete) a nameless file in ``folder``: the permission the real write
    needs, asked of the file system itself (``os.access`` guesses from permission bits and the
    real user id, wrong on NFS that squashes root, for one). ``what`` begins the error."""
    import tempfile

    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise AnynetError(f"{what}: cannot write in {folder} ({exc.strerror or exc})") from None


def _check_resumable(folder: Path, resume: bool) -> None:
    """Refuse ``--resume`` with nothing to resume: the estimator then starts afresh, and a typo
    in the folder's name would silently throw away the run it meant to continue. And refuse a
    fresh run where a checkpoint is: its first checkpoint would overwrite that run's last."""
    from anynet.training import CHECKPOINT_NAME

    path = folder / CHECKPOINT_NAME
    if not resume:
        if path.exists():
            raise AnynetError(
                f"--checkpoint-dir {folder} already holds a checkpoint ({CHECKPOINT_NAME}) "
                "that this run would overwrite: add --resume to continue that run, or give "
                "another --checkpoint-dir (or delete the file) to start afresh"
            )
        return
    if not folder.is_dir():
        raise AnynetError(
            f"--resume: --checkpoint-dir {folder} does not exist, so there is no run to "
            "continue; check the folder's name, or leave out --resume to start afresh"
        )
    if not path.exists():
        raise AnynetError(
            f"--resume: --checkpoint-dir {folder} holds no {CHECKPOINT_NAME} (a run stopped "
            "before its first checkpoint leaves none); leave out --resume to start afresh"
        )
    if not path.is_file():
        raise AnynetError(f"--resume: {path} in --checkpoint-dir is not a regular file")


def _check_can_plot() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise AnynetError(
            "--plots needs matplotlib, which is not installed: pip install matplotlib "
            "(or 'anynet-nn[plot]'), or leave out --plots"
        ) from None


def _describe(clf) -> str:
    sizes = "-".join(str(s) for s in (784, *clf.hidden_layer_sizes, 10))
    return (
        f"{sizes} {clf.activation} MLP ({clf.solver}, lr {clf.learning_rate_init}, "
        f"batch {clf.batch_size}, {clf.max_iter} epochs)"
    )


def _write_plots(clf, X_test, y_test, directory: Path) -> None:
    from anynet import metrics, plots
    from anynet.datasets import FASHION_MNIST_CLASSES as NAMES

    directory.mkdir(parents=True, exist_ok=True)
    proba = clf.predict_proba(X_test)
    pred = clf.classes_[proba.argmax(axis=1)]
    history = {k: v for k, v in clf.history_.items() if k != "epoch_seconds"}
    # The monitored set is the test set: monitored, never used to choose anything.
    plots.plot_learning_curves(history, path=directory / "learning_curves.png", val_label="test")
    plots.plot_predictions(
        X_test[:25], y_test[:25], pred[:25], NAMES, path=directory / "predictions.png"
    )
    plots.plot_image_probabilities(
        X_test[0], proba[0], NAMES, true_label=int(y_test[0]), path=directory / "probabilities.png"
    )
    cm = metrics.confusion_matrix(y_test, pred, n_classes=len(NAMES))
    plots.plot_confusion_matrix(cm, NAMES, path=directory / "confusion_matrix.png")
    # The from-scratch tutorial's look at the data: 2,000 test images in two dimensions.
    flat = X_test.reshape(len(X_test), -1)
    plots.plot_tsne(flat, y_test, NAMES, n_samples=2000, path=directory / "tsne.png")


# --- evaluate -------------------------------------------------------------------------------


def add_evaluate(subparsers) -> None:
    p = subparsers.add_parser(
        "evaluate",
        help="accuracy, per-class precision and recall, confusion matrix",
        description="Evaluate a saved model on the Fashion-MNIST test set.",
    )
    p.add_argument("model", type=Path, help="a model file written by anynet train / anynet.save")
    p.add_argument("--backend", default=None)
    p.add_argument("--data-dir", type=Path, default=None)
    p.add_argument("--no-download", action="store_true")
    p.add_argument("--plots", type=Path, default=None, metavar="DIR")


def cmd_evaluate(args: argparse.Namespace) -> int:
    import anynet
    from anynet import metrics
    from anynet.datasets import FASHION_MNIST_CLASSES as NAMES

    if args.plots is not None:
        _check_can_plot()
        _check_output("--plots", args.plots, folder=True)
    clf = anynet.load(args.model, backend=args.backend)
    X, y = _load_data(args, ["test"])
    pred = clf.predict(X)
    print(metrics.classification_report(y, pred, class_names=NAMES))
    print()
    print("confusion matrix (rows: true class, columns: predicted)")
    cm = metrics.confusion_matrix(y, pred, n_classes=len(NAMES))
    width = max(4, len(str(cm.max())) + 1)
    print(" " * 13 + "".join(f"{i:>{width}}" for i in range(len(NAMES))))
    for i, row in enumerate(cm):
        print(f"{i} {NAMES[i][:10]:<11}" + "".join(f"{v:>{width}}" for v in row))
    if args.plots is not None:
        args.plots.mkdir(parents=True, exist_ok=True)
        from anynet import plots

        plots.plot_confusion_matrix(cm, NAMES, path=args.plots / "confusion_matrix.png")
    return 0


# --- predict --------------------------------------------------------------------------------


def add_predict(subparsers) -> None:
    p = subparsers.add_parser(
        "predict",
        help="classify images (PNG/JPEG, or IDX files)",
        description="Print the predicted class and top probabilities of each image. PNG and "
        "JPEG images must be 28x28, Fashion-MNIST style (a light object on a dark background; "
        "--invert for dark on light), and are read as 8-bit gray: 16-bit gray scaled by its "
        "bit depth, colour by its luma, transparent pixels as the background (black, or white "
        "with --invert); other modes, such as CMYK, are refused. An IDX file may hold many.",
    )
    p.add_argument("model", type=Path)
    p.add_argument("images", type=Path, nargs="+", metavar="IMAGE")
    p.add_argument("--top", type=_positive_int, default=3, help="probabilities to show")
    p.add_argument("--invert", action="store_true", help="invert PNG/JPEG images first")
    p.add_argument("--backend", default=None)


#: The first bytes of each kind of file predict reads.
_PNG, _JPEG, _GZIP, _IDX = b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"\x1f\x8b", b"\x00\x00"
#: Pillow's modes of 16-bit gray: a 16-bit gray PNG opens as 'I;16' (as 'I' before Pillow 10).
_GRAY16 = ("I;16", "I;16B", "I;16L", "I")


def _read_images(path: Path, invert: bool):
    """(N, 28, 28) uint8 images from an IDX file, or one PNG/JPEG; DataError when unreadable.

    Only a regular file is opened, and only its first bytes are read before its kind is known:
    a FIFO would block the read, /dev/zero never end it."""
    from anynet.errors import DataError

    with _open_regular(path) as f:
        head = f.read(len(_PNG))
        if head.startswith(_PNG) or head.startswith(_JPEG):
            f.seek(0)
            return _read_picture(f, path, invert)[None]
    if head.startswith(_GZIP) or head.startswith(_IDX):
        return _read_idx_images(path)
    raise DataError(f"{path}: not a PNG/JPEG image or an IDX file (it begins {head[:4]!r})")


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


def _read_idx_images(path: Path):
    """The images of an IDX file, through anynet's IDX reader (regular files only, the header
    read first, every read bounded)."""
    import numpy as np

    from anynet.datasets import read_idx
    from anynet.errors import DataError

    images = read_idx(path)
    if images.ndim == 2:
        images = images[None]
    if images.ndim != 3 or images.dtype != np.uint8 or len(images) == 0:
        raise DataError(
            f"{path}: expected uint8 images (N, 28, 28); got {images.dtype} {images.shape}"
        )
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
    - colour by Pillow's luma (ITU-R 601-2), alpha and transparent palette entries
      composited on the picture's background: black, Fashion-MNIST's, or with ``invert``
      (a dark object on a light ground) white, which the inversion then makes black.

    Any other mode (CMYK, floats, premultiplied alpha...) raises DataError naming it (and the
    image's ``name``)."""
    import numpy as np

    from anynet.errors import DataError

    mode = im.mode
    if mode in ("L", "1"):
        gray = np.asarray(im.convert("L"), dtype=np.uint8)
    elif mode in _GRAY16:
        values = np.asarray(im).astype(np.int64)
        if values.size and (values.min() < 0 or values.max() > 65535):
            raise DataError(
                f"{name}: mode {mode!r} with values from {values.min()} to {values.max()}, "
                "which is not 16-bit gray; save it as 8- or 16-bit gray"
            )
        gray = ((values * 255 + 32767) // 65535).astype(np.uint8)
    elif mode == "RGB":
        gray = np.asarray(im.convert("L"), dtype=np.uint8)
    elif mode in ("RGBA", "LA", "P", "PA"):
        if mode in ("P", "PA"):
            im = im.convert("RGBA")  # a palette's transparency becomes alpha
        if im.mode != "LA":
            im = im.convert("LA")
        la = np.asarray(im).astype(np.int64)
        luma, alpha = la[..., 0], la[..., 1]
        background = 255 if invert else 0
        gray = ((luma * alpha + background * (255 - alpha) + 127) // 255).astype(np.uint8)
    else:
        raise DataError(
            f"{name}: an image in mode {mode!r}, which anynet does not read as gray (it reads "
            "8- and 16-bit gray, RGB, gray or RGB with alpha, and palettes); save it as 8-bit gray"
        )
    return 255 - gray if invert else gray


def cmd_predict(args: argparse.Namespace) -> int:
    import numpy as np

    import anynet
    from anynet.datasets import FASHION_MNIST_CLASSES as NAMES

    clf = anynet.load(args.model, backend=args.backend)
    for path in args.images:
        images = _read_images(path, args.invert)
        if images.shape[1] * images.shape[2] != clf.n_features_in_:
            raise AnynetError(
                f"{path}: images of {images.shape[1]}x{images.shape[2]} pixels; "
                f"the model takes {clf.n_features_in_} features"
            )
        proba = clf.predict_proba(images)
        for i, p in enumerate(proba):
            order = np.argsort(p)[::-1][: args.top]
            label = f"{path}[{i}]" if len(images) > 1 else str(path)
            names = [
                NAMES[int(clf.classes_[k])]
                if len(clf.classes_) == len(NAMES)
                else str(clf.classes_[k])
                for k in order
            ]
            top = ", ".join(f"{n} {p[k]:.1%}" for n, k in zip(names, order, strict=True))
            print(f"{label}: {names[0]}  ({top})")
    return 0


COMMANDS = {
    "info": (add_info, cmd_info),
    "train": (add_train, cmd_train),
    "evaluate": (add_evaluate, cmd_evaluate),
    "predict": (add_predict, cmd_predict),
}


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (the usage block is one ``-h`` away)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} -h')\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="anynet",
        description="Neural-network classifiers whose hand-written backprop runs on any Array "
        "API backend (NumPy, CuPy, PyTorch, array-api-strict).",
    )
    parser.add_argument("--version", action="version", version=f"anynet {anynet.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for add, _ in COMMANDS.values():
        add(sub)
    return parser


def _report(prefix: str, message: str) -> None:
    """``prefix: message`` on stderr: its first line is the whole error, in one line; what a
    library message says after it (the ways to get the data, a list of differences) follows
    indented, one item a line, rather than run together into one unreadable line."""
    lines = [line.rstrip() for line in message.splitlines() if line.strip()] or ["(no message)"]
    print(f"{prefix}: {lines[0].strip()}", file=sys.stderr)
    for line in lines[1:]:
        print(f"  {line}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    prefix = f"anynet {args.command}"

    def show_warning(message, category, filename, lineno, file=None, line=None) -> None:
        # A warning is for the user of the command: no source file and line, and flags' names.
        _report(f"{prefix}: warning", _flag_words(str(message)))

    try:
        with warnings.catch_warnings():
            warnings.showwarning = show_warning
            return COMMANDS[args.command][1](args)
    except (AnynetError, ValueError, OSError) as exc:
        # Bad input ends as one error line; ANYNET_DEBUG=1 keeps the traceback for developers.
        if os.environ.get("ANYNET_DEBUG"):
            raise
        _report(f"{prefix}: error", str(exc))
        return 1
    except MemoryError as exc:  # an allocation refused outright; the OOM killer is no exception
        if os.environ.get("ANYNET_DEBUG"):
            raise
        hint = {"train": " (a smaller --hidden, --batch-size or --limit?)"}.get(args.command, "")
        _report(f"{prefix}: error", f"out of memory: {exc}{hint}")
        return 1
    except KeyboardInterrupt:
        print(f"anynet {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
