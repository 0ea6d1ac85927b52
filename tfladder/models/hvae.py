"""Stacked (Markov) hierarchical VAE with bottom-up inference.

```none
generative: p(x | z_1) p(z_1 | z_2) ... p(z_L)                (see markov.py)
inference:  q(z_1 | x) q(z_2 | z_1) ... q(z_L | z_{L-1})
KL_l      = log q(z_l | z_{l-1}) - log p(z_l | z_{l+1})       (one-sample estimate, l < L)
KL_L      = KL(q(z_L | z_{L-1}) || N(0, I))                    (analytic)
```

The terms below the top are Monte-Carlo: z_{l+1} is drawn from
q(z_{l+1} | z_l), so q and p condition on different things (Sonderby et al.
2016, section 2.1; Zhao et al. 2017, section 2.2, whose Proposition 1 shows
that such a model can put all of its information into z_1).
"""
import tensorflow as tf

from tfladder import gaussian
from tfladder.models.base import (InferencePass, LayerTerms, draw, layer_seeds, repeat_rows,
                                  standard_normal)
from tfladder.models.markov import MarkovGenerativeModel
from tfladder.serialization import register


@register
class HierarchicalVAE(MarkovGenerativeModel):
    """Stacked hierarchical VAE (module docstring); args as `MarkovGenerativeModel`.

    #### Examples

    ```python
    model = tfladder.HierarchicalVAE((28, 28, 1), latent_dims=[64, 32, 16])
    model.compile(keras.optimizers.Adam(1e-3))
    model.fit(dataset, epochs=10)
    model.log_likelihood(x_test[:100], num_samples=5000)
    ```
    """

    def __init__(self, image_shape, latent_dims, **kwargs):
        super().__init__(image_shape, latent_dims, **kwargs)
        self.encoder = self._image_encoder("encoder")
        self.posterior_mlps = [self._mlp(l, f"posterior_mlp_{l + 1}")
                               for l in range(1, self.num_layers)]
        self.posterior_heads = [self._gaussian(l, f"posterior_{l + 1}")
                                for l in range(self.num_layers)]

    def infer(self, x, seed, training=False, use_mean=False, repeats=1):
        seeds = layer_seeds(seed, self.num_layers)
        h = repeat_rows(self.encoder(x, training=training), repeats)
        posteriors, latents = [], []
        for l in range(self.num_layers):
            if l > 0:
                h = self.posterior_mlps[l - 1](latents[-1], training=training)
            q = self.posterior_heads[l](h)
            posteriors.append(q)
            latents.append(draw(q, seeds[l], use_mean))
        layers = []
        for l in range(self.num_layers):
            q, z = posteriors[l], latents[l]
            if l == self.num_layers - 1:
                p = standard_normal(tf.shape(z)[0], self.latent_dims[l])
                kl = tf.reduce_sum(gaussian.gaussian_kl(q.loc, q.scale, p.loc, p.scale), -1)
            else:
                p = self.prior(l, latents[l + 1], training=training)
                kl = tf.reduce_sum(q.log_prob(z) - p.log_prob(z), axis=-1)
            layers.append(LayerTerms(posterior=q, prior=p, z=z, kl=kl))
        return InferencePass(layers=layers, likelihood=self.decode(latents, training=training))
