"""What the command writes for people to read: progress that stays readable in a log, help
that shows every default, the data it read named at the start, long errors laid out in lines."""

from __future__ import annotations

import re

import pytest
from cli_helpers import anynet_cmd
from test_train_cli import needs_data

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


def _help_entries(parser) -> dict[str, str]:
    """Each option's entry in ``parser``'s help, by its first option string, on one line."""
    text = parser.format_help()
    entries = re.split(r"\n  (?=-)", text.split("\noptions:", 1)[1])
    return {entry.split()[0].rstrip(","): " ".join(entry.split()) for entry in entries[1:]}


@pytest.mark.parametrize("command", ["train", "evaluate", "predict"])
def test_help_shows_every_default(command):
    from anynet.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices[command]
    entries = _help_entries(sub)
    checked = 0
    for action in sub._actions:
        if not action.option_strings or action.dest == "help":
            continue
        entry = entries[action.option_strings[0]]
        if isinstance(action.default, bool):  # a flag: off unless given
            assert "default" not in entry, entry
            continue
        assert "default" in entry, entry
        if action.default is not None:  # argparse's own words, the value as typed
            assert f"(default: {action.default})" in entry, entry
        checked += 1
    assert checked >= {"train": 25, "evaluate": 3, "predict": 2}[command]


def test_help_keeps_paths_whole():
    out = anynet_cmd("train", "-h")
    assert "(default: anynet-model.safetensors)" in " ".join(out.stdout.split())
    assert "/usr/share/datasets/fashion-mnist," in out.stdout  # not split at its hyphen


@pytest.fixture(scope="module")
def data_copy(tmp_path_factory):
    """A folder holding a copy of Fashion-MNIST's four files, for --data-dir."""
    import shutil

    from anynet.datasets import FASHION_MNIST_FILES, fashion_mnist_path

    folder = tmp_path_factory.mktemp("fashion")
    for name in FASHION_MNIST_FILES:
        found = fashion_mnist_path(name, download=False)
        shutil.copyfile(found, folder / found.name)
    return folder


@needs_data
def test_a_logged_run_names_its_data_and_writes_a_line_per_epoch(data_copy, tmp_path):
    model = tmp_path / "m.safetensors"
    args = ["--limit", "600", "--epochs", "3", "--hidden", "8", "--out", str(model)]
    out = anynet_cmd("train", "--data-dir", str(data_copy), *args)  # stderr: a pipe
    assert out.returncode == 0, out.stderr
    lines = out.stderr.splitlines()
    assert lines[0] == f"data: Fashion-MNIST train and test, SHA-256 verified, from {data_copy}"
    assert lines[1].startswith("training 784-8-10 relu MLP")
    number = r"\d+\.\d{4}"
    for epoch, line in enumerate(lines[2:5], 1):
        assert re.fullmatch(
            rf"epoch {epoch}/3: loss {number}, val_accuracy {number}, val_loss {number}, "
            r"\d+\.\d s, [\d,]+ samples/s",
            line,
        ), line
    assert len(lines) == 5 and "\r" not in out.stderr  # no progress-bar redraws
    evaluated = anynet_cmd("evaluate", str(model), "--data-dir", str(data_copy))
    assert evaluated.returncode == 0, evaluated.stderr
    assert evaluated.stderr.splitlines() == [
        f"data: Fashion-MNIST test, SHA-256 verified, from {data_copy}"
    ]
    assert "accuracy" in evaluated.stdout  # the report stays alone on stdout


@needs_data
def test_a_damaged_data_file_is_an_error_of_short_lines(data_copy, tmp_path):
    import gzip
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(data_copy, bad)
    labels = bad / "t10k-labels-idx1-ubyte.gz"
    content = bytearray(gzip.decompress(labels.read_bytes()))
    content[-1] = (content[-1] + 1) % 10  # one label changed: a valid file, other data
    labels.write_bytes(gzip.compress(bytes(content)))
    out = anynet_cmd("train", "--data-dir", str(bad), "--no-download", "--epochs", "1")
    assert out.returncode == 1
    first, *details = out.stderr.splitlines()
    assert first == (
        f"anynet train: error: {labels}: damaged, or not Fashion-MNIST's t10k-labels-idx1-ubyte "
        "(its content's SHA-256 differs); delete it and get it again"
    )
    from anynet.datasets import FASHION_MNIST_FILES

    expected = FASHION_MNIST_FILES["t10k-labels-idx1-ubyte"]
    assert details[1] == f"    Fashion-MNIST's:        {expected}"
    assert details[0].startswith("    SHA-256 of its content: ") and len(details) == 2


def test_an_error_s_details_wrap_between_words_under_their_item():
    from anynet.cli.messages import layout

    url = "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/x.gz"
    message = (
        "no verified copy found of something with a long first line " * 3
        + "\nDownload failed:\n"
        + f"  - {url}: ConnectionError: "
        + "Max retries exceeded with url, caused by a name resolution error " * 3
        + "\n  1. install Debian's package: sudo apt-get install dataset-fashion-mnist (files "
        "in /usr/share/datasets/fashion-mnist);"
    )
    lines = layout("anynet train: error", message, width=80).splitlines()
    assert lines[0] == "anynet train: error: " + message.splitlines()[0].strip()  # whole
    assert lines[1] == "  Download failed:"
    assert lines[2] == f"    - {url}:"  # too long for the line: whole on its own
    assert all(line.startswith("      ") for line in lines[3:6])  # under the item's text
    assert lines[-2].startswith("    1. install") and lines[-1].startswith("       ")
    assert "/usr/share/datasets/fashion-mnist);" in lines[-1]  # not split at a hyphen
    assert all(len(line) <= 80 for line in lines[3:])
    # the words, all there, in order
    assert " ".join(lines).split() == ("anynet train: error: " + message).split()
