"""``anynet evaluate``: a saved model's scores on the Fashion-MNIST test set."""

from __future__ import annotations

import argparse
from pathlib import Path

from anynet.cli.data import load_data
from anynet.cli.outputs import Place, check_apart, check_can_plot, check_output

#: The file ``--plots`` writes, in its folder.
PLOT = "confusion_matrix.png"


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
        check_can_plot()
        check_output("--plots", args.plots, folder=True, files=(PLOT,))
        check_apart(
            [Place("--plots", args.plots, args.plots / PLOT, f"the plot {PLOT}", through=True)],
            folders=[Place("--plots", args.plots, args.plots, "the plots")],
            reads=[Place("MODEL", args.model, args.model, "the model being evaluated")],
        )
    clf = anynet.load(args.model, backend=args.backend)
    X, y = load_data(args, ["test"])
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

        plots.plot_confusion_matrix(cm, NAMES, path=args.plots / PLOT)
    return 0
