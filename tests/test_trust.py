"""Trust: variant folders and training runs cannot be silently corrupted,
overwritten or mislabelled (issue 14), each item with real files and, where
the item is about processes, real processes.

A tiny `vae_mnist` is trained once per module on the offline MNIST digits
(`mnist_offline`), never on ../shared/.
"""
import io
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time
import zipfile

import numpy as np
import pytest
import tensorflow as tf

import tfladder
from tfladder import cli, data, evaluation, training, zoo
from tfladder.zoo import artifacts
from tests.helpers import main_in_process, small_model

ROOT = pathlib.Path(__file__).resolve().parent.parent
TINY = dict(data="mnist_offline", epochs=1, batch_size=100, limit=300, verbose=0)

WEIGHTS_DATA = "saved_model/variables/variables.data-00000-of-00001"


# ----------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("trust") / "run"
    result = training.train("vae_mnist", workdir, **TINY)
    return workdir, pathlib.Path(result.folder)


@pytest.fixture
def copy_of(trained, tmp_path):
    target = tmp_path / "variant" / "model"
    shutil.copytree(trained[1], target)
    return target


def _run_cli(*args, timeout=300, **kwargs):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "-m", "tfladder.cli", *map(str, args)], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=timeout, **kwargs)


def _snapshot(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(pathlib.Path(folder).rglob("*")) if p.is_file()}


RESULT = {"num_images": 3, "elbo": -90.0, "kl_per_layer": [20.0], "active_units": [5],
          "latent_dims": [64], "split": "test", "command": "test"}


# -------------------------------------------------- 1-3: --update-card
def test_update_card_never_writes_through_a_symlinked_card(copy_of, tmp_path, capsys):
    outside = tmp_path / "precious.txt"
    outside.write_text("not tfladder's\n")
    (copy_of / "README.md").unlink()
    (copy_of / "README.md").symlink_to(outside)
    code = main_in_process("evaluate", copy_of, "--num-samples", "0", "--limit", "5",
                           "--update-card")
    assert code == 2
    assert "symbolic link" in capsys.readouterr().err
    assert outside.read_text() == "not tfladder's\n"


def test_a_file_changed_during_the_evaluation_is_not_approved(copy_of, monkeypatch):
    real = evaluation.evaluate

    def evaluate_while_tampering(*args, **kwargs):
        result = real(*args, **kwargs)
        (copy_of / "extra.txt").write_text("added while evaluating")
        return result

    monkeypatch.setattr(evaluation, "evaluate", evaluate_while_tampering)
    before = _snapshot(copy_of)
    with pytest.raises(ValueError, match="changed while|not covered by SHA256SUMS: extra.txt"):
        evaluation.evaluate_variant(copy_of, num_samples=0, limit=5, record=True)
    after = _snapshot(copy_of)
    assert after.pop("extra.txt") == b"added while evaluating"
    assert after == before                     # nothing rewritten, nothing approved
    with pytest.raises(ValueError, match="not covered"):
        artifacts.verify(copy_of)


def test_a_weights_file_replaced_during_the_evaluation_is_not_approved(copy_of, monkeypatch):
    real = evaluation.evaluate

    def evaluate_while_tampering(*args, **kwargs):
        result = real(*args, **kwargs)
        raw = bytearray((copy_of / WEIGHTS_DATA).read_bytes())
        raw[len(raw) // 2] ^= 0xFF
        (copy_of / WEIGHTS_DATA).write_bytes(bytes(raw))
        return result

    monkeypatch.setattr(evaluation, "evaluate", evaluate_while_tampering)
    with pytest.raises(ValueError, match="Checksum mismatch|changed while"):
        evaluation.evaluate_variant(copy_of, num_samples=0, limit=5, record=True)
    with pytest.raises(ValueError, match="Checksum mismatch"):
        zoo.load(copy_of)


def test_a_failure_while_writing_the_card_leaves_the_folder_loadable(copy_of, monkeypatch):
    before = _snapshot(copy_of)

    def failing_render(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(artifacts, "render_card", failing_render)
    with pytest.raises(OSError):
        artifacts.record_evaluation(copy_of, RESULT)
    assert _snapshot(copy_of) == before
    assert [p.name for p in copy_of.parent.iterdir()] == ["model"]   # no staging left
    artifacts.verify(copy_of)
    zoo.load(copy_of)


def test_update_card_on_a_zoo_name_is_refused(capsys):
    before = _snapshot(zoo.artifact_dir("vae_mnist"))
    code = main_in_process("evaluate", "vae_mnist", "--num-samples", "0", "--limit", "5",
                           "--update-card")
    assert code == 2
    err = capsys.readouterr().err
    assert "zoo name" in err and "Copy the variant folder" in err
    assert _snapshot(zoo.artifact_dir("vae_mnist")) == before


def test_update_card_is_refused_inside_an_installed_package(copy_of, monkeypatch):
    monkeypatch.setattr(artifacts, "is_installed", lambda folder: True)
    with pytest.raises(ValueError, match="installed package"):
        artifacts.record_evaluation(copy_of, RESULT)


def test_record_evaluation_swaps_a_verified_folder(copy_of):
    digests = artifacts.verify(copy_of)
    after = artifacts.record_evaluation(copy_of, RESULT, expected=digests)
    assert after == artifacts.verify(copy_of)
    assert json.loads((copy_of / "metrics.json").read_text())["evaluations"]["test"]["elbo"] \
        == -90.0
    assert after[WEIGHTS_DATA] == digests[WEIGHTS_DATA]
    assert [p.name for p in copy_of.parent.iterdir()] == ["model"]


# ------------------------------------------------------------ 4: export
@pytest.mark.parametrize("where", ["same", "inside", "cwd"])
def test_export_never_writes_into_the_variant_or_a_non_empty_folder(where, copy_of, capsys,
                                                                     monkeypatch):
    out = {"same": copy_of, "inside": copy_of / "saved_model", "cwd": pathlib.Path(".")}[where]
    if where == "cwd":
        monkeypatch.chdir(copy_of.parent)
    before = _snapshot(copy_of)
    assert main_in_process("export", copy_of, "--out", out) == 2
    err = capsys.readouterr().err
    assert "--out" in err and ("overlaps" in err or "not empty" in err)
    assert _snapshot(copy_of) == before
    zoo.load(copy_of)


def test_export_to_a_new_folder_is_complete(copy_of, tmp_path, capsys):
    out = tmp_path / "exported"
    assert main_in_process("export", copy_of, "--out", out) == 0
    assert (out / "saved_model.pb").is_file()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


# -------------------------------------------------- 5: links in a folder
def _symlink_file_outside(folder):
    outside = folder.parent / "samples-elsewhere.png"
    shutil.copy(folder / "samples.png", outside)
    (folder / "samples.png").unlink()
    (folder / "samples.png").symlink_to(outside)        # same bytes: the digest matches


def _hard_link_outside(folder):
    os.link(folder / "samples.png", folder.parent / "samples-hardlink.png")


def _symlinked_folder(folder):
    (folder / "extra").symlink_to("/etc")


@pytest.mark.parametrize("tamper,needle", [(_symlink_file_outside, "symbolic link"),
                                           (_hard_link_outside, "hard-linked"),
                                           (_symlinked_folder, "symbolic link")])
def test_links_inside_a_variant_folder_are_refused(tamper, needle, copy_of):
    tamper(copy_of)
    with pytest.raises(ValueError, match=needle):
        zoo.load(copy_of)


# -------------------------------------------------- 6-9: training runs
def test_a_finished_workdir_refuses_another_variant(trained):
    workdir, _ = trained
    with pytest.raises(training.RecipeMismatch, match=r"variant 'vae_mnist' -> 'lvae_mnist'"):
        training.train("lvae_mnist", workdir, **{**TINY, "epochs": 5})


def test_a_finished_workdir_refuses_other_epochs(trained):
    workdir, _ = trained
    with pytest.raises(training.RecipeMismatch, match=r"recipe.epochs 1 -> 2"):
        training.train("vae_mnist", workdir, **{**TINY, "epochs": 2})


def test_the_same_call_on_a_finished_workdir_loads_it(trained):
    workdir, folder = trained
    result = training.train("vae_mnist", workdir, **TINY)
    assert result.folder == folder


@pytest.mark.parametrize("change,field", [
    (dict(batch_size=50), "recipe.batch_size"),
    (dict(seed=3), "recipe.seed"),
    (dict(limit=200), "limit"),
])
def test_resuming_with_another_recipe_is_refused(change, field, tmp_path):
    workdir = tmp_path / "run"
    workdir.mkdir()
    variant = zoo.get("vae_mnist")
    recipe = training.dataclasses.replace(variant.recipe, epochs=1, batch_size=100)
    manifest = training.run_manifest(variant, training.dataclasses.replace(
        variant.data, source="mnist_offline"), recipe, 300)
    (workdir / training.MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(training.RecipeMismatch, match=field) as error:
        training.train("vae_mnist", workdir, **{**TINY, **change})
    assert "\n" not in str(error.value)
    assert sorted(p.name for p in workdir.iterdir()) == [".lock", training.MANIFEST]


def test_resuming_with_another_data_file_is_refused(tmp_path):
    images = (np.random.default_rng(0).random((120, 28, 28)) * 255).astype(np.uint8)
    first, second = tmp_path / "a.npz", tmp_path / "b.npz"
    np.savez(first, x_train=images[:100], x_test=images[100:])
    np.savez(second, x_train=images[20:], x_test=images[:20])
    workdir = tmp_path / "run"
    workdir.mkdir()
    variant = zoo.get("vae_mnist")
    recipe = training.dataclasses.replace(variant.recipe, epochs=1, batch_size=100)
    manifest = training.run_manifest(variant, training.dataclasses.replace(
        variant.data, source=str(first)), recipe, None)
    (workdir / training.MANIFEST).write_text(json.dumps(manifest))
    shutil.copy(second, first)                  # same path, other bytes
    with pytest.raises(training.RecipeMismatch, match="data.sha256"):
        training.train("vae_mnist", workdir, data=str(first), epochs=1, batch_size=100,
                       verbose=0)


_HOLD_LOCK = """
import sys, time
from tfladder import training
with training._workdir_lock(sys.argv[1]):
    print("locked", flush=True)
    time.sleep(120)
"""


def test_a_second_train_on_a_busy_workdir_is_refused_and_a_killed_holder_frees_it(tmp_path):
    workdir = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", _HOLD_LOCK, str(workdir)], cwd=ROOT,
                              stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    try:
        assert holder.stdout.readline().strip() == "locked"
        process = _run_cli("train", "vae_mnist", "--data", "mnist_offline", "--epochs", "1",
                           "--batch-size", "100", "--limit", "300", "--workdir", workdir)
        assert process.returncode == 1, process.stderr[-2000:]
        assert "in use by another tfladder train" in process.stderr
        assert "Traceback" not in process.stderr
        assert not (workdir / "backup").exists() and not (workdir / "history.csv").exists()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    # SIGKILL leaves no stale lock: the kernel released it with the process.
    with training._workdir_lock(workdir):
        pass


def test_bad_test_split_is_refused_before_anything_is_written(tmp_path):
    images = (np.random.default_rng(0).random((120, 28, 28)) * 255).astype(np.uint8)
    path = tmp_path / "bad.npz"
    np.savez(path, x_train=images[:100], x_test=images[100:, :27])
    workdir = tmp_path / "run"
    with pytest.raises(ValueError, match=r"bad\.npz split 'test' has images of shape \(27, 28, 1\)"):
        training.train("vae_mnist", workdir, data=str(path), epochs=1, batch_size=50, verbose=0)
    assert not workdir.exists()


# --------------------------------------------------------- 10: bounds
@pytest.mark.parametrize("key,value", [("num_hidden_layers", 100000), ("hidden_units", 1e6),
                                       ("image_shape", [100000, 100000, 1]),
                                       ("latent_dims", [8] * 1000)])
def test_hostile_configs_are_refused_fast(key, value, copy_of):
    config = json.loads((copy_of / "config.json").read_text())
    config["model_config"][key] = value
    (copy_of / "config.json").write_text(json.dumps(config))
    artifacts.write_checksums(copy_of)          # checksum-valid, but hostile
    started = time.time()
    with pytest.raises(ValueError, match=key):
        zoo.load(copy_of)
    assert time.time() - started < 30


def test_a_keras_zip_bomb_is_refused_before_inflating(tmp_path):
    model = small_model("vae")
    model.build()
    good = tmp_path / "m.keras"
    model.save(good)
    bomb = tmp_path / "bomb.keras"
    with zipfile.ZipFile(good) as source, zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as out:
        for member in source.infolist():
            out.writestr(member.filename, source.read(member.filename))
        out.writestr("padding.bin", b"\0" * (64 * 2**20))       # 64 MiB of zeros, ~64 KB stored
    assert bomb.stat().st_size < 2 * 2**20
    with pytest.raises(ValueError, match="zip bomb"):
        tfladder.load_keras(bomb)


def test_an_npz_whose_header_lies_is_a_clear_error(tmp_path):
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "|u1", "fortran_order": False, "shape": (10**8, 28, 28)})
    path = tmp_path / "lies.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("x_train.npy", header.getvalue() + b"\0" * 1000)
    for call in (lambda: data.num_examples(str(path), "train"),
                 lambda: data.load_arrays(str(path), "train")):
        with pytest.raises(ValueError, match=r"lies\.npz\['x_train'\]"):
            call()


# ----------------------------------------------------------- 11: seeds
@pytest.mark.parametrize("seed", [2**32, 2**31, -1, 1.5, True])
def test_seeds_outside_the_int32_range_are_refused(seed):
    model = small_model("vae")
    with pytest.raises(ValueError, match=r"seed must be an integer in \[0, 2\*\*31\)"):
        model.sample(2, seed=seed)


def test_the_largest_seed_differs_from_zero():
    model = small_model("vae")
    assert not np.allclose(model.sample(2, seed=2**31 - 1), model.sample(2, seed=0))


# ---------------------------------------------------------- 12: inputs
@pytest.mark.parametrize("x", ["a string", None, tf.data.Dataset.range(3),
                               tf.ragged.constant([[1.0], [2.0, 3.0]]),
                               np.array([object(), object()], dtype=object), [[0.0], [0.0, 1.0]]],
                         ids=["str", "none", "dataset", "ragged", "object", "ragged_list"])
def test_non_arrays_are_a_value_error_naming_x(x):
    model = small_model("vae")
    with pytest.raises(ValueError, match=r"^x "):
        model.elbo(x)


def test_uint8_binary_images_are_binary_for_a_bernoulli_model():
    model = small_model("vae")
    binary = (data.load_arrays("mnist_offline", "test", limit=8) > 0.5)
    as_uint8 = binary.astype(np.uint8)
    np.testing.assert_allclose(model.elbo(as_uint8, seed=0),
                               model.elbo(binary.astype(np.float32), seed=0), rtol=1e-6)


# ----------------------------------------------------------- 13: sizes
def test_sizes_beyond_the_documented_bounds_are_refused():
    model = small_model("vae")
    x = np.zeros((1, 28, 28, 1), np.float32)
    with pytest.raises(ValueError, match="num_samples must be at most 1,000,000"):
        model.log_likelihood(x, num_samples=10**9)
    with pytest.raises(ValueError, match=f"num_samples must be at most {model.max_samples}"):
        model.sample(10**7)


def test_cli_sample_refuses_ten_million(capsys, tmp_path):
    assert main_in_process("sample", "vae_mnist", "--num", "10000000", "--out", tmp_path / "s.png") == 2
    assert "at most" in capsys.readouterr().err
    assert not (tmp_path / "s.png").exists()


def test_saved_model_sample_endpoint_refuses_ten_million(trained):
    loaded = tf.saved_model.load(str(trained[1] / "saved_model"))
    with pytest.raises(tf.errors.InvalidArgumentError, match="at most"):
        loaded.sample(num_samples=tf.constant(10**7), seed=tf.constant(0))


# ---------------------------------------------------------- 14: the CLI
@pytest.mark.slow   # the same path as the next test, which also loses the first exception
def test_ctrl_c_prints_one_line(tmp_path):
    process = subprocess.Popen(
        [sys.executable, "-m", "tfladder.cli", "train", "vae_mnist", "--data", "mnist_offline",
         "--epochs", "50", "--batch-size", "100", "--workdir", tmp_path / "run"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    deadline = time.time() + 240
    while not (tmp_path / "run" / "history.csv").exists() and time.time() < deadline:
        time.sleep(0.5)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err[-2000:]
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    assert "interrupted" in err


# The KeyboardInterrupt of the first SIGINT is swallowed, as when Python raises
# it inside a finalizer (`__del__`) that runs during `fit`: whatever handler the
# CLI installs for SIGINT is wrapped so that its exception is lost.
_SWALLOWED_INTERRUPT = """
import signal, sys
from tfladder import cli

_install = signal.signal
def _swallowing(handler):
    def wrapped(signum, frame):
        try:
            handler(signum, frame)
        except KeyboardInterrupt:
            print("KeyboardInterrupt lost", file=sys.stderr, flush=True)
    return wrapped
signal.signal = lambda sig, handler: _install(sig, _swallowing(handler))
signal.signal(signal.SIGINT, signal.default_int_handler)
sys.argv = ["tfladder"] + sys.argv[1:]
cli.run()
"""


def test_ctrl_c_stops_training_even_when_the_exception_is_lost(tmp_path):
    process = subprocess.Popen(
        [sys.executable, "-c", _SWALLOWED_INTERRUPT, "train", "vae_mnist", "--data",
         "mnist_offline", "--epochs", "200", "--batch-size", "100", "--workdir",
         tmp_path / "run"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    deadline = time.time() + 240
    while not (tmp_path / "run" / "history.csv").exists() and time.time() < deadline:
        time.sleep(0.5)
    time.sleep(1.0)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=600)
    assert "KeyboardInterrupt lost" in err          # the simulation did swallow it
    assert process.returncode == 130, err[-2000:]
    assert "interrupted" in err and "Traceback" not in err
    # It stopped within the run, not after the 200 epochs.
    assert len((tmp_path / "run" / "history.csv").read_text().splitlines()) < 100


def test_a_full_disk_is_one_line_and_status_1(capsys):
    assert main_in_process("sample", "vae_mnist", "--num", "4", "--out", "/dev/full") == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("tfladder sample: error:")


@pytest.mark.parametrize("argv,needle", [(["sample", "vae_mnist", "--epochs", "3"], "--epochs"),
                                         (["card", "vae_mnist", "--limit", "3"], "--limit"),
                                         (["train", "vae_mnist", "--num", "3"], "--num")])
def test_flags_that_do_not_apply_are_refused(argv, needle, capsys):
    assert main_in_process(*argv) == 2
    assert f"{needle} do(es) not apply" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["--help"], ["help"], ["-h"]])
def test_help_lists_the_commands(argv):
    process = _run_cli(*argv, timeout=120)
    assert process.returncode == 0
    for name in cli.COMMAND_FLAGS:
        assert f"  {name}" in process.stdout


def test_command_help_lists_its_flags():
    process = _run_cli("train", "--help", timeout=120)
    assert process.returncode == 0
    assert "--batch-size" in process.stdout and "--num-samples" not in process.stdout


# --------------------------------------------------- 15: SHA256SUMS forms
@pytest.mark.parametrize("form", ["binary", "upper"])
def test_sha256sum_formats_are_accepted(form, copy_of):
    listing = copy_of / "SHA256SUMS"
    lines = []
    for line in listing.read_text().splitlines():
        digest, path = line.split("  ", 1)
        lines.append(f"{digest} *{path}" if form == "binary" else f"{digest.upper()}  {path}")
    listing.write_text("\n".join(lines) + "\n")
    artifacts.verify(copy_of)
    zoo.load(copy_of)
