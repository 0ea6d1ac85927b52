"""`.keras` files: `tfladder.load_keras` round-trips tfladder models bit-exactly
and never runs code stored in a file (Keras safe mode, forced on)."""
import json
import zipfile

import keras
import numpy as np
import pytest
from keras.src.saving.serialization_lib import SafeModeScope

import tfladder
from tests.helpers import small_model


def _binary(n):
    return (np.random.RandomState(0).rand(n, 28, 28, 1) > 0.5).astype(np.float32)


def _rewrite_archive(source, target, edit):
    """Copies the `.keras` zip `source` to `target`, passing each member's bytes
    through `edit(name, data)`."""
    with zipfile.ZipFile(source) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    with zipfile.ZipFile(target, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, edit(name, data))
    return target


# ---------------------------------------------------------------- round trip
@pytest.mark.parametrize("family, conv", [("vae", False), ("lvae", False), ("vlae", True)])
def test_round_trip_is_bit_exact(family, conv, tmp_path):
    model = small_model(family, conv=conv)
    model.build()
    images = _binary(5)
    model.elbo(images, seed=0)     # batch norm (lvae) is used, not only built
    path = tmp_path / f"{family}.keras"
    model.save(path)

    loaded = tfladder.load_keras(path)
    assert type(loaded) is type(model)
    assert loaded.get_config() == model.get_config()
    assert len(loaded.weights) == len(model.weights)
    for mine, theirs in zip(model.weights, loaded.weights):
        np.testing.assert_array_equal(mine.numpy(), theirs.numpy())
    np.testing.assert_array_equal(loaded.elbo(images, seed=3).numpy(),
                                  model.elbo(images, seed=3).numpy())
    np.testing.assert_array_equal(loaded.sample(4, seed=1).numpy(),
                                  model.sample(4, seed=1).numpy())


# ------------------------------------------------------------ untrusted code
@pytest.fixture
def lambda_file(tmp_path):
    """A `.keras` file whose Lambda layer writes `marker` when it runs: (path, marker)."""
    marker = tmp_path / "lambda_ran"
    # A Python lambda (not a named function), so Keras stores its bytecode in the
    # file; the marker path is a constant of that bytecode.
    leave_a_mark = eval(f"lambda x: (open({str(marker)!r}, 'w').write('code ran'), x)[1]")
    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Lambda(leave_a_mark)(inputs))
    path = tmp_path / "lambda.keras"
    model.save(path)
    marker.unlink(missing_ok=True)      # building the model above called the function
    return path, marker


def test_lambda_layer_is_refused_and_never_runs(lambda_file):
    path, marker = lambda_file
    with pytest.raises(ValueError, match=r"lambda\.keras.*Lambda"):
        tfladder.load_keras(path)
    assert not marker.exists()


def test_safe_mode_holds_after_unsafe_deserialization_was_enabled(lambda_file):
    path, marker = lambda_file
    # What keras.config.enable_unsafe_deserialization() does, undone on exit.
    with SafeModeScope(False):
        with pytest.raises(ValueError, match="Lambda"):
            tfladder.load_keras(path)
    assert not marker.exists()


def test_the_lambda_file_does_run_code_when_loaded_unsafely(lambda_file):
    # The check above is meaningful: loading the same file unsafely runs its code.
    path, marker = lambda_file
    keras.saving.load_model(path, safe_mode=False)
    assert marker.read_text() == "code ran"


def test_class_from_an_arbitrary_module_is_refused(lambda_file, tmp_path):
    path, _ = lambda_file
    marker = tmp_path / "popen_ran"

    def swap_layer(name, data):
        if name != "config.json":
            return data
        config = json.loads(data)
        layer = config["config"]["layers"][1]
        layer.update({"module": "subprocess", "class_name": "Popen", "registered_name": None,
                      "config": {"args": ["touch", str(marker)]}})
        return json.dumps(config)

    crafted = _rewrite_archive(path, tmp_path / "crafted.keras", swap_layer)
    with pytest.raises(ValueError, match=r"crafted\.keras"):
        tfladder.load_keras(crafted)
    assert not marker.exists()


# ------------------------------------------------------------------- paths
def test_bad_paths(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"No such \.keras file.*absent\.keras"):
        tfladder.load_keras(tmp_path / "absent.keras")
    weights = tmp_path / "model.weights.h5"
    weights.write_bytes(b"\x89HDF\r\n")
    with pytest.raises(ValueError, match=r"must be a \.keras file.*model\.weights\.h5"):
        tfladder.load_keras(weights)
    with pytest.raises(ValueError, match=r"must be a \.keras file"):
        tfladder.load_keras(tmp_path)
    text = tmp_path / "notes.keras"
    text.write_text("not a zip\n")
    with pytest.raises(ValueError, match=r"notes\.keras is not a \.keras archive"):
        tfladder.load_keras(text)
    # Remote paths are never fetched.
    with pytest.raises(FileNotFoundError):
        tfladder.load_keras("gs://bucket/model.keras")


def test_other_keras_version_warns(tmp_path):
    model = small_model("vae")
    model.build()
    model.save(tmp_path / "vae.keras")

    def older(name, data):
        if name != "metadata.json":
            return data
        return json.dumps({**json.loads(data), "keras_version": "3.0.0"})

    path = _rewrite_archive(tmp_path / "vae.keras", tmp_path / "older.keras", older)
    with pytest.warns(UserWarning, match=r"saved with Keras 3\.0\.0"):
        loaded = tfladder.load_keras(path)
    np.testing.assert_array_equal(loaded.sample(2, seed=0).numpy(),
                                  model.sample(2, seed=0).numpy())
