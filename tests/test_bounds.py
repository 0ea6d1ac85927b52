"""Importance-weighted bounds against a model whose log p(x) is exact.

p(z) = N(0, I_2), p(x | z) = N(W z + b, sigma**2 I_5)  =>  p(x) = N(b, W W^T + sigma**2 I).
The exact posterior is N(S W^T (x - b) / sigma**2, S) with S = (I + W^T W / sigma**2)^-1.
The model below plugs these into `HierarchicalModel`, so `elbo` and
`log_likelihood` run the library's own code paths (tiling, chunking,
log-sum-exp) on a case with a known answer.
"""
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from tfladder.models.base import HierarchicalModel, InferencePass, LayerTerms, standard_normal

tfd = tfp.distributions

LATENT, DATA, SIGMA = 2, 5, 0.3
RNG = np.random.RandomState(0)
W = (0.15 * RNG.randn(DATA, LATENT)).astype(np.float32)
B = (0.5 + 0.05 * RNG.randn(DATA)).astype(np.float32)


class LinearGaussian(HierarchicalModel):
    """Exact-posterior (or deliberately wrong-posterior) linear-Gaussian model."""

    def __init__(self, loc_shift=0.0, scale_factor=1.0, **kwargs):
        super().__init__((1, 1, DATA), [LATENT], observation={"name": "gaussian", "scale": SIGMA},
                         seed=0, **kwargs)
        self.loc_shift, self.scale_factor = loc_shift, scale_factor
        self.posterior_cov = np.linalg.inv(np.eye(LATENT) + W.T @ W / SIGMA ** 2).astype(np.float32)

    def posterior(self, x):
        flat = tf.reshape(x, [-1, DATA])
        loc = (flat - B) @ (W / SIGMA ** 2) @ self.posterior_cov.astype(np.float32)
        chol = np.linalg.cholesky(self.posterior_cov).astype(np.float32) * self.scale_factor
        return tfd.MultivariateNormalTriL(loc + self.loc_shift, chol)

    def infer(self, x, seed, training=False, use_mean=False):
        q = self.posterior(x)
        z = q.sample(seed=seed)
        p = standard_normal(tf.shape(x)[0], LATENT)
        # Per-unit log-ratio terms must sum to log q - log p over the last axis;
        # a full-covariance q is put in as a single "unit" carrying the whole term.
        joint_q = _Summed(q, LATENT)
        kl = q.log_prob(z) - tf.reduce_sum(p.log_prob(z), -1)
        layer = LayerTerms(posterior=joint_q, prior=p, z=z, kl=kl)
        return InferencePass(layers=[layer], likelihood=self.decode([z]))

    def decode(self, z, training=False):
        loc = tf.reshape(z[0] @ W.T + B, [-1, 1, 1, DATA])
        return self.observation(loc)

    def generate(self, noise, training=False):
        return self.decode(noise)


class _Summed:
    """Adapts a multivariate q to the per-unit `log_prob` convention."""

    def __init__(self, distribution, units):
        self.distribution, self.units = distribution, units

    def log_prob(self, z):
        value = self.distribution.log_prob(z)[..., None]
        return tf.concat([value, tf.zeros_like(z[..., 1:])], axis=-1)


def exact_log_px(x):
    covariance = (W @ W.T + SIGMA ** 2 * np.eye(DATA)).astype(np.float64)
    marginal = tfd.MultivariateNormalTriL(B.astype(np.float64), np.linalg.cholesky(covariance))
    return marginal.log_prob(x.reshape(-1, DATA).astype(np.float64)).numpy()


@pytest.fixture(scope="module")
def data():
    z = RNG.randn(4, LATENT).astype(np.float32)
    x = z @ W.T + B + SIGMA * RNG.randn(4, DATA).astype(np.float32)
    x = np.clip(x, 0.0, 1.0).reshape(4, 1, 1, DATA).astype(np.float32)
    return x


def test_exact_posterior_makes_every_bound_tight(data):
    model = LinearGaussian()
    truth = exact_log_px(data)
    np.testing.assert_allclose(model.elbo(data), truth, atol=1e-3)
    np.testing.assert_allclose(model.log_likelihood(data, num_samples=1000), truth, atol=0.05)


def test_bounds_are_ordered_and_below_log_px(data):
    model = LinearGaussian(loc_shift=0.4, scale_factor=1.8)   # a poor posterior
    truth = exact_log_px(data)
    bounds = {}
    for k in (1, 10, 1000):
        # Average over repeated estimates to separate the ordering from MC noise.
        runs = [model.log_likelihood(data, num_samples=k, seed=s).numpy() for s in range(8)]
        bounds[k] = (np.mean(runs, axis=0), np.std(runs, axis=0) / np.sqrt(len(runs)))
    (l1, e1), (l10, e10), (l1000, e1000) = bounds[1], bounds[10], bounds[1000]
    assert np.all(l1 < l10 + 3 * (e1 + e10))
    assert np.all(l10 < l1000 + 3 * (e10 + e1000))
    assert np.all(l1000 <= truth + 3 * e1000 + 1e-3)
    # The gap shrinks by a clear margin as K grows.
    assert np.mean(truth - l1000) < 0.25 * np.mean(truth - l1)


def test_log_likelihood_chunking_does_not_change_the_estimate(data):
    model = LinearGaussian(loc_shift=0.1, scale_factor=1.2)
    one_pass = model.log_likelihood(data, num_samples=1000, seed=3, max_batch=1000 * 4)
    chunked = model.log_likelihood(data, num_samples=1000, seed=3, max_batch=4 * 7)
    tiny = model.log_likelihood(data, num_samples=1000, seed=3, max_batch=1)
    # Different chunkings draw different samples; all estimate the same L_1000.
    np.testing.assert_allclose(one_pass, chunked, atol=0.03)
    np.testing.assert_allclose(one_pass, tiny, atol=0.03)
    np.testing.assert_array_equal(chunked, model.log_likelihood(data, num_samples=1000, seed=3,
                                                                max_batch=28))


def test_elbo_matches_closed_form(data):
    """ELBO = log p(x) - KL(q(z | x) || p(z | x)), both Gaussian here."""
    model = LinearGaussian(loc_shift=0.3, scale_factor=1.3)
    exact = LinearGaussian()
    repeats = 4000
    tiled = np.tile(data, (repeats, 1, 1, 1))
    elbo = model.elbo(tiled, seed=1).numpy().reshape(repeats, -1)
    kl = tfd.kl_divergence(model.posterior(data), exact.posterior(data)).numpy()
    expected = exact_log_px(data) - kl
    stderr = elbo.std(axis=0) / np.sqrt(repeats)
    assert np.all(np.abs(elbo.mean(axis=0) - expected) < 4 * stderr + 1e-3)
    l1 = model.log_likelihood(tiled, num_samples=1, seed=2).numpy().reshape(repeats, -1)
    assert np.all(np.abs(l1.mean(axis=0) - expected) < 4 * stderr + 1e-3)
