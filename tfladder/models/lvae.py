"""The Ladder VAE (Sonderby, Raiko, Maaloe, Sonderby & Winther, NIPS 2016).

```none
upward:   d_0 = x,  d_l = MLP_l(d_{l-1}),
          mu_hat_l = Linear(d_l),  sigma_hat_l**2 = Softplus(Linear(d_l))      (eq. 19-21)
downward: q(z_L | x) = N(mu_hat_L, sigma_hat_L**2)
          for l < L, with p(z_l | z_{l+1}) = N(mu_p,l, sigma_p,l**2) from the sampled z_{l+1}:
          sigma_q,l**2 = 1 / (sigma_hat_l**-2 + sigma_p,l**-2)                  (eq. 17)
          mu_q,l = (mu_hat_l sigma_hat_l**-2 + mu_p,l sigma_p,l**-2) sigma_q,l**2  (eq. 18)
KL_l = KL(q(z_l | .) || p(z_l | z_{l+1}))   analytic, both conditioned on the same z_{l+1}
```

The generative model is the Markov chain of `markov.py`, shared with the
stacked HVAE. Paper configuration (MNIST, section 3): latent_dims
64-32-16-8-4, hidden_units 512-256-128-64-32, leaky ReLU, batch norm, warm-up
over 200 epochs, Bernoulli likelihood, dynamic binarisation.
"""
import tensorflow as tf

from tfladder import gaussian
from tfladder.layers.stochastic import PrecisionWeightedMerge
from tfladder.models.base import (InferencePass, LayerTerms, draw, layer_seeds, repeat_rows,
                                  standard_normal)
from tfladder.models.markov import MarkovGenerativeModel
from tfladder.serialization import register


@register
class LadderVAE(MarkovGenerativeModel):
    """Ladder VAE (module docstring); args as `MarkovGenerativeModel`.

    #### Examples

    ```python
    model = tfladder.LadderVAE((28, 28, 1), latent_dims=[64, 32, 16, 8, 4],
                               hidden_units=[512, 256, 128, 64, 32], batch_norm=True,
                               kl_warmup_steps=200 * 235)
    ```

    #### References

    Sonderby et al., "Ladder Variational Autoencoders", NIPS 2016, section 2.2.
    """

    def __init__(self, image_shape, latent_dims, **kwargs):
        super().__init__(image_shape, latent_dims, **kwargs)
        self.encoder = self._image_encoder("encoder")
        self.upward_mlps = [self._mlp(l, f"upward_mlp_{l + 1}") for l in range(1, self.num_layers)]
        self.upward_heads = [self._gaussian(l, f"upward_{l + 1}") for l in range(self.num_layers)]
        self.merge = PrecisionWeightedMerge(name="merge")

    def infer(self, x, seed, training=False, use_mean=False, repeats=1):
        seeds = layer_seeds(seed, self.num_layers)
        # Deterministic upward pass: bottom-up Gaussian estimates (mu_hat, sigma_hat).
        d = self.encoder(x, training=training)
        upward = []
        for l in range(self.num_layers):
            if l > 0:
                d = self.upward_mlps[l - 1](d, training=training)
            upward.append(self.upward_heads[l](repeat_rows(d, repeats)))
        # Stochastic downward pass.
        layers = [None] * self.num_layers
        z_above = None
        for l in reversed(range(self.num_layers)):
            if z_above is None:
                p = standard_normal(tf.shape(upward[l].loc)[0], self.latent_dims[l])
                q = upward[l]
            else:
                p = self.prior(l, z_above, training=training)
                q = self.merge(upward[l].loc, upward[l].scale, p.loc, p.scale)
            z = draw(q, seeds[l], use_mean)
            kl = tf.reduce_sum(gaussian.gaussian_kl(q.loc, q.scale, p.loc, p.scale), axis=-1)
            layers[l] = LayerTerms(posterior=q, prior=p, z=z, kl=kl)
            z_above = z
        latents = [layer.z for layer in layers]
        return InferencePass(layers=layers, likelihood=self.decode(latents, training=training))
