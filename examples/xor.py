"""The from-scratch seed's warm-up: a 2-3-1 sigmoid network learns XOR by hand-written backprop.

python examples/xor.py                      # NumPy
python examples/xor.py --backend torch      # the same network on PyTorch tensors
ANYNET_BACKEND=cupy python examples/xor.py  # or on a GPU
"""

from __future__ import annotations

import argparse

import numpy as np

import anynet
from anynet import nn

X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float64)
Y = np.array([[0], [1], [1], [0]], dtype=np.float64)


def train_xor(backend=None, *, seed=0, epochs=2000, learning_rate=0.5, verbose=False):
    """Train 2-3-1 (sigmoid hidden and output) on the XOR truth table, full batch.

    Returns the backend, the model and its trained parameters.
    """
    be = anynet.get_backend(backend)
    model = nn.Sequential(nn.Dense(2, 3, init="uniform"), nn.Sigmoid(), nn.Dense(3, 1))
    params = model.init_params(rng=be.host_generator(seed), backend=be, dtype="float64")
    optimizer = nn.sgd(learning_rate, momentum=0.9)
    state = optimizer.init(params)
    Xd, Yd = be.asarray(X, dtype="float64"), be.asarray(Y, dtype="float64")
    for epoch in range(epochs):
        # The output sigmoid lives in the loss: per-class sigmoid + binary cross-entropy.
        params, state, loss = nn.train_step(
            model, optimizer, params, state, Xd, Yd, loss="sigmoid_binary_cross_entropy"
        )
        if verbose and epoch % (epochs // 10) == 0:
            print(f"epoch {epoch:5d}  loss {float(be.to_numpy(loss)):.6f}")
    return be, model, params


def predict(be, model, params):
    """Probabilities that XOR is 1, for the four rows of the truth table."""
    logits = model(params, be.asarray(X, dtype="float64"))
    return be.to_numpy(nn.functional.sigmoid(logits))[:, 0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default=None, help="numpy (default), torch, cupy, ...")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    be, model, params = train_xor(args.backend, seed=args.seed, verbose=True)
    probs = predict(be, model, params)
    print(f"\nbackend {be.spec}\n  x1 x2 | xor  p(1)")
    for (a, b), want, p in zip(X.astype(int), Y[:, 0].astype(int), probs, strict=True):
        print(f"  {a}  {b}  |  {want}   {p:.3f}")
    learned = bool(np.array_equal(probs > 0.5, Y[:, 0] > 0.5))
    print("learned XOR" if learned else "did NOT learn XOR")
    return 0 if learned else 1


if __name__ == "__main__":
    raise SystemExit(main())
