"""What the benchmark times: anynet and the libraries a user would pick instead.

Every peer trains the same network — 784-256-128-64-10, ReLU, softmax cross-entropy, Adam with
learning rate 1e-3, no weight decay, inputs scaled to [-1, 1] — on Fashion-MNIST held in the
device's memory, for the same number of epochs, and reports each epoch's wall time (device
synchronized), the test accuracy at the end, and the operations one training step issues.

A peer is a function ``(data, batch_size, epochs, device, seed) -> dict``; each round of the
benchmark passes another seed, so accuracy is compared over several initialisations.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from typing import Any

import numpy as np

HIDDEN = (256, 128, 64)
LR = 1e-3

Data = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def scaled(X: np.ndarray) -> np.ndarray:
    """uint8 images (N, 28, 28) as float32 rows in [-1, 1], the PyTorch tutorial's transform."""
    return (X.reshape(len(X), -1).astype(np.float32) / 255.0 - 0.5) / 0.5


# --- anynet ---------------------------------------------------------------------------------


def anynet_peer(
    data: Data, batch_size: int, epochs: int, device: str, seed: int = 0
) -> dict[str, Any]:
    """anynet's estimator, as a user runs it: uint8 data on the device, scaled there."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning

    import anynet

    X, y, X_test, y_test = data
    clf = anynet.NNClassifier(
        HIDDEN,
        init="pytorch",
        alpha=0.0,
        batch_size=batch_size,
        learning_rate_init=LR,
        max_iter=epochs,
        n_iter_no_change=epochs,
        standardize="symmetric",
        backend=device,
        random_state=seed,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X, y)
    return {
        "epoch_seconds": clf.history_["epoch_seconds"],
        "test_accuracy": float(clf.score(X_test, y_test)),
        "ops_per_step": anynet_ops_per_step(batch_size, device),
        "fast_path": _fast_path_used(clf),
    }


def _fast_path_used(clf) -> str:
    return clf.step_name_


def anynet_ops_per_step(batch_size: int, device: str) -> dict[str, int]:
    """Array operations one anynet training step issues, counted, not estimated.

    The fused step: its family's operations are built here with counting wrappers passed in
    for the array library and the compiled kernels, and handed to ``select_step``; one step
    allocates the buffers, then three steps are counted (the loader's gather is not included).
    The generic Array API path: run on PyTorch tensors, where ``torch.profiler`` counts the
    ATen kernels it issues, loader included.
    """
    import anynet
    from anynet import nn
    from anynet.data import DataLoader
    from anynet.training import TrainState, select_step, train

    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, size=(batch_size * 3, 784), dtype=np.uint8)
    y = rng.integers(0, 10, size=batch_size * 3)
    layers = []
    for a, b in itertools.pairwise((784, *HIDDEN)):
        layers += [nn.Dense(a, b), nn.ReLU()]
    model = nn.Sequential(*layers, nn.Dense(HIDDEN[-1], 10))
    out = {}

    be = anynet.get_backend(device)
    counted = _counting_ops(be)
    if counted is not None:
        ops, counters = counted
        params = model.init_params(rng=be.host_generator(0), backend=be)
        step = select_step(model, nn.adam(LR), params, backend=be, ops=ops)
        Xb = be.asarray(scaled(X), dtype="float32")
        yb = be.asarray(y)
        step(Xb[:batch_size], yb[:batch_size])  # allocates the buffers: not per-step work
        for counter in counters.values():
            counter.calls = 0
        for i in range(3):
            step(
                Xb[i * batch_size : (i + 1) * batch_size], yb[i * batch_size : (i + 1) * batch_size]
            )
        be.synchronize()
        out.update({name: round(c.calls / 3) for name, c in counters.items()})
    try:
        import torch  # noqa: F401
    except ImportError:
        return out
    torch_be = anynet.get_backend("torch")
    params = model.init_params(rng=torch_be.host_generator(0), backend=torch_be)
    state = TrainState()
    loader = DataLoader(X, y, batch_size, backend=torch_be, seed=0, normalize="symmetric")
    step = select_step(model, nn.adam(LR), params, backend=torch_be)

    def epoch():
        train(step, loader, epochs=1, state=state)

    out["generic path, ATen kernels (on torch)"] = round(_count_torch_ops(epoch) / 3)
    return out


def _counting_ops(be: Any) -> tuple[Any, dict[str, _Counting]] | None:
    """The backend's fused operations built with counting wrappers in place of the array
    library and the kernels, and the counters; ``None`` where the backend has no kernels."""
    from anynet import fast

    ops = fast.ops_for(be)
    if ops is None:
        return None
    xp = _Counting(ops.xp)
    if be.kernels == "cuda":
        from anynet.fast.cuda.ops import CudaOps

        kernels = _Counting(ops.launcher)
        names = ("fused step, CuPy calls", "anynet CUDA kernels")
        return CudaOps(xp, kernels, ops.device), dict(zip(names, (xp, kernels), strict=True))
    from anynet.fast.numba_ops import NumbaOps
    from anynet.fast.numpy_ops import NumpyOps

    if isinstance(ops, NumbaOps):
        kernels = _Counting(ops.kernels)
        counters = {"fused step, NumPy calls": xp, "numba kernels": kernels}
        return NumbaOps(kernels, xp=xp), counters
    return NumpyOps(xp=xp), {"fused step, NumPy calls": xp}


class _Counting:
    """A module (NumPy, the numba kernels), counting the calls made through it (not the
    types it holds: ``xp.int64`` stays a type)."""

    def __init__(self, module):
        self.module = module
        self.calls = 0

    def __getattr__(self, name):
        attr = getattr(self.module, name)
        if not callable(attr) or isinstance(attr, type):
            return attr

        def counted(*args, **kwargs):
            self.calls += 1
            return attr(*args, **kwargs)

        return counted


def _count_torch_ops(fn: Callable[[], Any]) -> int:
    """ATen operators that call no other ATen operator (about one kernel each) run by ``fn``."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    events = prof.profiler.function_events
    return sum(
        1
        for e in events
        if e.name.startswith("aten::")
        and not any(c.name.startswith("aten::") for c in e.cpu_children)
    )


# --- PyTorch --------------------------------------------------------------------------------


def _torch_model(torch, device):
    layers = []
    sizes = (784, *HIDDEN)
    for a, b in itertools.pairwise(sizes):
        layers += [torch.nn.Linear(a, b), torch.nn.ReLU()]
    return torch.nn.Sequential(*layers, torch.nn.Linear(sizes[-1], 10)).to(device)


def torch_peer(
    data: Data, batch_size: int, epochs: int, device: str, seed: int = 0
) -> dict[str, Any]:
    """PyTorch eager, the idiomatic loop over tensors resident on the device."""
    import torch

    torch.manual_seed(seed)
    dev = torch.device("cuda" if device.startswith("torch:cuda") else "cpu")
    X, y, X_test, y_test = data
    Xd, yd = torch.from_numpy(scaled(X)).to(dev), torch.from_numpy(y).to(dev)
    model = _torch_model(torch, dev)
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    loss_fn = torch.nn.CrossEntropyLoss()

    def step(xb, yb):
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(xb), yb)
        loss.backward()
        opt.step()
        return loss

    times = []
    n = len(Xd)
    for _ in range(epochs):
        t0 = time.perf_counter()
        order = torch.randperm(n, device=dev)
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size]
            step(Xd[idx], yd[idx])
        if dev.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    ops = _count_torch_ops(lambda: [step(Xd[:batch_size], yd[:batch_size]) for _ in range(3)])
    with torch.no_grad():
        pred = model(torch.from_numpy(scaled(X_test)).to(dev)).argmax(1).cpu().numpy()
    return {
        "epoch_seconds": times,
        "test_accuracy": float(np.mean(pred == y_test)),
        "ops_per_step": {"ATen kernels": round(ops / 3)},
    }


def torch_graph_peer(
    data: Data, batch_size: int, epochs: int, device: str, seed: int = 0
) -> dict[str, Any]:
    """PyTorch with the whole training step (gather, forward, backward, Adam) captured in one
    CUDA graph and replayed per batch: the fastest PyTorch can go without a compiler."""
    import torch

    if not torch.cuda.is_available():
        raise RuntimeError("needs a CUDA device")
    torch.manual_seed(seed)
    dev = torch.device("cuda")
    X, y, X_test, y_test = data
    Xd, yd = torch.from_numpy(scaled(X)).to(dev), torch.from_numpy(y).to(dev)
    model = _torch_model(torch, dev)
    opt = torch.optim.Adam(model.parameters(), lr=LR, capturable=True)
    loss_fn = torch.nn.CrossEntropyLoss()
    n = len(Xd)
    full = n // batch_size * batch_size  # graphs need fixed shapes: whole batches only
    idx_static = torch.zeros(batch_size, dtype=torch.int64, device=dev)

    def step():
        opt.zero_grad(set_to_none=False)
        loss = loss_fn(model(Xd[idx_static]), yd[idx_static])
        loss.backward()
        opt.step()
        return loss

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm-up outside the graph, as the CUDA-graph docs ask
        for _ in range(3):
            step()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        step()
    times = []
    for _ in range(epochs):
        t0 = time.perf_counter()
        order = torch.randperm(n, device=dev)
        for start in range(0, full, batch_size):
            idx_static.copy_(order[start : start + batch_size])
            graph.replay()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    with torch.no_grad():
        pred = model(torch.from_numpy(scaled(X_test)).to(dev)).argmax(1).cpu().numpy()
    return {
        "epoch_seconds": times,
        "test_accuracy": float(np.mean(pred == y_test)),
        "ops_per_step": {"graph launches": 1},
        "note": f"whole batches only ({full} of {n} samples per epoch)",
    }


# --- scikit-learn and the from-scratch seed -------------------------------------------------


def sklearn_peer(
    data: Data, batch_size: int, epochs: int, device: str, seed: int = 0
) -> dict[str, Any]:
    """scikit-learn's MLPClassifier, one ``partial_fit`` (one shuffled epoch) at a time, on
    float64 data (``X / 255``, what its users pass; it computes in the data's dtype)."""
    import warnings

    from sklearn.neural_network import MLPClassifier

    X, y, X_test, y_test = data
    Xs = scaled(X).astype(np.float64)
    clf = MLPClassifier(
        HIDDEN,
        solver="adam",
        alpha=0.0,
        batch_size=batch_size,
        learning_rate_init=LR,
        random_state=seed,
    )
    classes = np.arange(10)
    times = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(epochs):
            t0 = time.perf_counter()
            clf.partial_fit(Xs, y, classes=classes)
            times.append(time.perf_counter() - t0)
    return {
        "epoch_seconds": times,
        "test_accuracy": float(clf.score(scaled(X_test).astype(np.float64), y_test)),
        "dtype": str(clf.coefs_[0].dtype),
    }


def seed_peer(
    data: Data, batch_size: int, epochs: int, device: str, seed: int = 0
) -> dict[str, Any]:
    """The from-scratch tutorial's own algorithm, in plain NumPy as the post writes it:
    784-50-10, sigmoid layers, no biases, float64, gradients summed over the batch, L2 0.5,
    learning rate 0.001, standardized inputs. A different (smaller) network: a reference
    point, not a like-for-like peer."""
    X, y, X_test, y_test = data
    mean = X.reshape(len(X), -1).mean(0)
    std = X.reshape(len(X), -1).std(0)
    std[std == 0] = 1.0

    def prep(A):
        return (A.reshape(len(A), -1) - mean) / std

    Xs, Xt = prep(X), prep(X_test)
    rng = np.random.default_rng(seed)
    w1 = rng.uniform(-1.0, 1.0, size=(50, 784))
    w2 = rng.uniform(-1.0, 1.0, size=(10, 50))
    onehot = np.eye(10)[y]

    def sigmoid(z):
        return 1.0 / (1.0 + np.exp(-z))

    times = []
    with np.errstate(over="ignore"):
        for _ in range(epochs):
            t0 = time.perf_counter()
            for start in range(0, len(Xs), batch_size):
                xb, yb = Xs[start : start + batch_size], onehot[start : start + batch_size].T
                hidden = sigmoid(w1 @ xb.T)
                out = sigmoid(w2 @ hidden)
                sigma3 = out - yb
                sigma2 = (w2.T @ sigma3) * hidden * (1 - hidden)
                w1 -= 0.001 * (sigma2 @ xb + 0.5 * w1)
                w2 -= 0.001 * (sigma3 @ hidden.T + 0.5 * w2)
            times.append(time.perf_counter() - t0)
        pred = (w2 @ sigmoid(w1 @ Xt.T)).argmax(0)
    return {
        "epoch_seconds": times,
        "test_accuracy": float(np.mean(pred == y_test)),
        "model": "784-50-10 sigmoid (the seed's)",
    }


CPU_PEERS = {
    "anynet-numpy": (anynet_peer, "numpy"),
    "pytorch-cpu": (torch_peer, "torch"),
    "sklearn-mlp": (sklearn_peer, "cpu"),
    "seed-numpy": (seed_peer, "cpu"),
}
#: Peers that run only when named (``--peers``): anynet's CPU step without numba.
OPTIONAL_PEERS = {
    "anynet-numpy-nonumba": (anynet_peer, "numpy"),
}
#: Environment a peer's worker runs in.
PEER_ENV = {"anynet-numpy-nonumba": {"ANYNET_NUMBA": "0"}}
GPU_PEERS = {
    "anynet-cupy": (anynet_peer, "cupy"),
    "pytorch-eager": (torch_peer, "torch:cuda"),
    "pytorch-cuda-graph": (torch_graph_peer, "torch:cuda"),
}
