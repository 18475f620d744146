"""The scikit-learn face: :class:`NNClassifier`, :class:`NNRegressor`, and ``save`` / ``load``.

- :mod:`~anynet.estimator.fitting`: what both share, a fit in phases (data, step, run, record);
- :mod:`~anynet.estimator.classifier`, :mod:`~anynet.estimator.regressor`: the estimators;
- :mod:`~anynet.estimator.network`: hyper-parameters to network, loss and optimizer;
- :mod:`~anynet.estimator.files`: a fitted estimator as one safetensors file.
"""

from anynet.estimator.classifier import NNClassifier
from anynet.estimator.files import load, save
from anynet.estimator.regressor import NNRegressor

__all__ = ["NNClassifier", "NNRegressor", "load", "save"]
