"""Observation models p(x | z): decoder parameters -> distribution over images.

A decoder ends in a head that produces `params_per_channel * C` channels at the
image resolution; the observation layer turns those parameters into a
distribution whose `log_prob(x)` sums over `[H, W, C]` and returns `[batch]`
nats, and whose `mean()` is the image a decoder "shows".

| name | x in | parameters per channel |
| --- | --- | --- |
| `bernoulli` | {0, 1} (binary) or [0, 1] | 1 (logits) |
| `gaussian` | [0, 1] | 1 (loc; fixed or learned scale) |
| `logistic_mixture` | 8-bit: k / 255 | 3 K (logits, loc, log scale) |
| `discretized_logistic` | 8-bit: k / 255 | 1 (loc; one learned scale per channel) |
"""
import math

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfladder.serialization import register

tfd = tfp.distributions


class Observation(keras.layers.Layer):
    """Base class: maps `[B, H, W, C * params_per_channel]` to a distribution.

    Subclasses define `params_per_channel`, `distribution(params)`,
    `in_support(x)` (a scalar bool tensor: are all values of x in the support)
    and `support` (what the support is, in words). `support_error(x)` is the
    eager check built from these; exported endpoints assert `in_support`.
    """

    params_per_channel = 1
    support = "values in [0, 1] (float) or 0..255 (uint8)"

    def call(self, params):
        return self.distribution(params)

    def extra_params(self, channels):
        """Parameter maps beyond `params_per_channel * channels` (from a likelihood head)."""
        return 0

    def in_support(self, x):
        return tf.logical_and(tf.reduce_all(x >= 0.0), tf.reduce_all(x <= 1.0))

    def support_error(self, x):
        """A message if `x` lies outside the support, else None (eager)."""
        if bool(self.in_support(tf.convert_to_tensor(x, tf.float32))):
            return None
        return (f"{self.support}, got values in [{float(np.min(x)):.4g}, "
                f"{float(np.max(x)):.4g}]")


@register
class BernoulliObservation(Observation):
    """Independent Bernoulli pixels parameterised by logits.

    #### Mathematical details

    ```none
    log p(x | z) = sum_pixels x log sigmoid(l) + (1 - x) log sigmoid(-l)
    ```

    Logits, never probabilities: `probs = sigmoid(20)` rounds to 1 and gives
    `-inf` for `x = 0` (PITFALLS.md).

    Args:
      binary: If True (default), inputs must be exactly 0 or 1 (binarised
        MNIST); if False, grey levels in [0, 1] are accepted (the
        cross-entropy is then not a normalised likelihood).
    """

    def __init__(self, binary=True, **kwargs):
        super().__init__(**{"dtype": "float32", **kwargs})  # float32 likelihood
        self.binary = bool(binary)

    def distribution(self, params):
        bernoulli = BinaryBernoulli if self.binary else tfd.Bernoulli
        return tfd.Independent(bernoulli(logits=params, dtype=params.dtype),
                               reinterpreted_batch_ndims=3)

    @property
    def support(self):
        if self.binary:
            return ("binary values {0, 1} (this Bernoulli model was trained on binarised "
                    "images; binarise first, e.g. x > 0.5)")
        return super().support

    def in_support(self, x):
        if self.binary:
            return tf.reduce_all(tf.logical_or(tf.equal(x, 0.0), tf.equal(x, 1.0)))
        return super().in_support(x)

    def get_config(self):
        return {**super().get_config(), "binary": self.binary}


class BinaryBernoulli(tfd.Bernoulli):
    """`tfd.Bernoulli` (logits) whose `log_prob` takes one softplus per value.

    For x in {0, 1}, log p(x) = -softplus((1 - 2x) l), where `tfd.Bernoulli`
    computes both -softplus(l) and -softplus(-l) and mixes them: the same
    values (and the same limits at l = +-inf) at half the transcendental work,
    the largest elementwise cost of L_K on MNIST. Values of x other than 0 and
    1 are outside its support (BernoulliObservation checks them).
    """

    def _log_prob(self, event):
        logits = tf.convert_to_tensor(self.logits)
        event = tf.cast(event, logits.dtype)
        return -tf.math.softplus((1.0 - 2.0 * event) * logits)


@register
class GaussianObservation(Observation):
    """Independent Gaussian pixels with a fixed or learned scale.

    #### Mathematical details

    ```none
    log p(x | z) = sum_pixels log N(x; loc(z), scale**2)
    ```

    The VLAE paper uses a fixed-variance Gaussian for SVHN and CelebA
    (Zhao et al. 2017, section 5).

    Args:
      scale: A positive float (fixed standard deviation) or "learned" (one
        trainable log-scale per channel, floored at `min_scale`).
      min_scale: Floor on a learned scale.
    """

    def __init__(self, scale=0.1, min_scale=1e-3, **kwargs):
        super().__init__(**{"dtype": "float32", **kwargs})  # float32 likelihood
        is_number = isinstance(scale, (int, float, np.floating)) and not isinstance(scale, bool)
        if scale != "learned" and not (is_number and scale > 0):
            raise ValueError(f"scale must be a positive float or 'learned', got {scale!r}.")
        self.scale = scale if scale == "learned" else float(scale)
        self.min_scale = float(min_scale)

    def build(self, input_shape):
        if self.scale == "learned":
            self.log_scale = self.add_weight(
                name="log_scale", shape=(int(input_shape[-1]),),
                initializer=keras.initializers.Constant(math.log(0.1)))
        self.built = True

    def distribution(self, params):
        if self.scale == "learned":
            scale = tf.exp(self.log_scale) + self.min_scale
        else:
            scale = tf.constant(self.scale, params.dtype)
        return tfd.Independent(tfd.Normal(loc=params, scale=scale),
                               reinterpreted_batch_ndims=3)

    def get_config(self):
        return {**super().get_config(), "scale": self.scale, "min_scale": self.min_scale}


@register
class DiscretizedLogisticMixtureObservation(Observation):
    """Per-channel mixture of discretised logistics for 8-bit images.

    The likelihood of PixelCNN++ (Salimans et al. 2017, section 2.1), with
    the channels of a pixel independent given z (no autoregressive channel
    coupling). See `DiscretizedLogisticMixture` for the math.

    Args:
      num_components: Number of mixture components K.
    """

    def __init__(self, num_components=5, **kwargs):
        super().__init__(**{"dtype": "float32", **kwargs})  # float32 likelihood
        if int(num_components) < 1:
            raise ValueError(f"num_components must be >= 1, got {num_components!r}.")
        self.num_components = int(num_components)

    @property
    def params_per_channel(self):
        return 3 * self.num_components

    def distribution(self, params):
        shape = tf.shape(params)
        k = self.num_components
        params = tf.reshape(params, tf.concat([shape[:-1], [-1, 3 * k]], axis=0))
        logits, loc, log_scale = tf.split(params, 3, axis=-1)
        return DiscretizedLogisticMixture(logits, loc, log_scale)

    support = "8-bit values k / 255 in [0, 1] (uint8 images scaled to [0, 1])"

    def in_support(self, x):
        on_grid = tf.reduce_all(tf.abs(tf.round(x * 255.0) - x * 255.0) < 1e-3)
        return tf.logical_and(super().in_support(x), on_grid)

    def get_config(self):
        return {**super().get_config(), "num_components": self.num_components}


@register
class DiscretizedLogisticObservation(Observation):
    """8-bit pixels: a discretised logistic with one learned scale per channel.

    The discrete counterpart of a Gaussian with a learned per-channel
    variance (the VLAE paper's fixed-variance Gaussian, with the variance
    learned and the likelihood an honest probability of the 8-bit value).
    The decoder gives only the location; every pixel of a channel shares the
    scale, so the likelihood cannot absorb image-specific variation such as
    colour or light into per-pixel scales: the latents must explain it.
    See `DiscretizedLogisticMixture` (K = 1) for the bin probabilities.

    Two optional refinements take further maps from a separate likelihood
    head (`extra_params`; `tfladder.layers.blocks.LikelihoodHead`), which a
    model can train after its means are in place (the VLAE's `"likelihood"`
    training phase), so that they tighten the bound without moving the means:

    ```none
    pixel_scales:     log s_c(i) = log s_c + o_c(i)                 (o: C maps)
    channel_coupling: loc_G(i) = mu_G(i) + a(i) (y_R(i) - mu_R(i))      (RGB only;
                      loc_B(i) = mu_B(i) + b(i) (y_R(i) - mu_R(i))
                                          + c(i) (y_G(i) - mu_G(i))      a, b, c = tanh(.))
    ```

    on the centred scale y = 2x - 1: p(x) = p(R) p(G | R) p(B | R, G), each a
    discretised logistic, an exact probability of the 8-bit pixel. The
    coupling is linear in the residuals of the channels before (as in
    PixelCNN++, Salimans et al. 2017, section 2.1, which couples the values),
    so the marginal location of every channel stays mu and `mean()` is the
    decoder's mean with or without these two refinements.

    A third, `num_components = K > 1`, makes every pixel a mixture of K such
    discretised logistics (one component for all channels of a pixel, as in
    PixelCNN++): component 1 is the one above; components k = 2..K have
    locations mu + d_k(i) and log scales log s_1(i) + e_k(i), and the
    weights are softmax(w(i)) (K + 2 (K - 1) C extra maps: w, then d, then
    e). With the head at zero every component is component 1 and the
    likelihood is the single logistic exactly; component 1 stays pinned to
    the decoder's mean, which breaks the symmetry of identical components
    (their gradients differ from the start). `mean()` is then the mixture's
    mean, sum_k softmax(w)_k clip(loc_k), which moves away from mu where the
    head shifts weight to the other components (e.g. across an edge).

    Args:
      init_scale: Initial scale on [0, 1] pixels (the centred scale is twice it).
      min_log_scale: Floor of the log scale on the centred scale.
      pixel_scales: Per-pixel offsets of the log scale (C extra maps).
      channel_coupling: Linear coupling of G on R and of B on R and G
        (3 extra maps; images with 3 channels only).
      num_components: Components of the per-pixel mixture (1: a single
        logistic; K > 1 adds K + 2 (K - 1) C maps from the head).
    """

    support = "8-bit values k / 255 in [0, 1] (uint8 images scaled to [0, 1])"

    def __init__(self, init_scale=0.1, min_log_scale=-7.0, pixel_scales=False,
                 channel_coupling=False, num_components=1, **kwargs):
        super().__init__(**{"dtype": "float32", **kwargs})  # float32 likelihood
        if not (isinstance(init_scale, (int, float)) and init_scale > 0):
            raise ValueError(f"init_scale must be a positive float, got {init_scale!r}.")
        for name, value in (("pixel_scales", pixel_scales),
                            ("channel_coupling", channel_coupling)):
            if not isinstance(value, (bool, np.bool_)):
                raise ValueError(f"{name} must be True or False, got {value!r}.")
        self.init_scale = float(init_scale)
        self.min_log_scale = float(min_log_scale)
        self.pixel_scales = bool(pixel_scales)
        self.channel_coupling = bool(channel_coupling)
        if (isinstance(num_components, (bool, np.bool_))
                or not isinstance(num_components, (int, np.integer)) or num_components < 1):
            raise ValueError(f"num_components must be an integer >= 1, got {num_components!r}.")
        self.num_components = int(num_components)

    def _mixture_maps(self, channels):
        k = self.num_components
        return 0 if k == 1 else k + 2 * (k - 1) * channels

    def extra_params(self, channels):
        """Maps the likelihood head adds to the `channels` location maps."""
        if self.channel_coupling and channels != 3:
            raise ValueError(f"channel_coupling needs RGB images (3 channels), got {channels}.")
        return (channels * self.pixel_scales + 3 * self.channel_coupling
                + self._mixture_maps(channels))

    def _channels(self, params_channels):
        # params = [loc (C) | offsets (C if pixel_scales) | coupling (3 if channel_coupling)
        #           | mixture: logits (K), loc offsets ((K-1) C), log-scale offsets ((K-1) C)]
        k = self.num_components
        rest = params_channels - 3 * self.channel_coupling - (k if k > 1 else 0)
        return rest // (1 + self.pixel_scales + (2 * (k - 1) if k > 1 else 0))

    def build(self, input_shape):
        channels = self._channels(int(input_shape[-1]))
        self.log_scale = self.add_weight(
            name="log_scale", shape=(channels,),
            initializer=keras.initializers.Constant(math.log(2.0 * self.init_scale)))
        self.built = True

    def distribution(self, params):
        channels = self._channels(int(params.shape[-1]))
        loc = params[..., :channels, None]                       # [B, H, W, C, 1]
        log_scale = tf.maximum(tf.cast(self.log_scale, params.dtype), self.min_log_scale)
        log_scale = tf.zeros_like(loc) + log_scale[:, None]
        start = channels
        if self.pixel_scales:
            log_scale = log_scale + params[..., start:start + channels, None]
            start += channels
        coupling = None
        if self.channel_coupling:
            coupling = tf.tanh(params[..., start:start + 3])
            start += 3
        k = self.num_components
        if k == 1:
            return DiscretizedLogisticMixture(tf.zeros_like(loc), loc, log_scale,
                                              coupling=coupling)
        logits = params[..., start:start + k]                    # [B, H, W, K]
        start += k

        def per_component(maps):                                 # -> [B, H, W, C, K - 1]
            maps = tf.reshape(maps, tf.concat([tf.shape(maps)[:-1], [k - 1, channels]], 0))
            return tf.linalg.matrix_transpose(maps)

        loc_offsets = per_component(params[..., start:start + (k - 1) * channels])
        start += (k - 1) * channels
        scale_offsets = per_component(params[..., start:start + (k - 1) * channels])
        loc = tf.concat([loc, loc + loc_offsets], axis=-1)
        log_scale = tf.concat([log_scale, log_scale + scale_offsets], axis=-1)
        return DiscretizedLogisticMixture(logits, loc, log_scale, coupling=coupling,
                                          joint_channels=True)

    def in_support(self, x):
        on_grid = tf.reduce_all(tf.abs(tf.round(x * 255.0) - x * 255.0) < 1e-3)
        return tf.logical_and(super().in_support(x), on_grid)

    def get_config(self):
        return {**super().get_config(), "init_scale": self.init_scale,
                "min_log_scale": self.min_log_scale, "pixel_scales": self.pixel_scales,
                "channel_coupling": self.channel_coupling,
                "num_components": self.num_components}


class DiscretizedLogisticMixture:
    """Distribution over 8-bit images, x = k / 255 with k in {0, ..., 255}.

    #### Mathematical details

    On the centred scale y = 2x - 1 (bin half-width 1/255), each channel is a
    mixture of logistics with weights `softmax(logits)`, locations `loc` and
    scales `exp(log_scale)`. A bin has probability

    ```none
    P(k) = sigma((y + 1/255 - loc) / s) - sigma((y - 1/255 - loc) / s)
    ```

    with the edge bins absorbing the tails (k = 0 takes everything below,
    k = 255 everything above), so the 256 probabilities sum to one.

    Optional `coupling` `[B, H, W, 3]` (RGB; coefficients a, b, c)
    conditions the channels of a pixel on the residuals of the ones before:
    loc_G += a (y_R - loc_R), loc_B += b (y_R - loc_R) + c (y_G - loc_G), so
    P(pixel) = P(R) P(G | R) P(B | R, G) (`DiscretizedLogisticObservation`);
    with K > 1 each component couples with its own residuals.

    Shapes: `loc`, `log_scale` are `[B, H, W, C, K]`; `logits` too (one
    mixture per channel), or, with `joint_channels=True`, `[B, H, W, K]`: one
    mixture per pixel, a component giving all channels of the pixel (as in
    PixelCNN++). Coupling needs 3 channels and, per channel, K = 1.
    `log_prob` returns `[B]`, `mean` and `sample` return `[B, H, W, C]` in [0, 1].
    """

    MIN_LOG_SCALE = -7.0

    def __init__(self, logits, loc, log_scale, coupling=None, joint_channels=False):
        if coupling is not None and (loc.shape[-2] != 3
                                     or (loc.shape[-1] != 1 and not joint_channels)):
            raise ValueError("coupling needs 3 channels and one component per channel "
                             f"(K = 1, or joint_channels), got loc of shape {loc.shape}.")
        self.logits = logits
        self.loc = loc
        self.log_scale = tf.maximum(log_scale, self.MIN_LOG_SCALE)
        self.coupling = coupling
        self.joint_channels = bool(joint_channels)

    def _coupled_loc(self, y):
        """The locations given the channels before (`y`: centred values, [B, H, W, 3, 1])."""
        if self.coupling is None:
            return self.loc
        residual = y - self.loc                              # [B, H, W, 3, K]
        a, b, c = (t[..., None] for t in tf.unstack(self.coupling, axis=-1))
        shift = tf.stack([tf.zeros_like(residual[..., 0, :]), a * residual[..., 0, :],
                          b * residual[..., 0, :] + c * residual[..., 1, :]], axis=-2)
        return self.loc + shift

    def _log_prob_per_channel(self, x):
        # With a = (y + 1/255 - loc) / s and b = (y - 1/255 - loc) / s, the
        # bin mass factorises exactly:
        #   sigma(a) - sigma(b) = sigma(a) sigma(-b) (1 - exp(-(a - b))),
        # and a - b = 2 / (255 s) does not depend on y. So every bin is
        #   log P = -softplus(-a) [unless k = 255] - softplus(b) [unless k = 0]
        #           + log(-expm1(-2 / (255 s))) [middle bins only],
        # two softplus per value, finite and exact in the far tails (no
        # difference of two sigmoids that underflows).
        y = 2.0 * x[..., None] - 1.0                      # [B, H, W, C, 1]
        inv_scale = tf.exp(-self.log_scale)
        centred = y - self._coupled_loc(y)
        a = inv_scale * (centred + 1.0 / 255.0)
        b = inv_scale * (centred - 1.0 / 255.0)
        below_top = tf.cast(y < 0.999, a.dtype)          # k < 255: the upper edge counts
        above_bottom = tf.cast(y > -0.999, a.dtype)      # k > 0: the lower edge counts
        width = tf.math.log(-tf.math.expm1(-(2.0 / 255.0) * inv_scale))
        log_probs = (-below_top * tf.nn.softplus(-a) - above_bottom * tf.nn.softplus(b)
                     + below_top * above_bottom * width)                # [B, H, W, C, K]
        if self.joint_channels:
            return log_probs
        log_weights = tf.nn.log_softmax(self.logits, axis=-1)
        return tf.reduce_logsumexp(log_weights + log_probs, axis=-1)  # [B, H, W, C]

    def log_prob(self, x):
        if not self.joint_channels:
            return tf.reduce_sum(self._log_prob_per_channel(x), axis=[-3, -2, -1])
        per_component = tf.reduce_sum(self._log_prob_per_channel(x), axis=-2)  # [B, H, W, K]
        per_pixel = tf.reduce_logsumexp(
            tf.nn.log_softmax(self.logits, axis=-1) + per_component, axis=-1)
        return tf.reduce_sum(per_pixel, axis=[-2, -1])

    def _weights(self):
        weights = tf.nn.softmax(self.logits, axis=-1)
        return weights[..., None, :] if self.joint_channels else weights

    def mean(self):
        y = tf.reduce_sum(self._weights() * tf.clip_by_value(self.loc, -1.0, 1.0), axis=-1)
        return (y + 1.0) / 2.0

    def sample(self, seed):
        """One sample `[B, H, W, C]` in {0, 1/255, ..., 1}; `seed` is a `[2]` int tensor."""
        if self.coupling is not None and not self.joint_channels:
            return self._sample_coupled(seed, self.loc[..., 0], self.log_scale[..., 0],
                                        self.coupling)
        seed_component, seed_noise = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
        gumbel = -tf.math.log(-tf.math.log(tf.random.stateless_uniform(
            tf.shape(self.logits), seed_component, minval=1e-5, maxval=1.0 - 1e-5)))
        one_hot = tf.one_hot(tf.argmax(self.logits + gumbel, axis=-1),
                             tf.shape(self.logits)[-1], dtype=self.loc.dtype)
        if self.joint_channels:
            one_hot = one_hot[..., None, :]          # one component for the whole pixel
        loc = tf.reduce_sum(one_hot * self.loc, axis=-1)
        log_scale = tf.reduce_sum(one_hot * self.log_scale, axis=-1)
        if self.coupling is not None:
            return self._sample_coupled(seed_noise, loc, log_scale, self.coupling)
        u = tf.random.stateless_uniform(tf.shape(loc), seed_noise, minval=1e-5, maxval=1.0 - 1e-5)
        y = loc + tf.exp(log_scale) * (tf.math.log(u) - tf.math.log1p(-u))
        x = (tf.clip_by_value(y, -1.0, 1.0) + 1.0) / 2.0
        return tf.round(x * 255.0) / 255.0

    @staticmethod
    def _sample_coupled(seed, loc, log_scale, coupling):
        """R, then G given R, then B given R and G (`loc`, `log_scale`: [B, H, W, 3])."""
        u = tf.random.stateless_uniform(tf.shape(loc), seed, minval=1e-5, maxval=1.0 - 1e-5)
        noise = tf.exp(log_scale) * (tf.math.log(u) - tf.math.log1p(-u))
        a, b, c = tf.unstack(coupling, axis=-1)

        def draw(value):    # the 8-bit value on the centred scale
            return tf.round((tf.clip_by_value(value, -1.0, 1.0) + 1.0) * 127.5) / 127.5 - 1.0

        red = draw(loc[..., 0] + noise[..., 0])
        green = draw(loc[..., 1] + a * (red - loc[..., 0]) + noise[..., 1])
        blue = draw(loc[..., 2] + b * (red - loc[..., 0]) + c * (green - loc[..., 1])
                    + noise[..., 2])
        return (tf.stack([red, green, blue], axis=-1) + 1.0) / 2.0


OBSERVATIONS = {
    "bernoulli": BernoulliObservation,
    "gaussian": GaussianObservation,
    "logistic_mixture": DiscretizedLogisticMixtureObservation,
    "discretized_logistic": DiscretizedLogisticObservation,
}


def get_observation(spec):
    """Builds an observation layer from a name or `{"name": ..., **kwargs}`.

    Raises:
      ValueError: if the name is not one of `OBSERVATIONS`.
    """
    if isinstance(spec, str):
        spec = {"name": spec}
    spec = dict(spec)
    name = spec.pop("name", None)
    if name not in OBSERVATIONS:
        raise ValueError(
            f"observation must be one of {sorted(OBSERVATIONS)}, got {name!r}.")
    return OBSERVATIONS[name](**spec)
