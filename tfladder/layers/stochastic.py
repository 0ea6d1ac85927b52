"""Stochastic layers: features -> diagonal Gaussian distributions.

Each layer returns a `tfp.distributions.Normal` whose batch shape is
`[batch, units]`; its samples are reparameterised (pathwise gradients) and
seeded through TFP's stateless seeds (`dist.sample(seed=[2] int tensor)`).
Distribution objects are only ever returned, never passed positionally into
another Keras layer (PITFALLS.md): merges take `loc` / `scale` tensors.
"""
import keras
import tensorflow as tf
import tensorflow_probability as tfp

from tfladder import gaussian
from tfladder.serialization import register

tfd = tfp.distributions

# exp() of a log-variance above ~88 overflows in float32; the top-down VAE
# clamps its log-variance deltas to this interval (DESIGN.md, "topdown").
DEFAULT_LOG_VARIANCE_RANGE = (-7.0, 2.0)


@register
class GaussianStochastic(keras.layers.Layer):
    """Reparameterised diagonal Gaussian: `features -> N(loc, scale**2)`.

    #### Mathematical details

    ```none
    loc   = W_loc h + b_loc
    scale = softplus(W_s h + b_s) + min_scale            (parameterization="scale")
    scale = sqrt(softplus(W_s h + b_s) + min_scale**2)   (parameterization="variance")
    z     = loc + scale * eps,  eps ~ N(0, I)
    ```

    The "variance" form is the Ladder VAE's `sigma**2 = Softplus(Linear(d))`
    (Sonderby et al. 2016, eq. 19-21); the floor keeps `log_prob` finite when
    softplus underflows.

    #### Examples

    ```python
    layer = GaussianStochastic(8)
    q = layer(features)                         # tfd.Normal, batch [B, 8]
    z = q.sample(seed=tf.constant([1, 2]))      # reproducible sample
    ```

    In a Functional model (`keras.Input`), build it with `returns="loc_scale"`:
    it then returns the tensors `[loc, scale]` instead of the distribution
    (Keras' Functional API carries tensors only).

    Args:
      units: Dimension of the latent variable.
      min_scale: Positive floor on the standard deviation.
      parameterization: "scale" (softplus gives the standard deviation) or
        "variance" (softplus gives the variance).
      returns: "distribution" (a `tfd.Normal`) or "loc_scale" (`[loc, scale]`).
    """

    PARAMETERIZATIONS = ("scale", "variance")

    def __init__(self, units, min_scale=1e-3, parameterization="scale",
                 returns="distribution", **kwargs):
        super().__init__(**_float32(kwargs))
        self.returns = _check_returns(returns)
        if int(units) < 1:
            raise ValueError(f"units must be a positive integer, got {units!r}.")
        if not min_scale > 0:
            raise ValueError(f"min_scale must be positive, got {min_scale!r}.")
        if parameterization not in self.PARAMETERIZATIONS:
            raise ValueError(f"parameterization must be one of "
                             f"{self.PARAMETERIZATIONS}, got {parameterization!r}.")
        self.units = int(units)
        self.min_scale = float(min_scale)
        self.parameterization = parameterization
        self.loc_layer = keras.layers.Dense(self.units, name="loc", dtype=self.dtype_policy)
        self.scale_layer = keras.layers.Dense(self.units, name="scale", dtype=self.dtype_policy)

    def build(self, input_shape):
        self.loc_layer.build(_flat_shape(input_shape))
        self.scale_layer.build(_flat_shape(input_shape))
        self.built = True

    def call(self, features):
        features = _flatten(features)
        loc = self.loc_layer(features)
        raw = tf.nn.softplus(self.scale_layer(features))
        if self.parameterization == "variance":
            scale = tf.sqrt(raw + self.min_scale ** 2)
        else:
            scale = raw + self.min_scale
        return _as_returned(loc, scale, self.returns)

    def compute_output_shape(self, input_shape):
        """`[B, units]`: the batch shape of the Gaussian (or of `loc` and `scale`)."""
        shape = (input_shape[0], self.units)
        return shape if self.returns == "distribution" else [shape, shape]

    def get_config(self):
        return {**super().get_config(), "units": self.units,
                "min_scale": self.min_scale,
                "parameterization": self.parameterization, "returns": self.returns}


@register
class PrecisionWeightedMerge(keras.layers.Layer):
    """The Ladder VAE merge of bottom-up and top-down Gaussians (eq. 17-18).

    #### Mathematical details

    ```none
    scale_q**2 = 1 / (scale_hat**-2 + scale_p**-2)
    loc_q      = (loc_hat scale_hat**-2 + loc_p scale_p**-2) scale_q**2
    ```

    The result is the renormalised product of the two densities. When one
    scale goes to infinity the merge returns the other Gaussian.

    Call arguments: `loc_hat, scale_hat` (bottom-up, from the data) and
    `loc_p, scale_p` (top-down, from the generative model). Returns a
    `tfd.Normal`, or `[loc, scale]` with `returns="loc_scale"` (for Functional
    models).
    """

    def __init__(self, returns="distribution", **kwargs):
        super().__init__(**_float32(kwargs))
        self.returns = _check_returns(returns)

    def call(self, loc_hat, scale_hat, loc_p, scale_p):
        loc, scale = gaussian.precision_weighted_merge(loc_hat, scale_hat, loc_p, scale_p)
        return _as_returned(loc, scale, self.returns)

    def get_config(self):
        return {**super().get_config(), "returns": self.returns}


@register
class DeltaGaussian(keras.layers.Layer):
    """Relative ("delta") posterior of the top-down VAE (NVAE, section 3.2).

    #### Mathematical details

    ```none
    [delta_loc, log delta_var] = Linear(h)
    log delta_var <- clip(log delta_var, low, high)        # hardtanh clamp
    q(z_l | .) = N(loc_p + delta_loc, scale_p**2 * delta_var)
    KL(q || p) = 1/2 (delta_loc**2 / scale_p**2 + delta_var - log delta_var - 1)
    ```

    For the top layer, `loc_p = 0, scale_p = 1`.

    Args:
      units: Dimension of the latent variable.
      log_variance_range: `(low, high)` clamp of `log delta_var`.
    """

    def __init__(self, units, log_variance_range=DEFAULT_LOG_VARIANCE_RANGE, **kwargs):
        super().__init__(**_float32(kwargs))
        low, high = (float(v) for v in log_variance_range)
        if not low < high:
            raise ValueError("log_variance_range must be (low, high) with low < high, "
                             f"got {log_variance_range!r}.")
        self.units = int(units)
        self.log_variance_range = (low, high)
        self.loc_layer = keras.layers.Dense(self.units, name="delta_loc", dtype=self.dtype_policy)
        self.log_variance_layer = keras.layers.Dense(self.units, name="delta_log_variance",
                                                     dtype=self.dtype_policy)

    def build(self, input_shape):
        self.loc_layer.build(_flat_shape(input_shape))
        self.log_variance_layer.build(_flat_shape(input_shape))
        self.built = True

    def deltas(self, features):
        """Returns `(delta_loc, delta_scale)` for the given features."""
        features = _flatten(features)
        low, high = self.log_variance_range
        log_variance = tf.clip_by_value(self.log_variance_layer(features), low, high)
        return self.loc_layer(features), tf.exp(0.5 * log_variance)

    def call(self, features, prior_loc, prior_scale):
        delta_loc, delta_scale = self.deltas(features)
        return tfd.Normal(loc=prior_loc + delta_loc, scale=prior_scale * delta_scale)

    def get_config(self):
        return {**super().get_config(), "units": self.units,
                "log_variance_range": list(self.log_variance_range)}


def _float32(kwargs):
    """Stochastic layers compute in float32 under a mixed precision policy
    (`mixed_bfloat16`, `mixed_float16`): their inputs are cast up, and the
    Gaussians, their samples and the KL terms stay float32."""
    return {"dtype": "float32", **kwargs}


RETURNS = ("distribution", "loc_scale")


def _check_returns(returns):
    if returns not in RETURNS:
        raise ValueError(f"returns must be one of {RETURNS}, got {returns!r}.")
    return returns


def _as_returned(loc, scale, returns):
    return tfd.Normal(loc=loc, scale=scale) if returns == "distribution" else [loc, scale]


def _flatten(features):
    """Flattens conv features `[B, H, W, C]` to `[B, H*W*C]` (dense ladder link)."""
    features = tf.convert_to_tensor(features)
    if len(features.shape) > 2:
        return tf.reshape(features, [tf.shape(features)[0], -1])
    return features


def _flat_shape(input_shape):
    """The shape `_flatten` produces, for building Dense heads."""
    shape = tuple(input_shape)
    size = 1
    for dim in shape[1:]:
        size *= int(dim)
    return (shape[0], size)
