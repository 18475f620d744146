"""The PyTorch tutorial's Fashion-MNIST classifier, trained by anynet on any backend.

784-256-128-64-10 with ReLU, log-softmax output and negative log-likelihood, Adam with learning
rate 0.003, batches of 64, 5 epochs, pixels mapped to [-1, 1] by (x - 0.5) / 0.5. PyTorch
itself reaches 86.3-86.9% test accuracy after 5 epochs on this machine.

    python examples/pytorch_seed.py                  # NumPy
    python examples/pytorch_seed.py --backend torch  # the same network on PyTorch tensors
    python examples/pytorch_seed.py --plot view.png  # the tutorial's image + probabilities view
"""

from __future__ import annotations

import argparse
import time

import anynet
from anynet.datasets import FASHION_MNIST_CLASSES, load_fashion_mnist


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default=None)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--plot",
        default=None,
        metavar="PNG",
        help="save the first test image with its class probabilities",
    )
    args = parser.parse_args()

    X, y = load_fashion_mnist("train")
    X_test, y_test = load_fashion_mnist("test")
    clf = anynet.NNClassifier(
        hidden_layer_sizes=(256, 128, 64),
        activation="relu",
        init="pytorch",  # torch.nn.Linear's U(+-1/sqrt(fan_in)), biases too
        output="log_softmax",  # LogSoftmax layer + NLL loss, as the tutorial
        solver="adam",
        learning_rate_init=0.003,
        alpha=0.0,  # PyTorch's Adam adds no weight decay by default
        batch_size=64,
        max_iter=args.epochs,
        n_iter_no_change=args.epochs,
        standardize="symmetric",  # (x / 255 - 0.5) / 0.5, done on the device
        backend=args.backend,
        random_state=args.seed,
        verbose=True,
    )
    t0 = time.perf_counter()
    clf.fit(X, y, validation_data=(X_test, y_test))
    seconds = time.perf_counter() - t0
    print(
        f"backend {anynet.get_backend(args.backend).spec}: test accuracy "
        f"{clf.score(X_test, y_test):.2%} after {clf.n_iter_} epochs ({seconds:.0f} s); "
        "PyTorch reaches 86.3-86.9% here"
    )
    if args.plot:
        from anynet.plots import plot_image_probabilities

        proba = clf.predict_proba(X_test[:1])[0]
        plot_image_probabilities(
            X_test[0], proba, FASHION_MNIST_CLASSES, true_label=int(y_test[0]), path=args.plot
        )
        print(f"wrote {args.plot}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
