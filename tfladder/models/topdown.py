"""Top-down VAE with relative (delta) posteriors (NVAE, Vahdat & Kautz 2020).

```none
upward:   r_1 = f_1(x),  r_l = f_l(r_{l-1});  [delta_mu_l, log delta_var_l] = Linear(r_l)
          log delta_var clamped to [-7, 2] (hardtanh)
top:      q(z_L | x) = N(delta_mu_L, delta_var_L)                    (prior N(0, I))
below:    [mu_p, sigma_p**2] = NN_l(z_{l+1}),
          q(z_l | x, z_{l+1}) = N(mu_p + delta_mu_l, sigma_p**2 delta_var_l)
KL_l    = 1/2 sum (delta_mu**2 / sigma_p**2 + delta_var - log delta_var - 1)   (NVAE eq. 2)
```

The generative model is the Markov chain of `markov.py`.
"""
import tensorflow as tf

from tfladder import gaussian
from tfladder.layers.stochastic import DeltaGaussian
from tfladder.models.base import (InferencePass, LayerTerms, draw, layer_seeds, repeat_rows,
                                  standard_normal)
from tfladder.models.markov import MarkovGenerativeModel
from tfladder.serialization import register


@register
class TopDownVAE(MarkovGenerativeModel):
    """Top-down VAE with delta posteriors; args as `MarkovGenerativeModel`, plus

    Args:
      log_variance_range: Clamp `(low, high)` of the log-variance deltas.

    #### References

    Vahdat & Kautz, "NVAE: A Deep Hierarchical Variational Autoencoder",
    NeurIPS 2020, section 3.2 (residual normal distributions).
    """

    def __init__(self, image_shape, latent_dims, log_variance_range=(-7.0, 2.0), **kwargs):
        super().__init__(image_shape, latent_dims, **kwargs)
        self.log_variance_range = tuple(float(v) for v in log_variance_range)
        self.encoder = self._image_encoder("encoder")
        self.upward_mlps = [self._mlp(l, f"upward_mlp_{l + 1}") for l in range(1, self.num_layers)]
        self.delta_heads = [DeltaGaussian(self.latent_dims[l], self.log_variance_range,
                                          name=f"delta_{l + 1}") for l in range(self.num_layers)]

    def infer(self, x, seed, training=False, use_mean=False, repeats=1):
        seeds = layer_seeds(seed, self.num_layers)
        r = self.encoder(x, training=training)
        features = []
        for l in range(self.num_layers):
            if l > 0:
                r = self.upward_mlps[l - 1](r, training=training)
            features.append(repeat_rows(r, repeats))
        layers = [None] * self.num_layers
        z_above = None
        for l in reversed(range(self.num_layers)):
            if z_above is None:
                p = standard_normal(tf.shape(features[l])[0], self.latent_dims[l])
            else:
                p = self.prior(l, z_above, training=training)
            q = self.delta_heads[l](features[l], p.loc, p.scale)
            z = draw(q, seeds[l], use_mean)
            kl = tf.reduce_sum(gaussian.delta_gaussian_kl(
                q.loc - p.loc, q.scale / p.scale, p.scale), axis=-1)
            layers[l] = LayerTerms(posterior=q, prior=p, z=z, kl=kl)
            z_above = z
        latents = [layer.z for layer in layers]
        return InferencePass(layers=layers, likelihood=self.decode(latents, training=training))

    def get_config(self):
        return {**super().get_config(), "log_variance_range": list(self.log_variance_range)}
