"""The top-down VAE: NVAE's posterior context, closed-form KL, KL balancing,
serialization of the options (tfladder/models/topdown.py)."""
import json

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

import tfladder
from tests.helpers import IMAGE_SHAPE, small_model
from tfladder.models import topdown

tfd = tfp.distributions


@pytest.fixture(scope="module")
def x():
    rng = np.random.RandomState(0)
    return (rng.rand(5, *IMAGE_SHAPE) < 0.3).astype(np.float32)


def _model(**overrides):
    return small_model("topdown", latent_dims=[6, 4, 3], hidden_units=[32, 16, 8], **overrides)


def _pass(model, x, seed):
    return model.infer(model.prepare_inputs(x), tf.constant([seed, 0], tf.int32))


# ------------------------------------------------------------ the math
@pytest.mark.parametrize("context", ["top_down", "bottom_up"])
def test_closed_form_kl_matches_tfp_and_monte_carlo(context, x):
    """KL_l of the delta posterior == tfd.kl_divergence(q, p) == E_q[log q - log p]."""
    model = _model(posterior_context=context)
    inference = _pass(model, x, seed=3)
    for l, layer in enumerate(inference.layers):
        exact = tf.reduce_sum(tfd.kl_divergence(layer.posterior, layer.prior), axis=-1)
        np.testing.assert_allclose(layer.kl, exact, rtol=1e-4, atol=1e-5, err_msg=f"level {l + 1}")
        # Monte Carlo with the same conditioning (q and p of this pass, fixed).
        z = layer.posterior.sample(20000, seed=tf.constant([l, 7]))
        log_ratio = tf.reduce_sum(layer.posterior.log_prob(z) - layer.prior.log_prob(z), -1)
        mean = tf.reduce_mean(log_ratio, axis=0).numpy()
        stderr = (tf.math.reduce_std(log_ratio, axis=0) / np.sqrt(20000.0)).numpy()
        assert np.all(np.abs(mean - layer.kl.numpy()) < 5 * stderr + 1e-3), (l, mean, layer.kl)


def test_posterior_of_a_lower_level_is_relative_to_its_prior(x):
    """q(z_l | .) = N(mu_p + delta_mu, sigma_p * delta_sigma) with the KL of NVAE eq. 2."""
    model = _model()
    inference = _pass(model, x, seed=1)
    for layer in inference.layers:
        delta_loc = layer.posterior.loc - layer.prior.loc
        delta_scale = layer.posterior.scale / layer.prior.scale
        expected = 0.5 * tf.reduce_sum(tf.square(delta_loc / layer.prior.scale)
                                       + tf.square(delta_scale)
                                       - tf.math.log(tf.square(delta_scale)) - 1.0, -1)
        np.testing.assert_allclose(layer.kl, expected, rtol=1e-4, atol=1e-5)
        low, high = model.log_variance_range
        log_var = 2 * np.log(delta_scale.numpy())
        assert np.all(log_var >= low - 1e-4) and np.all(log_var <= high + 1e-4)


def test_top_down_context_makes_the_deltas_depend_on_the_level_above(x):
    """NVAE form: the deltas of level l change with z_{l+1} for the same x; the
    bottom-up form's deltas do not (they see r_l only)."""
    for context, depends in [("top_down", True), ("bottom_up", False)]:
        model = _model(posterior_context=context)
        a, b = _pass(model, x, seed=1), _pass(model, x, seed=2)
        assert not np.allclose(a.layers[1].z, b.layers[1].z)     # different z_2 samples
        for l in range(model.num_layers - 1):
            delta_a = (a.layers[l].posterior.loc - a.layers[l].prior.loc).numpy()
            delta_b = (b.layers[l].posterior.loc - b.layers[l].prior.loc).numpy()
            assert (not np.allclose(delta_a, delta_b, atol=1e-6)) == depends, (context, l)
        # The top level has no level above: its posterior is the same for both seeds.
        np.testing.assert_allclose(a.layers[-1].posterior.loc, b.layers[-1].posterior.loc,
                                   atol=1e-6)


def test_top_down_context_adds_a_combiner_per_lower_level():
    bottom_up = _model(posterior_context="bottom_up")
    top_down = _model(posterior_context="top_down")
    bottom_up.build()
    top_down.build()
    assert len(top_down.context_mlps) == 2 and bottom_up.context_mlps == []
    # Each combiner reads [r_l ; h_l]: hidden_units[l] + hidden_units[l] inputs.
    kernel = top_down.context_mlps[0].dense_layers[0].kernel
    assert tuple(kernel.shape) == (32 + 32, 32)
    assert top_down.count_params() > bottom_up.count_params()


# ------------------------------------------------------- KL balancing
def test_kl_balance_coefficients_follow_nvae():
    """gamma_l = L * a_l / sum a,  a_l = (mean |KL_l| + 0.01) / d_l, while beta < 1."""
    kl = tf.constant([[10.0, 1.0, 0.0], [14.0, 3.0, 0.0]])
    dims = [8, 4, 2]
    gamma = topdown.kl_balance_coefficients(kl, dims, beta=0.5).numpy()
    a = (np.array([12.0, 2.0, 0.0]) + 0.01) / np.array(dims)
    np.testing.assert_allclose(gamma, 3 * a / a.sum(), rtol=1e-6)
    np.testing.assert_allclose(gamma.sum(), 3.0, rtol=1e-6)
    assert gamma[2] < gamma[1] < gamma[0]      # the collapsed level is penalised least
    np.testing.assert_array_equal(topdown.kl_balance_coefficients(kl, dims, beta=1.0), [1, 1, 1])
    # Equal KL per unit: every gamma is 1.
    even = tf.constant([[8.0, 4.0, 2.0]])
    np.testing.assert_allclose(topdown.kl_balance_coefficients(even, dims, 0.1), [1, 1, 1],
                               rtol=3e-3)   # the 0.01-nat epsilon


def _loss(model, x, beta):
    x = model.prepare_inputs(x)
    loss_sum, terms = model._loss_terms(x, tf.constant([4, 0], tf.int32),
                                        tf.constant(beta), training=False)
    return float(loss_sum), terms


def test_kl_balancing_reweights_the_kl_during_warm_up_only(x):
    model = _model(kl_balancing=True)
    plain = _model(kl_balancing=False)
    plain.build()
    model.build()
    plain.set_weights(model.get_weights())
    for beta in (0.3, 1.0):
        balanced, terms = _loss(model, x, beta)
        unbalanced, plain_terms = _loss(plain, x, beta)
        np.testing.assert_allclose(terms.elbo, plain_terms.elbo, rtol=1e-6)   # same pass
        gamma = topdown.kl_balance_coefficients(terms.kl_per_layer, model.latent_dims, beta)
        expected = tf.reduce_sum(terms.distortion + beta * tf.reduce_sum(
            terms.kl_per_layer * gamma, -1))
        np.testing.assert_allclose(balanced, float(expected), rtol=1e-5)
        np.testing.assert_allclose(
            unbalanced, float(tf.reduce_sum(terms.distortion + beta * terms.rate)), rtol=1e-5)
        if beta < 1:
            assert abs(balanced - unbalanced) > 1e-3     # the weights changed something
        else:
            np.testing.assert_allclose(balanced, unbalanced, rtol=1e-6)   # plain ELBO after
    np.testing.assert_array_equal(plain.kl_balance_coefficients(terms.kl_per_layer, 0.1),
                                  np.ones(3))


def test_kl_balancing_passes_no_gradient_through_the_coefficients(x):
    """d loss / d KL_l = beta * gamma_l exactly (gamma is a constant)."""
    kl = tf.Variable([[5.0, 1.0, 0.5], [7.0, 2.0, 0.5]])
    with tf.GradientTape() as tape:
        gamma = topdown.kl_balance_coefficients(kl, [6, 4, 3], 0.5)
        loss = tf.reduce_sum(0.5 * kl * gamma)
    grad = tape.gradient(loss, kl).numpy()
    np.testing.assert_allclose(grad, 0.5 * np.tile(gamma.numpy(), (2, 1)), rtol=1e-6)


def test_kl_balancing_model_trains(x):
    model = _model(kl_balancing=True, kl_warmup_steps=4)
    model.compile(keras.optimizers.Adam(1e-3))
    history = model.fit(x, epochs=2, batch_size=5, verbose=0).history
    assert np.all(np.isfinite(history["loss"]))


# ------------------------------------------------------- serialization
def test_options_round_trip_through_get_config(x, tmp_path):
    model = _model(posterior_context="bottom_up", kl_balancing=True)
    config = model.get_config()
    assert config["posterior_context"] == "bottom_up" and config["kl_balancing"] is True
    json.dumps(config)
    copy = tfladder.TopDownVAE.from_config(json.loads(json.dumps(config)))
    assert (copy.posterior_context, copy.kl_balancing) == ("bottom_up", True)
    default = _model()
    assert (default.posterior_context, default.kl_balancing) == ("top_down", False)
    path = tmp_path / "topdown.keras"
    default.build()
    default.save(path)
    loaded = keras.saving.load_model(path)
    assert (loaded.posterior_context, loaded.kl_balancing) == ("top_down", False)
    np.testing.assert_allclose(loaded.elbo(x, seed=2), default.elbo(x, seed=2), rtol=1e-5)


def test_configs_saved_before_the_options_load_as_bottom_up(x):
    """A config without the keys (e.g. a model saved by tfladder <= this change)
    is the bottom-up model, with the weights it was saved with."""
    old = _model(posterior_context="bottom_up")
    old.build()
    config = old.get_config()
    del config["posterior_context"], config["kl_balancing"]
    loaded = tfladder.TopDownVAE.from_config(config)
    assert (loaded.posterior_context, loaded.kl_balancing) == ("bottom_up", False)
    loaded.build()
    loaded.set_weights(old.get_weights())
    np.testing.assert_allclose(loaded.elbo(x, seed=2), old.elbo(x, seed=2), rtol=1e-6)


def test_bad_posterior_context_is_refused():
    with pytest.raises(ValueError, match="posterior_context"):
        _model(posterior_context="sideways")
