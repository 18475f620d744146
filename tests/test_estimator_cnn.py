"""NNClassifier beyond the MLP: the default CNN and networks of the user's own, on images that
keep their shape; model files, clones, augmentation and exact resume with batch norm."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import load_digits

import anynet
from anynet import nn
from anynet.data import RandomCropFlip
from anynet.errors import ArgumentError, DataError, ModelFileError
from anynet.estimator import NNClassifier
from anynet.training import Callback


@pytest.fixture(scope="module")
def digits():
    """scikit-learn's 8x8 digits (shipped with it), as (n, 8, 8) images: train and test."""
    X, y = load_digits(return_X_y=True)
    X = (X * (255 / 16)).astype(np.uint8).reshape(-1, 8, 8)
    return X[:1200], y[:1200], X[1200:], y[1200:]


def cnn(**kwargs):
    settings = {"network": "cnn", "max_iter": 4, "batch_size": 32, "random_state": 0}
    return NNClassifier(**(settings | {"standardize": "unit"} | kwargs))


def test_the_default_cnn_learns_digits_from_images(digits):
    X, y, X_test, y_test = digits
    clf = cnn().fit(X, y)
    assert clf.image_shape_ == (1, 8, 8)
    assert clf.score(X_test, y_test) > 0.9
    model = clf._network()[0]
    assert [type(layer).__name__ for layer in model.layers[:4]] == [
        "Conv2D",
        "BatchNorm",
        "ReLU",
        "MaxPool2D",
    ]
    assert clf.n_layers_ == 6  # input, three convolutions, the hidden and the output Dense
    # the running statistics were trained, and are part of the fitted model
    assert not np.allclose(clf.params_["1.mean"], 0.0)


def test_rows_of_pixels_take_their_shape_from_image_shape(digits):
    X, y, X_test, _ = digits
    by_rows = cnn(image_shape=(1, 8, 8), max_iter=1).fit(X.reshape(len(X), -1), y)
    by_images = cnn(max_iter=1).fit(X, y)
    np.testing.assert_array_equal(
        by_rows.predict_proba(X_test.reshape(len(X_test), -1)), by_images.predict_proba(X_test)
    )
    # images given as (n, 1, 8, 8) are the same images
    np.testing.assert_array_equal(
        by_images.predict_proba(X_test[:, None]), by_images.predict_proba(X_test)
    )


@pytest.mark.parametrize(
    ("kwargs", "X_shape", "error", "match"),
    [
        (
            {},
            (40, 64),
            DataError,
            r"network='cnn' trains on images, and X has flat rows of 64 features: pass X as "
            r"\(n, height, width\)",
        ),
        (
            {"image_shape": (1, 4, 4)},
            (40, 64),
            ArgumentError,
            r"image_shape must be a shape of 64 values, the features of X; got \(1, 4, 4\)",
        ),
        ({"image_shape": (8, 8)}, (40, 64), ArgumentError, r"image_shape must be \(channels"),
        ({}, (40, 2, 2, 4, 4), DataError, r"X has samples of shape \(2, 2, 4, 4\); images are"),
        ({"image_shape": (1, 4, 4)}, (40, 16), ValueError, "needs images of 8x8 or more"),
        (
            {"network": None, "image_shape": (1, 8, 8)},
            (40, 64),
            ArgumentError,
            r"image_shape must be None for the multi-layer perceptron .* Pass network='cnn'",
        ),
        (
            {"network": None, "augment": RandomCropFlip()},
            (40, 64),
            ArgumentError,
            "augment must be None for the multi-layer perceptron",
        ),
        ({"augment": "flip"}, (40, 8, 8), ArgumentError, "augment must be None or an anynet"),
        ({"network": "resnet"}, (40, 8, 8), ArgumentError, r"network must be one of"),
    ],
)
def test_a_network_that_cannot_take_the_data_is_refused_clearly(kwargs, X_shape, error, match):
    X = np.zeros(X_shape, dtype=np.uint8)
    y = np.arange(X_shape[0]) % 2
    with pytest.raises(error, match=match):
        cnn(**kwargs).fit(X, y)


def test_images_of_another_shape_are_refused_at_predict(digits):
    X, y, _, _ = digits
    clf = cnn(max_iter=1).fit(X, y)
    with pytest.raises(DataError, match=r"X has images of shape \(4, 16\); this model was fitted"):
        clf.predict(X.reshape(len(X), 4, 16))


def test_a_cnn_saves_loads_and_clones(digits, tmp_path):
    X, y, X_test, _ = digits
    clf = cnn(max_iter=1).fit(X, y)
    path = anynet.save(clf, tmp_path / "cnn.anynet")
    loaded = anynet.load(path)
    assert loaded.image_shape_ == (1, 8, 8) and loaded.network == "cnn"
    np.testing.assert_array_equal(loaded.predict_proba(X_test), clf.predict_proba(X_test))
    twin = clone(clf)
    assert twin.get_params() == clf.get_params() and not hasattr(twin, "params_")
    np.testing.assert_array_equal(twin.fit(X, y).params_["0.W"], clf.params_["0.W"])


@pytest.mark.parametrize("output", ["softmax", "log_softmax"])
def test_a_network_of_ones_own_trains_saves_and_loads(digits, tmp_path, output):
    X, y, X_test, y_test = digits
    own = nn.Sequential(
        nn.Conv2D(1, 8, 3, padding="same"),
        nn.BatchNorm(8),
        nn.ReLU(),
        nn.MaxPool2D(2),
        nn.Flatten(),
        nn.Dense(8 * 4 * 4, 10),
    )
    clf = cnn(network=own, output=output, max_iter=3, learning_rate_init=0.01).fit(X, y)
    assert clf.score(X_test, y_test) > 0.8
    loaded = anynet.load(anynet.save(clf, tmp_path / "own.anynet"))
    assert loaded.network == own
    np.testing.assert_array_equal(loaded.predict_proba(X_test), clf.predict_proba(X_test))
    # the same network on flat rows: a Dense first layer and no image shape
    flat = NNClassifier(network=nn.Sequential(nn.Dense(64, 10)), max_iter=2, random_state=0)
    assert flat.fit(X.reshape(len(X), -1) / 16.0, y).image_shape_ is None


def test_augmentation_is_part_of_the_run_and_repeatable(digits):
    X, y, _, _ = digits
    plain = cnn(max_iter=1).fit(X, y)
    augmented = cnn(max_iter=1, augment=RandomCropFlip(padding=1, flip=False)).fit(X, y)
    again = cnn(max_iter=1, augment=RandomCropFlip(padding=1, flip=False)).fit(X, y)
    assert not np.array_equal(plain.params_["0.W"], augmented.params_["0.W"])
    np.testing.assert_array_equal(again.params_["0.W"], augmented.params_["0.W"])


def test_a_resumed_cnn_run_ends_bit_identical(digits, tmp_path):
    """Checkpoints every few steps carry the batch norm's statistics with the weights: a run
    stopped and resumed ends exactly where an uninterrupted one does, augmentation included."""
    X, y, _, _ = digits
    X, y = X[:256], y[:256]
    settings = {"max_iter": 2, "augment": RandomCropFlip(padding=1), "checkpoint_steps": 3}
    whole = cnn(**settings).fit(X, y)

    class Stop(Exception):
        pass

    class StopAt(Callback):
        def on_step_end(self, state):
            if state.step == 11:
                raise Stop

    folder = tmp_path / "ckpt"
    with pytest.raises(Stop):
        cnn(**settings, checkpoint_dir=folder).fit(X, y, callbacks=[StopAt()])
    resumed = cnn(**settings, checkpoint_dir=folder, resume=True).fit(X, y)
    for name, value in whole.params_.items():
        np.testing.assert_array_equal(resumed.params_[name], value, err_msg=name)


@pytest.mark.parametrize(
    ("image_shape", "match"),
    [
        ([1, 4, 16], "its network cannot be built .* needs images of 8x8 or more"),
        ([1, 8], r"its image_shape \[1, 8\] is not 3 integers >= 1 of 64 values"),
        ([2, 8, 8], r"its image_shape \[2, 8, 8\] is not 3 integers >= 1 of 64 values"),
        (None, "its image_shape None does not go with its network 'cnn'"),
    ],
)
def test_a_model_file_whose_image_shape_was_edited_is_refused(digits, tmp_path, image_shape, match):
    X, y, _, _ = digits
    path = anynet.save(cnn(max_iter=1).fit(X, y), tmp_path / "edited.anynet")
    arrays, meta = anynet.io.read_arrays(path)
    meta["metadata"]["$dict"]["image_shape"] = image_shape
    anynet.io.write_arrays(path, arrays, meta)  # digest and all: anyone can
    with pytest.raises(ModelFileError, match=match):
        anynet.load(path)
