"""Tests of every layer in `tfladder.layers`.

Serialization round trips (config, Keras registry, `.keras` files under
`safe_mode`), the numerics of the stochastic layers and observation models
against hand-written references (NumPy / SciPy / TFP), and the shapes and
argument checks of the deterministic blocks and the ladder rungs.
"""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import dataclasses  # noqa: E402
import inspect  # noqa: E402
from typing import Callable  # noqa: E402

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402
import tensorflow_probability as tfp  # noqa: E402
from scipy import stats  # noqa: E402

from tfladder import gaussian, layers  # noqa: E402
from tfladder.layers import (MLP, BernoulliObservation, BinaryBernoulli, ConvStack, DeltaGaussian,  # noqa: E402
                             DiscretizedLogisticMixture, DiscretizedLogisticMixtureObservation,
                             DiscretizedLogisticObservation, Flatten, GaussianObservation,
                             GaussianStochastic, GenerativeRung, ImageDecoder, ImageEncoder,
                             ImageHead, InferenceRung, LikelihoodHead, PrecisionWeightedMerge)

tfd = tfp.distributions


# --------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------

def _rand(seed, *shape, scale=1.0):
    return (scale * np.random.RandomState(seed).randn(*shape)).astype(np.float32)


def _binary(seed, *shape):
    return (np.random.RandomState(seed).uniform(size=shape) > 0.5).astype(np.float32)


def _grid_images(seed, *shape):
    """8-bit images k / 255 as float32."""
    k = np.random.RandomState(seed).randint(0, 256, size=shape)
    return (k / 255.0).astype(np.float32)


def _summarize(out, probe):
    """A list of arrays that pins down a layer output (tensor, tuple or distribution)."""
    if isinstance(out, (tuple, list)):
        return [a for o in out for a in _summarize(o, probe)]
    if isinstance(out, tfd.Normal):
        return [np.asarray(out.loc), np.asarray(out.scale)]
    if isinstance(out, (tfd.Distribution, DiscretizedLogisticMixture)):
        return [np.asarray(out.log_prob(probe)), np.asarray(out.mean())]
    return [np.asarray(out)]


def _assert_same_outputs(a, b, probe, rtol=1e-5, atol=1e-6):
    arrays_a, arrays_b = _summarize(a, probe), _summarize(b, probe)
    assert len(arrays_a) == len(arrays_b)
    for x, y in zip(arrays_a, arrays_b):
        assert x.shape == y.shape
        np.testing.assert_allclose(x, y, rtol=rtol, atol=atol)


def _perturb_weights(layer, seed=0):
    """Moves every weight away from its initial value (keeps BN variances positive)."""
    rng = np.random.RandomState(seed)
    layer.set_weights([w + rng.uniform(0.05, 0.15, size=w.shape).astype(w.dtype)
                       for w in layer.get_weights()])


@dataclasses.dataclass
class Case:
    """One layer configuration with inputs for `layer(*inputs)`.

    `probe` is the value whose `log_prob` pins down a returned distribution
    that is not a plain `tfd.Normal`.
    """
    id: str
    make: Callable[[], keras.layers.Layer]
    inputs: tuple
    probe: object = None


CASES = [
    Case("mlp", lambda: MLP([8, 5], activation="elu"), (_rand(0, 4, 6),)),
    Case("mlp_batch_norm", lambda: MLP([8], batch_norm=True), (_rand(1, 4, 6),)),
    Case("conv_stack", lambda: ConvStack([4, 6], batch_norm=True), (_rand(2, 2, 8, 8, 3),)),
    Case("conv_stack_transpose", lambda: ConvStack([5, 3], transpose=True, kernel_size=3,
                                                   activation="swish"), (_rand(3, 2, 4, 4, 2),)),
    Case("flatten", lambda: Flatten(), (_rand(4, 2, 3, 4, 5),)),
    Case("image_head_dense", lambda: ImageHead((4, 4, 2), params_per_channel=3),
         (_rand(5, 2, 6),)),
    Case("image_head_conv", lambda: ImageHead((4, 4, 1), params_per_channel=2),
         (_rand(6, 2, 4, 4, 3),)),
    Case("image_encoder", lambda: ImageEncoder(conv_filters=[4], units=[8], batch_norm=True),
         (_rand(7, 2, 8, 8, 1),)),
    Case("image_decoder", lambda: ImageDecoder((8, 8, 1), params_per_channel=2,
                                               conv_filters=[4, 6], units=[8]),
         (_rand(8, 2, 5),)),
    Case("image_decoder_dense", lambda: ImageDecoder((4, 4, 1), units=[8]), (_rand(9, 2, 5),)),
    Case("inference_rung_dense", lambda: InferenceRung(3, 8), (_rand(10, 2, 4, 4, 1),)),
    Case("inference_rung_conv", lambda: InferenceRung(3, 8, conv_filters=[4, 6], batch_norm=True),
         (_rand(11, 2, 8, 8, 1),)),
    Case("inference_rung_pooled", lambda: InferenceRung(3, 8, conv_filters=[4],
                                                        ladder_resolution=2),
         (_rand(11, 2, 16, 16, 1),)),
    Case("generative_rung_top", lambda: GenerativeRung(3, 8), (_rand(12, 2, 3),)),
    Case("generative_rung_lower", lambda: GenerativeRung(3, 8, num_layers=1),
         ([_rand(13, 2, 2, 2, 4), _rand(14, 2, 3)],)),
    Case("image_head_upsample", lambda: ImageHead((8, 8, 1), params_per_channel=2),
         (_rand(6, 2, 4, 4, 3),)),
    Case("generative_rung_flat_above", lambda: GenerativeRung(3, 8),
         ([_rand(15, 2, 5), _rand(16, 2, 3)],)),
    Case("gaussian_stochastic_scale", lambda: GaussianStochastic(4, min_scale=0.01),
         (_rand(17, 3, 6),)),
    Case("gaussian_stochastic_variance",
         lambda: GaussianStochastic(4, parameterization="variance"), (_rand(18, 3, 2, 2, 3),)),
    Case("precision_weighted_merge", lambda: PrecisionWeightedMerge(),
         (_rand(19, 3, 4), np.exp(_rand(20, 3, 4)), _rand(21, 3, 4), np.exp(_rand(22, 3, 4)))),
    Case("delta_gaussian", lambda: DeltaGaussian(4, log_variance_range=(-5.0, 1.0)),
         (_rand(23, 3, 6), _rand(24, 3, 4), np.exp(_rand(25, 3, 4)))),
    Case("bernoulli", lambda: BernoulliObservation(binary=False), (_rand(26, 2, 4, 4, 2),),
         probe=_binary(27, 2, 4, 4, 2)),
    Case("gaussian_fixed", lambda: GaussianObservation(scale=0.3), (_rand(28, 2, 4, 4, 2),),
         probe=_rand(29, 2, 4, 4, 2)),
    Case("gaussian_learned", lambda: GaussianObservation(scale="learned", min_scale=0.01),
         (_rand(30, 2, 4, 4, 3),), probe=_rand(31, 2, 4, 4, 3)),
    Case("logistic_mixture", lambda: DiscretizedLogisticMixtureObservation(num_components=2),
         (_rand(32, 2, 4, 4, 2 * 6),), probe=_grid_images(33, 2, 4, 4, 2)),
    Case("discretized_logistic_refined",
         lambda: DiscretizedLogisticObservation(pixel_scales=True, channel_coupling=True),
         (_rand(34, 2, 4, 4, 9),), probe=_grid_images(35, 2, 4, 4, 3)),
    Case("likelihood_head", lambda: LikelihoodHead((8, 8, 3), 6, filters=4),
         ([_rand(36, 2, 4, 4, 5), _rand(37, 2, 8, 8, 3)],)),
]


def _case_params():
    return [pytest.param(case, id=case.id) for case in CASES]


# --------------------------------------------------------------------------
# 1. Serialization
# --------------------------------------------------------------------------

def test_cases_cover_every_public_layer_class():
    public = {obj for obj in vars(layers).values()
              if inspect.isclass(obj) and issubclass(obj, keras.layers.Layer)
              and obj is not layers.Observation}
    covered = {type(case.make()) for case in CASES}
    assert public == covered


@pytest.mark.parametrize("case", _case_params())
def test_config_and_registry_round_trip(case):
    layer = case.make()
    out = layer(*case.inputs)
    _perturb_weights(layer)
    out = layer(*case.inputs)
    cls = type(layer)
    config = layer.get_config()

    serialized = keras.layers.serialize(layer)
    assert serialized["registered_name"] == f"tfladder>{cls.__name__}"
    assert keras.saving.get_registered_name(cls).startswith("tfladder>")

    from_config = cls.from_config(config)
    from_config(*case.inputs)                          # builds
    deserialized = keras.layers.deserialize(serialized)
    assert type(deserialized) is cls
    if not deserialized.built:
        deserialized(*case.inputs)

    for clone in (from_config, deserialized):
        assert clone.get_config() == config
        assert [w.shape for w in clone.get_weights()] == [w.shape for w in layer.get_weights()]
        clone.set_weights(layer.get_weights())
        _assert_same_outputs(out, clone(*case.inputs), case.probe)


@pytest.mark.parametrize("case", _case_params())
def test_keras_file_round_trip_in_safe_mode(case, tmp_path):
    layer = case.make()
    layer(*case.inputs)
    _perturb_weights(layer, seed=1)
    out = layer(*case.inputs)
    path = tmp_path / f"{case.id}.keras"
    keras.saving.save_model(layer, path)
    restored = keras.saving.load_model(path, safe_mode=True)
    assert type(restored) is type(layer)
    _assert_same_outputs(out, restored(*case.inputs), case.probe)


@keras.saving.register_keras_serializable(package="tfladder_tests")
class TinyLadder(keras.Model):
    """A subclassed model holding several tfladder layers; returns tensors only."""

    def __init__(self, latent_dim=3, image_shape=(8, 8, 1), **kwargs):
        super().__init__(**kwargs)
        self.latent_dim = int(latent_dim)
        self.image_shape = tuple(int(d) for d in image_shape)
        self.rung = InferenceRung(self.latent_dim, 8, conv_filters=[4])
        self.top = GenerativeRung(self.latent_dim, 8)
        self.merge = PrecisionWeightedMerge()
        self.decoder = ImageDecoder(self.image_shape, conv_filters=[4], units=[8])
        self.observation = GaussianObservation("learned")

    def build(self, input_shape):
        batch = input_shape[0]
        self.rung.build(input_shape)
        self.top.build((batch, self.latent_dim))
        self.decoder.build((batch, 8))
        self.observation.build((batch,) + self.image_shape)
        self.built = True

    def call(self, x, training=False):
        _, q = self.rung(x, training=training)
        merged = self.merge(q.loc, q.scale, tf.zeros_like(q.loc), tf.ones_like(q.scale))
        params = self.decoder(self.top(merged.loc, training=training), training=training)
        return {"loc": merged.loc, "scale": merged.scale, "params": params,
                "log_prob": self.observation(params).log_prob(x)}

    def get_config(self):
        return {**super().get_config(), "latent_dim": self.latent_dim,
                "image_shape": list(self.image_shape)}


def test_subclassed_model_saves_and_loads_in_safe_mode(tmp_path):
    x = _rand(40, 2, 8, 8, 1)
    model = TinyLadder(latent_dim=2, name="tiny")
    model.build(x.shape)
    _perturb_weights(model, seed=2)
    expected = model(x)
    path = tmp_path / "tiny.keras"
    model.save(path)
    restored = keras.saving.load_model(path, safe_mode=True)
    assert isinstance(restored, TinyLadder)
    assert restored.latent_dim == 2
    got = restored(x)
    assert set(got) == set(expected)
    for key in expected:
        np.testing.assert_allclose(got[key], expected[key], rtol=1e-5, atol=1e-6)
    # The learned observation scale is a real weight that was restored.
    np.testing.assert_allclose(restored.observation.log_scale, model.observation.log_scale)


# --------------------------------------------------------------------------
# 2. GaussianStochastic
# --------------------------------------------------------------------------

def _softplus(x):
    return np.logaddexp(0.0, x.astype(np.float64))


@pytest.mark.parametrize("parameterization", ["scale", "variance"])
def test_gaussian_stochastic_scale_floor_survives_softplus_underflow(parameterization):
    min_scale = 1e-3
    layer = GaussianStochastic(4, min_scale=min_scale, parameterization=parameterization)
    features = np.full((3, 6), -1e4, np.float32)
    layer.build(features.shape)
    layer.scale_layer.set_weights([np.ones((6, 4), np.float32), np.zeros(4, np.float32)])
    q = layer(features)
    scale = np.asarray(q.scale)
    assert np.all(scale >= min_scale * (1 - 1e-6))
    np.testing.assert_allclose(scale, min_scale, rtol=1e-5)
    for value in (q.loc, q.sample(seed=tf.constant([1, 2], tf.int32))):
        assert np.all(np.isfinite(q.log_prob(value)))


@pytest.mark.parametrize("parameterization", ["scale", "variance"])
def test_gaussian_stochastic_matches_manual_computation(parameterization):
    min_scale = 0.05
    layer = GaussianStochastic(5, min_scale=min_scale, parameterization=parameterization)
    h = _rand(50, 4, 6, scale=2.0)
    q = layer(h)
    assert isinstance(q, tfd.Normal)
    assert q.batch_shape == (4, 5)
    loc_kernel, loc_bias = (w.numpy() for w in (layer.loc_layer.kernel, layer.loc_layer.bias))
    raw = h @ layer.scale_layer.kernel.numpy() + layer.scale_layer.bias.numpy()
    np.testing.assert_allclose(q.loc, h @ loc_kernel + loc_bias, rtol=1e-5, atol=1e-6)
    if parameterization == "variance":
        np.testing.assert_allclose(np.square(q.scale), _softplus(raw) + min_scale ** 2,
                                   rtol=1e-5)
    else:
        np.testing.assert_allclose(q.scale, _softplus(raw) + min_scale, rtol=1e-5)


def test_gaussian_stochastic_seeded_sampling():
    layer = GaussianStochastic(6)
    q = layer(_rand(51, 3, 5))
    first = q.sample(seed=tf.constant([3, 4], tf.int32))
    again = q.sample(seed=tf.constant([3, 4], tf.int32))
    other = q.sample(seed=tf.constant([3, 5], tf.int32))
    assert first.shape == (3, 6)
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, other)
    # The pathwise sample is loc + scale * eps with eps independent of the parameters.
    q2 = tfd.Normal(q.loc + 1.0, q.scale * 2.0)
    np.testing.assert_allclose(q2.sample(seed=tf.constant([3, 4], tf.int32)),
                               (first - q.loc) * 2.0 + q.loc + 1.0, rtol=1e-5, atol=1e-5)


def test_gaussian_stochastic_sample_is_reparameterised():
    layer = GaussianStochastic(4)
    h = _rand(52, 3, 5)
    layer.build(h.shape)
    assert layer(h).reparameterization_type == tfd.FULLY_REPARAMETERIZED
    with tf.GradientTape() as tape:
        z = layer(h).sample(seed=tf.constant([1, 1], tf.int32))
        total = tf.reduce_sum(z)
    grad_loc, grad_scale = tape.gradient(
        total, [layer.loc_layer.kernel, layer.scale_layer.kernel])
    assert grad_loc is not None and grad_scale is not None
    # d sum(z) / d W_loc[i, j] = sum_b h[b, i]
    np.testing.assert_allclose(grad_loc, np.tile(h.sum(0)[:, None], (1, 4)), rtol=1e-5)
    assert np.any(np.abs(grad_scale) > 0)


def test_gaussian_stochastic_flattens_conv_features():
    layer = GaussianStochastic(3)
    features = _rand(53, 2, 4, 4, 3)
    q = layer(features)
    assert tuple(layer.loc_layer.kernel.shape) == (48, 3)
    assert q.batch_shape == (2, 3)
    flat = layer(features.reshape(2, -1))
    np.testing.assert_allclose(q.loc, flat.loc, rtol=1e-6)
    np.testing.assert_allclose(q.scale, flat.scale, rtol=1e-6)


@pytest.mark.parametrize("kwargs, name", [
    ({"units": 0}, "units"),
    ({"units": -3}, "units"),
    ({"units": 4, "min_scale": 0.0}, "min_scale"),
    ({"units": 4, "min_scale": -1e-3}, "min_scale"),
    ({"units": 4, "parameterization": "log_scale"}, "parameterization"),
])
def test_gaussian_stochastic_rejects_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=name) as info:
        GaussianStochastic(**kwargs)
    if name == "parameterization":
        assert "scale" in str(info.value) and "variance" in str(info.value)


# --------------------------------------------------------------------------
# 3. PrecisionWeightedMerge
# --------------------------------------------------------------------------

MERGE_PARAMS = [
    # loc_hat, scale_hat, loc_p, scale_p (one unit per column)
    ([0.3, -1.0, 2.0], [0.7, 0.2, 1.5], [-0.5, 0.4, 1.0], [0.4, 0.9, 0.3]),
    ([0.0, 1.0, -2.0], [1.0, 0.5, 0.8], [0.0, -1.0, -1.5], [1.0, 2.0, 0.25]),
]


@pytest.mark.parametrize("params", MERGE_PARAMS)
def test_precision_weighted_merge_is_the_renormalised_product(params):
    loc_hat, scale_hat, loc_p, scale_p = (np.asarray(p, np.float32) for p in params)
    q = PrecisionWeightedMerge()(loc_hat, scale_hat, loc_p, scale_p)
    assert isinstance(q, tfd.Normal)
    ref_loc, ref_scale = gaussian.precision_weighted_merge(loc_hat, scale_hat, loc_p, scale_p)
    np.testing.assert_array_equal(q.loc, ref_loc)
    np.testing.assert_array_equal(q.scale, ref_scale)

    grid = np.linspace(-8.0, 8.0, 40001)[:, None]                     # [N, 1]
    product = (stats.norm.pdf(grid, loc_hat, scale_hat)
               * stats.norm.pdf(grid, loc_p, scale_p))                 # [N, 3]
    product /= np.trapezoid(product, grid[:, 0], axis=0)
    merged_pdf = stats.norm.pdf(grid, np.asarray(q.loc, np.float64),
                                np.asarray(q.scale, np.float64))
    np.testing.assert_allclose(merged_pdf, product, atol=1e-4)
    # Moments of the grid density.
    grid_mean = np.trapezoid(grid * product, grid[:, 0], axis=0)
    grid_var = np.trapezoid((grid - grid_mean) ** 2 * product, grid[:, 0], axis=0)
    np.testing.assert_allclose(q.loc, grid_mean, atol=1e-4)
    np.testing.assert_allclose(q.scale, np.sqrt(grid_var), rtol=1e-4)


@pytest.mark.parametrize("uninformative", ["hat", "p"])
def test_precision_weighted_merge_ignores_an_uninformative_gaussian(uninformative):
    loc = np.array([0.3, -2.0, 5.0], np.float32)
    scale = np.array([0.2, 1.5, 3.0], np.float32)
    wide_loc = np.array([10.0, -7.0, 0.0], np.float32)
    wide_scale = np.full(3, 1e6, np.float32)
    merge = PrecisionWeightedMerge()
    if uninformative == "hat":
        q = merge(wide_loc, wide_scale, loc, scale)
    else:
        q = merge(loc, scale, wide_loc, wide_scale)
    np.testing.assert_allclose(q.loc, loc, rtol=1e-4)
    np.testing.assert_allclose(q.scale, scale, rtol=1e-4)


# --------------------------------------------------------------------------
# 4. DeltaGaussian
# --------------------------------------------------------------------------

def test_delta_gaussian_is_relative_to_the_prior():
    layer = DeltaGaussian(4)
    h = _rand(60, 3, 2, 2, 2)                 # conv features are flattened
    prior_loc, prior_scale = _rand(61, 3, 4), np.exp(_rand(62, 3, 4))
    q = layer(h, prior_loc, prior_scale)
    assert isinstance(q, tfd.Normal)
    flat = h.reshape(3, -1)
    delta_loc = flat @ layer.loc_layer.kernel.numpy() + layer.loc_layer.bias.numpy()
    log_var = np.clip(flat @ layer.log_variance_layer.kernel.numpy()
                      + layer.log_variance_layer.bias.numpy(), -7.0, 2.0)
    delta_scale = np.exp(0.5 * log_var)
    np.testing.assert_allclose(q.loc, prior_loc + delta_loc, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(q.scale, prior_scale * delta_scale, rtol=1e-5)
    got_loc, got_scale = layer.deltas(tf.constant(h))
    np.testing.assert_allclose(got_loc, delta_loc, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got_scale, delta_scale, rtol=1e-5)
    # Its KL against the prior is the closed form of tfladder.gaussian.
    np.testing.assert_allclose(
        gaussian.delta_gaussian_kl(got_loc, got_scale, prior_scale),
        tfd.kl_divergence(q, tfd.Normal(prior_loc, prior_scale)), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("shape", [(3, 6), (3, 2, 2, 2)])
def test_delta_gaussian_deltas_accepts_numpy_features(shape):
    layer = DeltaGaussian(4)
    h = _rand(64, *shape)
    layer.build(h.shape)
    expected_loc, expected_scale = layer.deltas(tf.constant(h))
    got_loc, got_scale = layer.deltas(h)
    np.testing.assert_allclose(got_loc, expected_loc, rtol=1e-6)
    np.testing.assert_allclose(got_scale, expected_scale, rtol=1e-6)


@pytest.mark.parametrize("raw_log_variance, expected_log_variance", [
    (50.0, 2.0), (-50.0, -7.0), (1.0, 1.0)])
def test_delta_gaussian_clamps_the_log_variance(raw_log_variance, expected_log_variance):
    layer = DeltaGaussian(3)
    h = _rand(63, 2, 5)
    layer.build(h.shape)
    layer.log_variance_layer.set_weights(
        [np.zeros((5, 3), np.float32), np.full(3, raw_log_variance, np.float32)])
    _, delta_scale = layer.deltas(tf.constant(h))
    np.testing.assert_allclose(delta_scale, np.full((2, 3), np.exp(0.5 * expected_log_variance)),
                               rtol=1e-6)
    q = layer(h, np.zeros((2, 3), np.float32), np.full((2, 3), 2.0, np.float32))
    np.testing.assert_allclose(q.scale, 2.0 * np.exp(0.5 * expected_log_variance), rtol=1e-6)


@pytest.mark.parametrize("log_variance_range", [(2.0, -7.0), (1.0, 1.0)])
def test_delta_gaussian_rejects_an_empty_range(log_variance_range):
    with pytest.raises(ValueError, match="log_variance_range"):
        DeltaGaussian(3, log_variance_range=log_variance_range)


# --------------------------------------------------------------------------
# 5. Observations
# --------------------------------------------------------------------------

def _log_sigmoid(x):
    return -np.logaddexp(0.0, -x.astype(np.float64))


def test_bernoulli_log_prob_is_the_summed_cross_entropy():
    logits = _rand(70, 3, 4, 5, 2, scale=3.0)
    x = _binary(71, 3, 4, 5, 2)
    p = BernoulliObservation()(logits)
    expected = np.sum(x * _log_sigmoid(logits) + (1 - x) * _log_sigmoid(-logits), axis=(1, 2, 3))
    log_prob = p.log_prob(x)
    assert log_prob.shape == (3,)
    np.testing.assert_allclose(log_prob, expected, rtol=1e-5)
    np.testing.assert_allclose(p.mean(), 1.0 / (1.0 + np.exp(-logits)), rtol=1e-5, atol=1e-6)


def test_bernoulli_log_prob_is_finite_for_saturated_logits():
    x = _binary(72, 2, 3, 3, 1)
    worst = np.where(x == 1.0, -50.0, 50.0).astype(np.float32)     # confidently wrong
    best = -worst
    p_worst = BernoulliObservation()(worst)
    p_best = BernoulliObservation()(best)
    np.testing.assert_allclose(p_worst.log_prob(x), np.full(2, -50.0 * 9), rtol=1e-5)
    assert np.all(np.isfinite(p_best.log_prob(x)))
    np.testing.assert_allclose(p_best.log_prob(x), 0.0, atol=1e-6)


def test_binary_bernoulli_matches_tfp_values_gradients_and_infinite_limits():
    logits = tf.constant(np.concatenate([_rand(73, 40, scale=30.0),
                                         [np.inf, -np.inf, np.inf, -np.inf]]).astype(np.float32))
    x = tf.constant(np.concatenate([_binary(74, 40), [1.0, 1.0, 0.0, 0.0]]).astype(np.float32))
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(logits)
        fast = BinaryBernoulli(logits=logits).log_prob(x)
        reference = tfd.Bernoulli(logits=logits).log_prob(x)
    np.testing.assert_allclose(fast, reference, rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(fast.numpy()[-4:], [0.0, -np.inf, -np.inf, 0.0])
    np.testing.assert_allclose(tape.gradient(fast, logits)[:40],
                               tape.gradient(reference, logits)[:40], rtol=1e-6, atol=1e-7)


def test_bernoulli_support_error():
    binary = BernoulliObservation(binary=True)
    grey = BernoulliObservation(binary=False)
    half = np.full((1, 2, 2, 1), 0.5, np.float32)
    zeros_ones = np.array([0.0, 1.0, 1.0, 0.0], np.float32).reshape(1, 2, 2, 1)
    over = np.full((1, 2, 2, 1), 1.5, np.float32)
    assert isinstance(binary.support_error(half), str)
    assert binary.support_error(zeros_ones) is None
    assert grey.support_error(half) is None
    assert grey.support_error(zeros_ones) is None
    assert isinstance(grey.support_error(over), str)
    assert isinstance(grey.support_error(-half), str)


def test_gaussian_observation_fixed_scale_matches_scipy():
    loc = _rand(73, 2, 4, 3, 2)
    x = _rand(74, 2, 4, 3, 2)
    p = GaussianObservation(scale=0.2)(loc)
    expected = stats.norm.logpdf(x, loc, 0.2).sum(axis=(1, 2, 3))
    assert p.log_prob(x).shape == (2,)
    np.testing.assert_allclose(p.log_prob(x), expected, rtol=1e-5)
    np.testing.assert_allclose(p.mean(), loc)
    assert GaussianObservation(scale=0.2).trainable_weights == []


def test_gaussian_observation_learned_scale_is_one_weight_per_channel():
    layer = GaussianObservation(scale="learned", min_scale=0.01)
    loc = _rand(75, 2, 4, 4, 3)
    x = _rand(76, 2, 4, 4, 3)
    p = layer(loc)
    assert [tuple(w.shape) for w in layer.trainable_weights] == [(3,)]
    np.testing.assert_allclose(p.log_prob(x),
                               stats.norm.logpdf(x, loc, 0.1 + 0.01).sum(axis=(1, 2, 3)),
                               rtol=1e-5)
    log_scale = np.log([0.05, 0.3, 1.2]).astype(np.float32)
    layer.set_weights([log_scale])
    scale = np.exp(log_scale) + 0.01                          # broadcast over channels
    np.testing.assert_allclose(layer(loc).log_prob(x),
                               stats.norm.logpdf(x, loc, scale).sum(axis=(1, 2, 3)), rtol=1e-5)
    # The scale is trainable: the log-likelihood has a gradient wrt it.
    with tf.GradientTape() as tape:
        total = tf.reduce_sum(layer(loc).log_prob(x))
    assert np.all(np.abs(tape.gradient(total, layer.log_scale)) > 0)


@pytest.mark.parametrize("scale", [0.0, -0.1, "fixed", None])
def test_gaussian_observation_rejects_bad_scale(scale):
    with pytest.raises(ValueError, match="scale"):
        GaussianObservation(scale=scale)


# Mixture parameter settings for one channel: (logits, loc, log_scale).
MIXTURE_SETTINGS = {
    "random": (np.random.RandomState(80).randn(4), np.random.RandomState(81).uniform(-1, 1, 4),
               np.random.RandomState(82).uniform(-4.0, 0.0, 4)),
    "tiny_scales": (np.random.RandomState(83).randn(5), np.random.RandomState(84).uniform(-1, 1, 5),
                    np.full(5, -6.0)),
    "edges": (np.array([0.2, -0.3, 0.5, 0.0, -1.0]), np.array([-0.999, 0.998, 1.0, -1.0, 1.1]),
              np.array([-6.0, -5.0, -3.0, -6.0, -1.0])),
    "bin_boundary": (np.zeros(2), np.array([2 * 100.5 / 255 - 1, 2 * 3.5 / 255 - 1]),
                     np.array([-6.0, -6.0])),
    "wide": (np.zeros(1), np.zeros(1), np.array([1.0])),
    # Concentrated on ~60 levels, so 20000 samples estimate it to a small TV.
    "peaked": (np.array([0.5, 0.0, -0.5]), np.array([-0.6, 0.1, 0.97]),
               np.array([-3.5, -3.0, -4.0])),
}


def _mixture(setting, dtype=np.float32):
    logits, loc, log_scale = (np.asarray(p, dtype).reshape(1, 1, 1, 1, -1)
                              for p in MIXTURE_SETTINGS[setting])
    return DiscretizedLogisticMixture(logits, loc, log_scale)


ALL_LEVELS = (np.arange(256) / 255.0).astype(np.float32).reshape(256, 1, 1, 1)


def _reference_probs(setting):
    """P(k), k = 0..255, from TFP: a mixture of quantised logistics on the 0..255 scale.

    y = 2k/255 - 1 maps a logistic(loc, s) on y to a logistic((loc + 1) * 127.5,
    s * 127.5) on k; the bin of k is (k - 1/2, k + 1/2]. `QuantizedDistribution`
    puts the mass of (j - 1, j] on j, hence the shift by -1/2; `low=0, high=255`
    make the edge bins absorb the tails.
    """
    logits, loc, log_scale = (np.asarray(p, np.float64) for p in MIXTURE_SETTINGS[setting])
    log_scale = np.maximum(log_scale, DiscretizedLogisticMixture.MIN_LOG_SCALE)
    components = tfd.QuantizedDistribution(
        tfd.Logistic(loc=(loc + 1.0) * 127.5 - 0.5, scale=np.exp(log_scale) * 127.5),
        low=np.float64(0.0), high=np.float64(255.0))
    mixture = tfd.MixtureSameFamily(tfd.Categorical(logits=logits), components)
    return np.exp(np.asarray(mixture.log_prob(np.arange(256.0))))


@pytest.mark.parametrize("setting", sorted(MIXTURE_SETTINGS))
def test_logistic_mixture_probabilities_sum_to_one(setting):
    log_prob = np.asarray(_mixture(setting).log_prob(ALL_LEVELS))
    assert log_prob.shape == (256,)
    assert np.all(np.isfinite(log_prob))
    np.testing.assert_allclose(np.exp(log_prob.astype(np.float64)).sum(), 1.0, atol=1e-4)


@pytest.mark.parametrize("setting", sorted(MIXTURE_SETTINGS))
def test_logistic_mixture_matches_quantized_logistic_reference(setting):
    probs = np.exp(np.asarray(_mixture(setting).log_prob(ALL_LEVELS), np.float64))
    reference = _reference_probs(setting)
    np.testing.assert_allclose(reference.sum(), 1.0, atol=1e-9)
    np.testing.assert_allclose(probs, reference, atol=1e-5)
    # Where a bin holds visible mass, its log-probability is accurate too.
    visible = reference > 1e-4
    np.testing.assert_allclose(np.log(probs[visible]), np.log(reference[visible]), atol=2e-3)


@pytest.mark.parametrize("setting", sorted(MIXTURE_SETTINGS))
def test_logistic_mixture_mean_is_the_weighted_clipped_loc(setting):
    logits, loc, _ = MIXTURE_SETTINGS[setting]
    weights = np.exp(logits - logits.max())
    weights /= weights.sum()
    expected = (np.sum(weights * np.clip(loc, -1, 1)) + 1.0) / 2.0
    mean = np.asarray(_mixture(setting).mean())
    assert mean.shape == (1, 1, 1, 1)
    assert 0.0 <= mean.item() <= 1.0
    np.testing.assert_allclose(mean.item(), expected, rtol=1e-5, atol=1e-6)


def test_logistic_mixture_observation_splits_channels_into_logits_loc_log_scale():
    k = 2
    layer = DiscretizedLogisticMixtureObservation(num_components=k)
    assert layer.params_per_channel == 3 * k
    params = _rand(85, 2, 3, 3, 2 * 3 * k)                 # [B, H, W, C * 3K]
    x = _grid_images(86, 2, 3, 3, 2)
    dist = layer(params)
    per_channel = params.reshape(2, 3, 3, 2, 3 * k)
    manual = DiscretizedLogisticMixture(per_channel[..., :k], per_channel[..., k:2 * k],
                                        per_channel[..., 2 * k:])
    assert dist.log_prob(x).shape == (2,)
    np.testing.assert_allclose(dist.log_prob(x), manual.log_prob(x), rtol=1e-6)
    assert dist.mean().shape == (2, 3, 3, 2)
    np.testing.assert_allclose(dist.mean(), manual.mean(), rtol=1e-6)
    # log_prob is the sum over [H, W, C] of independent per-channel terms.
    single = [DiscretizedLogisticMixture(per_channel[:, i:i + 1, j:j + 1, c:c + 1, :k],
                                         per_channel[:, i:i + 1, j:j + 1, c:c + 1, k:2 * k],
                                         per_channel[:, i:i + 1, j:j + 1, c:c + 1, 2 * k:])
              .log_prob(x[:, i:i + 1, j:j + 1, c:c + 1])
              for i in range(3) for j in range(3) for c in range(2)]
    np.testing.assert_allclose(dist.log_prob(x), np.sum(single, axis=0), rtol=1e-5)


def test_logistic_mixture_support_error_and_bad_components():
    layer = DiscretizedLogisticMixtureObservation(num_components=3)
    assert layer.support_error(_grid_images(87, 1, 4, 4, 1)) is None
    assert isinstance(layer.support_error(np.full((1, 2, 2, 1), 0.5, np.float32)), str)
    assert isinstance(layer.support_error(np.full((1, 2, 2, 1), 2.0, np.float32)), str)
    with pytest.raises(ValueError, match="num_components"):
        DiscretizedLogisticMixtureObservation(num_components=0)


def _sample_pixel(setting, seed, n):
    logits, loc, log_scale = (np.tile(np.asarray(p, np.float32).reshape(1, 1, 1, 1, -1),
                                      (n, 1, 1, 1, 1)) for p in MIXTURE_SETTINGS[setting])
    return np.asarray(DiscretizedLogisticMixture(logits, loc, log_scale).sample(
        tf.constant(seed, tf.int32)))


def test_logistic_mixture_samples_are_seeded_and_on_the_grid():
    x = _sample_pixel("random", [7, 8], 500)
    assert x.shape == (500, 1, 1, 1)
    assert x.min() >= 0.0 and x.max() <= 1.0
    np.testing.assert_allclose(x * 255.0, np.round(x * 255.0), atol=1e-4)
    np.testing.assert_array_equal(x, _sample_pixel("random", [7, 8], 500))
    assert not np.array_equal(x, _sample_pixel("random", [7, 9], 500))


@pytest.mark.parametrize("setting", ["peaked", "edges", "tiny_scales"])
def test_logistic_mixture_samples_follow_log_prob(setting):
    n = 20000
    x = _sample_pixel(setting, [11, 12], n)
    counts = np.bincount(np.round(x.ravel() * 255.0).astype(int), minlength=256)
    empirical = counts / n
    probs = np.exp(np.asarray(_mixture(setting).log_prob(ALL_LEVELS), np.float64))
    total_variation = 0.5 * np.abs(empirical - probs).sum()
    assert total_variation < 0.05


def test_get_observation_by_name_and_spec():
    assert isinstance(layers.get_observation("bernoulli"), BernoulliObservation)
    gaussian_obs = layers.get_observation({"name": "gaussian", "scale": 0.2})
    assert isinstance(gaussian_obs, GaussianObservation)
    assert gaussian_obs.scale == 0.2
    mixture = layers.get_observation({"name": "logistic_mixture", "num_components": 3})
    assert mixture.params_per_channel == 9
    spec = {"name": "gaussian", "scale": 0.2}
    layers.get_observation(spec)
    assert spec == {"name": "gaussian", "scale": 0.2}           # not mutated


@pytest.mark.parametrize("spec", ["poisson", {"name": "categorical"}, {"scale": 0.2}])
def test_get_observation_rejects_unknown_names(spec):
    with pytest.raises(ValueError) as info:
        layers.get_observation(spec)
    for name in layers.OBSERVATIONS:
        assert name in str(info.value)


# --------------------------------------------------------------------------
# 6. Blocks
# --------------------------------------------------------------------------

def test_conv_stack_halves_and_transpose_doubles_the_resolution():
    x = _rand(90, 2, 28, 28, 1)
    one = ConvStack([4])
    assert one(x).shape == (2, 14, 14, 4)
    down = ConvStack([4, 8])
    h = down(x)
    assert h.shape == (2, 7, 7, 8)
    assert down.compute_output_shape((None, 28, 28, 1)) == (None, 7, 7, 8)
    up = ConvStack([6, 3], transpose=True)
    assert up(h).shape == (2, 28, 28, 3)
    assert up.compute_output_shape((None, 7, 7, 8)) == (None, 28, 28, 3)
    assert ConvStack([6], transpose=True)(h).shape == (2, 14, 14, 6)


def test_mlp_shapes_and_identity():
    x = _rand(91, 4, 6)
    assert MLP([8, 3])(x).shape == (4, 3)
    assert MLP([8, 3]).compute_output_shape((None, 6)) == (None, 3)
    np.testing.assert_array_equal(MLP([])(x), x)


def test_mlp_batch_norm_differs_between_training_and_inference():
    x = 3.0 + _rand(92, 16, 6, scale=2.0)
    layer = MLP([5], activation="linear", batch_norm=True)
    train_out = np.asarray(layer(x, training=True))
    # The fresh moving statistics (0, 1) leave the Dense output unchanged at inference.
    layer.norm_layers[0].set_weights(
        [np.ones(5, np.float32), np.zeros(5, np.float32),
         np.zeros(5, np.float32), np.ones(5, np.float32)])
    infer_out = np.asarray(layer(x, training=False))
    dense_out = x @ layer.dense_layers[0].kernel.numpy() + layer.dense_layers[0].bias.numpy()
    np.testing.assert_allclose(infer_out, dense_out / np.sqrt(1.0 + 1e-3), rtol=1e-4, atol=1e-5)
    # Training mode normalises with the batch statistics.
    np.testing.assert_allclose(train_out.mean(0), 0.0, atol=1e-4)
    np.testing.assert_allclose(train_out.std(0), 1.0, atol=1e-2)
    assert not np.allclose(train_out, infer_out, atol=1e-2)
    # Without batch norm the mode does not matter.
    plain = MLP([5])
    np.testing.assert_array_equal(plain(x, training=True), plain(x, training=False))


def test_image_encoder_shapes():
    x = _rand(93, 2, 28, 28, 1)
    assert ImageEncoder(conv_filters=[4, 8], units=[16])(x).shape == (2, 16)
    assert ImageEncoder(conv_filters=[4, 8])(x).shape == (2, 7 * 7 * 8)
    assert ImageEncoder(units=[10, 6])(x).shape == (2, 6)


@pytest.mark.parametrize("params_per_channel", [1, 3])
def test_image_decoder_returns_likelihood_parameters(params_per_channel):
    features = _rand(94, 2, 5)
    conv = ImageDecoder((28, 28, 2), params_per_channel=params_per_channel,
                        conv_filters=[4, 8], units=[16])
    assert conv(features).shape == (2, 28, 28, 2 * params_per_channel)
    dense = ImageDecoder((28, 28, 2), params_per_channel=params_per_channel, units=[16])
    assert dense(features).shape == (2, 28, 28, 2 * params_per_channel)


def test_image_decoder_rejects_indivisible_image_size():
    with pytest.raises(ValueError, match="divisible"):
        ImageDecoder((30, 30, 1), conv_filters=[4, 8])
    ImageDecoder((28, 28, 1), conv_filters=[4, 8])                  # 28 = 4 * 7


def test_image_head_rejects_features_at_the_wrong_resolution():
    with pytest.raises(ValueError, match="resolution"):
        ImageHead((8, 8, 1))(_rand(95, 2, 2, 2, 3))


@pytest.mark.parametrize("make", [
    lambda: layers.get_activation("gelu"),
    lambda: MLP([4], activation="gelu"),
    lambda: ConvStack([4], activation="gelu"),
    lambda: ImageEncoder(units=[4], activation="gelu"),
    lambda: InferenceRung(2, 4, activation="gelu"),
])
def test_unknown_activation_lists_the_choices(make):
    with pytest.raises(ValueError, match="activation") as info:
        make()
    for name in layers.ACTIVATIONS:
        assert name in str(info.value)


def test_leaky_relu_uses_the_ladder_vae_slope():
    x = np.array([-2.0, 3.0], np.float32)
    np.testing.assert_allclose(layers.get_activation("leaky_relu")(x), [-0.2, 3.0], rtol=1e-6)


# --------------------------------------------------------------------------
# 7. Rungs
# --------------------------------------------------------------------------

def test_dense_inference_rung():
    rung = InferenceRung(3, 8, num_layers=2)
    x = _rand(100, 2, 4, 4, 1)
    h, q = rung(x)
    assert h.shape == (2, 8)
    assert isinstance(q, tfd.Normal)
    assert q.batch_shape == (2, 3)
    assert np.all(np.asarray(q.scale) >= 1e-3)
    assert rung.compute_output_shape((None, 4, 4, 1)) == (None, 8)
    # A second rung consumes the first one's h.
    h2, q2 = InferenceRung(2, 6)(h)
    assert h2.shape == (2, 6) and q2.batch_shape == (2, 2)


def test_conv_inference_rung():
    rung = InferenceRung(3, 8, conv_filters=[4, 6])
    h, q = rung(_rand(101, 2, 28, 28, 1))
    assert h.shape == (2, 7, 7, 6)
    assert isinstance(q, tfd.Normal)
    assert q.batch_shape == (2, 3)
    assert rung.compute_output_shape((None, 28, 28, 1)) == (None, 7, 7, 6)


def test_pooled_ladder_connection_is_the_mean_of_each_block():
    """ladder_resolution=r average-pools the conv features to r x r before the dense link."""
    rung = InferenceRung(3, 8, conv_filters=[4], ladder_resolution=2)
    x = _rand(104, 2, 16, 16, 1)
    h, q = rung(x)
    assert h.shape == (2, 8, 8, 4)                 # the path upward keeps full resolution
    assert rung.ladder.dense_layers[0].kernel.shape == (2 * 2 * 4, 8)
    pooled = np.asarray(h).reshape(2, 2, 4, 2, 4, 4).mean(axis=(2, 4)).reshape(2, -1)
    expected = rung.posterior(rung.ladder(pooled))
    np.testing.assert_allclose(q.loc, expected.loc, rtol=1e-5, atol=1e-6)
    # A resolution at or above the map's size is a no-op.
    assert InferenceRung(3, 8, conv_filters=[4], ladder_resolution=8)(x)[1].batch_shape == (2, 3)
    with pytest.raises(ValueError, match="ladder_resolution"):
        InferenceRung(3, 8, conv_filters=[4], ladder_resolution=0)


def test_dense_generative_rung_top_and_lower():
    top = GenerativeRung(3, 8)
    z_top = _rand(102, 2, 3)
    above = top(z_top)
    assert above.shape == (2, 8)
    lower = GenerativeRung(4, 6, num_layers=3)
    out = lower([above, _rand(103, 2, 4)])
    assert out.shape == (2, 6)
    # The lower rung reads z~_{l+1}: changing it changes the output.
    other = lower([above + 1.0, _rand(103, 2, 4)])
    assert not np.allclose(out, other)
    # Conv features from above are flattened.
    assert GenerativeRung(2, 5)([_rand(104, 2, 7, 7, 6), _rand(105, 2, 2)]).shape == (2, 5)


def test_image_head_upsamples_half_resolution_features():
    head = ImageHead((28, 28, 1), params_per_channel=2)
    assert head(_rand(106, 2, 14, 14, 4)).shape == (2, 28, 28, 2)
    assert head.upsample.built and not head.conv.built


@pytest.mark.parametrize("log_scale", [-7.0, -5.0, -2.0])
def test_logistic_mixture_log_prob_is_exact_in_the_far_tails(log_scale):
    """Bins far from the location: the log-probability is the exact log bin mass.

    The reference is log(sigma(a) - sigma(b)) in float64, which holds for
    masses down to about 1e-300; an approximation by the density at the bin
    centre is off by about a nat here.
    """
    loc = 0.1
    dist = DiscretizedLogisticMixture(np.zeros((1, 1, 1, 1, 1), np.float32),
                                      np.full((1, 1, 1, 1, 1), loc, np.float32),
                                      np.full((1, 1, 1, 1, 1), log_scale, np.float32))
    log_prob = np.asarray(dist.log_prob(ALL_LEVELS), np.float64)
    y = 2.0 * np.arange(256) / 255.0 - 1.0
    scale = np.exp(log_scale)
    cdf = lambda t: 1.0 / (1.0 + np.exp(-(t - loc) / scale))    # noqa: E731
    sf = lambda t: 1.0 / (1.0 + np.exp((t - loc) / scale))      # noqa: E731
    # Differences of the cdf below the location, of the survival function
    # above it: neither loses digits to a value near 1.
    with np.errstate(over="ignore"):
        mass = np.where(y < loc, cdf(y + 1 / 255) - cdf(y - 1 / 255),
                        sf(y - 1 / 255) - sf(y + 1 / 255))
        mass[0], mass[-1] = cdf(y[0] + 1 / 255), sf(y[-1] - 1 / 255)
    with np.errstate(divide="ignore"):
        reference = np.log(mass)
    shown = reference > -80.0                 # float32 log-probabilities down to e^-80
    assert shown.sum() >= 15
    np.testing.assert_allclose(log_prob[shown], reference[shown], atol=2e-3, rtol=1e-5)
    assert np.all(np.isfinite(log_prob))
