"""The one-layer Gaussian VAE (Kingma & Welling 2014): the baseline family.

```none
p(z) = N(0, I),  q(z | x) = N(mu(x), sigma(x)**2),
ELBO = E_q[log p(x | z)] - KL(q(z | x) || N(0, I))
```

It is the stacked `HierarchicalVAE` with a single latent layer.
"""
from tfladder.models.hvae import HierarchicalVAE
from tfladder.serialization import register


@register
class VAE(HierarchicalVAE):
    """One-latent-layer VAE; args as `MarkovGenerativeModel`.

    `latent_dims` may be an int or a one-element list.
    """

    def __init__(self, image_shape, latent_dims=64, **kwargs):
        dims = [latent_dims] if isinstance(latent_dims, int) else list(latent_dims)
        if len(dims) != 1:
            raise ValueError(f"VAE has exactly one latent layer; latent_dims must be an int or "
                             f"a one-element list, got {latent_dims!r}. Use HierarchicalVAE, "
                             "LadderVAE or TopDownVAE for several layers.")
        super().__init__(image_shape, dims, **kwargs)
