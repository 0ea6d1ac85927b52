"""Top-down VAE with relative (delta) posteriors (NVAE, Vahdat & Kautz 2020).

```none
upward:   r_1 = f_1(x),  r_l = f_l(r_{l-1})                            (bottom-up path)
top-down: h_l = MLP_l(z_{l+1}),  [mu_p,l, sigma_p,l**2] = Linear(h_l)  (the prior network)
context:  c_L = r_L;   for l < L:
            c_l = r_l                                    posterior_context="bottom_up"
            c_l = MLP_c,l([r_l ; h_l])                   posterior_context="top_down" (default)
deltas:   [delta_mu_l, log delta_var_l] = Linear(c_l),  log delta_var clamped to [-7, 2]
top:      q(z_L | x) = N(delta_mu_L, delta_var_L)                       (prior N(0, I))
below:    q(z_l | x, z_{l+1}) = N(mu_p,l + delta_mu_l, sigma_p,l**2 delta_var_l)
KL_l    = 1/2 sum_u (delta_mu**2 / sigma_p**2 + delta_var - log delta_var - 1)   (NVAE eq. 2)
```

`posterior_context="top_down"` is NVAE's form (section 3 and Fig. 2: the
encoder's features at level l are combined with the decoder's state, which
is computed from the latents above, before the posterior's parameters are
predicted; its "combiner" cell is the concatenation + MLP here). The
posterior correction then knows where the prior put its mass. With
`"bottom_up"` (the form of Tomczak's top-down VAE tutorial, and of models
saved before the option existed) the deltas see only r_l. Both forms keep the
KL of every level in closed form, because q and p of level l condition on the
same sample z_{l+1}.

KL balancing (NVAE Appendix A; `kl_balancing=True`, off by default). While
the warm-up's beta < 1, the KL of level l in the loss is multiplied by

```none
gamma_l = L * a_l / sum_k a_k,    a_l = (mean_batch |KL_l| + 0.01) / d_l
```

(d_l = number of units of level l; gamma is treated as a constant, no gradient
flows through it). Levels with a small KL per unit get a small coefficient and
are encouraged to encode more; the coefficients sum to L, so the rate keeps
its scale relative to the reconstruction term. After the warm-up (beta = 1)
every gamma_l = 1 and the loss is the plain ELBO. The paper's Appendix A says
"proportional to the size of the group"; its authors corrected that to
inversely proportional (NVlabs/NVAE issue #26), which is what their code
(`utils.kl_balancer`) does and what is implemented here.

The generative model is the Markov chain of `markov.py`.
"""
import tensorflow as tf

from tfladder import gaussian
from tfladder.layers.blocks import MLP
from tfladder.layers.stochastic import DeltaGaussian
from tfladder.models.base import (InferencePass, LayerTerms, draw, layer_seeds, repeat_rows,
                                  standard_normal)
from tfladder.models.markov import MarkovGenerativeModel
from tfladder.serialization import register

POSTERIOR_CONTEXTS = ("top_down", "bottom_up")
# NVAE's `kl_per_group` adds 0.01 nats so that a collapsed level keeps a small weight.
KL_BALANCE_EPSILON = 0.01


def kl_balance_coefficients(kl_per_layer, latent_dims, beta):
    """NVAE's KL-balancing coefficients gamma_l (module docstring): `[L]`.

    Args:
      kl_per_layer: `[B, L]` KL of every level, in nats.
      latent_dims: Units d_l of every level, bottom -> top.
      beta: The warm-up's KL weight; gamma is all ones once beta >= 1.
    """
    num_layers = len(latent_dims)
    kl_mean = tf.reduce_mean(tf.abs(kl_per_layer), axis=0) + KL_BALANCE_EPSILON
    per_unit = kl_mean / tf.constant([float(d) for d in latent_dims])
    gamma = tf.stop_gradient(num_layers * per_unit / tf.reduce_sum(per_unit))
    return tf.where(tf.cast(beta, tf.float32) < 1.0, gamma, tf.ones_like(gamma))


@register
class TopDownVAE(MarkovGenerativeModel):
    """Top-down VAE with delta posteriors; args as `MarkovGenerativeModel`, plus

    Args:
      log_variance_range: Clamp `(low, high)` of the log-variance deltas.
      posterior_context: "top_down" (NVAE: deltas from the bottom-up features
        combined with the top-down state h_l) or "bottom_up" (deltas from the
        bottom-up features alone). A saved config without this key is the
        older bottom-up model and loads as "bottom_up" (`from_config`).
      kl_balancing: NVAE's KL balancing across levels while beta < 1.

    #### References

    Vahdat & Kautz, "NVAE: A Deep Hierarchical Variational Autoencoder",
    NeurIPS 2020, section 3 and Fig. 2 (the combined encoder/decoder
    features), section 3.2 (residual normal distributions), Appendix A (KL
    balancing).
    """

    def __init__(self, image_shape, latent_dims, log_variance_range=(-7.0, 2.0),
                 posterior_context="top_down", kl_balancing=False, **kwargs):
        super().__init__(image_shape, latent_dims, **kwargs)
        if posterior_context not in POSTERIOR_CONTEXTS:
            raise ValueError(f"posterior_context must be one of {POSTERIOR_CONTEXTS}, got "
                             f"{posterior_context!r}.")
        self.log_variance_range = tuple(float(v) for v in log_variance_range)
        self.posterior_context = posterior_context
        self.kl_balancing = bool(kl_balancing)
        self.encoder = self._image_encoder("encoder")
        self.upward_mlps = [self._mlp(l, f"upward_mlp_{l + 1}") for l in range(1, self.num_layers)]
        self.delta_heads = [DeltaGaussian(self.latent_dims[l], self.log_variance_range,
                                          name=f"delta_{l + 1}") for l in range(self.num_layers)]
        # context_mlps[l] combines r_l with the top-down state h_l (levels below the top).
        self.context_mlps = ([MLP([self.hidden_units[l]], activation=self.activation,
                                  batch_norm=self.batch_norm, name=f"context_mlp_{l + 1}")
                              for l in range(self.num_layers - 1)]
                             if posterior_context == "top_down" else [])

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
            context = features[l]
            if z_above is None:
                p = standard_normal(tf.shape(features[l])[0], self.latent_dims[l])
            else:
                state = self.prior_mlps[l](z_above, training=training)   # h_l
                p = self.prior_heads[l](state)
                if self.context_mlps:
                    context = self.context_mlps[l](
                        tf.concat([features[l], state], axis=-1), training=training)
            q = self.delta_heads[l](context, p.loc, p.scale)
            z = draw(q, seeds[l], use_mean)
            kl = tf.reduce_sum(gaussian.delta_gaussian_kl(
                q.loc - p.loc, q.scale / p.scale, p.scale), axis=-1)
            layers[l] = LayerTerms(posterior=q, prior=p, z=z, kl=kl)
            z_above = z
        latents = [layer.z for layer in layers]
        return InferencePass(layers=layers, likelihood=self.decode(latents, training=training))

    def kl_balance_coefficients(self, kl_per_layer, beta):
        """gamma_l of KL balancing (module docstring); all ones when it is off."""
        if not self.kl_balancing:
            return tf.ones([self.num_layers])
        return kl_balance_coefficients(kl_per_layer, self.latent_dims, beta)

    def _loss_terms(self, x, seed, beta, training):
        if not self.kl_balancing or self.num_importance_samples > 1 or self.free_bits > 0:
            return super()._loss_terms(x, seed, beta, training)
        terms = self._elbo_terms(x, seed, training=training)
        gamma = self.kl_balance_coefficients(terms.kl_per_layer, beta)
        balanced_rate = tf.reduce_sum(terms.kl_per_layer * gamma, axis=-1)
        return tf.reduce_sum(terms.distortion + beta * balanced_rate), terms

    def get_config(self):
        return {**super().get_config(), "log_variance_range": list(self.log_variance_range),
                "posterior_context": self.posterior_context,
                "kl_balancing": self.kl_balancing}

    @classmethod
    def from_config(cls, config):
        # Configs saved before `posterior_context` existed describe bottom-up models.
        return cls(**{"posterior_context": "bottom_up", **config})
