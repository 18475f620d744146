"""The command's errors speak the command line's words: the flag the user typed (``--data-dir``,
``--no-download``, ``--hidden``), not the Python argument behind it (``data_dir=``,
``download=False``); malformed values are refused where they are parsed, naming the flag.

Runs that must fail before any data is read point ``--data-dir`` at an empty folder with
``--no-download``: a value accepted by mistake shows as an error about Fashion-MNIST instead."""

from __future__ import annotations

import os
import sys

import pytest
from cli_helpers import anynet_cmd

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/dev/null")


@pytest.fixture
def no_data(tmp_path) -> list[str]:
    empty = tmp_path / "no-data"
    empty.mkdir()
    return ["--data-dir", str(empty), "--no-download"]


@pytest.mark.parametrize(
    ("flag", "value"),
    [
        ("--hidden", "64,,32"),  # an empty item was dropped: a 64-32 network, without a word
        ("--hidden", "64,"),
        ("--hidden", ",64"),
        ("--hidden", "1_000"),  # int() reads it; nobody means it
        ("--hidden", "64;32"),
        ("--hidden", "0"),
        ("--momentum", "2"),  # was refused only after the data loaded, as momentum=
        ("--momentum", "1"),
        ("--dropout", "1"),
        ("--seed", "-1"),  # was "expected non-negative integer", after the data loaded
        ("--seed", "1.5"),
    ],
)
def test_malformed_values_are_refused_naming_the_flag(flag, value, no_data):
    out = anynet_cmd("train", *no_data, f"{flag}={value}")
    assert out.returncode == 2, out.stderr
    assert f"argument {flag}:" in out.stderr and repr(value) in out.stderr
    assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("value", "sizes"),
    [("64,32", "784-64-32-10"), (" 64 , 32 ", "784-64-32-10"), ("8", "784-8-10")],
)
def test_well_formed_hidden_sizes_still_parse(value, sizes, no_data):
    from anynet.cli import build_parser

    args = build_parser().parse_args(["train", "--hidden", value])
    assert "-".join(str(s) for s in (784, *args.hidden, 10)) == sizes


def have_data() -> bool:
    from anynet.datasets import load_fashion_mnist
    from anynet.errors import AnynetError

    try:
        load_fashion_mnist("test", download=False)
    except AnynetError:
        return False
    return True


needs_data = pytest.mark.skipif(not have_data(), reason="Fashion-MNIST not installed here")


def no_python_words(text: str) -> None:
    for python in ("data_dir=", "download=", "load_fashion_mnist(", "batch_size", "learning_rate"):
        assert python not in text, (python, text)
    assert "Traceback" not in text


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    import numpy as np

    import anynet

    rng = np.random.default_rng(0)
    X, y = rng.integers(0, 256, (200, 784), dtype=np.uint8), np.arange(200) % 10
    clf = anynet.NNClassifier((8,), max_iter=1, random_state=0).fit(X, y)
    return str(anynet.save(clf, tmp_path_factory.mktemp("model") / "m.safetensors"))


@pytest.mark.parametrize("command", ["train", "evaluate"])
def test_data_not_found_names_the_flags_and_stays_readable(command, no_data, model_file):
    args = ["train"] if command == "train" else ["evaluate", model_file]
    out = anynet_cmd(*args, *no_data)
    assert out.returncode == 1, out.stderr
    no_python_words(out.stderr)
    lines = out.stderr.splitlines()
    assert lines[0].startswith(f"anynet {command}: error: ")
    assert f"--data-dir '{no_data[1]}'" in lines[0] and "--no-download" in lines[0]
    # The ways to get the data stay one a line, under the error, not run into one long line.
    steps = [line.strip()[:2] for line in lines[1:]]
    assert ["1.", "2.", "3."] == [s for s in steps if s in ("1.", "2.", "3.")]
    assert all(line.startswith("  ") for line in lines[1:])
    assert "leave out --no-download" in out.stderr and "pass --data-dir" in out.stderr


@pytest.mark.parametrize("what", ["a file", "missing", "a FIFO", "a dangling symlink"])
def test_data_dir_that_cannot_hold_the_data(what, tmp_path):
    # A FIFO was called "a file", a symlink to nothing "missing" (or, with the download
    # allowed, "[Errno 17] File exists" from a mirror): each is now named for what it is.
    folder = tmp_path / "data"
    if what == "a file":
        folder.write_text("not a folder")
    elif what == "a FIFO":
        os.mkfifo(folder)
    elif what == "a dangling symlink":
        folder.symlink_to(tmp_path / "gone")
    # Without --no-download a missing folder is made, and the data downloaded into it.
    for download in (["--no-download"], [] if what != "missing" else ["--no-download"]):
        out = anynet_cmd("train", "--data-dir", str(folder), *download, timeout=60)
        assert out.returncode == 1, out.stderr
        error = f"anynet train: error: --data-dir {folder} "
        if what == "missing":
            assert out.stderr.strip() == error + "does not exist (and --no-download is given)"
            continue
        kind = {"a dangling symlink": f"a symlink to {tmp_path / 'gone'}, which does not exist"}
        assert out.stderr.strip().startswith(error + f"is {kind.get(what, what)}, not a folder; ")
        assert "expected the folder holding Fashion-MNIST's files" in out.stderr
        assert len(out.stderr.strip().splitlines()) == 1


@linux_only
def test_data_dir_that_is_a_device():
    out = anynet_cmd("train", "--data-dir", "/dev/null", timeout=60)
    assert out.returncode == 1 and "--data-dir /dev/null is a character device" in out.stderr


@pytest.mark.parametrize("kind", ["FIFO", "folder"])
def test_a_data_file_that_is_not_a_regular_file(kind, tmp_path, model_file):
    # It was passed over as missing: "t10k-labels-idx1-ubyte.gz is not in --data-dir".
    data = tmp_path / "data"
    data.mkdir()
    name = data / "t10k-labels-idx1-ubyte.gz"
    os.mkfifo(name) if kind == "FIFO" else name.mkdir()
    out = anynet_cmd("evaluate", model_file, "--data-dir", str(data), "--no-download", timeout=60)
    assert out.returncode == 1, out.stderr
    assert out.stderr.strip().startswith(
        f"anynet evaluate: error: --data-dir {data}: t10k-labels-idx1-ubyte.gz in it is a "
        f"{kind}, not a regular file"
    )
    assert len(out.stderr.strip().splitlines()) == 1


def test_library_words_become_flags():
    from anynet.cli.messages import flag_words

    said = (
        "ck/checkpoint.safetensors: the checkpoint is of another run:\n"
        "  batch_size: the checkpoint's run has 128, this one 64\n"
        "  learning_rate_init: the checkpoint's run has 0.001, this one 0.01\n"
        '  data: the checkpoint\'s run has "ab", this one "cd"\n'
        "Resume with the settings of the run that wrote it."
    )
    assert flag_words(said).splitlines()[1:4] == [
        "  --batch-size: the checkpoint's run has 128, this one 64",
        "  --lr: the checkpoint's run has 0.001, this one 0.01",
        "  the data (--data, --data-dir, --limit, --validation-fraction): the checkpoint's run "
        'has "ab", this one "cd"',
    ]
    assert flag_words("random_state must be an integer; got -1") == (
        "--seed must be an integer; got -1"
    )
    # Only the argument's own name: no part of another word, nor prose.
    assert flag_words("learning_rate_init=2 and the seed") == "--lr 2 and the seed"


@needs_data
def test_warnings_are_one_line_in_flags(tmp_path):
    out = anynet_cmd(
        "train", "--limit", "500", "--epochs", "1", "--hidden", "8", "--batch-size", "5000",
        "--quiet", "--out", str(tmp_path / "m.safetensors"),
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    no_python_words(out.stderr)
    warning = [line for line in out.stderr.splitlines() if "warning" in line]
    assert warning == [
        "anynet train: warning: --batch-size 5000 is larger than the 500 samples: clipped "
        "to the sample count"
    ]


@needs_data
def test_resuming_another_run_lists_the_flags_that_differ(tmp_path):
    from anynet import errors

    if not hasattr(errors, "CheckpointMismatchError"):
        pytest.skip("this anynet does not compare a resumed run with its checkpoint's")
    args = ["train", "--limit", "500", "--epochs", "1", "--hidden", "8", "--quiet"]
    args += ["--checkpoint-dir", str(tmp_path / "ck"), "--out", str(tmp_path / "m.safetensors")]
    assert anynet_cmd(*args).returncode == 0
    out = anynet_cmd(*args, "--resume", "--lr", "0.01", "--batch-size", "64")
    assert out.returncode == 1, out.stderr
    no_python_words(out.stderr)
    lines = out.stderr.split("anynet train: error: ", 1)[1].splitlines()
    assert "another run" in lines[0]
    listed = [line.split(":")[0].strip() for line in lines[1:] if line.startswith("    ")]
    assert listed == ["--batch-size", "--lr"]


@needs_data
def test_limit_that_leaves_classes_out_names_the_flag(tmp_path):
    # The first 5 images hold 3 of the 10 classes: scoring on the test set failed, after
    # training, with "y has labels [...] that are not among the classes [np.int64(0), ...]".
    out = anynet_cmd("train", "--limit", "5", "--out", str(tmp_path / "m.safetensors"))
    assert out.returncode == 1, out.stderr
    assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1
    assert out.stderr.startswith("anynet train: error: --limit 5: the first 5 training images")
    assert "np.int64" not in out.stderr
    assert not (tmp_path / "m.safetensors").exists()


@needs_data
def test_out_of_memory_is_one_line(tmp_path):
    # 784 x 10**12 weights: NumPy refuses the allocation at once (it used to be a traceback).
    out = anynet_cmd("train", "--limit", "100", "--hidden", str(10**12), "--quiet")
    assert out.returncode == 1, out.stderr
    assert "Traceback" not in out.stderr
    error = out.stderr.strip().splitlines()[-1]
    assert error.startswith("anynet train: error: out of memory: ") and "--hidden" in error


def test_out_of_memory_without_a_message_says_where(monkeypatch, capsys):
    # A MemoryError() with no message was reported as "out of memory: " and nothing more.
    import anynet.cli
    from anynet.cli.info import add_info

    def allocate_everything(args):
        raise MemoryError()

    monkeypatch.setitem(anynet.cli.COMMANDS, "info", (add_info, allocate_everything))
    monkeypatch.delenv("ANYNET_DEBUG", raising=False)
    assert anynet.cli.main(["info"]) == 1
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "Traceback" not in error
    assert error.startswith("anynet info: error: out of memory: an allocation in ")
    assert "allocate_everything was refused" in error


def test_out_of_memory_keeps_numpys_message():
    from anynet.cli import _out_of_memory

    said = _out_of_memory("predict", MemoryError("Unable to allocate 5.6 TiB for an array"))
    assert said.startswith("out of memory: Unable to allocate 5.6 TiB for an array (")
    assert "fewer images" in said


@pytest.mark.parametrize("value", ["1", "0.5", "-3", "nan", "none"])
def test_divergence_factor_is_above_one_or_off(value, no_data):
    out = anynet_cmd("train", *no_data, f"--divergence-factor={value}")
    assert out.returncode == 2, out.stderr
    assert "argument --divergence-factor:" in out.stderr and "'off'" in out.stderr


def test_divergence_factor_off_turns_the_check_off():
    from anynet.cli import build_parser

    assert build_parser().parse_args(["train"]).divergence_factor == 100
    args = build_parser().parse_args(["train", "--divergence-factor", "off"])
    assert args.divergence_factor is None


@needs_data
def test_divergence_says_which_flag_turns_the_check_off(tmp_path):
    out = anynet_cmd(
        "train", "--limit", "500", "--epochs", "1", "--lr", "1e6", "--quiet",
        "--out", str(tmp_path / "m.safetensors"),
    )  # fmt: skip
    assert out.returncode == 1, out.stderr
    assert "diverged" in out.stderr and "(--divergence-factor off)" in out.stderr
    assert "divergence_factor" not in out.stderr
    assert not (tmp_path / "m.safetensors").exists()
