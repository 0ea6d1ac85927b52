"""The Markov generative model shared by the HVAE, LVAE and top-down VAE.

```none
p(x, z) = p(x | z_1) p(z_1 | z_2) ... p(z_{L-1} | z_L) p(z_L),   p(z_L) = N(0, I)
p(z_l | z_{l+1}) = N(mu_p,l(z_{l+1}), sigma_p,l(z_{l+1})**2)
mu_p,l = Linear(MLP(z_{l+1})),  sigma_p,l**2 = Softplus(Linear(MLP(z_{l+1})))
```

(Sonderby et al. 2016, section 2.1; Zhao et al. 2017, section 2.2.) The
families differ only in their inference networks.
"""
from tfladder.layers.blocks import MLP, ImageDecoder, ImageEncoder
from tfladder.layers.stochastic import GaussianStochastic
from tfladder.models.base import HierarchicalModel, check_noise, per_layer, standard_normal


class MarkovGenerativeModel(HierarchicalModel):
    """Base of the families with a Markov chain of latent layers.

    Args (beyond `HierarchicalModel`'s):
      hidden_units: Width of the deterministic MLPs of each latent layer,
        bottom -> top (one int per layer, or one int for all).
      num_hidden_layers: Depth of each MLP (the papers use 2).
      conv_filters: Filters of stride-2 convolutions between x and the first
        latent layer (empty: MLP encoder and decoder).
      activation: Activation name (the LVAE paper uses leaky ReLU 0.1).
      batch_norm: Batch normalisation in every MLP (LVAE section 3).
      min_scale: Floor of every latent standard deviation.
    """

    def __init__(self, image_shape, latent_dims, hidden_units=512, num_hidden_layers=2,
                 conv_filters=(), activation="leaky_relu", batch_norm=False, min_scale=1e-3,
                 **kwargs):
        super().__init__(image_shape, latent_dims, **kwargs)
        self.hidden_units = per_layer("hidden_units", hidden_units, self.num_layers)
        self.num_hidden_layers = int(num_hidden_layers)
        self.conv_filters = [int(f) for f in conv_filters]
        self.activation = activation
        self.batch_norm = bool(batch_norm)
        self.min_scale = float(min_scale)
        self.decoder = ImageDecoder(self.image_shape, self.params_per_channel,
                                    conv_filters=self.conv_filters,
                                    units=self._mlp_units(0), activation=activation,
                                    batch_norm=batch_norm, name="decoder")
        # prior_nets[l] computes p(z_l | z_{l+1}) for l = 0 .. L-2.
        self.prior_mlps = [self._mlp(l, f"prior_mlp_{l + 1}") for l in range(self.num_layers - 1)]
        self.prior_heads = [self._gaussian(l, f"prior_{l + 1}") for l in range(self.num_layers - 1)]

    # Building blocks for subclasses -------------------------------------
    def _mlp_units(self, layer):
        return [self.hidden_units[layer]] * self.num_hidden_layers

    def _mlp(self, layer, name):
        return MLP(self._mlp_units(layer), activation=self.activation,
                   batch_norm=self.batch_norm, name=name)

    def _image_encoder(self, name):
        return ImageEncoder(self.conv_filters, self._mlp_units(0), activation=self.activation,
                            batch_norm=self.batch_norm, name=name)

    def _gaussian(self, layer, name):
        return GaussianStochastic(self.latent_dims[layer], min_scale=self.min_scale,
                                  parameterization="variance", name=name)

    # The generative model ---------------------------------------------
    def prior(self, layer, z_above, training=False):
        """p(z_layer | z_{layer+1}) for a 0-based `layer` below the top."""
        return self.prior_heads[layer](self.prior_mlps[layer](z_above, training=training))

    def top_prior(self, batch):
        return standard_normal(batch, self.latent_dims[-1])

    def decode(self, z, training=False):
        """p(x | z_1): only the bottom latent enters the likelihood."""
        return self.observation(self.decoder(z[0], training=training))

    def generate(self, noise, training=False):
        """z_L = e_L, z_l = mu_p(z_{l+1}) + sigma_p(z_{l+1}) e_l, x ~ p(x | z_1)."""
        check_noise(noise, self.latent_dims)
        z = noise[-1]
        latents = [z]
        for layer in reversed(range(self.num_layers - 1)):
            p = self.prior(layer, z, training=training)
            z = p.loc + p.scale * noise[layer]
            latents.insert(0, z)
        return self.decode(latents, training=training)

    def get_config(self):
        return {**super().get_config(), "hidden_units": list(self.hidden_units),
                "num_hidden_layers": self.num_hidden_layers,
                "conv_filters": list(self.conv_filters), "activation": self.activation,
                "batch_norm": self.batch_norm, "min_scale": self.min_scale}
