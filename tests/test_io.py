"""Model and checkpoint files: round trips on every backend, every kind of damage, atomicity."""

from __future__ import annotations

import json
import os
import pickle
import tempfile
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest
import safetensors.numpy
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import anynet
from anynet import io, nn
from anynet.errors import ModelFileError
from anynet.nn import optim

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


def raw_file(header: dict, data: bytes) -> bytes:
    """safetensors bytes with any header at all, valid or not."""
    text = json.dumps(header).encode()
    return len(text).to_bytes(8, "little") + text + data


def anynet_header(tensors: dict, metadata_json: str, data_views: dict) -> dict:
    """A header with anynet's metadata and a correct digest over the given tensors."""
    meta = {"format": "anynet", "format_version": "1", "anynet": metadata_json}
    digest_input = [(n, t["dtype"], t["shape"], data_views[n]) for n, t in tensors.items()]
    meta["sha256"] = io._digest(meta, digest_input)
    return {"__metadata__": meta, **tensors}


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


def test_arrays_round_trip_every_allowed_dtype(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {
        "f16": rng.normal(size=(2, 3)).astype(np.float16),
        "f32": rng.normal(size=(3,)).astype(np.float32),
        "f64": np.array(np.pi),  # 0-d
        "i32": np.arange(-3, 3, dtype=np.int32),
        "i64": np.array([2**62, -(2**62)], dtype=np.int64),
        "u8": np.arange(256, dtype=np.uint8),
        "u32": np.array([2**32 - 1], dtype=np.uint32),
        "bool": np.array([[True, False], [False, True]]),
        "empty": np.zeros((0, 4), dtype=np.float32),
        "strided": np.arange(20, dtype=np.float64).reshape(4, 5)[:, ::2],  # not contiguous
        "big_endian": np.arange(4, dtype=">f8"),
    }
    path = io.write_arrays(tmp_path / "a.safetensors", arrays, {"k": [1, "two", None]})
    loaded, meta = io.read_arrays(path)
    assert meta == {"k": [1, "two", None]}
    assert sorted(loaded) == sorted(arrays)
    for k, a in arrays.items():
        assert loaded[k].dtype == a.dtype.newbyteorder("="), k
        assert loaded[k].shape == a.shape, k
        np.testing.assert_array_equal(loaded[k], a, err_msg=k)
        assert loaded[k].flags.writeable
    # The file is ordinary safetensors: the reference reader agrees.
    reference = safetensors.numpy.load_file(path)
    for k, a in arrays.items():
        assert reference[k].shape == a.shape, k
        np.testing.assert_array_equal(reference[k], a, err_msg=k)


def test_write_arrays_takes_backend_arrays(backend, tmp_path):
    x = backend.asarray(np.arange(6.0).reshape(2, 3), dtype="float32")
    loaded, _ = io.read_arrays(io.write_arrays(tmp_path / "a", {"x": x}, {}))
    np.testing.assert_array_equal(loaded["x"], np.arange(6.0, dtype=np.float32).reshape(2, 3))


@pytest.mark.parametrize(
    ("arrays", "metadata", "match"),
    [
        ({"c": np.zeros(2, dtype=np.complex64)}, {}, "dtype complex64"),
        ({"o": np.array([object()])}, {}, "dtype object"),
        ({"__metadata__": np.zeros(1)}, {}, "not allowed"),
        ({"": np.zeros(1)}, {}, "not allowed"),
        ({}, {"x": float("nan")}, "not JSON"),
        ({}, {"x": object()}, "not JSON"),
    ],
)
def test_write_arrays_refuses_what_it_cannot_store(tmp_path, arrays, metadata, match):
    with pytest.raises(ValueError, match=match):
        io.write_arrays(tmp_path / "a", arrays, metadata)
    assert list(tmp_path.iterdir()) == []


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


def test_checkpoint_keeps_structure_and_numbers_exactly(tmp_path):
    be = anynet.get_backend("numpy")
    params = {"0.W": np.ones((2, 2), dtype=np.float32)}
    state = optim.chain(
        optim.add_decayed_weights(0.1),
        optim.trace(0.9),
        optim.scale_by_adam(),
        optim.scale_by_learning_rate(0.1),
    ).init(params)
    rng = be.generator(2**80 + 7)
    rng.uniform((3,))
    mt = np.random.MT19937(5).state  # a uint32 array inside the state
    history = {"loss": [float("inf"), float("nan"), 0.1 + 0.2], "acc": []}
    extra = {"mt": mt, "pair": (1, [2.5, "x"]), "big": 3**100}
    path = io.save_checkpoint(
        tmp_path / "c",
        params=params,
        opt_state=state,
        epoch=np.int64(4),
        step=40,
        rng_state=rng.get_state(),
        history=history,
        extra=extra,
    )
    ckpt = io.load_checkpoint(path, backend="numpy")
    assert ckpt.rng_state == rng.get_state()  # PCG64's 128-bit ints, exactly
    assert type(ckpt.opt_state) is tuple
    assert [type(s) for s in ckpt.opt_state] == [type(s) for s in state]
    assert ckpt.opt_state[2].count == 0
    assert ckpt.history["loss"][0] == float("inf") and np.isnan(ckpt.history["loss"][1])
    assert ckpt.history["loss"][2] == 0.1 + 0.2 and ckpt.history["acc"] == []
    assert ckpt.extra["pair"] == (1, [2.5, "x"]) and ckpt.extra["big"] == 3**100
    np.testing.assert_array_equal(ckpt.extra["mt"]["state"]["key"], mt["state"]["key"])
    assert ckpt.extra["mt"]["state"]["key"].dtype == np.uint32
    restored = np.random.MT19937()
    restored.state = ckpt.extra["mt"]
    assert restored.random_raw() == np.random.MT19937(5).random_raw()


def test_torch_generator_state_round_trips_through_a_file(tmp_path):
    pytest.importorskip("torch")
    be = anynet.get_backend("torch")
    rng = be.generator(1)
    path = io.save_checkpoint(
        tmp_path / "c", params={}, opt_state=(), epoch=0, step=0, rng_state=rng.get_state()
    )
    state = io.load_checkpoint(path, backend=be).rng_state
    assert state.dtype == np.uint8  # a host array: the backend's set_state takes it
    expected = rng.uniform((4,))
    rng.set_state(state)
    assert be.to_numpy(rng.uniform((4,))).tolist() == be.to_numpy(expected).tolist()


def test_every_optimizer_state_class_is_allowed():
    names = {n for n in optim.__all__ if n.endswith("State")}
    assert names == set(io.STATE_CLASSES)
    assert all(getattr(optim, n) is io.STATE_CLASSES[n] for n in names)


class ForeignState(NamedTuple):
    count: int


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"opt_state": (ForeignState(1),)}, "ForeignState"),
        ({"opt_state": {1: np.zeros(1)}}, "non-string key"),
        ({"opt_state": {1, 2}}, "set"),
        ({"epoch": -1}, "epoch"),
        ({"step": 1.5}, "step"),
        ({"extra": {"a/b": np.zeros(1), "a": {"b": np.ones(1)}}}, "same name"),
    ],
)
def test_save_checkpoint_refuses_what_a_file_cannot_hold(tmp_path, kwargs, match):
    args = {"params": {}, "opt_state": (), "epoch": 0, "step": 0, **kwargs}
    with pytest.raises(ValueError, match=match):
        io.save_checkpoint(tmp_path / "c", **args)


def checkpoint_file(path, opt_state_node, arrays=None, **overrides):
    meta = {
        "kind": "checkpoint",
        "epoch": 0,
        "step": 0,
        "params": {"$dict": {}},
        "opt_state": opt_state_node,
        "rng_state": None,
        "history": {"$dict": {}},
        "extra": None,
        **overrides,
    }
    return io.write_arrays(path, arrays or {}, meta)


@pytest.mark.parametrize(
    ("node", "arrays", "overrides", "match"),
    [
        ({"$state": ["os.system", {}]}, {}, {}, "not one of anynet's"),
        ({"$state": ["GradientTransformation", {}]}, {}, {}, "not one of anynet's"),
        ({"$state": ["AdamState", {"count": 0}]}, {}, {}, "wrong fields for AdamState"),
        ({"$state": ["AdamState", {"count": -1, "mu": None, "nu": None}]}, {}, {}, "count"),
        ({"$state": ["TraceState", {"trace": [1]}]}, {}, {}, r"TraceState.trace is \[1\]"),
        ({"$float": []}, {}, {}, "unknown value"),
        ({"$float": "NaN"}, {}, {}, "unknown value"),
        ({"$eval": "1+1"}, {}, {}, "unknown value"),
        ({"$tuple": [], "$dict": {}}, {}, {}, "unknown value"),
        ({"$array": "nope"}, {}, {}, "does not hold"),
        ({"$tuple": [{"$array": "a"}, {"$array": "a"}]}, {"a": np.zeros(1)}, {}, "twice"),
        ({"$tuple": []}, {"stray": np.zeros(1)}, {}, "does not account for"),
        ({"$tuple": []}, {}, {"epoch": -3}, "epoch"),
        ({"$tuple": []}, {}, {"step": True}, "step"),
        ({"$tuple": []}, {}, {"params": [1]}, "parameters are not"),
        ({"$tuple": []}, {}, {"history": [1]}, "history"),
        ({"$tuple": []}, {}, {"kind": "network"}, "not a checkpoint file"),
    ],
)
def test_load_checkpoint_refuses_bad_structures(tmp_path, node, arrays, overrides, match):
    path = checkpoint_file(tmp_path / "c", node, arrays, **overrides)
    with pytest.raises(ModelFileError, match=match):
        io.load_checkpoint(path, backend="numpy")


def test_deep_nesting_is_refused_not_a_recursion_error(tmp_path):
    node = None
    for _ in range(200):
        node = {"$tuple": [node]}
    path = checkpoint_file(tmp_path / "c", node)
    with pytest.raises(ModelFileError, match="nested"):
        io.load_checkpoint(path)
    deep: list = []
    for _ in range(200):
        deep = [deep]
    with pytest.raises(ValueError, match="nested"):
        io.save_checkpoint(tmp_path / "d", params={}, opt_state=(), epoch=0, step=0, extra=deep)


# --------------------------------------------------------------------------------------------
# Damaged, foreign and hostile files: always one ModelFileError naming the file and the problem


def check_refused(path, match, loader=io.load_network):
    with pytest.raises(ModelFileError, match=match) as info:
        loader(path)
    assert str(path) in str(info.value)
    return info.value


def test_missing_file_directory_and_empty_file(tmp_path):
    check_refused(tmp_path / "nope.safetensors", "no such file")
    check_refused(tmp_path, "is a directory")
    (tmp_path / "empty").write_bytes(b"")
    check_refused(tmp_path / "empty", "is empty")
    check_refused(tmp_path / "empty", "is empty", io.load_checkpoint)


def test_plain_text_and_short_files_are_not_safetensors(tmp_path):
    (tmp_path / "t").write_text("hello, this is not a model at all\n")
    check_refused(tmp_path / "t", "not a safetensors file")
    (tmp_path / "s").write_bytes(b"\x05\x00")
    check_refused(tmp_path / "s", "too short")
    (tmp_path / "z").write_bytes(raw_file({}, b"")[:8] + b"{")
    check_refused(tmp_path / "z", "truncated")


class Boom:
    """Loading this pickle would create a file: proof that nothing unpickles it."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_a_pickle_is_refused_without_being_loaded(tmp_path):
    marker = tmp_path / "pwned"
    (tmp_path / "model.pkl").write_bytes(pickle.dumps(Boom(str(marker))))
    err = check_refused(tmp_path / "model.pkl", "pickle")
    assert "arbitrary code" in str(err)
    check_refused(tmp_path / "model.pkl", "pickle", io.load_checkpoint)
    assert not marker.exists()


def test_other_known_formats_are_named(tmp_path):
    np.save(tmp_path / "a.npy", np.zeros(3))
    check_refused(tmp_path / "a.npy", "NumPy .npy")
    np.savez(tmp_path / "a.npz", x=np.zeros(3))
    check_refused(tmp_path / "a.npz", "zip")


def test_torch_save_file_is_refused(tmp_path):
    torch = pytest.importorskip("torch")
    torch.save({"W": torch.zeros(2)}, tmp_path / "m.pt")
    check_refused(tmp_path / "m.pt", "zip")


def test_safetensors_files_anynet_did_not_write(tmp_path):
    safetensors.numpy.save_file({"W": np.zeros(2)}, tmp_path / "a")
    check_refused(tmp_path / "a", "anynet did not write")
    safetensors.numpy.save_file({"W": np.zeros(2)}, tmp_path / "b", metadata={"format": "pt"})
    check_refused(tmp_path / "b", "format 'pt'")


def test_a_newer_format_version_asks_for_an_upgrade(tmp_path):
    meta = {"format": "anynet", "format_version": "2", "anynet": "{}", "sha256": "0" * 64}
    safetensors.numpy.save_file({}, tmp_path / "a", metadata=meta)
    err = check_refused(tmp_path / "a", "newer anynet")
    assert "upgrade" in str(err)
    meta["format_version"] = "one"
    safetensors.numpy.save_file({}, tmp_path / "b", metadata=meta)
    check_refused(tmp_path / "b", "invalid format version")


def test_missing_digest_is_refused(tmp_path):
    meta = {"format": "anynet", "format_version": "1", "anynet": "{}"}
    safetensors.numpy.save_file({}, tmp_path / "a", metadata=meta)
    check_refused(tmp_path / "a", "lacks the 'sha256'")


def test_flipped_payload_byte_is_caught(saved):
    path, _, _ = saved
    raw = bytearray(path.read_bytes())
    raw[-5] ^= 0x01
    path.write_bytes(bytes(raw))
    err = check_refused(path, "modified or corrupted after it was written")
    assert "save the model again" in str(err)


def test_edited_header_is_caught(saved):
    path, _, _ = saved
    raw = path.read_bytes()
    assert raw.count(b"0.25") == 1  # Dropout's p, inside the architecture
    path.write_bytes(raw.replace(b"0.25", b"0.75"))
    check_refused(path, "modified or corrupted")


def test_flipped_header_bytes_are_caught(saved):
    path, _, _ = saved
    good = path.read_bytes()
    size = int.from_bytes(good[:8], "little")
    for i in range(8, 8 + size, 5):
        raw = bytearray(good)
        raw[i] ^= 0x20  # flips letter case, turns padding spaces into NULs
        path.write_bytes(bytes(raw))
        check_refused(path, None)  # each names its own problem; all name the file


def test_truncation_at_any_point_is_caught(saved):
    path, _, _ = saved
    good = path.read_bytes()
    size = int.from_bytes(good[:8], "little")
    for cut in (1, 7, 8, 9, 8 + size // 2, 8 + size - 1, 8 + size, 8 + size + 3, len(good) - 1):
        path.write_bytes(good[:cut])
        err = check_refused(path, "truncated|too short")
        assert "save the model again" in str(err)


def test_appended_bytes_are_caught(saved):
    path, _, _ = saved
    path.write_bytes(path.read_bytes() + b"\x00junk")
    check_refused(path, "5 unexpected bytes after its last tensor")


def test_checkpoint_given_to_load_network(tmp_path):
    path = io.save_checkpoint(tmp_path / "c", params={}, opt_state=(), epoch=0, step=0)
    err = check_refused(path, "not a network file")
    assert "load_checkpoint" in str(err)
    saved = io.save_network(tmp_path / "n", nn.ReLU(), {})
    check_refused(saved, "not a checkpoint file", io.load_checkpoint)


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


def write_raw(tmp_path, header, data=b""):
    path = tmp_path / "raw.safetensors"
    path.write_bytes(raw_file(header, data))
    return path


def test_hand_made_headers_are_checked(tmp_path):
    one = {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}
    views = {"a": memoryview(b"\x00" * 4)}
    good = anynet_header({"a": one}, "{}", views)
    assert io.read_arrays(write_raw(tmp_path, good, b"\x00" * 4))[0]["a"].tolist() == [0.0]

    cases = [
        ({**good, "a": {**one, "dtype": "C64"}}, b"\x00" * 4, "dtype 'C64'"),
        ({**good, "a": {**one, "shape": [-1]}}, b"\x00" * 4, "invalid shape"),
        ({**good, "a": {**one, "shape": [True]}}, b"\x00" * 4, "invalid shape"),
        ({**good, "a": {**one, "data_offsets": [4, 0]}}, b"\x00" * 4, "invalid data offsets"),
        ({**good, "a": {**one, "data_offsets": [0, 8]}}, b"\x00" * 8, "needs 4 bytes"),
        ({**good, "a": {**one, "extra": 1}}, b"\x00" * 4, "corrupt safetensors header"),
        ({**good, "b": {**one, "data_offsets": [0, 4]}}, b"\x00" * 4, "corrupt tensor offsets"),
        ({**good, "b": {**one, "data_offsets": [8, 12]}}, b"\x00" * 12, "corrupt tensor offsets"),
        ({**good, "__metadata__": {"format": 1}}, b"\x00" * 4, "not a mapping of strings"),
        ({"__metadata__": {"format": "anynet"}}, b"", "lacks the 'format_version'|invalid format"),
    ]
    for header, data, match in cases:
        check_refused(write_raw(tmp_path, header, data), match, io.read_arrays)

    path = tmp_path / "x"
    text = b'{"a": 1, "a": 2}'
    path.write_bytes(len(text).to_bytes(8, "little") + text)
    check_refused(path, "duplicate key", io.read_arrays)
    text = b"[1, 2]  "
    path.write_bytes(len(text).to_bytes(8, "little") + text)
    check_refused(path, "not valid JSON|not start", io.read_arrays)
    text = b'{"a": NaN}'
    path.write_bytes(len(text).to_bytes(8, "little") + text)
    check_refused(path, "NaN", io.read_arrays)
    text = b'{"\xff": 1}'
    path.write_bytes(len(text).to_bytes(8, "little") + text)
    check_refused(path, "not valid JSON", io.read_arrays)


def test_invalid_metadata_json_with_a_valid_digest(tmp_path):
    for text, match in (("{not json", "not valid JSON"), ("[1]", "not a JSON object")):
        path = write_raw(tmp_path, anynet_header({}, text, {}))
        check_refused(path, match, io.read_arrays)


def test_booleans_must_be_zero_or_one(tmp_path):
    entry = {"dtype": "BOOL", "shape": [2], "data_offsets": [0, 2]}
    path = write_raw(tmp_path, anynet_header({"m": entry}, "{}", {"m": b"\x01\x02"}), b"\x01\x02")
    check_refused(path, "booleans other than 0 and 1", io.read_arrays)


# --------------------------------------------------------------------------------------------
# Atomic writes


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


@pytest.mark.parametrize(
    ("where", "error"),
    [("replace", OSError), ("fsync", OSError), ("fsync", KeyboardInterrupt)],
)
def test_a_crash_while_saving_leaves_the_old_file_intact(saved, monkeypatch, where, error):
    path, model, params = saved
    before = path.read_bytes()

    def crash(*args, **kwargs):
        raise error(28, "No space left on device") if error is OSError else error

    monkeypatch.setattr(os, where, crash)
    new = {k: v + 1 for k, v in params.items()}
    with pytest.raises(error) as info:
        io.save_network(path, model, new)
    if error is OSError:
        assert str(path) in str(info.value) and "No space left" in str(info.value)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert leftovers(path.parent) == []
    _, loaded, _ = io.load_network(path)
    assert_same_arrays(loaded, params)


def test_a_crash_mid_write_leaves_the_old_checkpoint_intact(tmp_path, monkeypatch):
    path = io.save_checkpoint(tmp_path / "c", params={}, opt_state=(), epoch=1, step=10)
    before = path.read_bytes()

    class HalfFile:
        """A file whose write dies halfway through, as in a kill -9 or a full disk."""

        def __init__(self, fd, mode):
            self.f = open(fd, mode)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def write(self, data):
            self.f.write(data[: len(data) // 2])
            raise OSError(5, "Input/output error")

    monkeypatch.setattr(io, "open", HalfFile, raising=False)
    with pytest.raises(OSError, match="Input/output error"):
        io.save_checkpoint(path, params={}, opt_state=(), epoch=2, step=20)
    monkeypatch.undo()
    assert path.read_bytes() == before and leftovers(tmp_path) == []
    assert io.load_checkpoint(path).epoch == 1


def test_saving_replaces_the_old_file_and_respects_the_umask(saved):
    path, model, params = saved
    new = {k: v * 2 for k, v in params.items()}
    io.save_network(path, model, new)
    assert_same_arrays(io.load_network(path)[1], new)
    assert leftovers(path.parent) == []
    umask = os.umask(0)
    os.umask(umask)
    if os.name == "posix":
        assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_saving_to_a_directory_or_a_missing_directory(tmp_path):
    with pytest.raises(ModelFileError, match="is a directory"):
        io.save_network(tmp_path, nn.ReLU(), {})
    with pytest.raises(FileNotFoundError, match=r"cannot write .*nowhere"):
        io.save_network(tmp_path / "nowhere" / "m", nn.ReLU(), {})


# --------------------------------------------------------------------------------------------
# Fuzz: any damage gives a ModelFileError, or (padding, a no-op edit) the very same content

_FUZZ_MODEL = make_model()
_FUZZ_PARAMS = _FUZZ_MODEL.init_params(
    rng=np.random.default_rng(0), backend=anynet.get_backend("numpy")
)
with tempfile.TemporaryDirectory() as _tmp:
    _FUZZ_GOOD = io.save_network(
        Path(_tmp) / "good", _FUZZ_MODEL, _FUZZ_PARAMS, metadata={"note": "x", "a": np.arange(3)}
    ).read_bytes()

_FUZZ_HEADER_END = 8 + int.from_bytes(_FUZZ_GOOD[:8], "little")
mutation = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, _FUZZ_HEADER_END - 1), st.integers(1, 255)),
    st.tuples(st.just("flip"), st.integers(0, len(_FUZZ_GOOD) - 1), st.integers(1, 255)),
    st.tuples(st.just("cut"), st.integers(0, len(_FUZZ_GOOD) - 1), st.just(0)),
    st.tuples(st.just("insert"), st.integers(0, len(_FUZZ_GOOD)), st.integers(0, 255)),
    st.tuples(st.just("delete"), st.integers(0, len(_FUZZ_GOOD) - 1), st.just(0)),
)


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutations=st.lists(mutation, min_size=1, max_size=4))
def test_fuzzed_files_raise_model_file_error_or_load_unchanged(fuzz_dir, mutations):
    raw = bytearray(_FUZZ_GOOD)
    for kind, i, value in mutations:
        if not raw:
            break
        i = min(i, len(raw)) if kind == "insert" else min(i, len(raw) - 1)
        if kind == "flip":
            raw[i] ^= value
        elif kind == "cut":
            del raw[i:]
        elif kind == "insert":
            raw.insert(i, value)
        else:
            del raw[i]
    path = fuzz_dir / "fuzzed.safetensors"
    path.write_bytes(bytes(raw))
    try:
        model, params, meta = io.load_network(path)
    except ModelFileError as exc:
        assert str(path) in str(exc)
        return
    assert model == _FUZZ_MODEL
    assert_same_arrays(params, _FUZZ_PARAMS)
    assert meta["note"] == "x" and meta["a"].tolist() == [0, 1, 2]
