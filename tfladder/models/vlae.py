"""The Variational Ladder Autoencoder (Zhao, Song & Ermon, ICML 2017).

```none
prior:      p(z_1, ..., z_L) = N(0, I)                       (flat, no chain)
inference:  h_0 = x,  h_l = g_l(h_{l-1}),  q(z_l | x) = N(mu_l(h_l), sigma_l(h_l)**2)
generation: z~_L = f_L(z_L),  z~_l = u_l([z~_{l+1}; v_l(z_l)]),  x ~ r(x; f_0(z~_1))
ELBO      = E_q[log r(x; f_0(z~_1))] - sum_l KL(q(z_l | x) || N(0, I))
```

The hierarchy lives in the network: z_1 is reached through the shallowest
path (low-level features such as stroke width or colour), z_L through the
deepest (digit identity, face identity). Section 4 of the paper; the
MNIST configuration has 3 layers of 2-D latents, SVHN and CelebA 4 layers.

Optional progressive training (pro-VLAE; Li et al., ICLR 2020, sec. 3): the
top layer trains alone first and lower layers fade in one after another,

```none
alpha_l(t) = clip((t - (L - l) * progressive_steps) / fade_in_steps, 0, 1),  alpha_L = 1,
decoder input z_l -> alpha_l(t) * z_l,
```

so that the deepest path claims the factors that explain most of the data
(identity) before the shallow paths can. `progressive_stages` generalises
the order: layer l starts fading in at `progressive_stages[l] *
progressive_steps` (default `L - l`, top first); e.g. `[0, 2, 1, 0]` starts
the bottom and the top layers together, so that the bottom (shallow) path
takes the global colour that would otherwise fall to the top layer trained
alone, and the middle layers fade in afterwards.

Generators. `generator="dense"` (the default) combines every latent in dense
rungs and decodes z~_1 with one conv decoder f_0 mirroring all conv stages,
so every latent, z_1 included, reaches the pixels through the whole decoder.
`generator="spatial"` follows the paper's image models: the latent of a
conv rung enters the decoder as a feature map at that rung's resolution
(`SpatialGenerativeRung`), so z_1 is one or two convolutions from the
pixels and can only make shallow, low-level changes (colour, local shape),
while z_L passes through the whole decoder. The flat prior is unchanged.
`broadcast_latents=k` makes the maps of the k bottom latents spatially
constant (`SpatialGenerativeRung(broadcast=True)`): those layers can only
modulate the decoder's features everywhere at once (global factors such as
colour and light), not paint a spatial pattern.

Two-phase training (spatial generator). An observation with a likelihood
head (`DiscretizedLogisticObservation(pixel_scales=True,
channel_coupling=True)`) adds per-pixel scales and a coupling of the colour
channels to the decoder's means. Trained jointly from the start, a flexible
likelihood explains colour and light that the latents should carry; so the
head stays at zero (the plain per-channel likelihood) while the hierarchy
forms (`set_training_phase("hierarchy")`), and afterwards trains with the
generator frozen (`"likelihood"`): the bound tightens, the means p(x | z)
and so the features each layer controls do not change.
"""
import tensorflow as tf

from tfladder import gaussian
from tfladder.checks import check_positive_int
from tfladder.layers.blocks import ImageDecoder, ImageHead, LikelihoodHead
from tfladder.layers.ladder import GenerativeRung, InferenceRung, SpatialGenerativeRung
from tfladder.models.base import (HierarchicalModel, InferencePass, LayerTerms, check_noise,
                                  check_non_negative_int, draw, layer_seeds, per_layer,
                                  repeat_normal, standard_normal)
from tfladder.serialization import register


@register
class VariationalLadderAutoencoder(HierarchicalModel):
    """VLAE (module docstring).

    Args (beyond `HierarchicalModel`'s):
      hidden_units: Width of each rung's dense layers, bottom -> top.
      conv_filters: For each rung, the filters of its stride-2 convolutions
        (an empty list: a dense rung). Convolutional rungs come first.
      num_hidden_layers: Depth of the dense bodies g_l and u_l.
      activation: Activation of the inference rungs (leaky ReLU in the paper).
      generative_activation: Activation of the generative rungs (ReLU).
      batch_norm: Batch normalisation inside the rungs.
      min_scale: Floor of the posterior standard deviations.
      ladder_resolution: Conv rungs average-pool their features to at most
        this height/width before the dense ladder connection (None: no pooling).
      progressive_steps: Optimizer steps each layer trains before the next
        lower one starts fading in (0: every layer from the start).
      fade_in_steps: Steps over which a layer's alpha rises from 0 to 1.
        The schedule follows the optimizer's step count, and a model without
        an optimizer (loaded, exported) uses every layer; fine-tuning with a
        fresh optimizer restarts the schedule, so rebuild the model with
        `progressive_steps=0` to fine-tune all layers at once.
      generator: "dense" (default) or "spatial" (module docstring).
      latent_map_size: With the spatial generator, the number of values
        (height x width x channels) of each conv latent's feature map.
      broadcast_latents: With the spatial generator, how many bottom layers
        enter as spatially constant maps (module docstring).
      progressive_stages: Optional list (bottom -> top) of non-negative
        integers: layer l starts fading in after `progressive_stages[l] *
        progressive_steps` steps (a stage of 0: trained from the start).
        Default (None): top first, `L - 1 - l`.
      head_filters, head_layers: Width and number of hidden 3x3 convolutions
        of the likelihood head (`LikelihoodHead`; only with an observation
        that has one: `pixel_scales` or `channel_coupling`).

    #### Examples

    ```python
    model = tfladder.VariationalLadderAutoencoder(
        (28, 28, 1), latent_dims=[2, 2, 2], hidden_units=1024,
        conv_filters=[[64, 128], [], []])
    images = model.generate([grid, zeros, zeros]).mean()   # traverse layer 1
    ```

    #### References

    Zhao, Song & Ermon, "Learning Hierarchical Features from Generative
    Models", ICML 2017, section 4 and Figures 5-7.
    """

    supports_likelihood_head = True

    def __init__(self, image_shape, latent_dims, hidden_units=1024, conv_filters=None,
                 num_hidden_layers=2, activation="leaky_relu", generative_activation="relu",
                 batch_norm=False, min_scale=1e-3, ladder_resolution=None,
                 progressive_steps=0, fade_in_steps=0, generator="dense",
                 latent_map_size=512, progressive_stages=None, broadcast_latents=0,
                 head_filters=64, head_layers=1, **kwargs):
        super().__init__(image_shape, latent_dims, **kwargs)
        self.hidden_units = per_layer("hidden_units", hidden_units, self.num_layers)
        if conv_filters is None:
            conv_filters = [[] for _ in self.latent_dims]
        self.conv_filters = [[int(f) for f in filters] for filters in conv_filters]
        if len(self.conv_filters) != self.num_layers:
            raise ValueError(f"conv_filters must have one list per latent layer "
                             f"({self.num_layers}), got {len(self.conv_filters)}.")
        conv_rungs = [bool(f) for f in self.conv_filters]
        if conv_rungs != sorted(conv_rungs, reverse=True):
            raise ValueError("conv_filters: convolutional rungs must come first (bottom), "
                             f"got {self.conv_filters}.")
        self.num_hidden_layers = int(num_hidden_layers)
        self.activation = activation
        self.generative_activation = generative_activation
        self.batch_norm = bool(batch_norm)
        self.min_scale = float(min_scale)
        self.ladder_resolution = ladder_resolution
        self.progressive_steps = check_non_negative_int("progressive_steps", progressive_steps)
        self.fade_in_steps = check_non_negative_int("fade_in_steps", fade_in_steps)
        if generator not in ("dense", "spatial"):
            raise ValueError(f"generator must be 'dense' or 'spatial', got {generator!r}.")
        if generator == "spatial" and not any(conv_rungs):
            raise ValueError("generator='spatial' needs at least one convolutional rung "
                             "(conv_filters).")
        self.generator = generator
        if progressive_stages is not None:
            progressive_stages = [check_non_negative_int("progressive_stages", s)
                                  for s in progressive_stages]
            if len(progressive_stages) != self.num_layers:
                raise ValueError(f"progressive_stages must have one entry per latent layer "
                                 f"({self.num_layers}), got {progressive_stages}.")
        self.progressive_stages = progressive_stages
        self.broadcast_latents = check_non_negative_int("broadcast_latents", broadcast_latents)
        if self.broadcast_latents and (self.generator != "spatial" or not all(
                conv_rungs[:self.broadcast_latents])):
            raise ValueError("broadcast_latents needs generator='spatial' and that many "
                             "convolutional rungs at the bottom.")
        self.latent_map_size = check_non_negative_int("latent_map_size", latent_map_size)
        self.head_filters = check_positive_int("head_filters", head_filters)
        self.head_layers = check_positive_int("head_layers", head_layers)

        self.inference_rungs, self.generative_rungs = [], []
        for l in range(self.num_layers):
            self.inference_rungs.append(InferenceRung(
                self.latent_dims[l], self.hidden_units[l], conv_filters=self.conv_filters[l],
                num_layers=self.num_hidden_layers, activation=activation,
                batch_norm=self.batch_norm, min_scale=self.min_scale,
                ladder_resolution=ladder_resolution, name=f"inference_{l + 1}"))
            if self.generator == "spatial" and self.conv_filters[l]:
                self.generative_rungs.append(self._spatial_rung(l))
            else:
                self.generative_rungs.append(GenerativeRung(
                    self.latent_dims[l], self.hidden_units[l],
                    num_layers=self.num_hidden_layers, activation=generative_activation,
                    batch_norm=self.batch_norm, name=f"generative_{l + 1}"))
        if self.extra_params and self.generator != "spatial":
            raise ValueError(f"observation {self.observation_spec!r} (pixel_scales / "
                             "channel_coupling) needs generator='spatial'.")
        self.likelihood_head = None
        if self.generator == "spatial":
            # The bottom rung ends at half the image resolution; the head's
            # stride-2 transposed convolution produces the likelihood parameters.
            self.image_decoder = ImageHead(self.image_shape, self.params_per_channel,
                                           name="f_0")
            if self.extra_params:
                self.likelihood_head = LikelihoodHead(
                    self.image_shape, self.extra_params, filters=self.head_filters,
                    num_hidden=self.head_layers, name="likelihood_head")
                self.likelihood_head.trainable = False    # phase "hierarchy" first
        else:
            # f_0: z~_1 -> likelihood parameters, mirroring every conv stage of the
            # inference path.
            self.image_decoder = ImageDecoder(
                self.image_shape, self.params_per_channel,
                conv_filters=[f for filters in self.conv_filters for f in filters],
                activation=generative_activation, batch_norm=self.batch_norm, name="f_0")

    def _spatial_rung(self, l):
        """The `SpatialGenerativeRung` of conv rung l (0-based), mirroring its convs."""
        size = self.image_shape[0]
        for filters in self.conv_filters[:l + 1]:
            size //= 2 ** len(filters)
        if size < 1 or self.image_shape[0] % (size * 2 ** sum(
                len(f) for f in self.conv_filters[:l + 1])):
            raise ValueError(f"image size {self.image_shape[:2]} is not divisible by the "
                             f"stride-2 stages of conv_filters {self.conv_filters}.")
        channels = self.conv_filters[l][-1]
        up = self.conv_filters[l][::-1][1:] + ([self.conv_filters[l - 1][-1]] if l else [])
        broadcast = l < self.broadcast_latents
        latent_channels = (channels if broadcast else
                           max(1, min(channels, self.latent_map_size // (size * size))))
        return SpatialGenerativeRung(
            self.latent_dims[l], self.hidden_units[l], (size, size, channels), up_filters=up,
            latent_channels=latent_channels, activation=self.generative_activation,
            batch_norm=self.batch_norm, broadcast=broadcast, name=f"generative_{l + 1}")

    def infer(self, x, seed, training=False, use_mean=False, repeats=1):
        seeds = layer_seeds(seed, self.num_layers)
        h = x
        layers = []
        for l, rung in enumerate(self.inference_rungs):
            h, q = rung(h, training=training)
            q = repeat_normal(q, repeats)
            p = standard_normal(tf.shape(q.loc)[0], self.latent_dims[l])
            z = draw(q, seeds[l], use_mean)
            kl = tf.reduce_sum(gaussian.gaussian_kl(q.loc, q.scale, p.loc, p.scale), axis=-1)
            layers.append(LayerTerms(posterior=q, prior=p, z=z, kl=kl))
        latents = [layer.z for layer in layers]
        return InferencePass(layers=layers, likelihood=self.decode(latents, training=training))

    def layer_alphas(self, step):
        """Progressive-training weights alpha_l(step), bottom -> top (module docstring).

        All ones when progressive training is off.
        """
        step = tf.cast(step, tf.float32)
        alphas = []
        stages = self.progressive_stages or [self.num_layers - 1 - l
                                             for l in range(self.num_layers)]
        for l in range(self.num_layers):
            start = float(stages[l] * self.progressive_steps)
            if start == 0.0:
                alphas.append(tf.constant(1.0))
            else:
                ramp = (step - start + 1.0) / float(max(self.fade_in_steps, 1))
                alphas.append(tf.clip_by_value(ramp, 0.0, 1.0))
        return alphas

    def _current_alphas(self):
        """alpha_l at the optimizer's step; None once every layer is in (or untrained copy)."""
        if self.progressive_steps == 0 or getattr(self, "optimizer", None) is None:
            return None
        return self.layer_alphas(self.optimizer.iterations)

    def decode(self, z, training=False):
        """z~_L = f_L(z_L), z~_l = u_l([z~_{l+1}; v_l(z_l)]), x ~ r(x; f_0(z~_1)).

        During progressive training each z_l is scaled by alpha_l first.
        """
        check_noise(z, self.latent_dims)
        alphas = self._current_alphas()
        if alphas is not None:
            z = [alpha * z_l for alpha, z_l in zip(alphas, z)]
        h = None
        for l in reversed(range(self.num_layers)):
            rung_input = z[l] if h is None else [h, z[l]]
            h = self.generative_rungs[l](rung_input, training=training)
        params = self.image_decoder(h, training=training)
        if self.likelihood_head is not None:
            params = tf.concat([params, tf.cast(self.likelihood_head(
                [h, params], training=training), params.dtype)], axis=-1)
        return self.observation(params)

    TRAINING_PHASES = ("hierarchy", "likelihood")

    def set_training_phase(self, phase):
        """Chooses which weights train (module docstring, two-phase training).

        `"hierarchy"` (default): everything but the likelihood head, which
        stays at its initial zero output (the plain per-channel likelihood).
        `"likelihood"`: the likelihood head, the observation's scales and the
        inference rungs; the generator (rungs and f_0, so the likelihood's
        means) is frozen. Recompile after a change (the optimizer tracks the
        trainable variables).
        """
        if phase not in self.TRAINING_PHASES:
            raise ValueError(f"phase must be one of {self.TRAINING_PHASES}, got {phase!r}.")
        refine = phase == "likelihood"
        if refine and self.likelihood_head is None:
            raise ValueError("phase 'likelihood' needs an observation with a likelihood head "
                             "(pixel_scales or channel_coupling).")
        for rung in self.generative_rungs:
            rung.trainable = not refine
        self.image_decoder.trainable = not refine
        if self.likelihood_head is not None:
            self.likelihood_head.trainable = refine

    def generate(self, noise, training=False):
        """The prior is N(0, I) on every layer, so z = noise."""
        return self.decode(noise, training=training)

    def get_config(self):
        return {**super().get_config(), "hidden_units": list(self.hidden_units),
                "conv_filters": [list(f) for f in self.conv_filters],
                "num_hidden_layers": self.num_hidden_layers, "activation": self.activation,
                "generative_activation": self.generative_activation,
                "batch_norm": self.batch_norm, "min_scale": self.min_scale,
                "ladder_resolution": self.ladder_resolution,
                "progressive_steps": self.progressive_steps, "fade_in_steps": self.fade_in_steps,
                "generator": self.generator, "latent_map_size": self.latent_map_size,
                "progressive_stages": self.progressive_stages,
                "broadcast_latents": self.broadcast_latents,
                "head_filters": self.head_filters, "head_layers": self.head_layers}
