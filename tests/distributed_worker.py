"""What each rank runs in the data-parallel tests (tests/test_distributed_mpi.py), started as
``mpiexec -n N python -m mpi4py tests/distributed_worker.py MODE OUT [options]``.

Modes:

- ``steps OUT``: trains the networks of :data:`CASES` data-parallel with :func:`train` on tiny
  data, each with and without ``deterministic``, and writes every rank's parameters and loss
  history to ``OUT/<case>-<det>-rank<r>.npz``;
- ``fit OUT CHECKPOINTS EPOCHS``: fits an ``NNClassifier(distributed=True)`` with checkpoints
  in CHECKPOINTS (resumed if one is there), and rank 0 writes its ``params_``, ``n_iter_`` and
  history to ``OUT``;
- ``kill OUT CHECKPOINTS STEP``: the same fit, but rank 1 kills itself (SIGKILL) at global
  step STEP; ``crash`` raises there instead;
- ``weighted OUT``: fits :func:`weighted_classifier` data-parallel with :func:`weights`, and
  rank 0 writes its ``params_`` to ``OUT``.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

import numpy as np

import anynet
from anynet import nn
from anynet.data import DataLoader
from anynet.distributed import DataParallelStep, communicator_for
from anynet.training import Callback, select_step, train

SEED = 3
#: Samples, features, classes and the global batch: 50 = 3 batches of 16 and one of 2, so on
#: 3 ranks the last batch leaves a rank with nothing, and 16 splits 6/5/5.
N, FEATURES, CLASSES, BATCH, EPOCHS = 50, 12, 3, 16, 3
L2 = 1e-3


def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    X = rng.random((N, FEATURES)).astype("float32")
    y = (np.arange(N) % CLASSES).astype("int64")
    return X, y


def network(case: str) -> nn.Sequential:
    """``fused``: an MLP with dropout (the fused CPU step); ``generic``: the same on the
    generic step; ``batchnorm``: an MLP with a batch norm (running statistics)."""
    if case == "batchnorm":
        return nn.Sequential(nn.Dense(FEATURES, 8), nn.BatchNorm(8), nn.ReLU(), nn.Dense(8, 3))
    return nn.Sequential(nn.Dense(FEATURES, 8), nn.ReLU(), nn.Dropout(0.25), nn.Dense(8, 3))


CASES = ("fused", "generic", "batchnorm")


def make_step(case: str, backend: anynet.Backend):
    model = network(case)
    params = model.init_params(rng=backend.host_generator(SEED), backend=backend)
    return select_step(model, nn.adam(0.01), params, backend=backend, fast=case != "generic")


def steps(out: Path) -> None:
    be = anynet.get_backend("numpy")
    X, y = data()
    for deterministic in (True, False):
        comm = communicator_for(be, deterministic=deterministic)
        for case in CASES:
            loader = DataLoader(
                X, y, BATCH, seed=SEED, normalize=None, backend=be, shard=comm.shard
            )
            step = DataParallelStep(make_step(case, be), comm)
            state = train(step, loader, epochs=EPOCHS, seed=SEED, l2=L2, l2_per_sample=True)
            name = f"{case}-{'det' if deterministic else 'sum'}-rank{comm.rank}.npz"
            arrays = {f"param:{k}": np.asarray(v) for k, v in step.params.items()}
            np.savez(out / name, loss=np.asarray(state.history["loss"]), path=step.name, **arrays)


class _Die(Callback):
    """Rank 1 ends itself at global step ``at``: killed outright, or by an exception."""

    def __init__(self, rank: int, at: int, how: str):
        self.rank, self.at, self.how = rank, at, how

    def on_step_end(self, state) -> None:
        if self.rank == 1 and state.step == self.at:
            if self.how == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            raise RuntimeError(f"rank 1 crashed on purpose at step {self.at}")


def fit(out: Path, checkpoints: str, epochs: int, die: tuple[str, int] | None = None) -> None:
    from mpi4py import MPI

    from anynet import NNClassifier

    X, y = data()
    clf = NNClassifier(
        (8,),
        batch_size=BATCH,
        max_iter=epochs,
        random_state=SEED,
        solver="sgd",
        learning_rate_init=0.1,
        checkpoint_dir=checkpoints,
        checkpoint_steps=1,
        resume="auto",
        n_iter_no_change=10**6,
        distributed=True,
    )
    callbacks = [] if die is None else [_Die(MPI.COMM_WORLD.Get_rank(), die[1], die[0])]
    clf.fit(X, y, callbacks=callbacks)
    if MPI.COMM_WORLD.Get_rank() == 0:
        np.savez(
            out,
            n_iter=clf.n_iter_,
            loss=np.asarray(clf.loss_curve_),
            **{f"param:{k}": v for k, v in clf.params_.items()},
        )


def weights() -> np.ndarray:
    """Sample weights with zeros, and a last batch (of 2) whose weights are 0 and 3."""
    return (np.arange(N) % 4).astype("float64")


def weighted_classifier(**kw):
    from anynet import NNClassifier

    return NNClassifier(
        (8,), batch_size=BATCH, max_iter=EPOCHS, random_state=SEED, alpha=0.01, **kw
    )


def weighted(out: Path) -> None:
    from mpi4py import MPI

    X, y = data()
    clf = weighted_classifier(distributed=True).fit(X, y, sample_weight=weights())
    if MPI.COMM_WORLD.Get_rank() == 0:
        np.savez(out, **{f"param:{k}": v for k, v in clf.params_.items()})


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["steps", "fit", "kill", "crash", "weighted"])
    parser.add_argument("out", type=Path)
    parser.add_argument("checkpoints", nargs="?")
    parser.add_argument("number", nargs="?", type=int)
    args = parser.parse_args(argv)
    if args.mode == "steps":
        steps(args.out)
    elif args.mode == "fit":
        fit(args.out, args.checkpoints, args.number)
    elif args.mode == "weighted":
        weighted(args.out)
    else:
        fit(args.out, args.checkpoints, 50, die=(args.mode, args.number))


if __name__ == "__main__":
    main(sys.argv[1:])
