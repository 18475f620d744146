"""``anynet evaluate``: a saved model's scores on the Fashion-MNIST test set, or on ``--data``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from anynet.cli.arguments import BACKEND_HELP, DATA_DIR_HELP, HelpFormatter
from anynet.cli.data import integer_labels, load_classifier, load_data
from anynet.cli.outputs import Place, check_apart, check_can_plot, check_output
from anynet.cli.own_data import model_format, own_scores, trained_words
from anynet.errors import AnynetError

#: The file ``--plots`` writes, in its folder.
PLOT = "confusion_matrix.png"


def add_evaluate(subparsers) -> None:
    p = subparsers.add_parser(
        "evaluate",
        help="accuracy, per-class precision and recall, confusion matrix",
        description="Evaluate a saved model on the Fashion-MNIST test set, or on your own data "
        "(--data) of the kind it was trained on.",
        formatter_class=HelpFormatter,
    )
    p.add_argument("model", type=Path, help="a model file written by anynet train / anynet.save")
    p.add_argument("--backend", default=None, help=BACKEND_HELP)
    p.add_argument("--data-dir", type=Path, default=None, help=DATA_DIR_HELP)
    p.add_argument("--no-download", action="store_true", help="never download the data")
    p.add_argument(
        "--data",
        type=Path,
        default=None,
        metavar="PATH",
        help="your own labelled data, of the kind the model was trained on: a .npz (its X_test "
        "and y_test if it has them, else X and y), a .csv table with the label column, or a "
        "folder of class sub-folders (default: Fashion-MNIST's test set)",
    )
    p.add_argument(
        "--plots",
        type=Path,
        default=None,
        metavar="DIR",
        help=f"write the confusion matrix here, as {PLOT} (default: no plot)",
    )


def cmd_evaluate(args: argparse.Namespace) -> int:
    import numpy as np

    from anynet import metrics
    from anynet.datasets import FASHION_MNIST_CLASSES as NAMES

    if args.plots is not None:
        check_can_plot()
        check_output("--plots", args.plots, folder=True, files=(PLOT,))
        check_apart(
            [Place("--plots", args.plots, args.plots / PLOT, f"the plot {PLOT}", through=True)],
            folders=[Place("--plots", args.plots, args.plots, "the plots")],
            reads=[Place("MODEL", args.model, args.model, "the model being evaluated")],
        )
    if args.data is not None and (args.data_dir is not None or args.no_download):
        given = "--data-dir" if args.data_dir is not None else "--no-download"
        raise AnynetError(f"{given} is for Fashion-MNIST; with --data, leave out {given}")
    clf = load_classifier(args.model, args.backend)
    if args.data is not None:
        y, pred, NAMES = own_scores(clf, args.data)
    elif model_format(clf) is not None:
        raise AnynetError(
            f"{args.model}: the model was trained with --data, on {trained_words(clf)}, not on "
            "Fashion-MNIST: give --data, labelled data of that kind, to evaluate it on"
        )
    else:
        _check_fashion_mnist_labels(args.model, clf.classes_)
        (X, y), source = load_data(args, ["test"])
        print(source, file=sys.stderr)
        # Whole numbers from 0 to 9 (checked above) as the integers the metrics take: a model
        # fitted on the labels 0.0 to 9.0 predicts floats.
        pred = np.asarray(clf.predict(X)).astype(np.int64)
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

        plots.plot_confusion_matrix(cm, NAMES, path=args.plots / PLOT)
    return 0


def _check_fashion_mnist_labels(path: Path, classes) -> None:
    """Refuse a model whose classes are not among Fashion-MNIST's labels: scores against the test
    set's labels 0 to 9 mean something only for a model whose classes are among them (a model
    trained on labels 1 to 10 would be scored one class off, without a word). A model that
    knows only some of them is scored, with a warning: the others it never predicts."""
    import warnings

    from anynet.datasets import FASHION_MNIST_CLASSES as NAMES

    labels = integer_labels(classes)
    shown = ", ".join(repr(c.item() if hasattr(c, "item") else c) for c in classes[:12])
    if len(classes) > 12:
        shown += f", ... ({len(classes)} classes)"
    if labels is None:
        raise AnynetError(
            f"{path}: the model's classes are {shown}, not all among the labels of "
            "Fashion-MNIST's test set, the integers 0 to 9 (0 T-shirt/top ... 9 Ankle boot): "
            "its scores there would mean nothing. Evaluate a model trained on those labels (as "
            "anynet train's are), or score this one in Python on data labelled as its classes"
        )
    if len(labels) < len(NAMES):
        missing = sorted(set(range(len(NAMES))) - set(labels))
        warnings.warn(
            f"{path}: the model knows {len(labels)} of Fashion-MNIST's {len(NAMES)} classes "
            f"({shown}); the test images of the others ({', '.join(map(str, missing))}) are "
            "all counted as errors",
            stacklevel=2,
        )
