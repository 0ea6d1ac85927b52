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

from tfladder.layers.blocks import MLP, ConvStack, Flatten, get_activation
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


@register
class SpatialGenerativeRung(keras.layers.Layer):
    """A convolutional generative rung: `[h~_{l+1}, z_l] -> h~_l`, a feature map.

    The generator of the VLAE paper's image models: a conv rung's latent
    enters the decoder as a feature map at the resolution of the inference
    rung that produced it, so that z_1 sits one or two (transposed)
    convolutions from the pixels and z_L at the start of the deepest path.

    ```none
    m_l   = reshape(Dense(v_l(z_l)))                      [B, r, r, c_z]
    a     = h~_{l+1}          (a map [B, r, r, c])   or
            reshape(Dense(h~_{l+1}))  (flat: the output of a dense rung above)
    h~_l  = Up_l(act(Conv3x3([a; m_l])))                   (Up_l: stride-2 transposed convs)
    ```

    Args:
      latent_dim: Dimension of z_l.
      units: Width of v_l.
      map_shape: `(r, r, c)`, the shape of this level's feature map (the
        output of inference rung l).
      up_filters: Filters of the stride-2 transposed convolutions after the
        merge (each doubles the resolution; may be empty).
      latent_channels: Channels c_z of the latent's map.
      broadcast: If True, the latent's map is spatially constant (`Dense(v_l(z_l))`
        of size c_z tiled over the r x r positions): z_l can only change the
        rung's features everywhere at once (a global factor such as colour
        or light), not draw a spatial pattern of its own.
      activation, batch_norm: As in `MLP`.
    """

    def __init__(self, latent_dim, units, map_shape, up_filters=(), latent_channels=8,
                 activation="relu", batch_norm=False, broadcast=False, **kwargs):
        super().__init__(**kwargs)
        self.latent_dim = int(latent_dim)
        self.units = int(units)
        self.map_shape = tuple(int(d) for d in map_shape)
        self.up_filters = [int(f) for f in up_filters]
        self.latent_channels = int(latent_channels)
        self.activation = activation
        self.batch_norm = bool(batch_norm)
        self.broadcast = bool(broadcast)
        height, width, channels = self.map_shape
        self._latent_map = ((1, 1) if self.broadcast else (height, width)) + (
            self.latent_channels,)
        self.flatten = Flatten()
        self.v = MLP([self.units, self._latent_map[0] * self._latent_map[1]
                      * self.latent_channels], activation=activation, batch_norm=batch_norm)
        self.project = MLP([height * width * channels], activation=activation,
                           batch_norm=batch_norm)
        self.merge = keras.layers.Conv2D(channels, 3, padding="same", name="merge")
        self.merge_norm = (keras.layers.BatchNormalization(synchronized=True)
                           if self.batch_norm else None)
        self.up = ConvStack(self.up_filters, transpose=True, activation=activation,
                            batch_norm=batch_norm)
        self._activation_fn = get_activation(activation)

    def build(self, input_shape):
        """`input_shape`: shape of z_l, or `[shape of h~_{l+1}, shape of z_l]`."""
        height, width, channels = self.map_shape
        if isinstance(input_shape, (list, tuple)) and isinstance(input_shape[0], (list, tuple)):
            above_shape, z_shape = input_shape
            above_channels = channels
            if len(above_shape) == 2:
                self.project.build(above_shape)
            elif tuple(int(d) for d in above_shape[1:]) != self.map_shape:
                raise ValueError(f"SpatialGenerativeRung {self.name}: the map from above has "
                                 f"shape {tuple(above_shape[1:])}, expected {self.map_shape}.")
        else:
            z_shape, above_channels = input_shape, 0
        self.v.build(z_shape)
        merged = (z_shape[0], height, width, above_channels + self.latent_channels)
        self.merge.build(merged)
        if self.merge_norm is not None:
            self.merge_norm.build((z_shape[0], height, width, channels))
        self.up.build((z_shape[0], height, width, channels))
        self.built = True

    def compute_output_shape(self, input_shape):
        z_shape = input_shape[1] if isinstance(input_shape[0], (list, tuple)) else input_shape
        return self.up.compute_output_shape((z_shape[0],) + self.map_shape)

    def call(self, inputs, training=False):
        """`inputs`: z_l (top rung) or `[h~_{l+1}, z_l]`."""
        if isinstance(inputs, (list, tuple)):
            above, z = inputs
        else:
            above, z = None, inputs
        m = keras.ops.reshape(self.v(z, training=training), (-1,) + self._latent_map)
        if self.broadcast:
            m = keras.ops.tile(m, (1,) + self.map_shape[:2] + (1,))
        if above is not None:
            if len(above.shape) == 2:
                above = keras.ops.reshape(self.project(above, training=training),
                                          (-1,) + self.map_shape)
            m = keras.ops.concatenate([above, m], axis=-1)
        h = self.merge(m)
        if self.merge_norm is not None:
            h = self.merge_norm(h, training=training)
        h = self._activation_fn(h)
        return self.up(h, training=training)

    def get_config(self):
        return {**super().get_config(), "latent_dim": self.latent_dim, "units": self.units,
                "map_shape": list(self.map_shape), "up_filters": self.up_filters,
                "latent_channels": self.latent_channels, "activation": self.activation,
                "batch_norm": self.batch_norm, "broadcast": self.broadcast}
