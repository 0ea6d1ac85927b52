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


# ------------------------------------------------- likelihood head (two phases)
REFINED = {"name": "discretized_logistic", "pixel_scales": True, "channel_coupling": True}


def _pixel_table(observation, params):
    """log P of all 256**3 values of a one-pixel image, in float64: [256, 256, 256]."""
    levels = np.arange(256, dtype=np.float32) / 255
    green, blue = np.meshgrid(levels, levels, indexing="ij")
    rows = []
    for red in levels:
        x = np.stack([np.full_like(green, red), green, blue], -1).reshape(-1, 1, 1, 3)
        batch = tf.repeat(params, x.shape[0], axis=0)
        rows.append(observation(batch).log_prob(x).numpy().astype(np.float64))
    return np.stack(rows).reshape(256, 256, 256)


def _table_moments(table):
    """Exact mean [3] and covariance [3, 3] of a one-pixel table (on [0, 1])."""
    probs = np.exp(table)
    levels = np.arange(256) / 255
    marginals = [probs.sum(axis=(1, 2)), probs.sum(axis=(0, 2)), probs.sum(axis=(0, 1))]
    mean = np.array([m @ levels for m in marginals])
    centred = [levels - m for m in mean]
    cov = np.array([[np.einsum(f"rgb,{a},{b}->", probs, centred[i], centred[j])
                     for j, b in enumerate("rgb")] for i, a in enumerate("rgb")])
    return mean, cov


def _samples(observation, params, count=20000):
    """`count` samples of a one-pixel likelihood, checked to lie on the 8-bit grid."""
    many = observation(tf.repeat(params, count, axis=0)).sample(tf.constant([4, 2]))
    samples = many.numpy().reshape(-1, 3).astype(np.float64)
    assert np.all(np.abs(samples * 255 - np.round(samples * 255)) < 1e-4)
    return samples


@pytest.fixture(scope="module")
def coupled_pixel():
    """A one-pixel coupled, per-pixel-scale likelihood with strong coupling, and its table."""
    observation = get_observation(REFINED)
    # loc (3), log-scale offsets (3: scales ~0.045, 0.040, 0.074 on [-1, 1], far from the
    # edge bins), coupling pre-activations (3, tanh -> ~0.9, -0.6, 0.7)
    params = tf.constant([[[[-0.2, 0.1, 0.3, -1.5, -1.6, -1.0, 1.5, -0.7, 0.9]]]])
    return observation, params, _pixel_table(observation, params)


def test_coupled_pixel_likelihood_sums_to_one(coupled_pixel):
    _, _, table = coupled_pixel
    np.testing.assert_allclose(np.exp(table).sum(), 1.0, atol=1e-4)


def test_coupled_pixel_mean_is_the_decoder_mean_and_samples_follow_the_chain(coupled_pixel):
    observation, params, table = coupled_pixel
    exact_mean, exact_cov = _table_moments(table)
    distribution = observation(params)
    # mean() is (loc + 1) / 2, the marginal mean (up to the edge bins, far here).
    np.testing.assert_allclose(distribution.mean().numpy().ravel(),
                               (np.array([-0.2, 0.1, 0.3]) + 1) / 2, atol=1e-6)
    np.testing.assert_allclose(distribution.mean().numpy().ravel(), exact_mean, atol=2e-3)
    # Sampling draws R, then G | R, then B | R, G: moments match the table's.
    samples = _samples(observation, params)
    sample_cov = np.cov(samples.T)
    np.testing.assert_allclose(samples.mean(0), exact_mean, atol=3e-3)
    np.testing.assert_allclose([sample_cov[0, 1], sample_cov[1, 2]],
                               [exact_cov[0, 1], exact_cov[1, 2]], rtol=0.1)
    assert exact_cov[0, 1] > 0.5 * np.sqrt(sample_cov[0, 0] * sample_cov[1, 1])   # coupled


def test_zero_head_output_is_the_per_channel_likelihood():
    plain = get_observation("discretized_logistic")
    refined = get_observation(REFINED)
    loc = tf.random.stateless_uniform((2, 4, 4, 3), [1, 2], -0.9, 0.9)
    x = images(2)[:, :4, :4]
    padded = tf.concat([loc, tf.zeros((2, 4, 4, 6))], axis=-1)
    np.testing.assert_allclose(refined(padded).log_prob(x), plain(loc).log_prob(x), rtol=1e-6)
    assert refined.extra_params(3) == 6
    assert get_observation({"name": "discretized_logistic", "pixel_scales": True}
                           ).extra_params(1) == 1
    with pytest.raises(ValueError, match="channel_coupling needs RGB"):
        refined.extra_params(1)
    with pytest.raises(ValueError, match="pixel_scales must be True or False"):
        get_observation({"name": "discretized_logistic", "pixel_scales": "yes"})


def test_likelihood_phase_freezes_the_means_and_tightens_the_bound(tmp_path):
    keras.utils.set_random_seed(0)
    model = tfladder.VariationalLadderAutoencoder(SHAPE, **{**CONFIG, "observation": REFINED})
    model.build()
    plain = tfladder.VariationalLadderAutoencoder(SHAPE, **CONFIG)
    plain.build()
    for a, b in zip(model.inference_rungs + model.generative_rungs + [model.image_decoder],
                    plain.inference_rungs + plain.generative_rungs + [plain.image_decoder]):
        b.set_weights(a.get_weights())
    x = np.tile(images(8), (4, 1, 1, 1))
    # A fresh head outputs zero: the plain per-channel likelihood.
    np.testing.assert_allclose(model.elbo(x, seed=1), plain.elbo(x, seed=1), rtol=1e-5)
    head = model.likelihood_head.trainable_weights
    assert not head                               # phase "hierarchy": the head is frozen
    model.compile(keras.optimizers.Adam(3e-3))
    model.fit(x, epochs=2, batch_size=8, verbose=0)
    noise = model.prior_noise(4, 0)
    means = model.generate(noise).mean().numpy()
    before = float(np.mean(model.elbo(x, seed=1)))
    model.set_training_phase("likelihood")
    assert model.likelihood_head.trainable_weights
    assert not any(r.trainable_weights for r in model.generative_rungs)
    model.compile(keras.optimizers.Adam(3e-3))
    model.fit(x, epochs=4, batch_size=8, verbose=0)
    np.testing.assert_array_equal(model.generate(noise).mean().numpy(), means)
    after = float(np.mean(model.elbo(x, seed=1)))
    assert after > before + 10, (before, after)
    # The refined model round-trips (config + weights).
    path = str(tmp_path / "refined.weights.h5")
    model.save_weights(path)
    copy = tfladder.VariationalLadderAutoencoder.from_config(model.get_config())
    copy.load_weights(path)
    np.testing.assert_allclose(copy.elbo(x, seed=1), model.elbo(x, seed=1), rtol=1e-5)



def test_a_frozen_head_skips_its_zero_maps_and_applies_trained_ones(monkeypatch):
    from tfladder.layers import LikelihoodHead
    head = LikelihoodHead((8, 8, 3), 6, filters=4)
    rng = np.random.default_rng(0)
    features = tf.constant(rng.normal(size=(2, 4, 4, 5)), tf.float32)
    loc = tf.constant(rng.normal(size=(2, 8, 8, 3)), tf.float32)
    head([features, loc])                                    # builds; zero output conv
    head.trainable = False
    computed = []
    real = head._maps
    monkeypatch.setattr(head, "_maps", lambda *a: computed.append(1) or real(*a))
    zero = head([features, loc])                            # eager: only the taken branch
    assert zero.shape == (2, 8, 8, 6) and not np.any(zero.numpy()) and not computed
    head.out.set_weights([rng.normal(size=w.shape).astype("float32")
                          for w in head.out.get_weights()])
    frozen = tf.function(lambda f, l: head([f, l]))(features, loc).numpy()
    head.trainable = True
    trained = head([features, loc]).numpy()
    assert np.any(trained) and computed
    np.testing.assert_array_equal(frozen, trained)


def test_likelihood_head_options_are_refused_where_they_cannot_work():
    with pytest.raises(ValueError, match="needs generator='spatial'"):
        tfladder.VariationalLadderAutoencoder(
            SHAPE, **{**CONFIG, "generator": "dense", "observation": REFINED})
    with pytest.raises(ValueError, match="likelihood head"):
        tfladder.LadderVAE(SHAPE, [2, 2], hidden_units=8, observation=REFINED)
    with pytest.raises(ValueError, match="phase 'likelihood' needs"):
        tfladder.VariationalLadderAutoencoder(SHAPE, **CONFIG).set_training_phase("likelihood")
    with pytest.raises(ValueError, match="phase must be one of"):
        tfladder.VariationalLadderAutoencoder(SHAPE, **CONFIG).set_training_phase("all")


def test_a_deeper_likelihood_head_starts_at_zero_and_round_trips():
    deep = tfladder.VariationalLadderAutoencoder(
        SHAPE, **{**CONFIG, "observation": REFINED, "head_filters": 6, "head_layers": 3})
    deep.build()
    head = deep.likelihood_head
    assert len(head.more_hidden) == 2 and head.filters == 6
    assert [w.shape for w in head.more_hidden[0].weights] == [(3, 3, 6, 6), (6,)]
    plain = tfladder.VariationalLadderAutoencoder(SHAPE, **CONFIG)
    plain.build()
    for a, b in zip(deep.inference_rungs + deep.generative_rungs + [deep.image_decoder],
                    plain.inference_rungs + plain.generative_rungs + [plain.image_decoder]):
        b.set_weights(a.get_weights())
    x = images(4)
    np.testing.assert_allclose(deep.elbo(x, seed=1), plain.elbo(x, seed=1), rtol=1e-5)
    # Trained (non-zero) head: the extra layers change the likelihood, and the
    # config rebuilds the same head.
    rng = np.random.default_rng(0)
    for weight in head.weights:
        weight.assign(rng.normal(scale=0.1, size=weight.shape).astype("float32"))
    assert not np.allclose(deep.elbo(x, seed=1), plain.elbo(x, seed=1), atol=1e-3)
    config = deep.get_config()
    assert (config["head_filters"], config["head_layers"]) == (6, 3)
    copy = tfladder.VariationalLadderAutoencoder.from_config(config)
    copy.build()
    copy.set_weights(deep.get_weights())
    np.testing.assert_allclose(copy.elbo(x, seed=1), deep.elbo(x, seed=1), rtol=1e-5)
    # A config written before the option existed builds the one-layer head.
    old = {k: v for k, v in config.items() if k not in ("head_filters", "head_layers")}
    assert not tfladder.VariationalLadderAutoencoder.from_config(old).likelihood_head.more_hidden


@pytest.mark.parametrize("argument", ["head_filters", "head_layers"])
def test_likelihood_head_sizes_must_be_positive(argument):
    with pytest.raises(ValueError, match=argument):
        tfladder.VariationalLadderAutoencoder(SHAPE, **{**CONFIG, "observation": REFINED,
                                                        argument: 0})


# ------------------------------------------- per-pixel mixture in the head (K > 1)
MIXTURE = {**REFINED, "num_components": 2}


@pytest.fixture(scope="module")
def mixture_pixel():
    """A one-pixel, two-component coupled mixture with distinct components, and its table."""
    observation = get_observation(MIXTURE)
    # loc (3) | log-scale offsets (3) | coupling (3) | logits (2: weights ~0.38 / 0.62)
    # | component 2's loc offsets (3) | its log-scale offsets (3)
    params = tf.constant([[[[-0.2, 0.1, 0.3, -1.5, -1.6, -1.0, 1.5, -0.7, 0.9,
                             0.0, 0.5, 0.4, -0.3, 0.2, 0.6, -0.4, 0.3]]]])
    assert observation.extra_params(3) == 3 + 3 + 2 + 6
    return observation, params, _pixel_table(observation, params)


def test_pixel_mixture_sums_to_one(mixture_pixel):
    _, _, table = mixture_pixel
    np.testing.assert_allclose(np.exp(table).sum(), 1.0, atol=1e-4)


def test_pixel_mixture_mean_and_samples_match_the_exact_table(mixture_pixel):
    observation, params, table = mixture_pixel
    exact_mean, exact_cov = _table_moments(table)
    distribution = observation(params)
    weights = np.exp([0.0, 0.5]) / np.exp([0.0, 0.5]).sum()
    loc = np.array([[-0.2, 0.1, 0.3], [0.2, -0.2, 0.5]])      # component 2 = 1 + offsets
    np.testing.assert_allclose(distribution.mean().numpy().ravel(),
                               (weights @ loc + 1) / 2, atol=1e-6)
    np.testing.assert_allclose(distribution.mean().numpy().ravel(), exact_mean, atol=2e-3)
    samples = _samples(observation, params)
    sample_cov = np.cov(samples.T)
    np.testing.assert_allclose(samples.mean(0), exact_mean, atol=4e-3)
    np.testing.assert_allclose([sample_cov[0, 1], sample_cov[1, 2], sample_cov[0, 0]],
                               [exact_cov[0, 1], exact_cov[1, 2], exact_cov[0, 0]], rtol=0.1)
    # One component for the whole pixel: P(x) = sum_k w_k P_k(R) P_k(G | R) P_k(B | R, G),
    # each P_k the single coupled logistic with component k's location and scales.
    single = get_observation(REFINED)
    single.build((None, 9))
    single.log_scale.assign(observation.log_scale)
    first = params[..., :9]
    second = tf.concat([params[..., :3] + params[..., 11:14], params[..., 3:6] + params[..., 14:17],
                        params[..., 6:9]], -1)
    x = tf.constant([[[[0.4, 0.6, 0.7]]], [[[0.45, 0.5, 0.62]]]])
    by_hand = np.logaddexp(np.log(weights[0]) + single(tf.repeat(first, 2, 0)).log_prob(x),
                           np.log(weights[1]) + single(tf.repeat(second, 2, 0)).log_prob(x))
    np.testing.assert_allclose(observation(tf.repeat(params, 2, 0)).log_prob(x), by_hand,
                               rtol=1e-5)


def test_pixel_mixture_at_zero_is_the_single_logistic_and_can_leave_it():
    single = get_observation(REFINED)
    mixture = get_observation({**MIXTURE, "num_components": 3})
    assert mixture.extra_params(3) == 6 + 3 + 2 * 2 * 3
    loc = tf.random.stateless_uniform((2, 4, 4, 3), [1, 2], -0.9, 0.9)
    x = images(2)[:, :4, :4]
    head = tf.Variable(tf.zeros((2, 4, 4, mixture.extra_params(3))))
    np.testing.assert_allclose(mixture(tf.concat([loc, head], -1)).log_prob(x),
                               single(tf.concat([loc, tf.zeros((2, 4, 4, 6))], -1)).log_prob(x),
                               rtol=1e-6)
    np.testing.assert_allclose(mixture(tf.concat([loc, head], -1)).mean(),
                               single(tf.concat([loc, tf.zeros((2, 4, 4, 6))], -1)).mean(),
                               atol=1e-6)
    # Component 1 is pinned to the decoder's mean, so identical components are
    # not a saddle: the other components' locations get a gradient at once.
    with tf.GradientTape() as tape:
        log_prob = tf.reduce_sum(mixture(tf.concat([loc, head], -1)).log_prob(x))
    gradient = tape.gradient(log_prob, head).numpy()
    # head maps: scales (3) | coupling (3) | logits (3) | loc offsets of components 2, 3 (6)
    assert np.abs(gradient[..., 9:15]).max() > 1e-3


def test_pixel_mixture_in_the_model_round_trips_and_checks_its_argument(tmp_path):
    model = tfladder.VariationalLadderAutoencoder(SHAPE, **{**CONFIG, "observation": MIXTURE})
    model.build()
    assert model.likelihood_head.out_channels == 3 + 3 + 2 + 6
    rng = np.random.default_rng(0)
    for weight in model.likelihood_head.weights:
        weight.assign(rng.normal(scale=0.1, size=weight.shape).astype("float32"))
    x = images(4)
    assert np.all(np.isfinite(model.elbo(x, seed=1).numpy()))
    copy = tfladder.VariationalLadderAutoencoder.from_config(model.get_config())
    copy.build()
    copy.set_weights(model.get_weights())
    np.testing.assert_allclose(copy.elbo(x, seed=1), model.elbo(x, seed=1), rtol=1e-5)
    assert copy.observation.num_components == 2
    for bad in (0, 1.5, True, "2"):
        with pytest.raises(ValueError, match="num_components must be an integer"):
            get_observation({**MIXTURE, "num_components": bad})
