"""Train on a CUDA GPU, with CuPy unless --backend names another: the data set is copied to the
device once, and every batch is shuffled, gathered and normalized there.

    pip install '.[cuda12]'           # from a checkout; or '.[cuda13]'
    python examples/train_gpu.py                        # CuPy on GPU 0
    python examples/train_gpu.py --backend cupy:1       # the second GPU
    python examples/train_gpu.py --backend torch:cuda   # PyTorch tensors on the GPU

On a machine without a GPU it says so and exits with status 2.
"""

from __future__ import annotations

import argparse
import sys
import time

import anynet
from anynet.datasets import load_fashion_mnist


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--backend", default="cupy", help="a GPU backend: cupy (default), cupy:N, torch:cuda:N"
    )
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=256)
    args = parser.parse_args()

    try:
        be = anynet.get_backend(args.backend)
    except anynet.BackendUnavailableError as exc:
        print(f"train_gpu.py: no GPU to train on: {exc}", file=sys.stderr)
        return 2

    X, y = load_fashion_mnist("train")
    X_test, y_test = load_fashion_mnist("test")
    clf = anynet.NNClassifier(
        hidden_layer_sizes=(512, 256),
        batch_size=args.batch_size,
        max_iter=args.epochs,
        n_iter_no_change=args.epochs,
        standardize=True,
        dropout=0.2,
        backend=be,
        random_state=0,
        verbose=True,
    )
    t0 = time.perf_counter()
    clf.fit(X, y, validation_data=(X_test, y_test))
    be.synchronize()
    seconds = time.perf_counter() - t0
    print(
        f"{be.spec}: test accuracy {clf.history_['val_accuracy'][-1]:.2%} after "
        f"{clf.n_iter_} epochs, {seconds:.1f} s ({seconds / clf.n_iter_:.2f} s per epoch)"
    )
    # Predictions on device arrays stay on the device.
    X_gpu = be.asarray(X_test[:8])
    print("first predictions, computed and kept on the GPU:", clf.predict(X_gpu))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
