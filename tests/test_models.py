"""The shared model API of the five families: shapes, consistency, validation,
serialization. Training quality is in test_training.py."""
import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

import tfladder
from tests.helpers import IMAGE_SHAPE, small_model

FAMILIES = sorted(tfladder.FAMILIES)


@pytest.fixture(scope="module")
def x():
    rng = np.random.RandomState(0)
    return (rng.rand(6, *IMAGE_SHAPE) < 0.3).astype(np.float32)


@pytest.mark.parametrize("conv", [False, True], ids=["mlp", "conv"])
@pytest.mark.parametrize("family", FAMILIES)
def test_api_shapes(family, conv, x):
    model = small_model(family, conv=conv)
    layers = len(model.latent_dims)
    terms = model.elbo_terms(x, seed=0)
    assert terms.elbo.shape == (6,) and terms.kl_per_layer.shape == (6, layers)
    np.testing.assert_allclose(terms.elbo, -(terms.distortion + terms.rate), rtol=1e-5)
    np.testing.assert_allclose(terms.rate, tf.reduce_sum(terms.kl_per_layer, -1), rtol=1e-5)
    assert np.all(np.isfinite(terms.elbo))
    posteriors = model.encode(x)
    assert [q.loc.shape[-1] for q in posteriors] == model.latent_dims
    assert all(isinstance(q, tfp.distributions.Normal) for q in posteriors)
    noise = model.prior_noise(3, tf.constant([1, 2]))
    assert model.generate(noise).mean().shape == (3,) + IMAGE_SHAPE
    assert model.decode([q.loc for q in posteriors]).log_prob(x).shape == (6,)
    assert model.sample(4, seed=1).shape == (4,) + IMAGE_SHAPE
    assert model.log_likelihood(x[:2], num_samples=7).shape == (2,)


@pytest.mark.parametrize("family", FAMILIES)
def test_seeds_make_everything_reproducible(family, x):
    model = small_model(family)
    np.testing.assert_array_equal(model.sample(3, seed=5), model.sample(3, seed=5))
    assert not np.allclose(model.sample(3, seed=5), model.sample(3, seed=6))
    np.testing.assert_array_equal(model.elbo(x, seed=2), model.elbo(x, seed=2))
    assert not np.allclose(model.elbo(x, seed=2), model.elbo(x, seed=3))
    # encode without a seed conditions on posterior means: deterministic.
    np.testing.assert_array_equal(model.encode(x)[-1].loc, model.encode(x)[-1].loc)


@pytest.mark.parametrize("family", ["hvae", "lvae", "topdown"])
def test_generate_follows_the_markov_chain(family):
    """generate(noise) == decode of z_l = loc_p(z_{l+1}) + scale_p(z_{l+1}) * noise_l."""
    model = small_model(family)
    noise = model.prior_noise(4, tf.constant([3, 4]))
    z = [None] * len(noise)
    z[-1] = noise[-1]
    for l in reversed(range(len(noise) - 1)):
        p = model.prior(l, z[l + 1])
        z[l] = p.loc + p.scale * noise[l]
    np.testing.assert_allclose(model.generate(noise).mean(), model.decode(z).mean(), atol=1e-6)


def test_vlae_generate_is_decode_of_noise():
    model = small_model("vlae")
    noise = model.prior_noise(4, tf.constant([3, 4]))
    np.testing.assert_array_equal(model.generate(noise).mean(), model.decode(noise).mean())


def test_vlae_layers_reach_the_image_through_their_own_rungs():
    """Changing only z_l changes the image: every layer is wired in."""
    model = small_model("vlae")
    noise = model.prior_noise(2, tf.constant([1, 1]))
    base = model.generate(noise).mean()
    for l in range(len(noise)):
        moved = list(noise)
        moved[l] = noise[l] + 3.0
        assert np.max(np.abs(model.generate(moved).mean() - base)) > 1e-4


def test_vlae_progressive_schedule_fades_lower_layers_in_top_first():
    """pro-VLAE: alpha_L = 1; alpha_l starts at (L - l) * progressive_steps, ramps over fade_in."""
    model = small_model("vlae", progressive_steps=10, fade_in_steps=4)
    alphas = lambda step: [float(a) for a in model.layer_alphas(step)]  # noqa: E731
    assert alphas(0) == [0.0, 0.0, 1.0]
    assert alphas(9) == [0.0, 0.0, 1.0]
    assert alphas(10) == [0.0, 0.25, 1.0]
    assert alphas(13) == [0.0, 1.0, 1.0]
    assert alphas(21) == [0.5, 1.0, 1.0]
    assert alphas(1000) == [1.0, 1.0, 1.0]
    assert small_model("vlae").layer_alphas(0)[0] == 1.0     # off: every layer in
    config = model.get_config()
    assert (config["progressive_steps"], config["fade_in_steps"]) == (10, 4)
    with pytest.raises(ValueError, match="progressive_steps"):
        small_model("vlae", progressive_steps=-1)


def test_vlae_progressive_training_cuts_faded_out_layers_from_the_decoder(x):
    """At step 0 only the top layer reaches the image; a copy without optimizer uses all."""
    model = small_model("vlae", progressive_steps=100, fade_in_steps=10)
    model.compile(keras.optimizers.Adam(1e-3))
    model.fit(x, epochs=1, batch_size=6, verbose=0)          # step 1 < 100
    noise = model.prior_noise(2, tf.constant([1, 1]))
    base = model.generate(noise).mean()
    for l, reaches in enumerate([False, False, True]):
        moved = list(noise)
        moved[l] = noise[l] + 3.0
        changed = np.max(np.abs(model.generate(moved).mean() - base)) > 1e-4
        assert changed == reaches, f"layer {l + 1}"
    copy = type(model).from_config(model.get_config())
    copy.build()
    copy.set_weights(model.get_weights())
    moved = list(noise)
    moved[0] = noise[0] + 3.0
    assert np.max(np.abs(copy.generate(moved).mean() - copy.generate(noise).mean())) > 1e-4


# Two families in the default run (an MLP and a convolutional one, ~15-30 s each);
# the rest with -m slow.
@pytest.mark.parametrize("family", [
    f if f in ("vae", "vlae") else pytest.param(f, marks=pytest.mark.slow) for f in FAMILIES])
def test_keras_file_round_trip_is_exact(family, x, tmp_path):
    model = small_model(family)
    model.compile(keras.optimizers.Adam(1e-3))
    model.fit(x, epochs=1, batch_size=3, verbose=0)
    path = tmp_path / f"{family}.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert type(loaded) is type(model)
    assert loaded.get_config() == model.get_config()
    np.testing.assert_array_equal(loaded.elbo(x, seed=4), model.elbo(x, seed=4))
    np.testing.assert_array_equal(loaded.sample(2, seed=4), model.sample(2, seed=4))
    clone = type(model).from_config(model.get_config())
    clone.build()
    clone.set_weights(model.get_weights())
    np.testing.assert_array_equal(clone.elbo(x, seed=4), model.elbo(x, seed=4))


def test_weights_file_round_trip(x, tmp_path):
    model = small_model("lvae")
    path = str(tmp_path / "lvae.weights.h5")
    model.build()
    model.save_weights(path)
    other = small_model("lvae", seed=9)
    other.load_weights(path)
    np.testing.assert_array_equal(other.elbo(x, seed=1), model.elbo(x, seed=1))


class TestInputValidation:
    model = None

    @classmethod
    def setup_class(cls):
        cls.model = small_model("vae")

    @pytest.mark.parametrize("bad, match", [
        (np.zeros((2, 28, 28), np.float32), r"rank 4 .*x\[\.\.\., None\]"),
        (np.zeros((2, 32, 32, 1), np.float32), r"image shape \(28, 28, 1\)"),
        (np.zeros((2, 28, 28, 3), np.float32), r"image shape \(28, 28, 1\)"),
        (np.zeros((0, 28, 28, 1), np.float32), "empty batch"),
        (np.zeros((2, 28, 28, 1), np.int32), "float in \\[0, 1\\] or uint8"),
        (np.full((2, 28, 28, 1), np.nan, np.float32), "NaN or Inf"),
        (np.full((2, 28, 28, 1), 0.5, np.float32), r"binary values \{0, 1\}"),
        (np.full((2, 28, 28, 1), 255.0, np.float32), r"binary values|\[0, 1\]"),
    ])
    def test_bad_inputs_raise_value_error(self, bad, match):
        for method in (self.model.elbo, self.model.kl_per_layer, self.model.encode,
                       lambda v: self.model.log_likelihood(v, num_samples=2)):
            with pytest.raises(ValueError, match=match):
                method(bad)

    def test_uint8_is_scaled(self):
        binary = (np.random.RandomState(1).rand(2, 28, 28, 1) < 0.5)
        np.testing.assert_allclose(self.model.elbo((binary * 255).astype(np.uint8), seed=0),
                                   self.model.elbo(binary.astype(np.float32), seed=0))

    @pytest.mark.parametrize("kwargs, match", [
        (dict(num_samples=0), "num_samples"),
        (dict(num_samples=2.5), "num_samples"),
    ])
    def test_bad_num_samples(self, kwargs, match):
        with pytest.raises(ValueError, match=match):
            self.model.log_likelihood(np.zeros((1, 28, 28, 1), np.float32), **kwargs)

    def test_bad_constructor_arguments(self):
        with pytest.raises(ValueError, match="latent_dims"):
            tfladder.LadderVAE(IMAGE_SHAPE, latent_dims=[])
        with pytest.raises(ValueError, match="image_shape"):
            tfladder.LadderVAE((28, 28), latent_dims=[4])
        with pytest.raises(ValueError, match="hidden_units"):
            tfladder.LadderVAE(IMAGE_SHAPE, latent_dims=[4, 2], hidden_units=[8])
        with pytest.raises(ValueError, match="observation must be one of"):
            tfladder.VAE(IMAGE_SHAPE, observation="poisson")
        with pytest.raises(ValueError, match="exactly one latent layer"):
            tfladder.VAE(IMAGE_SHAPE, latent_dims=[4, 2])
        with pytest.raises(ValueError, match="divisible"):
            tfladder.VAE((30, 30, 1), latent_dims=4, conv_filters=[8, 8]).build()
        with pytest.raises(ValueError, match="convolutional rungs must come first"):
            tfladder.VLAE(IMAGE_SHAPE, [2, 2], conv_filters=[[], [8]])
        with pytest.raises(ValueError, match="num_importance_samples"):
            tfladder.VAE(IMAGE_SHAPE, num_importance_samples=0)
        with pytest.raises(ValueError, match="noise must be a list of 1"):
            self.model.generate([tf.zeros([1, 8]), tf.zeros([1, 8])])


def test_warmup_beta_rises_linearly():
    model = small_model("lvae", kl_warmup_steps=10)
    assert [float(model.beta(s)) for s in (0, 5, 10, 20)] == [0.0, 0.5, 1.0, 1.0]
    assert float(small_model("lvae").beta(0)) == 1.0


def test_fit_reports_every_metric_and_warmup(x):
    model = small_model("lvae", kl_warmup_steps=4)
    model.compile(keras.optimizers.Adam(1e-3))
    history = model.fit(x, validation_data=x, epochs=2, batch_size=3, verbose=0).history
    expected = {"loss", "elbo", "distortion", "rate", "beta", "kl_1", "kl_2", "kl_3"}
    assert expected | {f"val_{k}" for k in expected} <= set(history)
    assert history["beta"] == pytest.approx([0.125, 0.625])   # mean of beta(0), beta(1) = 0, 1/4, ...
    assert history["val_beta"] == pytest.approx([1.0, 1.0])
    for epoch in range(2):
        assert history["rate"][epoch] == pytest.approx(
            sum(history[f"kl_{l}"][epoch] for l in (1, 2, 3)), rel=1e-4)
        assert history["elbo"][epoch] == pytest.approx(
            -history["distortion"][epoch] - history["rate"][epoch], rel=1e-4)


def test_free_bits_change_the_loss_not_the_elbo(x):
    plain, free = small_model("vae"), small_model("vae", free_bits=5.0)
    plain.build()
    free.build()
    free.set_weights(plain.get_weights())
    seed = tf.constant([1, 1])
    loss_plain, terms_plain = plain._loss_terms(x, seed, tf.constant(1.0), training=False)
    loss_free, terms_free = free._loss_terms(x, seed, tf.constant(1.0), training=False)
    np.testing.assert_allclose(terms_plain.elbo, terms_free.elbo)
    kl_mean = float(tf.reduce_mean(terms_plain.kl_per_layer))
    assert kl_mean < 5.0
    expected = float(tf.reduce_sum(terms_plain.distortion)) + len(x) * 5.0
    assert float(loss_free) == pytest.approx(expected, rel=1e-5)
    assert float(loss_plain) == pytest.approx(float(-tf.reduce_sum(terms_plain.elbo)), rel=1e-5)


def test_importance_weighted_training_loss_is_minus_l_k(x):
    model = small_model("vae", num_importance_samples=5)
    loss_sum, _ = model._loss_terms(x, tf.constant([2, 3]), tf.constant(1.0), training=False)
    seeds = tf.random.experimental.stateless_split(tf.constant([2, 3]), 5)
    log_w = tf.stack([model.log_weights(x, seeds[i]) for i in range(5)])
    expected = -tf.reduce_sum(tf.reduce_logsumexp(log_w, 0) - np.log(5.0))
    assert float(loss_sum) == pytest.approx(float(expected), rel=1e-5)
    model.compile(keras.optimizers.Adam(1e-3))
    history = model.fit(x, epochs=1, batch_size=3, verbose=0).history
    assert np.isfinite(history["loss"][0])


def test_discretized_logistic_model_on_8bit_colour_images():
    model = tfladder.VLAE((16, 16, 3), [4, 4], hidden_units=32, conv_filters=[[8], []],
                          observation={"name": "logistic_mixture", "num_components": 3}, seed=0)
    images = np.random.RandomState(0).randint(0, 256, size=(3, 16, 16, 3)).astype(np.uint8)
    elbo = model.elbo(images)
    assert elbo.shape == (3,) and np.all(np.isfinite(elbo))
    samples = model.sample(2, seed=1, mean=False).numpy()
    np.testing.assert_allclose(samples * 255, np.round(samples * 255), atol=1e-4)
    with pytest.raises(ValueError, match="8-bit"):
        model.elbo(np.full((1, 16, 16, 3), 0.1234, np.float32))


@pytest.mark.parametrize("family", sorted(tfladder.FAMILIES))
@pytest.mark.parametrize("conv", [False, True])
def test_repeated_bottom_up_pass_is_the_pass_over_repeated_images(family, conv):
    """infer(x, repeats=K) computes the bottom-up features once per image; its
    samples and log weights are those of a pass over K sample-major copies of x."""
    model = small_model(family, conv=conv, batch_norm=True)
    x = (np.random.RandomState(2).rand(3, 28, 28, 1) > 0.5).astype(np.float32)
    seed = tf.constant([4, 5], tf.int32)
    tiled = np.tile(x, [4, 1, 1, 1])
    repeated = model.infer(x, seed, repeats=4)
    reference = model.infer(tiled, seed)
    for mine, theirs in zip(repeated.layers, reference.layers):
        np.testing.assert_allclose(mine.z.numpy(), theirs.z.numpy(), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(mine.kl.numpy(), theirs.kl.numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(model.log_weights(x, seed, repeats=4).numpy(),
                               model.log_weights(tiled, seed).numpy(), rtol=1e-5, atol=1e-3)
    # A scalar tensor works too (log_likelihood passes one).
    np.testing.assert_allclose(model.log_weights(x, seed, repeats=tf.constant(4)).numpy(),
                               model.log_weights(tiled, seed).numpy(), rtol=1e-5, atol=1e-3)
