"""`anynet train --model cnn`, and `evaluate` and `predict` with the model it writes, on the real
Fashion-MNIST files; and the flags that belong to one model refused for the other."""

from __future__ import annotations

import numpy as np
import pytest
from cli_helpers import anynet_cmd
from test_train_cli import needs_data

import anynet

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


@pytest.fixture(scope="module")
def trained_cnn(tmp_path_factory):
    d = tmp_path_factory.mktemp("cnn")
    out = anynet_cmd(
        "train", "--model", "cnn", "--limit", "3000", "--epochs", "1",
        "--out", str(d / "cnn.safetensors"), "--quiet", "--plots", str(d / "plots"),
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    return d, out


@needs_data
def test_train_cnn_says_what_it_trains_and_writes_a_cnn(trained_cnn):
    d, out = trained_cnn
    said = "the default CNN (adam, lr 0.001 cosine, batch 128, 1 epochs, flips)"
    assert said in out.stderr
    accuracy = float(out.stdout.split("test accuracy ")[1].split("%")[0]) / 100
    # 3,000 images are 24 steps: the batch norms' running variances (from 1, momentum 0.1)
    # are still several times the batches' own, and evaluation uses them; yet above chance.
    assert 0.2 < accuracy <= 1.0
    clf = anynet.load(d / "cnn.safetensors")
    assert clf.network == "cnn" and clf.image_shape_ == (1, 28, 28)
    assert clf.step_name_ is None and "0.mean" not in clf.params_  # no conv bias: BN shifts
    assert np.any(clf.params_["1.var"] != 1.0)  # the running statistics were saved
    from anynet.cli.train import PLOTS

    for name in PLOTS:  # the t-SNE of images, and predictions of a model that takes them
        assert (d / "plots" / name).stat().st_size > 0, name


@needs_data
def test_evaluate_plots_and_predict_take_the_cnn(trained_cnn, tmp_path):
    d, _ = trained_cnn
    model = str(d / "cnn.safetensors")
    evaluated = anynet_cmd("evaluate", model, "--plots", str(tmp_path / "plots"))
    assert evaluated.returncode == 0, evaluated.stderr
    assert "accuracy" in evaluated.stdout
    assert (tmp_path / "plots" / "confusion_matrix.png").stat().st_size > 0
    images = anynet.datasets.load_fashion_mnist("test", download=False)[0][:3]
    from PIL import Image

    paths = []
    for i, image in enumerate(images):
        paths.append(str(tmp_path / f"{i}.png"))
        Image.fromarray(image).save(paths[-1])
    predicted = anynet_cmd("predict", model, *paths)
    assert predicted.returncode == 0, predicted.stderr
    assert len(predicted.stdout.strip().splitlines()) == 3


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--model", "cnn", "--hidden", "64"], "--hidden is for --model mlp; --model cnn has no"),
        (["--model", "cnn", "--activation", "tanh"], "--activation is for --model mlp"),
        (["--augment"], "--augment is for --model cnn: the MLP takes each image as a flat row"),
    ],
)
def test_a_flag_of_the_other_model_is_refused(flags, message, tmp_path):
    out = anynet_cmd("train", *flags, "--out", str(tmp_path / "m.safetensors"))
    assert out.returncode != 0
    assert message in out.stderr
    assert "Traceback" not in out.stderr


def test_help_gives_each_models_defaults():
    out = anynet_cmd("train", "-h")
    assert out.returncode == 0
    flat = " ".join(out.stdout.split())
    assert "default 0.2 (mlp), 0.25 (cnn)" in flat  # --dropout
    assert "--epochs EPOCHS default 25 " in flat  # the same for both
    assert "default off (mlp), on (cnn)" in flat
    assert "(default: None)" not in flat
