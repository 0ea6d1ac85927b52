"""Rungs of the Variational Ladder Autoencoder (Zhao, Song & Ermon 2017, sec. 4).

```none
inference:   h_0 = x,  h_l = g_l(h_{l-1}),  q(z_l | x) = N(mu_l(h_l), sigma_l(h_l))
generation:  z~_L = u_L(v_L(z_L)),  z~_l = u_l([z~_{l+1}; v_l(z_l)]),  x ~ r(x; f_0(z~_1))
```

Ladder connections are dense: conv features are flattened and linearly
reduced before `mu_l, sigma_l` (inference) and after `v_l` (generation).
A rung is convolutional when it has `conv_filters`; it then halves the
resolution once per filter on the way up and doubles it on the way down.
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
    """

    def __init__(self, latent_dim, units, conv_filters=(), num_layers=2,
                 activation="leaky_relu", batch_norm=False, min_scale=1e-3, **kwargs):
        super().__init__(**kwargs)
        self.latent_dim = int(latent_dim)
        self.units = int(units)
        self.conv_filters = [int(f) for f in conv_filters]
        self.num_layers = int(num_layers)
        self.activation = activation
        self.batch_norm = bool(batch_norm)
        self.min_scale = float(min_scale)
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
        shape = self.flatten.compute_output_shape(self.body.compute_output_shape(body_shape))
        self.ladder.build(shape)
        self.posterior.build((shape[0], self.units))
        self.built = True

    def compute_output_shape(self, input_shape):
        return self.body.compute_output_shape(self._body_input_shape(input_shape))

    def call(self, h_below, training=False):
        if not self.conv_filters:
            h_below = self.flatten(h_below)
        h = self.body(h_below, training=training)
        q = self.posterior(self.ladder(self.flatten(h), training=training))
        return h, q

    def get_config(self):
        return {**super().get_config(), "latent_dim": self.latent_dim, "units": self.units,
                "conv_filters": self.conv_filters, "num_layers": self.num_layers,
                "activation": self.activation, "batch_norm": self.batch_norm,
                "min_scale": self.min_scale}


@register
class GenerativeRung(keras.layers.Layer):
    """`[z~_{l+1}, z_l] -> z~_l = u_l([flatten(z~_{l+1}); v_l(z_l)])`.

    The top rung has no `z~_{l+1}`. A convolutional rung ends with a Dense
    projection to `start_shape` and transposed convolutions that mirror the
    inference rung's `conv_filters`.

    Args:
      latent_dim: Dimension of z_l.
      units: Width of v_l and of the dense layers of u_l.
      conv_filters: The inference rung's conv filters (mirrored here).
      start_shape: `(h, w, c)` of the inference rung's output feature map
        (required with `conv_filters`).
      num_layers: Depth of u_l when it is an MLP.
      activation, batch_norm: As in `MLP`.
    """

    def __init__(self, latent_dim, units, conv_filters=(), start_shape=None, num_layers=2,
                 activation="relu", batch_norm=False, **kwargs):
        super().__init__(**kwargs)
        self.latent_dim = int(latent_dim)
        self.units = int(units)
        self.conv_filters = [int(f) for f in conv_filters]
        self.start_shape = tuple(int(d) for d in start_shape) if start_shape else None
        self.num_layers = int(num_layers)
        self.activation = activation
        self.batch_norm = bool(batch_norm)
        if self.conv_filters and not self.start_shape:
            raise ValueError("GenerativeRung with conv_filters needs start_shape (h, w, c).")
        self.flatten = Flatten()
        self.v = MLP([self.units], activation=activation, batch_norm=batch_norm)
        if self.conv_filters:
            h, w, c = self.start_shape
            self.u = MLP([self.units, h * w * c], activation=activation, batch_norm=batch_norm)
            self.deconv = ConvStack(self.conv_filters[::-1][1:] + self.conv_filters[:1],
                                    transpose=True, activation=activation, batch_norm=batch_norm)
        else:
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
        if self.conv_filters:
            self.deconv.build((z_shape[0],) + self.start_shape)
        self.built = True

    def call(self, inputs, training=False):
        """`inputs`: z_l (top rung) or `[z~_{l+1}, z_l]`."""
        if isinstance(inputs, (list, tuple)):
            above, z = inputs
        else:
            above, z = None, inputs
        h = self.v(z, training=training)
        if above is not None:
            h = keras.ops.concatenate([self.flatten(above), h], axis=-1)
        h = self.u(h, training=training)
        if self.conv_filters:
            h = keras.ops.reshape(h, (-1,) + self.start_shape)
            h = self.deconv(h, training=training)
        return h

    def get_config(self):
        return {**super().get_config(), "latent_dim": self.latent_dim, "units": self.units,
                "conv_filters": self.conv_filters,
                "start_shape": list(self.start_shape) if self.start_shape else None,
                "num_layers": self.num_layers, "activation": self.activation,
                "batch_norm": self.batch_norm}
