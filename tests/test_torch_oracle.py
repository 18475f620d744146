"""PyTorch autograd as an outside oracle: anynet's hand-written gradients and optimizer steps
must agree with what PyTorch computes for the same model, loss and data."""

from __future__ import annotations

import numpy as np
import pytest

import anynet
from anynet import nn

torch = pytest.importorskip("torch")

rng = np.random.default_rng(99)


def torch_mlp_grads(params, X, y, activation, loss, l2):
    t = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    h = torch.tensor(X)
    h = activation(h @ t["0.W"] + t["0.b"])
    out = h @ t["2.W"] + t["2.b"]
    target = torch.tensor(y)
    if loss == "softmax_cross_entropy":
        value = torch.nn.functional.cross_entropy(out, target)
    elif loss == "sigmoid_binary_cross_entropy":
        onehot = torch.nn.functional.one_hot(target, out.shape[1]).to(out.dtype)
        value = (
            torch.nn.functional.binary_cross_entropy_with_logits(out, onehot, reduction="sum")
            / out.shape[0]
        )
    else:  # nll of log-softmax
        value = torch.nn.functional.nll_loss(torch.log_softmax(out, dim=1), target)
    value = value + 0.5 * l2 * (t["0.W"].pow(2).sum() + t["2.W"].pow(2).sum())
    value.backward()
    return value.item(), {k: v.grad.numpy() for k, v in t.items()}


# Every hidden-layer activation anynet registers, against PyTorch's function of the same name
# (scikit-learn's 'logistic' is PyTorch's sigmoid); defaults agree (LeakyReLU's slope 0.01).
ACTIVATIONS = {
    key: (cls, getattr(torch.nn.functional, "sigmoid" if key == "logistic" else key))
    for key, cls in nn.ACTIVATIONS.items()
}


@pytest.mark.parametrize("act", sorted(ACTIVATIONS))
@pytest.mark.parametrize("loss", ["softmax_cross_entropy", "sigmoid_binary_cross_entropy", "nll"])
def test_gradients_match_torch_autograd(backend, act, loss):
    ours, theirs = ACTIVATIONS[act]
    tail = [nn.LogSoftmax()] if loss == "nll" else []
    model = nn.Sequential(nn.Dense(8, 6), ours(), nn.Dense(6, 4), *tail)
    params = model.init_params(rng=np.random.default_rng(1), backend=backend, dtype="float64")
    host = {k: backend.to_numpy(v) + rng.normal(size=v.shape) * 0.1 for k, v in params.items()}
    X, y = rng.normal(size=(10, 8)), rng.integers(0, 4, size=10)

    value, grads = nn.loss_and_grads(
        model,
        {k: backend.asarray(v, dtype="float64") for k, v in host.items()},
        backend.asarray(X, dtype="float64"),
        backend.asarray(y, dtype="int64"),
        loss=loss,
        l2=0.3,
    )
    want_value, want = torch_mlp_grads(host, X, y, theirs, loss, 0.3)
    np.testing.assert_allclose(float(backend.to_numpy(value)), want_value, rtol=1e-12)
    for k in want:
        np.testing.assert_allclose(
            backend.to_numpy(grads[k]), want[k], rtol=1e-10, atol=1e-12, err_msg=k
        )


TORCH_OPTIMIZERS = {
    "sgd": (lambda: nn.sgd(0.1), lambda p: torch.optim.SGD(p, lr=0.1)),
    "sgd-momentum": (
        lambda: nn.sgd(0.1, momentum=0.9, weight_decay=0.01),
        lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=0.01),
    ),
    "sgd-nesterov": (
        lambda: nn.sgd(0.1, momentum=0.8, nesterov=True),
        lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.8, nesterov=True),
    ),
    "adam": (
        lambda: nn.adam(0.01, 0.8, 0.99, 1e-6),
        lambda p: torch.optim.Adam(p, lr=0.01, betas=(0.8, 0.99), eps=1e-6),
    ),
    "adam-l2": (
        lambda: nn.adam(0.01, weight_decay=0.1),
        lambda p: torch.optim.Adam(p, lr=0.01, weight_decay=0.1),
    ),
    "adamw": (
        lambda: nn.adamw(0.01, weight_decay=0.1),
        lambda p: torch.optim.AdamW(p, lr=0.01, weight_decay=0.1),
    ),
}


@pytest.mark.parametrize("name", sorted(TORCH_OPTIMIZERS))
def test_optimizer_steps_match_torch_optim(backend, name):
    ours, theirs = TORCH_OPTIMIZERS[name]
    p0 = {"a": rng.normal(size=(3, 4)), "b": rng.normal(size=(4,))}
    grads_seq = [{k: rng.normal(size=v.shape) for k, v in p0.items()} for _ in range(5)]

    opt = ours()
    params = {k: backend.asarray(v, dtype="float64") for k, v in p0.items()}
    state = opt.init(params)
    for g in grads_seq:
        updates, state = opt.update(
            {k: backend.asarray(v, dtype="float64") for k, v in g.items()}, state, params
        )
        params = nn.apply_updates(params, updates)

    tp = {k: torch.tensor(v, requires_grad=True) for k, v in p0.items()}
    topt = theirs(list(tp.values()))
    for g in grads_seq:
        for k, t in tp.items():
            t.grad = torch.tensor(g[k])
        topt.step()
    for k in p0:
        np.testing.assert_allclose(
            backend.to_numpy(params[k]), tp[k].detach().numpy(), rtol=1e-12, atol=1e-14, err_msg=k
        )


@pytest.mark.every_session
def test_the_oracle_is_on_torch_itself():
    """Keep the oracle honest: the torch backend is among those these tests run on, here."""
    assert "torch" in anynet.available_backends()
