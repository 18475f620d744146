"""Parameters as views into one flat buffer: the layers need not know."""

from __future__ import annotations

import numpy as np
import pytest

from anynet import nn


def test_flat_training_equals_dict_training(backend):
    model = nn.Sequential(nn.Dense(6, 5), nn.ReLU(), nn.Dense(5, 3))
    layout = nn.ParamLayout(model.param_shapes())
    params = model.init_params(rng=np.random.default_rng(0), backend=backend, dtype="float64")
    data = np.random.default_rng(1)
    X = backend.asarray(data.normal(size=(16, 6)), dtype="float64")
    y = backend.asarray(data.integers(0, 3, size=16), dtype="int64")

    opt = nn.adam(0.05)
    p_dict, s_dict = params, opt.init(params)
    flat = layout.flatten(params)
    s_flat = opt.init({"flat": flat})
    for _ in range(4):
        p_dict, s_dict, _ = nn.train_step(model, opt, p_dict, s_dict, X, y)
        # The flat route: layers read views, the optimizer sees one array.
        _, grads = nn.loss_and_grads(model, layout.unflatten(flat), X, y)
        updates, s_flat = opt.update({"flat": layout.flatten(grads)}, s_flat, {"flat": flat})
        flat = nn.apply_updates({"flat": flat}, updates)["flat"]
    got = layout.unflatten(flat)
    for k in p_dict:
        np.testing.assert_allclose(
            backend.to_numpy(got[k]), backend.to_numpy(p_dict[k]), rtol=1e-12, atol=1e-14
        )


def test_unflatten_gives_views_on_numpy():
    be_flat = np.arange(8.0)
    layout = nn.ParamLayout({"W": (3, 2), "b": (2,)})
    views = layout.unflatten(be_flat)
    be_flat[:] = 0.0
    assert not views["W"].any() and not views["b"].any()


def test_layout_errors_name_what_is_wrong():
    layout = nn.ParamLayout({"W": (3, 2), "b": (2,)})
    with pytest.raises(ValueError, match=r"shape \(8,\)"):
        layout.unflatten(np.zeros(7))
    with pytest.raises(ValueError, match="named"):
        layout.flatten({"W": np.zeros((3, 2))})
