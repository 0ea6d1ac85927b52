"""Deterministic building blocks: MLPs and small conv / deconv stacks.

Every block takes explicit arguments, echoes them in `get_config`, and builds
all of its sublayers in `build()` so that weights exist before loading.
"""
import keras

from tfladder.checks import check_positive_int
from tfladder.serialization import register

# Activations by name. Leaky ReLU uses the Ladder VAE slope 0.1
# (Sonderby et al. 2016, section 3), not Keras' default 0.2.
ACTIVATIONS = {
    "relu": keras.activations.relu,
    "leaky_relu": lambda x: keras.activations.leaky_relu(x, negative_slope=0.1),
    "elu": keras.activations.elu,
    "swish": keras.activations.silu,
    "tanh": keras.activations.tanh,
    "linear": keras.activations.linear,
}


def get_activation(name):
    """Looks up an activation by name; raises a ValueError listing the choices."""
    if name not in ACTIVATIONS:
        raise ValueError(
            f"activation must be one of {sorted(ACTIVATIONS)}, got {name!r}.")
    return ACTIVATIONS[name]


@register
class MLP(keras.layers.Layer):
    """A stack of `Dense -> [BatchNorm] -> activation` layers.

    Args:
      units: Widths of the hidden layers, in order. May be empty (identity).
      activation: Name of the activation (see `ACTIVATIONS`).
      batch_norm: Whether to insert batch normalisation before each
        activation (as in the Ladder VAE, section 3). Statistics are
        synchronized across replicas, so training does not depend on how a
        batch is split over devices.
    """

    def __init__(self, units, activation="leaky_relu", batch_norm=False, **kwargs):
        super().__init__(**kwargs)
        self.units = [int(u) for u in units]
        self.activation = activation
        self.batch_norm = bool(batch_norm)
        self._activation_fn = get_activation(activation)
        self.dense_layers = [keras.layers.Dense(u) for u in self.units]
        self.norm_layers = ([keras.layers.BatchNormalization(synchronized=True) for _ in self.units]
                            if self.batch_norm else [])

    def build(self, input_shape):
        shape = tuple(input_shape)
        for i, dense in enumerate(self.dense_layers):
            dense.build(shape)
            shape = shape[:-1] + (dense.units,)
            if self.batch_norm:
                self.norm_layers[i].build(shape)
        self.built = True

    def call(self, inputs, training=False):
        h = inputs
        for i, dense in enumerate(self.dense_layers):
            h = dense(h)
            if self.batch_norm:
                h = self.norm_layers[i](h, training=training)
            h = self._activation_fn(h)
        return h

    def compute_output_shape(self, input_shape):
        if not self.units:
            return tuple(input_shape)
        return tuple(input_shape)[:-1] + (self.units[-1],)

    def get_config(self):
        return {**super().get_config(), "units": self.units,
                "activation": self.activation, "batch_norm": self.batch_norm}


@register
class ConvStack(keras.layers.Layer):
    """Stride-2 convolutions (or transposed convolutions) with optional BN.

    Each entry of `filters` halves (or, with `transpose=True`, doubles) the
    spatial size, with 'same' padding: a 28x28 image becomes 14x14 then 7x7.

    Args:
      filters: Number of output channels of each stage, in order.
      transpose: Use `Conv2DTranspose` (upsampling) instead of `Conv2D`.
      kernel_size: Square kernel size (the VLAE paper uses 4).
      activation: Name of the activation (see `ACTIVATIONS`).
      batch_norm: Whether to use batch normalisation before activations.
    """

    def __init__(self, filters, transpose=False, kernel_size=4,
                 activation="leaky_relu", batch_norm=False, **kwargs):
        super().__init__(**kwargs)
        self.filters = [int(f) for f in filters]
        self.transpose = bool(transpose)
        self.kernel_size = int(kernel_size)
        self.activation = activation
        self.batch_norm = bool(batch_norm)
        self._activation_fn = get_activation(activation)
        conv = keras.layers.Conv2DTranspose if self.transpose else keras.layers.Conv2D
        self.conv_layers = [conv(f, self.kernel_size, strides=2, padding="same")
                            for f in self.filters]
        self.norm_layers = ([keras.layers.BatchNormalization(synchronized=True) for _ in self.filters]
                            if self.batch_norm else [])

    def build(self, input_shape):
        shape = tuple(input_shape)
        for i, conv in enumerate(self.conv_layers):
            conv.build(shape)
            shape = tuple(conv.compute_output_shape(shape))
            if self.batch_norm:
                self.norm_layers[i].build(shape)
        self.built = True

    def call(self, inputs, training=False):
        h = inputs
        for i, conv in enumerate(self.conv_layers):
            h = conv(h)
            if self.batch_norm:
                h = self.norm_layers[i](h, training=training)
            h = self._activation_fn(h)
        return h

    def compute_output_shape(self, input_shape):
        shape = tuple(input_shape)
        for conv in self.conv_layers:
            shape = tuple(conv.compute_output_shape(shape))
        return shape

    def get_config(self):
        return {**super().get_config(), "filters": self.filters,
                "transpose": self.transpose, "kernel_size": self.kernel_size,
                "activation": self.activation, "batch_norm": self.batch_norm}


@register
class Flatten(keras.layers.Layer):
    """Flattens `[B, ...]` to `[B, prod(...)]`; the identity on `[B, D]`."""

    def call(self, inputs):
        if len(inputs.shape) <= 2:
            return inputs
        return keras.ops.reshape(inputs, (keras.ops.shape(inputs)[0], -1))

    def compute_output_shape(self, input_shape):
        size = 1
        for dim in input_shape[1:]:
            size *= int(dim)
        return (input_shape[0], size)


@register
class ImageHead(keras.layers.Layer):
    """Maps decoder features to per-pixel likelihood parameters.

    Conv features at the image resolution go through a 3x3 convolution, at
    half the resolution through a stride-2 4x4 transposed convolution (the
    last upsampling of a conv decoder, as in the VLAE paper's generator);
    flat features go through a Dense layer and a reshape. The output is
    `[B, H, W, C * params_per_channel]`.

    Args:
      image_shape: `(H, W, C)` of the images.
      params_per_channel: Parameters per channel of the observation model.
    """

    def __init__(self, image_shape, params_per_channel=1, **kwargs):
        super().__init__(**kwargs)
        self.image_shape = tuple(int(d) for d in image_shape)
        self.params_per_channel = int(params_per_channel)
        height, width, channels = self.image_shape
        self._out_channels = channels * self.params_per_channel
        self.conv = keras.layers.Conv2D(self._out_channels, 3, padding="same")
        self.upsample = keras.layers.Conv2DTranspose(self._out_channels, 4, strides=2,
                                                     padding="same")
        self.dense = keras.layers.Dense(height * width * self._out_channels)

    def _conv_layer(self, input_shape):
        spatial, image = tuple(input_shape[1:3]), self.image_shape[:2]
        if spatial == image:
            return self.conv
        if (2 * spatial[0], 2 * spatial[1]) == image:
            return self.upsample
        raise ValueError(
            f"ImageHead expects conv features at the image resolution {image} or half of it, "
            f"got {spatial}; choose conv_filters so that the image size is divisible by "
            "2**len(conv_filters).")

    def build(self, input_shape):
        if len(input_shape) == 4:
            self._conv_layer(input_shape).build(input_shape)
        else:
            self.dense.build(input_shape)
        self.built = True

    def call(self, features):
        if len(features.shape) == 4:
            return self._conv_layer(features.shape)(features)
        height, width, _ = self.image_shape
        return keras.ops.reshape(self.dense(features),
                                 (-1, height, width, self._out_channels))

    def get_config(self):
        return {**super().get_config(), "image_shape": list(self.image_shape),
                "params_per_channel": self.params_per_channel}


@register
class LikelihoodHead(keras.layers.Layer):
    """Maps decoder features and the decoder's location maps to extra likelihood maps.

    `[features, loc] -> [B, H, W, out_channels]`: features at the image
    resolution or half of it (then upsampled by a stride-2 4x4 transposed
    convolution), concatenated with the location maps `loc [B, H, W, C]`,
    `num_hidden` 3x3 convolutions with ReLU and a 3x3 output convolution
    initialised to zero, so that a fresh head leaves the likelihood as it was (e.g. the
    per-pixel log-scale offsets and channel couplings of
    `DiscretizedLogisticObservation` start at 0). A frozen head
    (`trainable = False`) whose output convolution is still zero returns the
    zero maps without computing them.

    Args:
      image_shape: `(H, W, C)` of the images.
      out_channels: Number of output maps.
      filters: Width of the hidden convolutions.
      num_hidden: Number of hidden 3x3 convolutions (>= 1; each widens the
        receptive field by 2 pixels).
    """

    def __init__(self, image_shape, out_channels, filters=64, num_hidden=1, **kwargs):
        super().__init__(**kwargs)
        self.image_shape = tuple(int(d) for d in image_shape)
        self.out_channels = int(out_channels)
        self.filters = check_positive_int("filters", filters)
        self.num_hidden = check_positive_int("num_hidden", num_hidden)
        self.upsample = keras.layers.Conv2DTranspose(self.filters, 4, strides=2,
                                                     padding="same", activation="relu")
        self.hidden = keras.layers.Conv2D(self.filters, 3, padding="same", activation="relu")
        # Hidden convolutions after the first (attribute names of one-layer
        # heads unchanged, so their stored weights keep their paths).
        self.more_hidden = [keras.layers.Conv2D(self.filters, 3, padding="same",
                                                activation="relu", name=f"hidden_{i + 2}")
                            for i in range(self.num_hidden - 1)]
        self.out = keras.layers.Conv2D(self.out_channels, 3, padding="same",
                                       kernel_initializer="zeros", bias_initializer="zeros")

    def build(self, input_shape):
        features_shape, loc_shape = input_shape
        height, width = self.image_shape[:2]
        if tuple(features_shape[1:3]) == (height // 2, width // 2):
            self.upsample.build(features_shape)
            features_channels = self.filters
        elif tuple(features_shape[1:3]) == (height, width):
            features_channels = int(features_shape[-1])
        else:
            raise ValueError(f"LikelihoodHead expects conv features at the image resolution "
                             f"{(height, width)} or half of it, got {tuple(features_shape)}.")
        self.hidden.build((None, height, width, features_channels + int(loc_shape[-1])))
        for conv in self.more_hidden:
            conv.build((None, height, width, self.filters))
        self.out.build((None, height, width, self.filters))
        self.built = True

    def call(self, inputs):
        features, loc = inputs
        if self.trainable:
            return self._maps(features, loc)
        # Frozen (the hierarchy phase): while the output convolution is still
        # exactly zero the maps are zero; skip computing them (and their
        # gradient). Checked on the weights in the graph, so a trained head
        # that is frozen again, or restored, is always applied.
        untouched = keras.ops.logical_not(keras.ops.logical_or(
            keras.ops.any(keras.ops.not_equal(self.out.kernel, 0)),
            keras.ops.any(keras.ops.not_equal(self.out.bias, 0))))
        zeros = keras.ops.repeat(keras.ops.zeros_like(
            keras.ops.cast(loc[..., :1], self.compute_dtype)), self.out_channels, axis=-1)
        return keras.ops.cond(untouched, lambda: zeros, lambda: self._maps(features, loc))

    def _maps(self, features, loc):
        if features.shape[1] != self.image_shape[0]:
            features = self.upsample(features)
        hidden = self.hidden(keras.ops.concatenate([features, keras.ops.cast(
            loc, features.dtype)], axis=-1))
        for conv in self.more_hidden:
            hidden = conv(hidden)
        return self.out(hidden)

    def get_config(self):
        return {**super().get_config(), "image_shape": list(self.image_shape),
                "out_channels": self.out_channels, "filters": self.filters,
                "num_hidden": self.num_hidden}


@register
class ImageEncoder(keras.layers.Layer):
    """`x [B, H, W, C] -> features [B, D]`: optional conv stack, flatten, MLP.

    Args:
      conv_filters: Filters of the stride-2 conv stages (empty: pure MLP).
      units: Widths of the MLP applied after flattening.
      activation, batch_norm: As in `MLP`.
    """

    def __init__(self, conv_filters=(), units=(), activation="leaky_relu",
                 batch_norm=False, **kwargs):
        super().__init__(**kwargs)
        self.conv_filters = [int(f) for f in conv_filters]
        self.units = [int(u) for u in units]
        self.activation = activation
        self.batch_norm = bool(batch_norm)
        self.conv = ConvStack(self.conv_filters, activation=activation, batch_norm=batch_norm)
        self.flatten = Flatten()
        self.mlp = MLP(self.units, activation=activation, batch_norm=batch_norm)

    def build(self, input_shape):
        self.conv.build(input_shape)
        shape = self.conv.compute_output_shape(input_shape)
        self.mlp.build(self.flatten.compute_output_shape(shape))
        self.built = True

    def call(self, x, training=False):
        return self.mlp(self.flatten(self.conv(x, training=training)), training=training)

    def get_config(self):
        return {**super().get_config(), "conv_filters": self.conv_filters,
                "units": self.units, "activation": self.activation,
                "batch_norm": self.batch_norm}


@register
class ImageDecoder(keras.layers.Layer):
    """`features [B, D] -> likelihood parameters [B, H, W, C * k]`.

    The mirror of `ImageEncoder`: MLP, then (with conv filters) a Dense
    projection to the encoder's last feature map, transposed convolutions up
    to half the image resolution, and an `ImageHead` whose stride-2 transposed
    convolution produces the likelihood parameters at full resolution.

    Args:
      image_shape: `(H, W, C)`.
      params_per_channel: Parameters per channel of the observation model.
      conv_filters: The *encoder's* conv filters; the decoder mirrors them.
      units: Widths of the MLP applied first.
      activation, batch_norm: As in `MLP`.
    """

    def __init__(self, image_shape, params_per_channel=1, conv_filters=(), units=(),
                 activation="leaky_relu", batch_norm=False, **kwargs):
        super().__init__(**kwargs)
        self.image_shape = tuple(int(d) for d in image_shape)
        self.params_per_channel = int(params_per_channel)
        self.conv_filters = [int(f) for f in conv_filters]
        self.units = [int(u) for u in units]
        self.activation = activation
        self.batch_norm = bool(batch_norm)
        self.mlp = MLP(self.units, activation=activation, batch_norm=batch_norm)
        self.start_shape = conv_start_shape(self.image_shape, self.conv_filters)
        if self.conv_filters:
            size = self.start_shape[0] * self.start_shape[1] * self.start_shape[2]
            self.project = MLP([size], activation=activation, batch_norm=batch_norm)
            self.deconv = ConvStack(self.conv_filters[::-1][1:], transpose=True,
                                    activation=activation, batch_norm=batch_norm)
        self.head = ImageHead(self.image_shape, self.params_per_channel)

    def build(self, input_shape):
        self.mlp.build(input_shape)
        shape = self.mlp.compute_output_shape(input_shape)
        if self.conv_filters:
            self.project.build(shape)
            shape = (shape[0],) + self.start_shape
            self.deconv.build(shape)
            shape = self.deconv.compute_output_shape(shape)
        self.head.build(shape)
        self.built = True

    def call(self, features, training=False):
        h = self.mlp(features, training=training)
        if self.conv_filters:
            h = self.project(h, training=training)
            h = keras.ops.reshape(h, (-1,) + self.start_shape)
            h = self.deconv(h, training=training)
        return self.head(h)

    def get_config(self):
        return {**super().get_config(), "image_shape": list(self.image_shape),
                "params_per_channel": self.params_per_channel,
                "conv_filters": self.conv_filters, "units": self.units,
                "activation": self.activation, "batch_norm": self.batch_norm}


def conv_start_shape(image_shape, conv_filters):
    """Feature-map shape after `len(conv_filters)` stride-2 stages.

    Raises:
      ValueError: if the image size is not divisible by `2**len(conv_filters)`
        (the transposed convolutions could not return to it exactly).
    """
    if not conv_filters:
        return None
    factor = 2 ** len(conv_filters)
    height, width, _ = image_shape
    if height % factor or width % factor:
        raise ValueError(
            f"conv_filters has {len(conv_filters)} stride-2 stages, so the image size "
            f"must be divisible by {factor}; got image_shape {tuple(image_shape)}.")
    return (height // factor, width // factor, int(conv_filters[-1]))
