"""Rungs of the Variational Ladder Autoencoder (Zhao, Song & Ermon 2017, sec. 4).

```none
inference:   h_0 = x,  h_l = g_l(h_{l-1}),  q(z_l | x) = N(mu_l(h_l), sigma_l(h_l))
generation:  z~_L = u_L(v_L(z_L)),  z~_l = u_l([z~_{l+1}; v_l(z_l)]),  x ~ r(x; f_0(z~_1))
```

Ladder connections are dense: conv features are flattened and linearly
reduced before `mu_l, sigma_l` (inference), and generative rungs combine
`v_l(z_l)` with the rung above by concatenation. An inference rung is
convolutional when it has `conv_filters` (it halves the resolution once per
filter); the generator mirrors all conv stages in `f_0`.
"""
import keras

from tfladder.layers.blocks import MLP, ConvStack, Flatten
from tfladder.layers.stochastic import GaussianStochastic
from tfladder.serialization import register


@register
class InferenceRung(keras.layers.Layer):
    """`h_{l-1} -> (h_l, q(z_l | x))`.

    Args:
      latent_dim: Dimension of z_l.
      units: Width of the rung's dense layers.
      conv_filters: Filters of stride-2 convs for g_l; empty: g_l is an MLP.
      num_layers: Depth of g_l when it is an MLP.
      activation, batch_norm: As in `MLP`.
      min_scale: Floor of the posterior standard deviation.
      ladder_resolution: For a conv rung, average-pool its feature map to at
        most this height/width before the dense ladder connection (None: use
        the full map). Keeps the ladder's dense layer small on large images.
    """

    def __init__(self, latent_dim, units, conv_filters=(), num_layers=2,
                 activation="leaky_relu", batch_norm=False, min_scale=1e-3,
                 ladder_resolution=None, **kwargs):
        super().__init__(**kwargs)
        self.latent_dim = int(latent_dim)
        self.units = int(units)
        self.conv_filters = [int(f) for f in conv_filters]
        self.num_layers = int(num_layers)
        self.activation = activation
        self.batch_norm = bool(batch_norm)
        self.min_scale = float(min_scale)
        self.ladder_resolution = None if ladder_resolution is None else int(ladder_resolution)
        if self.ladder_resolution is not None and self.ladder_resolution < 1:
            raise ValueError(f"ladder_resolution must be a positive integer or None, "
                             f"got {ladder_resolution}.")
        self.pool = None
        if self.conv_filters:
            self.body = ConvStack(self.conv_filters, activation=activation, batch_norm=batch_norm)
        else:
            self.body = MLP([self.units] * self.num_layers, activation=activation,
                            batch_norm=batch_norm)
        self.flatten = Flatten()
        self.ladder = MLP([self.units], activation=activation, batch_norm=batch_norm)
        self.posterior = GaussianStochastic(self.latent_dim, min_scale=self.min_scale)

    def _body_input_shape(self, input_shape):
        return input_shape if self.conv_filters else self.flatten.compute_output_shape(input_shape)

    def build(self, input_shape):
        body_shape = self._body_input_shape(input_shape)
        self.body.build(body_shape)
        features_shape = self.body.compute_output_shape(body_shape)
        if self.conv_filters and self.ladder_resolution is not None:
            pool_size = max(1, int(features_shape[1]) // self.ladder_resolution)
            if pool_size > 1:
                self.pool = keras.layers.AveragePooling2D(pool_size, name="ladder_pool")
                features_shape = self.pool.compute_output_shape(features_shape)
        shape = self.flatten.compute_output_shape(features_shape)
        self.ladder.build(shape)
        self.posterior.build((shape[0], self.units))
        self.built = True

    def compute_output_shape(self, input_shape):
        return self.body.compute_output_shape(self._body_input_shape(input_shape))

    def call(self, h_below, training=False):
        if not self.conv_filters:
            h_below = self.flatten(h_below)
        h = self.body(h_below, training=training)
        features = h if self.pool is None else self.pool(h)
        q = self.posterior(self.ladder(self.flatten(features), training=training))
        return h, q

    def get_config(self):
        return {**super().get_config(), "latent_dim": self.latent_dim, "units": self.units,
                "conv_filters": self.conv_filters, "num_layers": self.num_layers,
                "activation": self.activation, "batch_norm": self.batch_norm,
                "min_scale": self.min_scale, "ladder_resolution": self.ladder_resolution}


@register
class GenerativeRung(keras.layers.Layer):
    """`[z~_{l+1}, z_l] -> z~_l = u_l([flatten(z~_{l+1}); v_l(z_l)])`.

    The top rung has no `z~_{l+1}` and computes `z~_L = u_L(v_L(z_L))`.
    Generative rungs are dense; the convolutional part of the generator is
    `f_0`, the decoder from z~_1 to the image (see `VariationalLadderAutoencoder`).

    Args:
      latent_dim: Dimension of z_l.
      units: Width of v_l and of the layers of u_l.
      num_layers: Depth of u_l.
      activation, batch_norm: As in `MLP`.
    """

    def __init__(self, latent_dim, units, num_layers=2, activation="relu", batch_norm=False,
                 **kwargs):
        super().__init__(**kwargs)
        self.latent_dim = int(latent_dim)
        self.units = int(units)
        self.num_layers = int(num_layers)
        self.activation = activation
        self.batch_norm = bool(batch_norm)
        self.flatten = Flatten()
        self.v = MLP([self.units], activation=activation, batch_norm=batch_norm)
        self.u = MLP([self.units] * self.num_layers, activation=activation,
                     batch_norm=batch_norm)

    def build(self, input_shape):
        """`input_shape`: shape of z_l, or `[shape of z~_{l+1}, shape of z_l]`."""
        if isinstance(input_shape, (list, tuple)) and isinstance(input_shape[0], (list, tuple)):
            above_shape, z_shape = input_shape
            above_size = self.flatten.compute_output_shape(above_shape)[-1]
        else:
            z_shape, above_size = input_shape, 0
        self.v.build(z_shape)
        self.u.build((z_shape[0], above_size + self.units))
        self.built = True

    def compute_output_shape(self, input_shape):
        z_shape = input_shape[1] if isinstance(input_shape[0], (list, tuple)) else input_shape
        return (z_shape[0], self.units)

    def call(self, inputs, training=False):
        """`inputs`: z_l (top rung) or `[z~_{l+1}, z_l]`."""
        if isinstance(inputs, (list, tuple)):
            above, z = inputs
        else:
            above, z = None, inputs
        h = self.v(z, training=training)
        if above is not None:
            h = keras.ops.concatenate([self.flatten(above), h], axis=-1)
        return self.u(h, training=training)

    def get_config(self):
        return {**super().get_config(), "latent_dim": self.latent_dim, "units": self.units,
                "num_layers": self.num_layers, "activation": self.activation,
                "batch_norm": self.batch_norm}
