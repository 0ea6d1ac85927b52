"""Closed forms for diagonal Gaussians used by every tfladder family.

Small pure functions, each testable on its own (the habit of vdvae's
``gaussian_analytical_kl``). All arguments are tensors that broadcast; every
function works per unit (no reduction) unless it says otherwise.
"""
import tensorflow as tf


def precision_weighted_merge(loc_a, scale_a, loc_b, scale_b):
    """Precision-weighted combination of two Gaussians (LVAE eq. 17-18).

    #### Mathematical details

    With precisions `t_a = scale_a**-2` and `t_b = scale_b**-2`:

    ```none
    scale**2 = 1 / (t_a + t_b)
    loc      = (loc_a * t_a + loc_b * t_b) * scale**2
    ```

    `N(loc, scale**2)` is the renormalised product `N(loc_a, scale_a**2) *
    N(loc_b, scale_b**2)`. The Ladder VAE uses it to merge the bottom-up
    estimate `(mu_hat_q, sigma_hat_q)` with the top-down generative
    `(mu_p, sigma_p)` (Sonderby et al. 2016, section 2.2).

    Args:
        loc_a: Mean of the first Gaussian.
        scale_a: Positive standard deviation of the first Gaussian.
        loc_b: Mean of the second Gaussian.
        scale_b: Positive standard deviation of the second Gaussian.

    Returns:
        `(loc, scale)` of the merged Gaussian.
    """
    precision_a = tf.math.reciprocal(tf.square(scale_a))
    precision_b = tf.math.reciprocal(tf.square(scale_b))
    variance = tf.math.reciprocal(precision_a + precision_b)
    loc = (loc_a * precision_a + loc_b * precision_b) * variance
    return loc, tf.sqrt(variance)


def gaussian_kl(loc_q, scale_q, loc_p, scale_p):
    """KL(N(loc_q, scale_q**2) || N(loc_p, scale_p**2)) per unit, in nats.

    #### Mathematical details

    ```none
    KL = log(scale_p / scale_q)
              + (scale_q**2 + (loc_q - loc_p)**2) / (2 scale_p**2) - 1/2
    ```
    """
    ratio = tf.square(scale_q / scale_p)
    return 0.5 * (ratio + tf.square((loc_q - loc_p) / scale_p) - 1.0
                                - tf.math.log(ratio))


def delta_gaussian_kl(delta_loc, delta_scale, prior_scale):
    """KL of the relative (delta) posterior of the top-down VAE, per unit.

    #### Mathematical details

    The posterior is expressed relative to the prior `p = N(mu_p, sigma_p**2)`
    as `q = N(mu_p + delta_loc, (sigma_p * delta_scale)**2)` (NVAE, Vahdat &
    Kautz 2020, eq. 2). The KL then depends only on the deltas:

    ```none
    KL(q || p) = 1/2 (delta_loc**2 / sigma_p**2 + delta_scale**2
                                        - log delta_scale**2 - 1)
    ```

    Args:
        delta_loc: Shift of the posterior mean relative to the prior mean.
        delta_scale: Positive ratio of posterior to prior standard deviation.
        prior_scale: Positive standard deviation of the prior.

    Returns:
        KL per unit, in nats.
    """
    delta_variance = tf.square(delta_scale)
    return 0.5 * (tf.square(delta_loc / prior_scale) + delta_variance
                                - tf.math.log(delta_variance) - 1.0)


def log_mean_exp(values, axis=0):
    """`log(mean(exp(values), axis))`, computed stably with log-sum-exp."""
    count = tf.cast(tf.shape(values)[axis], values.dtype)
    return tf.reduce_logsumexp(values, axis=axis) - tf.math.log(count)
