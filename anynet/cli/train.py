"""``anynet train``: train a classifier on Fashion-MNIST, or on your own data, and save it."""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

from anynet.backends import get_backend
from anynet.cli.arguments import (
    BACKEND_HELP,
    DATA_DIR_HELP,
    HelpFormatter,
    divergence_factor,
    file_path,
    fraction,
    layer_sizes,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
)
from anynet.cli.data import load_data
from anynet.cli.messages import in_flags
from anynet.cli.outputs import (
    Place,
    check_apart,
    check_can_plot,
    check_out_is_no_input,
    check_output,
    check_resumable,
)
from anynet.cli.own_data import (
    add_train_data,
    check_train_flags,
    final_line,
    training_data,
    write_plots,
)
from anynet.errors import AnynetError
from anynet.estimator.network import ACTIVATIONS, SCHEDULES

#: The best defaults measured on a 2-core CPU (README's results table), per ``--model``: see
#: `anynet train -h`. ``activation`` and ``hidden`` are the MLP's alone.
DEFAULTS = {
    "mlp": {
        "hidden": (256, 128),
        "activation": "relu",
        "epochs": 25,
        "batch_size": 128,
        "lr": 1e-3,
        "lr_schedule": "constant",
        "alpha": 1e-4,
        "dropout": 0.2,
        "scale": "standardize",
        "augment": False,
    },
    "cnn": {
        "epochs": 30,
        "batch_size": 128,
        "lr": 1e-3,
        "lr_schedule": "cosine",
        "alpha": 1e-4,
        "dropout": 0.25,
        "scale": "unit",
        "augment": True,
    },
}
#: The augmentation ``--augment`` turns on: mirror images, no shifts. Measured on the default CNN
#: (bench/results/cnn_train_cpu_*.md): flips alone reached 93.52% in 25 epochs where 2-pixel
#: crops and flips stayed at 93.09%; 28x28 clothes come centred, and the network underfit.
AUGMENT_PADDING = 0


def _per_model(name: str) -> str:
    """``default 25 (mlp), 20 (cnn)``: a setting's defaults for each ``--model``."""
    values = {m: _shown(d[name]) for m, d in DEFAULTS.items() if name in d}
    if len(values) > 1 and len(set(values.values())) == 1:
        return f"default {values.popitem()[1]}"
    return "default " + ", ".join(f"{v} ({m})" for m, v in values.items())


def _shown(value) -> str:
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)


#: The files ``--plots`` writes, in its folder.
PLOTS = (
    "learning_curves.png",
    "predictions.png",
    "probabilities.png",
    "confusion_matrix.png",
    "tsne.png",
)


def add_train(subparsers) -> None:
    p = subparsers.add_parser(
        "train",
        help="train a classifier on Fashion-MNIST or on your own data",
        description="Train an anynet classifier on Fashion-MNIST (found offline or downloaded "
        "and verified) or on your own data (--data), report validation accuracy each epoch "
        "and test accuracy at the end, and save the model.",
        formatter_class=HelpFormatter,
    )
    g = p.add_argument_group("where")
    g.add_argument("--backend", default=None, help=BACKEND_HELP)
    g.add_argument(
        "--dtype", choices=["float32", "float64"], default="float32", help="of the computation"
    )
    g.add_argument("--data-dir", type=Path, default=None, help=DATA_DIR_HELP)
    g.add_argument("--no-download", action="store_true", help="never download the data")
    add_train_data(g)
    g = p.add_argument_group("network")
    g.add_argument(
        "--model",
        default="mlp",
        choices=sorted(DEFAULTS),
        help="mlp: a multi-layer perceptron of --hidden layers; cnn: the default convolutional "
        "network (three blocks of 3x3 convolution with 32, 64 and 128 channels, batch norm, "
        "ReLU and 2x2 max-pooling; then --dropout and a Dense layer)",
    )
    g.add_argument(
        "--hidden",
        type=layer_sizes,
        default=None,
        metavar="SIZES",
        help=f"hidden layer sizes, comma separated, for --model mlp; {_per_model('hidden')}",
    )
    g.add_argument(
        "--activation",
        default=None,
        choices=sorted(ACTIVATIONS),
        help=f"for --model mlp; {_per_model('activation')}",
    )
    g.add_argument(
        "--output",
        default="softmax",
        choices=["softmax", "log_softmax", "sigmoid"],
        help="output layer and loss: softmax cross-entropy, log-softmax with NLL, or one "
        "sigmoid per class with binary cross-entropy",
    )
    g.add_argument(
        "--init",
        help="weight initializer (pytorch: as torch.nn.Linear, biases too)",
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
    g.add_argument("--dropout", type=fraction, default=None, help=_per_model("dropout"))
    g = p.add_argument_group("training")
    g.add_argument(
        "--solver", default="adam", choices=["adam", "adamw", "sgd"], help="the optimizer"
    )
    g.add_argument(
        "--lr", type=positive_float, default=None, help=f"learning rate; {_per_model('lr')}"
    )
    g.add_argument(
        "--lr-schedule",
        default=None,
        choices=SCHEDULES,
        help="cosine: from --lr down to 0 along half a cosine over the run's epochs; "
        "scikit-learn's, for --solver sgd only: invscaling, each epoch at "
        "lr / (samples seen + 1) ** --power-t; adaptive, divided by 5 whenever --patience "
        "epochs in a row fail to lower the training loss by 1e-4, stopping once at most 1e-6; "
        + _per_model("lr_schedule"),
    )
    g.add_argument(
        "--power-t",
        type=non_negative_float,
        default=0.5,
        metavar="P",
        help="the exponent of --lr-schedule invscaling",
    )
    g.add_argument(
        "--patience",
        type=positive_int,
        default=10,
        metavar="EPOCHS",
        help="for --lr-schedule adaptive (scikit-learn's n_iter_no_change)",
    )
    g.add_argument("--momentum", type=fraction, default=0.9, help="for sgd")
    g.add_argument(
        "--alpha",
        type=non_negative_float,
        default=None,
        help=f"L2 penalty, scikit-learn's scaling; {_per_model('alpha')}",
    )
    g.add_argument("--l1", type=non_negative_float, default=0.0, help="L1 penalty")
    g.add_argument("--epochs", type=positive_int, default=None, help=_per_model("epochs"))
    g.add_argument("--batch-size", type=positive_int, default=None, help=_per_model("batch_size"))
    g.add_argument(
        "--scale",
        default=None,
        choices=["standardize", "unit", "symmetric", "none"],
        help=f"input scaling: per-feature z-score, [0, 1], or [-1, 1]; {_per_model('scale')}",
    )
    g.add_argument(
        "--augment",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="random mirror images (left-right flips) of the training images, for --model cnn; "
        f"{_per_model('augment')}",
    )
    g.add_argument(
        "--seed",
        type=non_negative_int,
        default=0,
        help="seeds the initial weights, shuffles, dropout and augmentation",
    )
    g.add_argument(
        "--limit",
        type=positive_int,
        default=None,
        metavar="N",
        help="train on the first N training images only, for quick trials (default: all)",
    )
    g.add_argument(
        "--divergence-factor",
        type=divergence_factor,
        default=100.0,
        metavar="X",
        help="stop when a batch's loss exceeds X times the run's first (a learning rate far "
        "too high), before a checkpoint or --out holds the diverged model; 'off' to train on",
    )
    g = p.add_argument_group("output")
    g.add_argument(
        "--out",
        type=file_path,
        default=Path("anynet-model.safetensors"),
        help="model file to write",
    )
    g.add_argument(
        "--checkpoint-dir",
        type=Path,
        default=None,
        help="write a checkpoint here every --checkpoint-every epochs and on Ctrl-C "
        "(a folder that holds one already needs --resume; default: no checkpoints)",
    )
    g.add_argument(
        "--checkpoint-every",
        type=positive_int,
        default=1,
        metavar="EPOCHS",
        help="with --checkpoint-dir",
    )
    g.add_argument(
        "--checkpoint-steps",
        type=positive_int,
        default=None,
        metavar="STEPS",
        help="also checkpoint every STEPS optimizer steps (default: at epoch ends only)",
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
        help="write learning curves, predictions, confusion matrix and t-SNE PNGs here "
        "(default: no plots)",
    )
    g.add_argument(
        "--quiet",
        action="store_true",
        help="no progress (a bar on a terminal, else a line per epoch)",
    )
    g = p.add_argument_group("data-parallel (see the README's 'Distributed training')")
    g.add_argument(
        "--distributed",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="train on all the processes mpiexec or srun started, each on its part of every "
        "--batch-size batch, rank 0 alone printing and writing (needs mpi4py); default: on "
        "when an MPI launcher started this process",
    )
    g.add_argument(
        "--deterministic-sum",
        action="store_true",
        help="sum the ranks' gradients in rank order: the same bits whatever MPI's algorithm "
        "(slower)",
    )


def cmd_train(args: argparse.Namespace) -> int:
    comm = _join(args)
    if comm is None:
        return _train(args, None)
    return _as_one_job(comm, lambda: _train(args, comm))


def _join(args: argparse.Namespace):
    """The ranks of a data-parallel run (``--distributed``, by default when an MPI launcher
    started this process), or None; each rank on a GPU of its own."""
    import os

    from anynet.distributed import (
        communicator_for,
        launched_size,
        local_rank,
        rank_device,
        transport,
        world,
    )

    on = args.distributed if args.distributed is not None else launched_size() is not None
    if not on:
        if args.deterministic_sum:
            raise AnynetError(
                "--deterministic-sum is for a data-parallel run: launch with mpiexec, or add "
                "--distributed"
            )
        return None
    deterministic = args.deterministic_sum
    mpi = world(deterministic=deterministic)
    spec = args.backend if args.backend is not None else os.environ.get("ANYNET_BACKEND")
    args.backend = rank_device(spec, local_rank(mpi))
    backend = get_backend(args.backend)
    if transport(backend) == "mpi":
        return mpi
    return communicator_for(backend, deterministic=deterministic, comm=mpi.comm)


def _as_one_job(comm, run) -> int:
    """``run()`` on this rank; if it fails here, every rank ends (MPI abort) with its exit
    status: the others would wait for this one in their next step forever."""
    try:
        code = run()
    except BaseException as exc:  # any failure of this rank ends the job
        code = _report_failure(exc, f"anynet train (rank {comm.rank} of {comm.size})")
    if code:
        sys.stdout.flush()
        sys.stderr.flush()
        comm.abort(code)
    return code


def _report_failure(exc: BaseException, prefix: str) -> int:
    """Say what failed on this rank as ``anynet``'s main does (one line for anynet's errors,
    a traceback for a bug), and the exit status."""
    import os
    import traceback

    from anynet.cli import _out_of_memory, _report

    if isinstance(exc, SystemExit):
        return exc.code if isinstance(exc.code, int) else 1
    if isinstance(exc, KeyboardInterrupt):
        print(f"{prefix}: interrupted", file=sys.stderr)
        return 130
    if isinstance(exc, AnynetError | ValueError | OSError) and not os.environ.get("ANYNET_DEBUG"):
        _report(f"{prefix}: error", str(exc))
    elif isinstance(exc, MemoryError) and not os.environ.get("ANYNET_DEBUG"):
        _report(f"{prefix}: error", _out_of_memory("train", exc))
    else:
        traceback.print_exception(exc)
    return 1


def _load_in_turn(args: argparse.Namespace, comm):
    """The data and where it was read (see :func:`load_data`); in a data-parallel run rank 0
    first (it may download and verify the files), then the others."""
    if comm is None:
        return load_data(args)
    if comm.is_root:
        data = load_data(args)
        comm.barrier()
        return data
    comm.barrier()
    return load_data(args)


def _train(args: argparse.Namespace, comm) -> int:
    import time

    from sklearn.exceptions import ConvergenceWarning

    from anynet.data import RandomCropFlip
    from anynet.estimator import NNClassifier

    if args.resume and args.checkpoint_dir is None:
        raise AnynetError("--resume needs --checkpoint-dir, the folder holding the checkpoint")
    _fill_defaults(args)
    check_train_flags(args)
    if args.plots is not None:
        check_can_plot()  # before the run, not after it
    # Every path the run will write, checked before the data is loaded: a bad one used to fail
    # only after training, and the trained model was lost.
    check_output("--out", args.out)
    check_out_is_no_input(args.out)
    if args.plots is not None:
        check_output("--plots", args.plots, folder=True, files=PLOTS)
    if args.checkpoint_dir is not None:
        check_output("--checkpoint-dir", args.checkpoint_dir, folder=True)
        check_resumable(args.checkpoint_dir, args.resume)
    _check_outputs_apart(args)
    data = training_data(args, lambda: _load_in_turn(args, comm), _first)
    X, y = data.X, data.y
    root = comm is None or comm.is_root  # the rank that prints and writes
    cnn = args.model == "cnn"
    clf = NNClassifier(
        network="cnn" if cnn else None,
        augment=RandomCropFlip(AUGMENT_PADDING) if args.augment else None,
        hidden_layer_sizes=args.hidden if not cnn else (100,),
        activation=args.activation if not cnn else "relu",
        solver=args.solver,
        alpha=args.alpha,
        batch_size=args.batch_size,
        learning_rate_init=args.lr,
        learning_rate=args.lr_schedule,
        power_t=args.power_t,
        max_iter=args.epochs,
        random_state=args.seed,
        momentum=args.momentum,
        # Run every epoch asked for: a patience no run reaches (but --lr-schedule adaptive's,
        # whose plateaus divide the rate). Not --epochs: the checkpoint records it, and a run
        # resumed with more epochs (extended) would be refused.
        n_iter_no_change=args.patience if args.lr_schedule == "adaptive" else 2**31 - 1,
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
        distributed=comm if comm is not None else False,
    )
    if root:
        ranks = "" if comm is None else f", data-parallel on {comm.size} ranks ({comm.name})"
        what = (
            f"training {_describe(clf, data)} on {data.what()}, backend "
            f"{get_backend(args.backend).spec}{ranks}"
        )
        # What is read, then what trains; after the last check that can refuse the run (a
        # backend that cannot run here), so that a refused run's error stands alone.
        print(data.source, file=sys.stderr)
        print(what, file=sys.stderr)
    t0 = time.perf_counter()
    try:
        with warnings.catch_warnings(), in_flags():
            warnings.simplefilter("ignore", ConvergenceWarning)  # running all epochs is the plan
            clf.fit(X, y, validation_data=data.validation)
    except KeyboardInterrupt as exc:
        import signal

        signum = getattr(exc, "signum", signal.SIGINT)  # SIGTERM stops a run as Ctrl-C does
        where = (
            f"; checkpoint in {args.checkpoint_dir}, continue with --resume"
            if args.checkpoint_dir
            else " (no --checkpoint-dir: nothing saved)"
        )
        what = "interrupted" if signum == signal.SIGINT else f"stopped by {exc}"
        if root:
            print(f"anynet train: {what}{where}", file=sys.stderr)
        return 128 + int(signum)
    seconds = time.perf_counter() - t0
    if not root:  # every rank holds the same model: rank 0 writes it
        return 0
    clf.data_format_ = data.data_format  # evaluate and predict check new data against it
    _save(clf, args)
    print(final_line(clf, data, seconds, args.out))
    if args.plots is not None and data.data_format is not None:
        written = write_plots(clf, data, args.plots)
        print(f"plots: {args.plots}/ ({', '.join(written)})")
    elif args.plots is not None:
        _write_plots(
            clf, *data.test, args.plots, monitored="test" if data.monitors_test else "validation"
        )
        print(f"plots: {args.plots}/")
    return 0


def _save(clf, args: argparse.Namespace) -> None:
    """Write the model to ``--out``; if that fails now (a full disk, a folder removed during
    the run), say where the trained model still is, if anywhere."""
    import anynet

    try:
        anynet.save(clf, args.out)
    except OSError as exc:
        if args.checkpoint_dir is not None:
            then = (
                f"the last checkpoint in --checkpoint-dir {args.checkpoint_dir} holds the "
                "trained model: fix that, and rerun this command with --resume to write it"
            )
        else:
            then = "the trained model is lost (with --checkpoint-dir, a checkpoint keeps it)"
        raise AnynetError(f"--out {args.out}: {exc.strerror or exc}; {then}") from None


def _check_outputs_apart(args: argparse.Namespace) -> None:
    """Refuse outputs that are one file, or a file where a folder is to be made: ``--out``
    inside ``--checkpoint-dir`` as its checkpoint would replace it (and every later resume
    would read the model as a checkpoint), as one of ``--plots``' PNGs would be replaced."""
    from anynet.training import CHECKPOINT_NAME, LOCK_NAME

    writes = [Place("--out", args.out, args.out, "the model")]
    folders = []
    if args.checkpoint_dir is not None:
        ck = args.checkpoint_dir
        folders.append(Place("--checkpoint-dir", ck, ck, "the checkpoints"))
        writes.append(Place("--checkpoint-dir", ck, ck / CHECKPOINT_NAME, "the checkpoint"))
        writes.append(Place("--checkpoint-dir", ck, ck / LOCK_NAME, "the checkpoint's lock"))
    if args.data_dir is not None:  # made, if missing, to download the data into
        folders.append(Place("--data-dir", args.data_dir, args.data_dir, "the data"))
    if args.plots is not None:
        folders.append(Place("--plots", args.plots, args.plots, "the plots"))
        writes += [
            Place("--plots", args.plots, args.plots / n, f"the plot {n}", through=True)
            for n in PLOTS
        ]
    reads = [] if args.data is None else [Place("--data", args.data, args.data, "the data")]
    check_apart(writes, folders=folders, reads=reads)


def _fill_defaults(args: argparse.Namespace) -> None:
    """The settings not given, from ``--model``'s defaults; the MLP's own settings refused
    for another model (they would be silently ignored)."""
    defaults = DEFAULTS[args.model]
    for name in DEFAULTS["mlp"]:
        if name not in defaults and getattr(args, name) is not None:
            flag = "--" + name.replace("_", "-")
            raise AnynetError(f"{flag} is for --model mlp; --model {args.model} has no {name}")
    if args.augment and args.model == "mlp":
        raise AnynetError(
            "--augment is for --model cnn: the MLP takes each image as a flat row of pixels"
        )
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)


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


def _describe(clf, data) -> str:
    import numpy as np

    if clf.network == "cnn":
        what = "the default CNN"
        shifts = clf.augment is not None and clf.augment.padding
        how = "" if clf.augment is None else (", crops and flips" if shifts else ", flips")
    else:
        sizes = (data.X[0].size, *clf.hidden_layer_sizes, len(np.unique(data.y)))
        what = "-".join(str(s) for s in sizes)
        what, how = f"{what} {clf.activation} MLP", ""
    rate = f"lr {clf.learning_rate_init}" + (
        f" {clf.learning_rate}" if clf.learning_rate != "constant" else ""
    )
    return f"{what} ({clf.solver}, {rate}, batch {clf.batch_size}, {clf.max_iter} epochs{how})"


def _write_plots(clf, X_test, y_test, directory: Path, monitored: str = "test") -> None:
    from anynet import metrics, plots
    from anynet.datasets import FASHION_MNIST_CLASSES as NAMES

    directory.mkdir(parents=True, exist_ok=True)
    path = {name.removesuffix(".png"): directory / name for name in PLOTS}
    proba = clf.predict_proba(X_test)
    pred = clf.classes_[proba.argmax(axis=1)]
    history = {k: v for k, v in clf.history_.items() if k != "epoch_seconds"}
    # The monitored set (the test set, or the validation split): never used to choose anything.
    plots.plot_learning_curves(history, path=path["learning_curves"], val_label=monitored)
    plots.plot_predictions(X_test[:25], y_test[:25], pred[:25], NAMES, path=path["predictions"])
    plots.plot_image_probabilities(
        X_test[0], proba[0], NAMES, true_label=int(y_test[0]), path=path["probabilities"]
    )
    cm = metrics.confusion_matrix(y_test, pred, n_classes=len(NAMES))
    plots.plot_confusion_matrix(cm, NAMES, path=path["confusion_matrix"])
    # The from-scratch tutorial's look at the data: 2,000 test images in two dimensions.
    flat = X_test.reshape(len(X_test), -1)
    plots.plot_tsne(flat, y_test, NAMES, n_samples=2000, path=path["tsne"])
