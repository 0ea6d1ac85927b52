"""What each latent layer of a trained hierarchical model does.

Zhao, Song & Ermon ("Learning Hierarchical Features from Deep Generative
Models", ICML 2017) ask two questions of a hierarchical VAE, and this module
turns both into numbers for any tfladder family:

1. **Is the hierarchy needed at all?** (section 3.1, Proposition 1, Figure 2.)
   If the ELBO of a Markov hierarchy is optimal, the joint of data and
   posterior equals the model's joint, q(x) q(z_1 | x) = p(x, z_1) with q(x)
   the data distribution. The Markov chain that alternates

   ```none
   z_1^(t) ~ q(z_1 | x^(t-1)),    x^(t) ~ p(x | z_1^(t))
   ```

   is then a Gibbs sampler of that joint, so its stationary distribution is
   the data distribution: x can be sampled from the bottom layer alone and
   the layers z_2 .. z_L above it need to carry no information. `gibbs_chain`
   runs this chain; comparing its samples with ancestral samples (all layers,
   top down) measures how much the upper layers add.

2. **What does each layer control?** (section 3.2, Figure 3 for the HVAE;
   section 4, Figures 5-7 for the VLAE.) Fix the standard-normal noise of
   every layer, redraw the noise e_l of layer l alone, and look at how the
   generated images move:

   ```none
   base:       x_n     = E[x | e_1^n, ..., e_L^n]                     n = 1..N
   resampled:  x_{n,r} = E[x | e_1^n, .., e_l^(n,r), .., e_L^n]        r = 1..R
   V_l   = mean_n mean_pixels Var_r(x_{n,r})        (per_layer_variation)
   C_l   = mean_{n,r} 1[class(x_{n,r}) != class(x_n)]   (class_change_rate)
   I_l   = mean_{n,r} |ink(x_{n,r}) - ink(x_n)|,  ink(x) = mean pixel intensity
   ```

   On colour images (the paper's Figures 6-7: colour at the bottom, shape
   and identity above) each redraw's variance splits into the image's mean
   colour and the rest (`colour_structure_variance`):

   ```none
   share_l  = V_l / sum_k V_k                  (variance_shares: who moves the image)
   colour_l = V_colour,l / V_l                 (colour_shares: how much of it is colour)
   ```

3. **Which layer knows the class?** A linear probe per layer
   (`linear_probe`): multinomial logistic regression from the posterior
   mean E_q[z_l | x] of one layer alone to the label, trained on one split
   and scored on another. Chance level means the layer holds no linearly
   readable class information.

   For a Markov model (HVAE, LVAE, top-down VAE) e_l enters through
   z_l = mu_p,l(z_{l+1}) + sigma_p,l(z_{l+1}) e_l and reaches x through the
   layers below, whose noise stays fixed; for the VLAE the noise is z_l
   itself. The paper's claims: in an HVAE almost all variation comes from
   one layer (Figure 3: the upper layers add little), while a VLAE splits it,
   with low-level features (stroke width) at the bottom and digit identity
   at the top (Figure 5). V_l is the variation layer l controls, C_l the
   share of it that is a change of digit identity, and ink (a stroke
   thickness proxy: for a fixed digit, thicker strokes mean more ink) the
   low-level part.

Layers are indexed from 0 (bottom, nearest x) to L - 1 (top), as in
`model.latent_dims`; tables label them 1 .. L.

#### Examples

```python
from tfladder import analysis, zoo
model = zoo.load("vlae_mnist")
effects = analysis.layer_effects(model, classifier, num_images=100, num_resamples=10)
effects.pixel_variance        # [L] bottom -> top
effects.class_change_rate     # [L]
chain = analysis.gibbs_chain(model, x_test_binary[:16], num_steps=50, seed=0)
chain.means[-1]               # [16, 28, 28, 1] after 50 steps
```

#### References

Zhao, Song & Ermon, ICML 2017: Proposition 1 and Figure 2 (Gibbs chain on
the bottom layer), Figure 3 (HVAE feature learning), Figures 5-7 (VLAE
hierarchy on MNIST, SVHN and CelebA).
"""
from typing import NamedTuple

import numpy as np
import tensorflow as tf

from tfladder import figures
from tfladder.checks import check_positive_int

_GENERATE_BATCH = 500


# ------------------------------------------------------------------ outputs
class GibbsChain(NamedTuple):
    """The states of `num_steps` Gibbs steps from a batch of B start images."""
    samples: np.ndarray   # [T, B, H, W, C] x^(t) ~ p(x | z^(t)), in the likelihood's support
    means: np.ndarray     # [T, B, H, W, C] E[x | z^(t)], what figures show


class LayerResamples(NamedTuple):
    """Generated images when the noise of some layers is redrawn."""
    base: np.ndarray        # [N, H, W, C] likelihood means with the base noise
    resampled: np.ndarray   # [N, R, H, W, C] the same codes with the chosen layers redrawn


class LayerEffects(NamedTuple):
    """What redrawing one layer's noise does to the generated images, per layer."""
    pixel_variance: np.ndarray            # [L] V_l (module docstring)
    total_pixel_variance: float           # V with every layer redrawn (ancestral samples)
    mean_ink: float                       # mean ink of the base images
    ink_change: np.ndarray                # [L] I_l, mean |ink(resampled) - ink(base)|
    class_change_rate: np.ndarray | None  # [L] C_l (None without a classifier)
    ink_change_same_class: np.ndarray | None  # [L] I_l over the resamples whose class held
    colour_variance: np.ndarray | None = None  # [L] V_colour,l (colour_structure_variance)

    @property
    def variance_share(self):
        """`[L]` V_l / sum_k V_k: the share of the per-layer variation each layer moves."""
        return variance_shares(self.pixel_variance)

    @property
    def colour_share(self):
        """`[L]` V_colour,l / V_l: the part of layer l's variation that is global colour."""
        return colour_shares(self.colour_variance, self.pixel_variance)


class LinearProbe(NamedTuple):
    """Per-layer linear probes: posterior mean of one layer -> class."""
    test_accuracy: np.ndarray     # [L] bottom -> top
    train_accuracy: np.ndarray    # [L]
    all_layers_test_accuracy: float   # every layer's mean concatenated
    chance: float                 # share of the most frequent test class


class ClassifierScores(NamedTuple):
    """A classifier's view of a set of images (e.g. samples of a model)."""
    class_histogram: np.ndarray   # [K] share of the images predicted as each class
    class_entropy: float          # H(histogram) in nats; log K when all classes are equal
    classes_covered: int          # classes predicted for at least `min_share` of the images
    mean_confidence: float        # mean_x max_k p(k | x)
    classifier_score: float       # exp(E_x KL(p(y | x) || p(y))), in [1, K]


# ------------------------------------------------------------- Gibbs chain
def gibbs_chain(model, x, num_steps, seed=0):
    """Runs the Gibbs chain z ~ q(z | x), x ~ p(x | z) from the images `x`.

    Step t draws z^(t) ~ q(z | x^(t-1)) with the model's inference network
    and x^(t) ~ p(x | z^(t)), starting at x^(0) = x. For the Markov families
    (HVAE, LVAE, top-down VAE) the likelihood reads z_1 only, so this is the
    chain of Proposition 1 (Zhao et al. 2017, section 3.1):
    z_1 ~ q(z_1 | x), x ~ p(x | z_1), with z_1 drawn from the marginal
    posterior q(z_1 | x) (for the LVAE, through its top-down pass). For the
    VLAE every layer enters the likelihood and the chain resamples them all.
    Draws of a Gaussian likelihood are clipped to [0, 1] so that every state
    is a valid input of the next step.

    Args:
      model: A `HierarchicalModel`.
      x: Start images `[B, H, W, C]` in the likelihood's support (binary for
        a Bernoulli model).
      num_steps: Number of steps T >= 1.
      seed: Integer seed; the chain is a deterministic function of (x, seed).

    Returns:
      `GibbsChain(samples, means)`, each `[T, B, H, W, C]` (the start images
      are not included).

    Raises:
      ValueError: for a bad `num_steps` or images the model refuses.
    """
    num_steps = check_positive_int("num_steps", num_steps)
    state = model.prepare_inputs(x)
    root = _stateless_seed(seed)
    samples, means = [], []
    for step in range(num_steps):
        latent_seed, pixel_seed = tf.unstack(tf.random.experimental.stateless_split(
            tf.random.experimental.stateless_fold_in(root, step), 2))
        likelihood = model.infer(state, latent_seed).likelihood
        means.append(likelihood.mean().numpy())
        state = tf.clip_by_value(tf.cast(likelihood.sample(seed=pixel_seed), tf.float32),
                                 0.0, 1.0)
        samples.append(state.numpy())
    return GibbsChain(samples=np.stack(samples), means=np.stack(means))


def gibbs_figure(start, chain, steps):
    """Rows = chains; columns = the start image, then the chain's means at `steps`.

    Args:
      start: The start images `[B, H, W, C]`.
      chain: The `GibbsChain` run from them.
      steps: 1-based step numbers to show (each <= T).

    Returns:
      A uint8 grid `[height, width, C]`.
    """
    num_steps = chain.means.shape[0]
    bad = [s for s in steps if not 1 <= s <= num_steps]
    if bad:
        raise ValueError(f"steps must lie in [1, {num_steps}] (the chain's length), got {bad}.")
    columns = [np.asarray(start, np.float32)] + [chain.means[s - 1] for s in steps]
    images = np.stack(columns, axis=1)                        # [B, 1 + S, H, W, C]
    rows, cols = images.shape[:2]
    return figures.image_grid(images.reshape((-1,) + images.shape[2:]), rows, cols)


# -------------------------------------------------------------- resampling
def resample_layers(model, layers, num_images, num_resamples, seed=0):
    """Redraws the prior noise of `layers`, holding every other layer's noise fixed.

    `num_images` base codes e^n ~ N(0, I) (one noise tensor per layer, as
    `model.prior_noise` draws them) are decoded to their likelihood means;
    then, for each code, the noise of every layer in `layers` is redrawn
    `num_resamples` times and decoded with `model.generate`. `layers=[]`
    holds everything fixed (each resample equals its base image); all layers
    gives independent ancestral samples.

    Args:
      model: A `HierarchicalModel`.
      layers: 0-based layer indices (0 = bottom).
      num_images: Number of base codes N.
      num_resamples: Redraws R per base code.
      seed: Integer seed (stateless: the same seed gives the same images).

    Returns:
      `LayerResamples(base [N, H, W, C], resampled [N, R, H, W, C])`.
    """
    num_images = check_positive_int("num_images", num_images)
    num_resamples = check_positive_int("num_resamples", num_resamples)
    layers = sorted({_check_layer(model, layer) for layer in layers})
    root = _stateless_seed(seed)
    base_noise = model.prior_noise(num_images, tf.random.experimental.stateless_fold_in(root, 0))
    noise = [tf.repeat(eps, num_resamples, axis=0) for eps in base_noise]     # [N * R, d_l]
    for layer in layers:
        noise[layer] = tf.random.stateless_normal(
            [num_images * num_resamples, model.latent_dims[layer]],
            tf.random.experimental.stateless_fold_in(root, 1 + layer))
    base = generated_means(model, base_noise)
    resampled = generated_means(model, noise)
    return LayerResamples(base=base,
                          resampled=resampled.reshape((num_images, num_resamples)
                                                      + resampled.shape[1:]))


def resample_layer(model, layer, num_images, num_resamples, seed=0):
    """`resample_layers` for the single 0-based `layer` (Zhao et al. 2017, Figure 3)."""
    return resample_layers(model, [layer], num_images, num_resamples, seed)


def generated_means(model, noise, batch_size=_GENERATE_BATCH):
    """`model.generate(noise).mean()` in chunks of `batch_size` codes, as NumPy."""
    count = int(noise[0].shape[0])
    chunks = []
    for start in range(0, count, batch_size):
        chunk = [eps[start:start + batch_size] for eps in noise]
        chunks.append(model.generate(chunk).mean().numpy())
    return np.concatenate(chunks)


def pixel_variance(resamples):
    """`mean_n mean_pixels Var_r(x_{n,r})`: the variation the redrawn layers control.

    Args:
      resamples: A `LayerResamples` (or its `resampled` array `[N, R, ...]`).
    """
    resampled = resamples.resampled if isinstance(resamples, LayerResamples) else resamples
    return float(np.mean(np.var(np.asarray(resampled, np.float64), axis=1)))


def colour_structure_variance(resamples):
    """Splits `pixel_variance` into global colour/light and spatial structure.

    Each image is `x = c + s`: c its mean colour (per channel, over pixels;
    ambient light and colour cast) and s = x - c the remainder (shape,
    identity, pose). Over redraws,

    ```none
    V = mean_n mean_pixels Var_r(x_{n,r}) = V_colour + V_structure,
    V_colour    = mean_n mean_channels Var_r(c_{n,r}),
    V_structure = mean_n mean_pixels Var_r(s_{n,r})
    ```

    (the cross term vanishes because s sums to zero over pixels). The VLAE
    paper's SVHN / CelebA claim (Figures 6-7) is that lower layers change
    colour and light with shape held (V_colour dominates) and upper layers
    change shape and identity (V_structure dominates).

    Returns:
      `(V_colour, V_structure)` as floats.
    """
    resampled = resamples.resampled if isinstance(resamples, LayerResamples) else resamples
    resampled = np.asarray(resampled, np.float64)              # [N, R, H, W, C]
    colour = resampled.mean(axis=(2, 3), keepdims=True)         # [N, R, 1, 1, C]
    structure = resampled - colour
    return (float(np.mean(np.var(colour, axis=1))),
            float(np.mean(np.var(structure, axis=1))))


def per_layer_variation(model, num_images=100, num_resamples=10, seed=0):
    """V_l for every layer, bottom -> top: `[L]` (see `pixel_variance`)."""
    return np.array([pixel_variance(resample_layer(model, layer, num_images, num_resamples,
                                                   seed))
                     for layer in range(model.num_layers)])


def ink(images):
    """Mean pixel intensity of each image `[..., H, W, C]` -> `[...]`.

    A stroke-thickness proxy: for the same digit, thicker strokes cover more
    pixels. It also changes with the digit's identity (a 1 has less ink than
    an 8), hence `LayerEffects.ink_change_same_class`.
    """
    return np.mean(np.asarray(images, np.float64), axis=(-3, -2, -1))


def ink_change(model, num_images=100, num_resamples=10, seed=0):
    """I_l for every layer, bottom -> top: `[L]` mean |ink(resampled) - ink(base)|."""
    return layer_effects(model, None, num_images, num_resamples, seed).ink_change


def class_change_rate(classifier, model, num_images=100, num_resamples=10, seed=0):
    """C_l for every layer, bottom -> top: `[L]`.

    The fraction of generated images whose predicted class differs from the
    class of their base image when only layer l's noise is redrawn (the
    quantitative version of the VLAE paper's Figure 5: identity should live
    in the top layer).

    Args:
      classifier: Callable, images `[N, H, W, C]` -> class probabilities `[N, K]`.
      model, num_images, num_resamples, seed: As in `resample_layer`.
    """
    return layer_effects(model, classifier, num_images, num_resamples, seed).class_change_rate


def layer_effects(model, classifier=None, num_images=100, num_resamples=10, seed=0):
    """Every per-layer measure of the module docstring from one set of resamples.

    Args:
      model: A `HierarchicalModel`.
      classifier: Optional callable, images `[N, H, W, C]` -> class
        probabilities `[N, K]`; without it the class measures are None.
      num_images, num_resamples, seed: As in `resample_layer`; every layer
        uses the same base codes.

    Returns:
      `LayerEffects` (arrays `[L]`, bottom -> top).
    """
    variance, ink_changes, class_changes, same_class_ink, colour = [], [], [], [], []
    mean_ink = None
    for layer in range(model.num_layers):
        resamples = resample_layer(model, layer, num_images, num_resamples, seed)
        colour.append(colour_structure_variance(resamples)[0])
        base_ink = ink(resamples.base)                          # [N]
        delta_ink = np.abs(ink(resamples.resampled) - base_ink[:, None])   # [N, R]
        mean_ink = float(base_ink.mean())
        variance.append(pixel_variance(resamples))
        ink_changes.append(float(delta_ink.mean()))
        if classifier is not None:
            base_class = np.argmax(predict_probabilities(classifier, resamples.base), -1)
            flat = resamples.resampled.reshape((-1,) + resamples.resampled.shape[2:])
            new_class = np.argmax(predict_probabilities(classifier, flat), -1).reshape(
                num_images, num_resamples)
            changed = new_class != base_class[:, None]
            class_changes.append(float(changed.mean()))
            same_class_ink.append(float(delta_ink[~changed].mean()) if (~changed).any()
                                  else float("nan"))
    everything = resample_layers(model, range(model.num_layers), num_images, num_resamples,
                                 seed)
    return LayerEffects(
        pixel_variance=np.array(variance),
        total_pixel_variance=pixel_variance(everything),
        mean_ink=mean_ink,
        ink_change=np.array(ink_changes),
        class_change_rate=np.array(class_changes) if classifier is not None else None,
        ink_change_same_class=np.array(same_class_ink) if classifier is not None else None,
        colour_variance=np.array(colour))


def variance_shares(pixel_variances):
    """`V_l / sum_k V_k` for per-layer variances `[L]` (0 everywhere if all are 0)."""
    values = np.asarray(pixel_variances, np.float64)
    total = values.sum()
    return values / total if total > 0 else np.zeros_like(values)


def colour_shares(colour_variances, pixel_variances):
    """`V_colour,l / V_l` per layer (0 where a layer moves nothing)."""
    colour = np.asarray(colour_variances, np.float64)
    values = np.asarray(pixel_variances, np.float64)
    return np.where(values > 0, colour / np.where(values > 0, values, 1.0), 0.0)


def resampling_blocks(model, num_images=8, num_resamples=8, seed=0):
    """One grid per layer, bottom -> top: row n = base code n; column 0 = its base
    image, columns 1..R = the same code with only that layer's noise redrawn
    (the layout of the VLAE paper's Figures 3, 6 and 7)."""
    blocks = []
    for layer in range(model.num_layers):
        resamples = resample_layer(model, layer, num_images, num_resamples, seed)
        images = np.concatenate([resamples.base[:, None], resamples.resampled], axis=1)
        blocks.append(figures.image_grid(images.reshape((-1,) + images.shape[2:]),
                                         num_images, num_resamples + 1))
    return blocks


def resampling_figure(model, **kwargs):
    """`resampling_blocks` stacked top layer first, as the paper shows them."""
    return figures.stack_blocks(resampling_blocks(model, **kwargs)[::-1])


# ------------------------------------------------------------ linear probe
def posterior_means(model, images, batch_size=_GENERATE_BATCH):
    """E_q[z_l | x] for every layer, bottom -> top: a list of `[N, d_l]` arrays."""
    means = None
    for start in range(0, len(images), batch_size):
        chunk = [np.asarray(q.loc) for q in model.encode(images[start:start + batch_size])]
        means = [[m] for m in chunk] if means is None else [a + [m] for a, m in
                                                            zip(means, chunk)]
    return [np.concatenate(m) for m in means]


def linear_probe(model, train_images, train_labels, test_images, test_labels, l2=1e-4,
                 num_steps=500):
    """Test accuracy of a logistic regression from each layer's posterior mean to the class.

    Args:
      model: A `HierarchicalModel` (anything with `encode(x)` returning one
        distribution with a `loc` per layer).
      train_images, train_labels: The probe's training set (integer labels).
      test_images, test_labels: Where its accuracy is measured.
      l2, num_steps: As in `logistic_regression`.

    Returns:
      `LinearProbe` (arrays `[L]`, bottom -> top).
    """
    train_labels = np.asarray(train_labels).astype(np.int64).ravel()
    test_labels = np.asarray(test_labels).astype(np.int64).ravel()
    train = posterior_means(model, train_images)
    test = posterior_means(model, test_images)
    num_classes = int(max(train_labels.max(), test_labels.max())) + 1
    train_acc, test_acc = [], []
    for features_train, features_test in zip(train, test):
        fit = logistic_regression(features_train, train_labels, num_classes, l2, num_steps)
        train_acc.append(float(np.mean(fit(features_train) == train_labels)))
        test_acc.append(float(np.mean(fit(features_test) == test_labels)))
    fit = logistic_regression(np.concatenate(train, 1), train_labels, num_classes, l2, num_steps)
    everything = float(np.mean(fit(np.concatenate(test, 1)) == test_labels))
    chance = float(np.bincount(test_labels).max() / len(test_labels))
    return LinearProbe(test_accuracy=np.array(test_acc), train_accuracy=np.array(train_acc),
                       all_layers_test_accuracy=everything, chance=chance)


def logistic_regression(features, labels, num_classes, l2=1e-4, num_steps=500):
    """Multinomial logistic regression by full-batch Nesterov gradient descent.

    Features are standardised with the training statistics; the objective
    (mean cross-entropy + l2/2 |W|^2) is convex, and the step 1/L uses its
    Lipschitz bound L = lambda_max(X^T X / N) / 2 + l2.

    Returns:
      A function `features [M, d] -> predicted classes [M]`.
    """
    x = np.asarray(features, np.float64)
    labels = np.asarray(labels).astype(np.int64).ravel()
    mean, std = x.mean(0), x.std(0)
    std = np.where(std > 1e-8, std, 1.0)

    def design(values):
        z = (np.asarray(values, np.float64) - mean) / std
        return np.concatenate([z, np.ones((len(z), 1))], 1)

    a = design(x)
    onehot = np.eye(num_classes)[labels]
    lipschitz = np.linalg.eigvalsh(a.T @ a / len(a)).max() / 2.0 + l2
    step = 1.0 / lipschitz
    weights = np.zeros((a.shape[1], num_classes))
    previous = weights
    for t in range(1, num_steps + 1):
        look = weights + (t - 1.0) / (t + 2.0) * (weights - previous)
        logits = a @ look
        logits -= logits.max(1, keepdims=True)
        probs = np.exp(logits)
        probs /= probs.sum(1, keepdims=True)
        grad = a.T @ (probs - onehot) / len(a) + l2 * look
        previous, weights = weights, look - step * grad
    return lambda values: np.argmax(design(values) @ weights, -1)


# ------------------------------------------------------------ classifiers
def predict_probabilities(classifier, images, batch_size=_GENERATE_BATCH):
    """`classifier(images)` in chunks, checked to be class probabilities: `[N, K]`.

    Raises:
      ValueError: if the rows are not probabilities (e.g. logits: add a softmax).
    """
    images = np.asarray(images, np.float32)
    chunks = [np.asarray(classifier(images[start:start + batch_size]), np.float64)
              for start in range(0, len(images), batch_size)]
    probabilities = np.concatenate(chunks)
    if (probabilities.ndim != 2 or np.any(probabilities < -1e-6)
            or not np.allclose(probabilities.sum(-1), 1.0, atol=1e-3)):
        raise ValueError("classifier must return class probabilities [N, K] (non-negative "
                         "rows summing to 1); got values that are not, e.g. logits: end the "
                         "classifier with a softmax.")
    return probabilities


def classifier_scores(classifier, images, min_share=0.01):
    """How a classifier sees a set of images: class balance and confidence.

    ```none
    hist_k     = mean_x 1[argmax p(y | x) = k]
    entropy    = -sum_k hist_k log hist_k                  (log K: all classes equally often)
    confidence = mean_x max_k p(y = k | x)
    score      = exp(mean_x KL(p(y | x) || p(y))),  p(y) = mean_x p(y | x)
    ```

    `score` is the "Inception score" computed with a digit classifier
    (Salimans et al. 2016): high when every image is classified confidently
    and the classes are balanced, between 1 and K.

    Args:
      classifier: Callable, images -> class probabilities `[N, K]`.
      images: `[N, H, W, C]`.
      min_share: A class is covered if at least this share of the images is
        predicted as it.

    Returns:
      `ClassifierScores`.
    """
    probabilities = predict_probabilities(classifier, images)
    num_classes = probabilities.shape[1]
    predicted = np.argmax(probabilities, -1)
    histogram = np.bincount(predicted, minlength=num_classes) / len(predicted)
    nonzero = histogram[histogram > 0]
    marginal = probabilities.mean(0)
    tiny = 1e-12
    kl = np.sum(probabilities * (np.log(probabilities + tiny) - np.log(marginal + tiny)), -1)
    return ClassifierScores(
        class_histogram=histogram,
        class_entropy=float(-np.sum(nonzero * np.log(nonzero))),
        classes_covered=int(np.sum(histogram >= min_share)),
        mean_confidence=float(probabilities.max(-1).mean()),
        classifier_score=float(np.exp(kl.mean())))


# ---------------------------------------------------------------- helpers
def _stateless_seed(seed):
    """An int or a `[2]` tensor -> a `[2]` int32 stateless seed."""
    if isinstance(seed, (int, np.integer)):
        return tf.constant([int(seed), 0], tf.int32)
    return tf.cast(seed, tf.int32)


def _check_layer(model, layer):
    if (isinstance(layer, bool) or not isinstance(layer, (int, np.integer))
            or not 0 <= layer < model.num_layers):
        raise ValueError(f"layer must be a 0-based layer index in [0, {model.num_layers - 1}] "
                         f"(0 = bottom), got {layer!r}.")
    return int(layer)
