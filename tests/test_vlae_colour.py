"""VLAE options for colour images (issue 12): the spatial generator and the
discretised logistic likelihood with one learned scale per channel."""
import numpy as np
import pytest
import tensorflow as tf

import keras
import tfladder
from tfladder.layers.ladder import SpatialGenerativeRung
from tfladder.layers.observations import DiscretizedLogisticObservation, get_observation

SHAPE = (16, 16, 3)
CONFIG = dict(latent_dims=[2, 2, 3], hidden_units=16, conv_filters=[[4], [8, 8], []],
              observation="discretized_logistic", generator="spatial", latent_map_size=64,
              seed=1)


@pytest.fixture(scope="module")
def model():
    m = tfladder.VariationalLadderAutoencoder(SHAPE, **CONFIG)
    m.build()
    return m


def images(count=3, seed=0):
    return np.random.RandomState(seed).randint(0, 256, (count,) + SHAPE).astype(np.float32) / 255


def test_discretized_logistic_sums_to_one_over_the_256_values():
    observation = get_observation({"name": "discretized_logistic", "init_scale": 0.05})
    params = tf.random.stateless_normal((2, 2, 2, 3), [0, 1]) * 0.5
    distribution = observation(params)
    total = sum(np.exp(distribution._log_prob_per_channel(tf.fill((2, 2, 2, 3), k / 255.0)))
                for k in range(256))
    np.testing.assert_allclose(total, 1.0, atol=1e-5)
    assert distribution.log_prob(tf.fill((2, 2, 2, 3), 0.5)).shape == (2,)
    assert observation.log_scale.shape == (3,)        # one scale per channel


def test_discretized_logistic_mean_and_support():
    observation = DiscretizedLogisticObservation()
    params = tf.constant([[[[-0.5, 0.0, 0.5]]]])       # centred locations
    np.testing.assert_allclose(observation(params).mean(), [[[[0.25, 0.5, 0.75]]]], atol=1e-6)
    assert observation.support_error(np.full((1, 1, 1, 3), 0.5 / 255)) is not None
    assert observation.support_error(np.full((1, 1, 1, 3), 3 / 255)) is None
    with pytest.raises(ValueError, match="init_scale"):
        DiscretizedLogisticObservation(init_scale=0.0)
    restored = DiscretizedLogisticObservation.from_config(
        DiscretizedLogisticObservation(init_scale=0.02).get_config())
    assert restored.init_scale == 0.02


def test_spatial_rung_shapes():
    rung = SpatialGenerativeRung(3, 16, (4, 4, 8), up_filters=[6], latent_channels=2)
    out = rung([tf.zeros((2, 10)), tf.zeros((2, 3))])        # a flat input from a dense rung
    assert out.shape == (2, 8, 8, 6)
    below = SpatialGenerativeRung(2, 16, (8, 8, 6), latent_channels=1)
    assert below([out, tf.zeros((2, 2))]).shape == (2, 8, 8, 6)
    alone = SpatialGenerativeRung(2, 16, (4, 4, 8), latent_channels=2)
    assert alone(tf.zeros((2, 2))).shape == (2, 4, 4, 8)
    with pytest.raises(ValueError, match="expected"):
        SpatialGenerativeRung(2, 16, (4, 4, 8))([tf.zeros((2, 2, 2, 8)), tf.zeros((2, 2))])


def test_spatial_generator_trains_and_every_layer_moves_the_image(model):
    x = images()
    assert model.elbo(x).shape == (3,)
    assert np.all(np.isfinite(model.elbo(x).numpy()))
    noise = model.prior_noise(2, 0)
    assert model.generate(noise).mean().shape == (2,) + SHAPE
    for layer in range(3):
        moved = list(noise)
        moved[layer] = noise[layer] + 1.0
        difference = np.abs(model.generate(moved).mean() - model.generate(noise).mean())
        assert difference.max() > 1e-6, layer
    model.compile(keras.optimizers.Adam(1e-3))
    history = model.fit(x, epochs=1, batch_size=3, verbose=0)
    assert np.isfinite(history.history["loss"][-1])


def test_spatial_generator_round_trips_through_config_and_weights(model, tmp_path):
    config = model.get_config()
    assert config["generator"] == "spatial" and config["latent_map_size"] == 64
    copy = tfladder.VariationalLadderAutoencoder.from_config(config)
    path = str(tmp_path / "m.weights.h5")
    model.save_weights(path)
    copy.load_weights(path)
    x = images()
    np.testing.assert_allclose(copy.elbo(x, seed=3), model.elbo(x, seed=3), rtol=1e-5)
    keras_path = str(tmp_path / "m.keras")
    model.save(keras_path)
    loaded = keras.models.load_model(keras_path)
    np.testing.assert_allclose(loaded.elbo(x, seed=3), model.elbo(x, seed=3), rtol=1e-5)


def test_dense_generator_is_the_default_and_unchanged():
    dense = tfladder.VariationalLadderAutoencoder(SHAPE, **{**CONFIG, "generator": "dense"})
    default = tfladder.VariationalLadderAutoencoder(
        SHAPE, **{k: v for k, v in CONFIG.items() if k not in ("generator", "latent_map_size")})
    dense.build()
    default.build()
    assert default.generator == "dense"
    assert [w.shape for w in dense.weights] == [w.shape for w in default.weights]


def test_bad_generator_options_are_refused():
    with pytest.raises(ValueError, match="generator"):
        tfladder.VariationalLadderAutoencoder(SHAPE, **{**CONFIG, "generator": "conv"})
    with pytest.raises(ValueError, match="convolutional rung"):
        tfladder.VariationalLadderAutoencoder(
            SHAPE, **{**CONFIG, "conv_filters": [[], [], []]})


@pytest.mark.parametrize("name", ["vlae_svhn", "vlae_celeba"])
def test_zoo_variants_build(name):
    model = tfladder.zoo.build(name)
    model.build()
    assert model.count_params() < 3_800_000     # weights + SavedModel stay under 30 MB


def test_progressive_stages_set_the_fade_in_order():
    model = tfladder.VariationalLadderAutoencoder(
        SHAPE, **{**CONFIG, "progressive_steps": 10, "fade_in_steps": 5,
                  "progressive_stages": [0, 1, 0]})
    alphas = lambda step: [round(float(a), 4) for a in model.layer_alphas(step)]
    assert alphas(0) == [1.0, 0.0, 1.0]           # bottom and top from the start
    assert alphas(9) == [1.0, 0.0, 1.0]
    assert alphas(11) == [1.0, 0.4, 1.0]           # the middle layer fades in
    assert alphas(20) == [1.0, 1.0, 1.0]
    default = tfladder.VariationalLadderAutoencoder(
        SHAPE, **{**CONFIG, "progressive_steps": 10, "fade_in_steps": 5})
    assert [round(float(a), 4) for a in default.layer_alphas(10)] == [0.0, 0.2, 1.0]
    copy = tfladder.VariationalLadderAutoencoder.from_config(model.get_config())
    assert copy.progressive_stages == [0, 1, 0]
    with pytest.raises(ValueError, match="one entry per latent layer"):
        tfladder.VariationalLadderAutoencoder(SHAPE, **{**CONFIG, "progressive_stages": [0, 1]})


def test_broadcast_latent_changes_every_position_alike():
    rung = SpatialGenerativeRung(2, 16, (4, 4, 8), latent_channels=8, broadcast=True)
    z = tf.constant([[0.5, -1.0], [2.0, 0.3]])
    out = rung([tf.zeros((2, 4, 4, 8)), z])
    assert rung.v(z).shape == (2, 8)                    # [B, c_z]: no spatial pattern
    # With a constant map from above, the output is the same at every inner position.
    np.testing.assert_allclose(out[:, 1:3, 1:3], np.broadcast_to(out[:, 1:2, 1:2],
                                                                 out[:, 1:3, 1:3].shape),
                               atol=1e-6)
    assert SpatialGenerativeRung.from_config(rung.get_config()).broadcast


def test_broadcast_latents_in_the_model(tmp_path):
    model = tfladder.VariationalLadderAutoencoder(SHAPE, **{**CONFIG, "broadcast_latents": 1})
    model.build()
    assert model.generative_rungs[0].broadcast and not model.generative_rungs[1].broadcast
    copy = tfladder.VariationalLadderAutoencoder.from_config(model.get_config())
    path = str(tmp_path / "b.weights.h5")
    model.save_weights(path)
    copy.load_weights(path)
    np.testing.assert_allclose(copy.elbo(images(), seed=1), model.elbo(images(), seed=1),
                               rtol=1e-5)
    with pytest.raises(ValueError, match="broadcast_latents"):
        tfladder.VariationalLadderAutoencoder(SHAPE, **{**CONFIG, "broadcast_latents": 3})
    with pytest.raises(ValueError, match="broadcast_latents"):
        tfladder.VariationalLadderAutoencoder(
            SHAPE, **{**CONFIG, "generator": "dense", "broadcast_latents": 1})
