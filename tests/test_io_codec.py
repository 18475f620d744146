"""Nested values in files: optimizer state, RNG state, history and extras come back with their
exact structure and numbers; a value a file cannot hold, or a structure anynet would not have
written, is refused."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import anynet
from anynet import io
from anynet.errors import ModelFileError
from anynet.nn import optim


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


@pytest.mark.needs_backend("torch")
def test_torch_generator_state_round_trips_through_a_file(tmp_path):
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
# Any value of the kinds a file holds comes back as it went in


def same(actual, expected) -> bool:
    """Equal in type, structure and value: tuples stay tuples, NaN is NaN, -0.0 keeps its sign."""
    if isinstance(expected, np.ndarray):
        return (
            isinstance(actual, np.ndarray)
            and actual.dtype == expected.dtype
            and np.array_equal(actual, expected)
        )
    if type(actual) is not type(expected):
        return False
    if isinstance(expected, float):
        return str(actual) == str(expected)
    if isinstance(expected, list | tuple):
        return len(actual) == len(expected) and all(map(same, actual, expected))
    if isinstance(expected, dict):
        # Not the order: the metadata is written with sorted keys, one canonical form.
        return set(actual) == set(expected) and all(same(actual[k], expected[k]) for k in actual)
    return actual == expected


# A key may look like a tag; it may not hold "/", which joins the names of the tensors.
keys = st.sampled_from(["$array", "$dict", "$float", "$tuple", "$state"]) | st.text(
    st.characters(blacklist_categories=["Cs"], blacklist_characters="/"), max_size=4
)
leaves = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=4)
    | st.builds(np.arange, st.integers(0, 3))
)
values = st.recursive(
    leaves,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.lists(inner, max_size=3).map(tuple)
        | st.dictionaries(keys, inner, max_size=3)
    ),
    max_leaves=12,
)


@pytest.fixture(scope="module")
def value_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("values")


@settings(max_examples=60, deadline=None)
@given(extra=values)
def test_any_value_a_file_can_hold_round_trips(value_dir, extra):
    path = io.save_checkpoint(
        value_dir / "c", params={}, opt_state=(), epoch=0, step=0, extra=extra
    )
    assert same(io.load_checkpoint(path).extra, extra)


def test_the_round_trip_check_can_fail():
    assert not same((1, 2), [1, 2])
    assert not same(0.0, -0.0)
    assert not same({"a": np.zeros(1)}, {"a": np.zeros(1, dtype=np.float32)})
    assert same({"x": [float("nan"), (None, "s")]}, {"x": [float("nan"), (None, "s")]})
