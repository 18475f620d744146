"""Network and checkpoint files: round trips on every backend, a killed run resumed exactly,
architectures built only from anynet's own public layers, and files of earlier anynets."""

from __future__ import annotations

import base64
import zlib
from pathlib import Path

import numpy as np
import pytest

import anynet
from anynet import io, nn
from anynet.errors import ModelFileError
from anynet.io import codec

PRESENT = [b for b in ("numpy", "array_api_strict", "torch") if b in anynet.available_backends()]
SPECS = {"array_api_strict": "array_api_strict:device1"}


def make_model() -> nn.Sequential:
    return nn.Sequential(
        nn.Dense(5, 7),
        nn.LeakyReLU(0.1),
        nn.Dropout(0.25),
        nn.Dense(7, 3, init="he_normal"),
        nn.LogSoftmax(),
    )


def host(params, be) -> dict[str, np.ndarray]:
    return {k: be.to_numpy(v) for k, v in params.items()}


def assert_same_arrays(actual: dict, desired: dict) -> None:
    assert sorted(actual) == sorted(desired)
    for k in desired:
        assert actual[k].dtype == desired[k].dtype, k
        assert actual[k].shape == desired[k].shape, k
        np.testing.assert_array_equal(actual[k], desired[k], err_msg=k)


@pytest.fixture
def saved(tmp_path) -> tuple[Path, nn.Sequential, dict[str, np.ndarray]]:
    """A valid network file written from NumPy, its model and its host parameters."""
    be = anynet.get_backend("numpy")
    model = make_model()
    params = model.init_params(rng=be.host_generator(0), backend=be)
    path = io.save_network(tmp_path / "model.safetensors", model, params, metadata={"seed": 0})
    return path, model, params


def network_file(path, architecture, arrays, *, names=None, metadata=None):
    """Write a network file by hand, digest and all: what someone with write access could do."""
    meta = {
        "kind": "network",
        "architecture": architecture,
        "params": sorted(arrays) if names is None else names,
        "metadata": {"$dict": metadata or {}},
    }
    return io.write_arrays(path, arrays, meta)


def check_refused(path, match, loader=io.load_network):
    with pytest.raises(ModelFileError, match=match) as info:
        loader(path)
    assert str(path) in str(info.value)
    return info.value


# --------------------------------------------------------------------------------------------
# Round trips


def test_network_round_trip_on_each_backend(backend, tmp_path):
    model = make_model()
    params = model.init_params(rng=backend.host_generator(1), backend=backend, dtype="float64")
    user = {
        "classes": np.array([3, 5, 9]),
        "lr": 1e-3,
        "diverged_at": float("nan"),
        "sizes": (5, 7, 3),
        "nested": {"name": "fashion", "flags": [True, None, -0.0, 10**30]},
    }
    path = io.save_network(tmp_path / "m.safetensors", model, params, metadata=user)

    loaded_model, loaded, meta = io.load_network(path, backend=backend)
    assert loaded_model == model
    assert all(type(p) is type(params["0.W"]) for p in loaded.values())
    assert_same_arrays(host(loaded, backend), host(params, backend))
    np.testing.assert_array_equal(meta["classes"], user["classes"])
    assert meta["lr"] == 1e-3 and np.isnan(meta["diverged_at"])
    assert meta["sizes"] == (5, 7, 3) and isinstance(meta["sizes"], tuple)
    assert meta["nested"] == user["nested"]
    assert str(meta["nested"]["flags"][2]) == "-0.0"
    X = backend.asarray(np.random.default_rng(0).normal(size=(4, 5)), dtype="float64")
    np.testing.assert_array_equal(
        backend.to_numpy(loaded_model(loaded, X)), backend.to_numpy(model(params, X))
    )


@pytest.mark.parametrize("source", PRESENT)
def test_network_saved_on_one_backend_loads_on_another(source, backend, tmp_path):
    src = anynet.get_backend(SPECS.get(source, source))
    model = make_model()
    params = model.init_params(rng=src.host_generator(2), backend=src)
    path = io.save_network(tmp_path / "m.safetensors", model, params)
    _, loaded, _ = io.load_network(path, backend=backend)
    assert_same_arrays(host(loaded, backend), host(params, src))


def test_load_casts_to_the_dtype_asked_for(saved):
    path, _, params = saved
    _, loaded, meta = io.load_network(path, backend="numpy", dtype="float64")
    assert meta == {"seed": 0}
    assert all(p.dtype == np.float64 for p in loaded.values())
    np.testing.assert_array_equal(loaded["0.W"], params["0.W"].astype(np.float64))


def test_a_single_layer_is_a_network_too(tmp_path):
    be = anynet.get_backend("numpy")
    model = nn.Dense(3, 2, bias=False)
    params = model.init_params(rng=be.host_generator(0), backend=be)
    model2, params2, _ = io.load_network(io.save_network(tmp_path / "d", model, params))
    assert model2 == model and list(params2) == ["W"]


# --------------------------------------------------------------------------------------------
# Checkpoints and resuming


def run(model, opt, params, state, rng, batches, steps):
    for X, y in batches[:steps]:
        params, state, _ = nn.train_step(model, opt, params, state, X, y, rng=rng, l2=1e-3)
    return params, state


def batches_for(be, n=6):
    data = np.random.default_rng(5)
    return [
        (
            be.asarray(data.normal(size=(8, 5)), dtype="float32"),
            be.asarray(data.integers(0, 3, size=8), dtype="int64"),
        )
        for _ in range(n)
    ]


@pytest.mark.parametrize(
    "make_opt", [lambda: nn.adam(1e-2), lambda: nn.sgd(0.1, momentum=0.9, nesterov=True)]
)
def test_resumed_run_is_bit_identical_to_an_uninterrupted_one(backend, tmp_path, make_opt):
    model = nn.Sequential(nn.Dense(5, 7), nn.ReLU(), nn.Dropout(0.3), nn.Dense(7, 3))
    opt = make_opt()
    batches = batches_for(backend)
    params0 = model.init_params(rng=backend.host_generator(3), backend=backend)

    rng = backend.generator(11)
    straight, straight_state = run(model, opt, params0, opt.init(params0), rng, batches, 6)

    rng = backend.generator(11)
    params, state = run(model, opt, params0, opt.init(params0), rng, batches, 3)
    path = tmp_path / "ckpt.safetensors"
    io.save_checkpoint(
        path,
        params=params,
        opt_state=state,
        epoch=1,
        step=3,
        rng_state=rng.get_state(),
        history={"loss": [1.5, 1.25, np.float32(1.0)]},
    )
    del params, state, rng  # the run is killed here

    ckpt = io.load_checkpoint(path, backend=backend)
    assert (ckpt.epoch, ckpt.step) == (1, 3)
    assert ckpt.history == {"loss": [1.5, 1.25, 1.0]}
    assert ckpt.extra is None
    rng = backend.generator(999)
    rng.set_state(ckpt.rng_state)
    resumed, resumed_state = run(model, opt, ckpt.params, ckpt.opt_state, rng, batches[3:], 3)

    assert_same_arrays(host(resumed, backend), host(straight, backend))
    assert type(resumed_state) is type(straight_state)
    for a, b in zip(resumed_state, straight_state, strict=True):
        assert type(a) is type(b)
        for field_a, field_b in zip(a, b, strict=True):
            if isinstance(field_b, dict):
                assert_same_arrays(host(field_a, backend), host(field_b, backend))
            else:
                assert field_a == field_b


def test_checkpoint_given_to_load_network(tmp_path):
    path = io.save_checkpoint(tmp_path / "c", params={}, opt_state=(), epoch=0, step=0)
    err = check_refused(path, "not a network file")
    assert "load_checkpoint" in str(err)
    saved = io.save_network(tmp_path / "n", nn.ReLU(), {})
    check_refused(saved, "not a checkpoint file", io.load_checkpoint)


# --------------------------------------------------------------------------------------------
# Architectures name only anynet's own public layers; parameters must fit them


GOOD_DENSE = ["Dense", {"n_in": 2, "n_out": 1}]
W = {"0.W": np.zeros((2, 1), dtype=np.float32), "0.b": np.zeros(1, dtype=np.float32)}


@pytest.mark.parametrize(
    ("architecture", "match"),
    [
        ({"class": "os.system", "config": {}}, "'os.system', which is not one of anynet's"),
        (
            {"class": "Sequential", "config": {"layers": [GOOD_DENSE, ["builtins.eval", {}]]}},
            "'builtins.eval'",
        ),
        ({"class": "_Activation", "config": {}}, "'_Activation'"),
        ({"class": "Layer", "config": {}}, "'Layer'"),
        ({"class": "__class__", "config": {}}, "'__class__'"),
        ({"class": ["Dense"], "config": {}}, "not one of anynet's"),
        ({"class": "Sequential", "config": {"layers": [GOOD_DENSE], "x": 1}}, "not {'layers'"),
        ({"class": "Sequential", "config": {"layers": [["Dense"]]}}, "not \\[name, config\\]"),
        ({"class": "Dense", "config": ["n_in", 2]}, "not a JSON object"),
        (
            {"class": "Sequential", "config": {"layers": [["Dense", {"n_in": -2, "n_out": 1}]]}},
            "n_in",
        ),
        ({"class": "Sequential", "config": {"layers": [["Dense", {"oops": 1}]]}}, "invalid"),
        (
            {
                "class": "Sequential",
                "config": {"layers": [["Dense", {**GOOD_DENSE[1], "init": "os.system"}]]},
            },
            "init",
        ),
        ({"klass": "Dense", "config": {}}, "architecture entry"),
    ],
)
def test_architectures_naming_anything_but_anynet_layers_are_refused(tmp_path, architecture, match):
    path = network_file(tmp_path / "m", architecture, W)
    check_refused(path, match)


def test_user_defined_layers_are_neither_saved_nor_loaded(tmp_path):
    class HomeMadeLayer(nn.Layer):
        """A user's own layer: it works in code, but a file must not be able to name it."""

    assert "HomeMadeLayer" not in nn.LAYERS
    with pytest.raises(ValueError, match="HomeMadeLayer"):
        io.save_network(tmp_path / "m", nn.Sequential(HomeMadeLayer()), {})
    path = network_file(tmp_path / "m", {"class": "HomeMadeLayer", "config": {}}, {})
    check_refused(path, "HomeMadeLayer")
    assert list(tmp_path.iterdir()) == [path]


class UserLayer(nn.Layer):
    """A user's own layer, defined at the top of a module as users do."""


def test_the_allow_list_is_exactly_anynets_public_layers(tmp_path):
    public = {
        name
        for name in nn.__all__
        if isinstance(getattr(nn, name), type) and issubclass(getattr(nn, name), nn.Layer)
    } - {"Layer"}
    assert set(nn.LAYERS) == public
    assert all(nn.LAYERS[name] is getattr(nn, name) for name in public)
    for cls in (nn.Layer, nn.layers._Activation, UserLayer):
        assert cls.__name__ not in nn.LAYERS
        refusal = f"'{cls.__name__}', which is not one of anynet's layers"
        with pytest.raises(ValueError, match=refusal):
            io.save_network(tmp_path / "unsaved", cls(), {})
        path = network_file(tmp_path / cls.__name__, {"class": cls.__name__, "config": {}}, {})
        check_refused(path, refusal)
        nested = {"class": "Sequential", "config": {"layers": [[cls.__name__, {}]]}}
        check_refused(network_file(tmp_path / "nested", nested, {}), refusal)
        # A residual block holds layers too: they are checked all the way down.
        block = {"class": "Residual", "config": {"layers": [["Residual", nested["config"]]]}}
        check_refused(network_file(tmp_path / "block", block, {}), refusal)
    assert not (tmp_path / "unsaved").exists()


SEQ = {"class": "Sequential", "config": {"layers": [GOOD_DENSE]}}


@pytest.mark.parametrize(
    ("arrays", "names", "match"),
    [
        (
            {"0.W": W["0.W"]},
            None,
            r"parameters \['0.b'\], which the architecture needs, are missing",
        ),
        ({**W, "1.W": W["0.W"]}, None, r"holds parameters \['1.W'\], which the architecture"),
        ({**W, "0.W": np.zeros((1, 2), np.float32)}, None, r"'0.W' has shape \(1, 2\) in the file"),
        ({**W, "0.b": np.zeros(1, np.int64)}, None, "not a floating dtype"),
        ({"0.W": W["0.W"]}, ["0.W", "0.b"], "no such tensor"),
        (W, ["0.W"], r"does not account for: \['0.b'\]"),
        (W, "0.W", "not a list of names"),
    ],
)
def test_parameters_that_do_not_fit_the_architecture(tmp_path, arrays, names, match):
    path = network_file(tmp_path / "m", SEQ, arrays, names=names)
    check_refused(path, match)


def test_save_network_refuses_parameters_that_do_not_fit(tmp_path):
    model = nn.Dense(2, 1)
    with pytest.raises(ValueError, match="missing"):
        io.save_network(tmp_path / "m", model, {"W": W["0.W"]})
    with pytest.raises(ValueError, match="not one of the model's"):
        io.save_network(tmp_path / "m", model, {**W})
    with pytest.raises(ValueError, match="shape"):
        io.save_network(tmp_path / "m", model, {"W": np.zeros((1, 2)), "b": np.zeros(1)})
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------------------------
# Parameters are finite on save and on load


def with_bad_entries(params: dict, name: str, count: int) -> dict:
    bad = params[name].copy()
    bad.reshape(-1)[:count] = [np.nan, np.inf, -np.inf][:count]
    return {**params, name: bad}


def test_save_network_refuses_non_finite_parameters(saved):
    path, model, params = saved
    before = path.read_bytes()
    with pytest.raises(
        ValueError, match=r"parameter '3.W' has 3 NaN or infinite entries \(of 21\)"
    ):
        io.save_network(path, model, with_bad_entries(params, "3.W", 3))
    assert path.read_bytes() == before  # the good file is not replaced by a broken one


def test_load_network_refuses_non_finite_parameters(tmp_path):
    path = network_file(tmp_path / "m", SEQ, with_bad_entries(W, "0.W", 2))
    check_refused(path, r"parameter '0.W' has 2 NaN or infinite entries \(of 2\)")


def checkpoint_by_hand(path, params, opt_state):
    """A checkpoint written as save_checkpoint would, without its checks: a crafted file."""
    arrays: dict = {}
    encode = codec.Encoder(arrays).encode
    meta = {
        "kind": "checkpoint",
        "epoch": 1,
        "step": 1,
        "params": encode(params, "params"),
        "opt_state": encode(opt_state, "opt"),
        "rng_state": None,
        "history": encode({}, "history"),
        "extra": None,
    }
    return io.write_arrays(path, arrays, meta)


def test_checkpoints_refuse_non_finite_parameters(tmp_path):
    bad = with_bad_entries(W, "0.b", 1)
    with pytest.raises(ValueError, match=r"parameter '0.b' has 1 NaN or infinite entries"):
        io.save_checkpoint(tmp_path / "c", params=bad, opt_state=(), epoch=1, step=1)
    assert list(tmp_path.iterdir()) == []
    path = checkpoint_by_hand(tmp_path / "c", bad, ())
    check_refused(path, r"parameter '0.b' has 1 NaN or infinite entries", io.load_checkpoint)


# --------------------------------------------------------------------------------------------
# A checkpoint's optimizer state fits the parameters it belongs to

ADAM = nn.adam(0.01).init(W)


def replace_moment(state, field, value):
    """``state`` (adam's chain) with its states' ``field`` replaced by ``value``."""
    return tuple(s._replace(**{field: value}) if field in s._fields else s for s in state)


@pytest.mark.parametrize(
    ("opt_state", "match"),
    [
        (
            replace_moment(ADAM, "mu", {**ADAM[1].mu, "0.W": np.zeros(1, np.float32)}),
            r"AdamState.mu\['0.W'\] has shape \(1,\); its parameter's is \(2, 1\)",
        ),
        (
            replace_moment(ADAM, "nu", {"0.W": ADAM[1].nu["0.W"]}),
            r"AdamState.nu holds \['0.W'\]; its parameters are \['0.W', '0.b'\]",
        ),
        (
            replace_moment(ADAM, "nu", {**ADAM[1].nu, "1.W": ADAM[1].nu["0.W"]}),
            r"AdamState.nu holds \['0.W', '0.b', '1.W'\]",
        ),
        (
            replace_moment(ADAM, "mu", {**ADAM[1].mu, "0.b": np.zeros(1, np.int64)}),
            r"AdamState.mu\['0.b'\] has dtype int64; its parameter's is float32",
        ),
        (
            replace_moment(ADAM, "mu", with_bad_entries(ADAM[1].mu, "0.W", 1)),
            r"AdamState.mu\['0.W'\] has 1 NaN or infinite entries",
        ),
        (
            replace_moment(ADAM, "mu", {}),
            r"AdamState.mu holds \[\]",
        ),
        (
            replace_moment(ADAM, "mu", {**ADAM[1].mu, "0.W": ADAM[1].mu["0.W"].astype("f2")}),
            r"AdamState.mu\['0.W'\] has dtype float16; its parameter's is float32",
        ),
        (
            replace_moment(ADAM, "nu", {**ADAM[1].nu, "0.b": ADAM[1].nu["0.b"].astype("f8")}),
            r"AdamState.nu\['0.b'\] has dtype float64; its parameter's is float32",
        ),
        (
            replace_moment(ADAM, "nu", {**ADAM[1].nu, "0.W": np.full((2, 1), -1, np.float32)}),
            r"AdamState.nu\['0.W'\] has 2 negative entries; Adam's second moments are never",
        ),
        (
            replace_moment(ADAM, "count", -5),
            r"AdamState.count is -5; expected an integer from 0 to 2\*\*52",
        ),
        (
            replace_moment(ADAM, "count", 1.5),
            r"AdamState.count is 1.5; expected an integer",
        ),
        (
            replace_moment(ADAM, "count", "x"),
            r"AdamState.count is 'x'; expected an integer",
        ),
        (
            replace_moment(ADAM, "count", 10**30),
            r"AdamState.count is 10{30}; expected an integer from 0 to 2\*\*52",
        ),
        (
            replace_moment(ADAM, "count", True),
            r"AdamState.count is True; expected an integer",
        ),
        (
            (*ADAM[:2], nn.optim.LearningRateState(count=-1)),
            r"LearningRateState.count is -1; expected an integer",
        ),
    ],
    ids=[
        "wrong shape",
        "missing key",
        "extra key",
        "integer",
        "non-finite",
        "empty",
        "float16",
        "float64",
        "negative nu",
        "negative count",
        "float count",
        "string count",
        "huge count",
        "bool count",
        "negative lr count",
    ],
)
def test_optimizer_state_that_does_not_fit_its_parameters(tmp_path, opt_state, match):
    # Refused when saved, and when a crafted file holds it: never broadcast, never a KeyError.
    with pytest.raises(ValueError, match=match):
        io.save_checkpoint(tmp_path / "c", params=W, opt_state=opt_state, epoch=1, step=1)
    path = checkpoint_by_hand(tmp_path / "c", W, opt_state)
    check_refused(path, match, io.load_checkpoint)


def test_optimizer_state_must_be_anynets_states(tmp_path):
    for opt_state in ([1, 2], {"mu": W}, 3, None, (ADAM, "x")):
        path = checkpoint_by_hand(tmp_path / "c", W, opt_state)
        check_refused(path, "not one of anynet's optimizer states", io.load_checkpoint)


def test_every_optimizer_state_that_fits_loads(tmp_path):
    # SGD without momentum keeps no trace ({}), with it one per parameter; Adam two.
    for opt in (nn.sgd(0.1), nn.sgd(0.1, momentum=0.9), nn.adam(0.1), nn.adamw(0.1)):
        state = opt.init(W)
        path = io.save_checkpoint(tmp_path / "c", params=W, opt_state=state, epoch=1, step=1)
        loaded = io.load_checkpoint(path).opt_state
        assert [type(s) for s in loaded] == [type(s) for s in state]


# --------------------------------------------------------------------------------------------
# Files an earlier anynet wrote go on loading

# Written by anynet 0.1.0 (file format version 1) with anynet/io.py, before it became a package,
# then zlib-compressed and base64-encoded:
#   params = {"0.W": [[0.5], [-1.25]], "0.b": [0.125]} (float32)
#   save_network(path, Sequential(Dense(2, 1), Sigmoid()), params,
#                metadata={"classes": np.array([0, 1]), "nan": nan, "t": (1, "a")})
#   save_checkpoint(path, params=params, opt_state=adam(0.01).init(params), epoch=2, step=7,
#                   rng_state=get_backend("numpy").generator(3).get_state(),
#                   history={"loss": [0.5, inf]}, extra={"note": "x"})
V1_NETWORK = (
    "eNp1Us2OmzAQpn2SlbVHtMUESMihvVSVet5DD4DQAOOstcROjWmVRnmXvklfpY/SsQ3bSNvOBWbm+7758fx+G3m7sLY9"
    "ooUBLLQt21+Y0OYIlu0ZqLNCy2I2PUGaFxTpspJvOC+2kPc55kkCIuF806Hoe5ENxbbcYclxyEQOaYFJmW123a4cMC/S"
    "rSh60lpE9+xSMzD9k7TY29lgzfZ3FOpHmCb3X7NH/DqjshLGmsXk91oJeVhwI5zReGBV1ewjqgkdijKdBB+3ZkZHc34r"
    "lbRB9QcaPQXBv8HDqI227aykGz5kFZFcNg2Onj2WX5v4jio+ysNRy8HXvDbN9epQz1INQZBG/K7Nc1Ba17u0fj/I3t6O"
    "i9OaAWPgHBRW0rsXiC+hQK1gMWpY+vdRn1+F7+18Gv1SK+7iVJya9JATGDiG1dUsefgSmkweOgehFwrv336j/Uqt6KU4"
    "Sb/qx13KYM8nJMDnIgtX4rwqbWLmr0kLMaElZJXEvGhIhKrd8j5t0ltezF8zeRGnWaB2/6f+g5hmcbqjkaPF3kQv9iGK"
    "fv6i7/s/gXDobQ=="
)

V1_CHECKPOINT = (
    "eNqdVMGO0zAQ7YX/WFkco9YeO07cAwgh4MIBwYFDW0VO4rTRNk6UuGirqnc+gz/h1xjHy3aLurDFh8Qz8/zeeDKT7y8m"
    "4zqQLGuM06V2OsvI/ECqtm+0y76ZfqhbS+aEkYgMGw2xREMpnsRQqEKynDPJGeRFYVip8rzUVKqYlQwfRcpFksY84RVn"
    "hlMmtFG6EgK5tN1b45DrsCSma4vNksxvILpB68712lsYeVnWhbvf29YZv12SuyU5Hj10Uw+u7fcXwNt2GPx2QadxNAar"
    "batdOF/bChlWgeO2tmVwFxtT3HZtbRHmI23nssHpoOop3K7bjsbCWw+hxZK8azq3/xIcKIfcQfQx5k2pmxME5dqdHROi"
    "XqzZXbgFnX797dV9r/chT8xrxmbNbjaGx0vQaf53YO5LNkLttUL2uUL2JHSxAB+N7m1t15/RdbkQeGw1ynS6183w7EQD"
    "/J9pPsBO1ejt+vwbP9LKa5etjTW9xiYLDJ/efpAidMdGD9kOe4XDwzd8iqi2xdjdAJRyiuOSsDQRIJmAhKtYKnygO6FK"
    "ikSdMXHgCUiEJkwBlXGqJIVY8DjlkIgY/QAxU+EyPh2zNn2o5TEQmc6byRFnLgw1ztz98B2js17yc1+6fWcQ8Z5DGHhv"
    "LSBiq4iMf4e2qgbjBnTSKF2dM+RPM1w4n0YMTgT2f1JgEAH9g+O6JIBGIDzDqYWuzAFExOGM4boMOERc4r/oBtfk6fV6"
    "MvnxE9+vfgG2pqmD"
)


def v1_file(tmp_path: Path, encoded: str) -> Path:
    path = tmp_path / "v1.safetensors"
    path.write_bytes(zlib.decompress(base64.b64decode(encoded)))
    return path


V1_PARAMS = {
    "0.W": np.array([[0.5], [-1.25]], dtype=np.float32),
    "0.b": np.array([0.125], dtype=np.float32),
}


def test_a_version_1_network_file_loads_unchanged(tmp_path):
    path = v1_file(tmp_path, V1_NETWORK)
    model, params, meta = io.load_network(path)
    assert model == nn.Sequential(nn.Dense(2, 1), nn.Sigmoid())
    assert_same_arrays(params, V1_PARAMS)
    assert sorted(meta) == ["classes", "nan", "t"]
    assert meta["classes"].tolist() == [0, 1] and meta["classes"].dtype == np.int64
    assert np.isnan(meta["nan"]) and meta["t"] == (1, "a")
    # Today's writer stores the same content (the header's key order is safetensors' own).
    again = io.save_network(tmp_path / "again", model, params, metadata=meta)
    (old_arrays, old_meta), (new_arrays, new_meta) = io.read_arrays(path), io.read_arrays(again)
    assert_same_arrays(new_arrays, old_arrays)
    assert new_meta == old_meta


def test_a_version_1_checkpoint_loads_unchanged(tmp_path):
    path = v1_file(tmp_path, V1_CHECKPOINT)
    ckpt = io.load_checkpoint(path)
    assert (ckpt.epoch, ckpt.step) == (2, 7)
    assert_same_arrays(ckpt.params, V1_PARAMS)
    expected_state = nn.adam(0.01).init(V1_PARAMS)
    assert [type(s) for s in ckpt.opt_state] == [type(s) for s in expected_state]
    assert ckpt.opt_state[1].count == 0
    assert_same_arrays(ckpt.opt_state[1].mu, expected_state[1].mu)
    assert_same_arrays(ckpt.opt_state[1].nu, expected_state[1].nu)
    assert ckpt.rng_state == anynet.get_backend("numpy").generator(3).get_state()
    assert ckpt.history == {"loss": [0.5, float("inf")]} and ckpt.extra == {"note": "x"}
    again = io.save_checkpoint(tmp_path / "again", **ckpt._asdict())
    (old_arrays, old_meta), (new_arrays, new_meta) = io.read_arrays(path), io.read_arrays(again)
    assert_same_arrays(new_arrays, old_arrays)
    assert new_meta == old_meta
