"""Training: the loop, its callbacks and checkpoints, and the choice of a training step.

- :mod:`~anynet.training.loop`: :func:`train`; :mod:`~anynet.training.state`:
  :class:`TrainState` and its checks of losses and parameters;
- :mod:`~anynet.training.steps`: :func:`select_step`, the generic or a fused step;
- :mod:`~anynet.training.callbacks`: :class:`Callback`, :class:`ProgressBar`,
  :class:`EarlyStopping`;
- :mod:`~anynet.training.checkpoints`: :class:`Checkpointer`; :mod:`~anynet.training.resume`:
  :func:`read_checkpoint`.
"""

from anynet.training.callbacks import Callback, EarlyStopping, ProgressBar
from anynet.training.checkpoints import CHECKPOINT_NAME, LOCK_NAME, Checkpointer
from anynet.training.loop import Interrupted, train
from anynet.training.resume import read_checkpoint
from anynet.training.state import TrainState
from anynet.training.steps import select_step

__all__ = [
    "CHECKPOINT_NAME",
    "LOCK_NAME",
    "Callback",
    "Checkpointer",
    "EarlyStopping",
    "Interrupted",
    "ProgressBar",
    "TrainState",
    "read_checkpoint",
    "select_step",
    "train",
]
