"""The generic optimizers' own behaviour, on every backend (their steps against torch.optim are
in test_torch_oracle.py)."""

from __future__ import annotations

import numpy as np
import pytest

from anynet import nn
from anynet.nn.optim import FLUSH_SUBNORMAL_EVERY


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_adam_flushes_subnormal_moments_periodically(backend, dtype):
    """A moment that decays under a zero gradient ends in the subnormal range, slow on x86, and
    stays there; Adam zeroes such moments every FLUSH_SUBNORMAL_EVERY steps. NaN survives."""
    tiny = float(np.finfo(dtype).tiny)
    m0 = np.array([1e3 * tiny, -1e3 * tiny, 0.5, np.nan])
    params = {"w": backend.asarray(np.ones(4), dtype=dtype)}
    zero = {"w": backend.asarray(np.zeros(4), dtype=dtype)}
    opt = nn.adam(1e-3, beta1=0.9, beta2=0.9)
    state = opt.init(params)
    state = (state[0], state[1]._replace(mu={"w": backend.asarray(m0, dtype=dtype)}), state[2])

    def subnormal(a):
        a = backend.to_numpy(a)
        return int(np.sum((a != 0) & (np.abs(a) < tiny)))

    counts = []
    for _ in range(2 * FLUSH_SUBNORMAL_EVERY):
        _, state = opt.update(zero, state, params)
        counts.append(subnormal(state[1].mu["w"]))
    # 1e3 * tiny decays below tiny after ~66 steps of 0.9: subnormal, then flushed at 128.
    assert max(counts) > 0, "the decay should have reached the subnormal range"
    assert counts[-1] == 0
    mu = backend.to_numpy(state[1].mu["w"])
    assert mu[0] == 0 and mu[1] == 0 and mu[2] > 0 and np.isnan(mu[3])
    assert subnormal(state[1].nu["w"]) == 0
