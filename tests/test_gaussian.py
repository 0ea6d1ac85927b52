"""Closed forms of tfladder.gaussian against TFP and Monte Carlo."""
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from tfladder import gaussian

tfd = tfp.distributions


def _random_gaussians(seed, n=6):
    rng = np.random.RandomState(seed)
    loc_q, loc_p = rng.randn(2, n).astype(np.float32)
    scale_q, scale_p = np.exp(rng.uniform(-1.5, 1.0, size=(2, n))).astype(np.float32)
    return loc_q, scale_q, loc_p, scale_p


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gaussian_kl_matches_tfp(seed):
    loc_q, scale_q, loc_p, scale_p = _random_gaussians(seed)
    expected = tfd.kl_divergence(tfd.Normal(loc_q, scale_q), tfd.Normal(loc_p, scale_p))
    np.testing.assert_allclose(gaussian.gaussian_kl(loc_q, scale_q, loc_p, scale_p),
                               expected, rtol=1e-5, atol=1e-6)


def test_gaussian_kl_matches_monte_carlo():
    loc_q, scale_q, loc_p, scale_p = _random_gaussians(3)
    q, p = tfd.Normal(loc_q, scale_q), tfd.Normal(loc_p, scale_p)
    z = q.sample(400_000, seed=tf.constant([4, 5]))
    mc = tf.reduce_mean(q.log_prob(z) - p.log_prob(z), axis=0)
    analytic = gaussian.gaussian_kl(loc_q, scale_q, loc_p, scale_p)
    # Monte-Carlo standard error of each unit's estimate.
    stderr = tf.math.reduce_std(q.log_prob(z) - p.log_prob(z), axis=0) / np.sqrt(400_000)
    assert np.all(np.abs(mc - analytic) < 5 * stderr + 1e-4)


def test_gaussian_kl_is_zero_for_identical_and_positive_otherwise():
    loc, scale, loc2, scale2 = _random_gaussians(5)
    np.testing.assert_allclose(gaussian.gaussian_kl(loc, scale, loc, scale), 0.0, atol=1e-6)
    assert np.all(gaussian.gaussian_kl(loc, scale, loc2, scale2) > 0)


@pytest.mark.parametrize("seed", [0, 7])
def test_delta_kl_matches_tfp_and_monte_carlo(seed):
    rng = np.random.RandomState(seed)
    prior_loc = rng.randn(5).astype(np.float32)
    prior_scale = np.exp(rng.uniform(-1, 1, 5)).astype(np.float32)
    delta_loc = rng.randn(5).astype(np.float32)
    delta_scale = np.exp(rng.uniform(-1, 0.5, 5)).astype(np.float32)
    q = tfd.Normal(prior_loc + delta_loc, prior_scale * delta_scale)
    p = tfd.Normal(prior_loc, prior_scale)
    delta_kl = gaussian.delta_gaussian_kl(delta_loc, delta_scale, prior_scale)
    np.testing.assert_allclose(delta_kl, tfd.kl_divergence(q, p), rtol=1e-5, atol=1e-6)
    z = q.sample(400_000, seed=tf.constant([seed, 1]))
    log_ratio = q.log_prob(z) - p.log_prob(z)
    stderr = tf.math.reduce_std(log_ratio, axis=0) / np.sqrt(400_000)
    assert np.all(np.abs(tf.reduce_mean(log_ratio, axis=0) - delta_kl) < 5 * stderr + 1e-4)


def test_precision_weighted_merge_is_renormalised_product():
    loc_a, scale_a, loc_b, scale_b = 0.3, 0.7, -1.2, 1.9
    loc, scale = gaussian.precision_weighted_merge(loc_a, scale_a, loc_b, scale_b)
    grid = np.linspace(-12, 12, 200_001)
    product = (tfd.Normal(loc_a, scale_a).prob(grid) * tfd.Normal(loc_b, scale_b).prob(grid)).numpy()
    product /= np.trapezoid(product, grid)
    np.testing.assert_allclose(tfd.Normal(loc, scale).prob(grid), product, atol=1e-5)


def test_precision_weighted_merge_reduces_to_one_input():
    loc, scale = gaussian.precision_weighted_merge(0.4, 0.5, -3.0, 1e6)
    np.testing.assert_allclose([loc, scale], [0.4, 0.5], rtol=1e-5)
    loc, scale = gaussian.precision_weighted_merge(2.0, 1e6, -1.0, 0.25)
    np.testing.assert_allclose([loc, scale], [-1.0, 0.25], rtol=1e-5)


def test_log_mean_exp_is_stable():
    values = tf.constant([[-1000.0, -1001.0], [-1000.0, -999.0]])
    expected = -1000.0 + np.log(np.mean(np.exp([[0.0, -1.0], [0.0, 1.0]]), axis=0))
    np.testing.assert_allclose(gaussian.log_mean_exp(values, axis=0), expected, rtol=1e-6)
