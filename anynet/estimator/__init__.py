"""The scikit-learn face: :class:`NNClassifier`, and ``save`` / ``load`` for it.

- :mod:`~anynet.estimator.classifier`: the estimator (fit in phases: data, step, run, record);
- :mod:`~anynet.estimator.network`: hyper-parameters to network, loss and optimizer;
- :mod:`~anynet.estimator.files`: a fitted estimator as one safetensors file.
"""

from anynet.estimator.classifier import NNClassifier
from anynet.estimator.files import load, save

__all__ = ["NNClassifier", "load", "save"]
