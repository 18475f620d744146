"""The CNN row of the benchmark: anynet's default CNN and the same network in PyTorch.

Both train the network of ``anynet train --model cnn`` — three blocks of a 3x3 convolution
without bias (32, 64, 128 channels), batch norm, ReLU and 2x2 max-pooling, then dropout 0.25, a
hidden Dense layer of 256 ReLU units and the Dense layer to the logits — with Adam (learning
rate 1e-3, no weight decay) on Fashion-MNIST images scaled to [0, 1] and held in the device's
memory, without augmentation (which would time the loader's crops, not the network). A peer
is a function ``(data, batch_size, epochs, device, seed) -> dict`` as in :mod:`bench.peers`.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

LR = 1e-3
DROPOUT = 0.25
NETWORK = "3x(conv 3x3 - BN - ReLU - maxpool 2) 32-64-128, dropout 0.25, Dense 256 ReLU, Dense"

Data = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def anynet_cnn_peer(
    data: Data, batch_size: int, epochs: int, device: str, seed: int = 0
) -> dict[str, Any]:
    """anynet's estimator with ``network='cnn'``, as a user runs it."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning

    import anynet

    X, y, X_test, y_test = data
    clf = anynet.NNClassifier(
        network="cnn",
        dropout=DROPOUT,
        alpha=0.0,
        batch_size=batch_size,
        learning_rate_init=LR,
        max_iter=epochs,
        n_iter_no_change=epochs,
        standardize="unit",
        backend=device,
        random_state=seed,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X, y)
    return {
        "epoch_seconds": clf.history_["epoch_seconds"],
        "test_accuracy": float(clf.score(X_test, y_test)),
        "fast_path": clf.step_name_,
        "model": NETWORK,
    }


def _torch_cnn(torch, dev):
    T = torch.nn
    layers = []
    for c_in, c_out in ((1, 32), (32, 64), (64, 128)):
        layers += [
            T.Conv2d(c_in, c_out, 3, padding=1, bias=False),
            T.BatchNorm2d(c_out),
            T.ReLU(),
            T.MaxPool2d(2),
        ]
    layers += [T.Flatten(), T.Dropout(DROPOUT), T.Linear(128 * 3 * 3, 256), T.ReLU()]
    layers.append(T.Linear(256, 10))
    return T.Sequential(*layers).to(dev)


def torch_cnn_peer(
    data: Data, batch_size: int, epochs: int, device: str, seed: int = 0
) -> dict[str, Any]:
    """PyTorch eager, the idiomatic loop over image tensors resident on the device."""
    import torch

    torch.manual_seed(seed)
    dev = torch.device("cuda" if device.startswith("torch:cuda") else "cpu")
    X, y, X_test, y_test = data

    def images(A):
        return torch.from_numpy(A.reshape(len(A), 1, 28, 28).astype(np.float32) / 255.0).to(dev)

    Xd, yd = images(X), torch.from_numpy(y).to(dev)
    model = _torch_cnn(torch, dev)
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    loss_fn = torch.nn.CrossEntropyLoss()
    times = []
    n = len(Xd)
    for _ in range(epochs):
        model.train()
        t0 = time.perf_counter()
        order = torch.randperm(n, device=dev)
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size]
            opt.zero_grad(set_to_none=True)
            loss_fn(model(Xd[idx]), yd[idx]).backward()
            opt.step()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    model.eval()
    with torch.no_grad():
        Xt = images(X_test)
        pred = torch.cat([model(Xt[i : i + 1000]).argmax(1) for i in range(0, len(Xt), 1000)])
    return {
        "epoch_seconds": times,
        "test_accuracy": float(np.mean(pred.cpu().numpy() == y_test)),
        "model": NETWORK,
    }


CNN_CPU_PEERS = {
    "anynet-numpy-cnn": (anynet_cnn_peer, "numpy"),
    "pytorch-cpu-cnn": (torch_cnn_peer, "torch"),
}
CNN_GPU_PEERS = {
    "anynet-cupy-cnn": (anynet_cnn_peer, "cupy"),
    "pytorch-eager-cnn": (torch_cnn_peer, "torch:cuda"),
}
