"""Evaluation of a trained model on a data split: ELBO, L_K, KL and active units.

#### Mathematical details

```none
ELBO    = mean_x L_1(x)
L_K     = mean_x log 1/K sum_k p(x, z_k) / q(z_k | x)       (Burda et al. 2016)
KL_l    = mean_x KL_l(x)
KL_u    = mean_x E_q[log q(z_u | .) - log p(z_u | .)]   (per unit; sums to KL_l over u)
A_u     = Cov_x(E_q[z_u | x]),  unit u active if A_u > 0.01  (Burda et al. 2016, sec. 5.2)
bits/dim = -L / (H W C log 2)
```
"""
import math
import os
import pathlib
import time

import keras
import numpy as np
import tensorflow as tf

from tfladder import zoo
from tfladder.precision import check_precision, dtype_policy
from tfladder.zoo import artifacts
from tfladder import data as data_lib

ACTIVE_UNIT_THRESHOLD = 0.01


def active_units(model, images, batch_size=500):
    """Per-layer `Cov_x(E_q[z_u])` and the number of active units per layer."""
    means = [[] for _ in model.latent_dims]
    for start in range(0, len(images), batch_size):
        for l, q in enumerate(model.encode(images[start:start + batch_size])):
            means[l].append(q.loc.numpy())
    variances = [np.var(np.concatenate(m), axis=0) for m in means]
    return variances, [int(np.sum(v > ACTIVE_UNIT_THRESHOLD)) for v in variances]


def kl_per_unit(model, images, batch_size=500, seed=0):
    """Per-unit KL contributions, averaged over `images` (LVAE paper Figs. 4-5).

    Every family's posterior and prior factorise over units, so
    `log q(z) - log p(z) = sum_u [log q(z_u) - log p(z_u)]`; the per-unit terms
    at the model's own samples z ~ q are unbiased estimates of each unit's
    share of the layer's KL (exact in expectation for every family, including
    the stacked HVAE whose layer KL has no closed form).

    Returns:
      A list (bottom -> top) of float64 arrays `[d_l]`, in nats.
    """
    images = model.prepare_inputs(images)
    totals = [np.zeros(d) for d in model.latent_dims]
    count = int(images.shape[0])
    for start in range(0, count, batch_size):
        batch = images[start:start + batch_size]
        seed_tensor = tf.constant([seed, start], tf.int32)
        for l, layer in enumerate(model.infer(batch, seed_tensor).layers):
            terms = layer.posterior.log_prob(layer.z) - layer.prior.log_prob(layer.z)
            totals[l] += tf.reduce_sum(terms, axis=0).numpy()
    return [t / count for t in totals]


def evaluate(model, images, num_samples=5000, batch_size=100, seed=0, log=None,
             progress=False, per_image=False):
    """Measures a model on `images` (float32 `[N, H, W, C]` in [0, 1]).

    Args:
      model: A `HierarchicalModel`.
      images: The evaluation set.
      num_samples: K of the importance-weighted bound (0 skips L_K).
      batch_size: Images per ELBO / L_K batch.
      seed: Integer seed of every draw.
      log: Optional callable receiving progress strings.
      progress: Show a Keras progress bar over the images of L_K.
      per_image: Also return every image's L_K (`"log_likelihood_per_image"`),
        for paired comparisons of models on the same images
        (`paired_difference`).

    Returns:
      A dict of plain Python numbers and lists (JSON-ready).
    """
    count = len(images)
    elbo, kl = [], []
    for start in range(0, count, batch_size):
        terms = model.elbo_terms(images[start:start + batch_size], seed=seed + start)
        elbo.append(terms.elbo.numpy())
        kl.append(terms.kl_per_layer.numpy())
    elbo, kl = np.concatenate(elbo), np.concatenate(kl)
    variances, active = active_units(model, images)
    result = {
        "num_images": int(count),
        "elbo": float(elbo.mean()),
        "kl_per_layer": [float(v) for v in kl.mean(axis=0)],
        "active_units": active,
        "latent_dims": list(model.latent_dims),
        "active_unit_variance": [[float(a) for a in v] for v in variances],
    }
    if num_samples:
        started = time.time()
        bound = []
        bar = keras.utils.Progbar(count, unit_name="image") if progress else None
        for start in range(0, count, batch_size):
            bound.append(model.log_likelihood(images[start:start + batch_size],
                                              num_samples=num_samples, seed=seed + start).numpy())
            if bar is not None:
                bar.update(start + len(bound[-1]),
                           [(f"L_{num_samples}", float(np.concatenate(bound).mean()))])
            if log:
                log(f"L_{num_samples}: {start + len(bound[-1])}/{count} images, "
                    f"running mean {np.concatenate(bound).mean():.3f} nats")
        bound = np.concatenate(bound)
        result.update({"num_samples": int(num_samples), "log_likelihood": float(bound.mean()),
                       "log_likelihood_stderr": float(bound.std() / math.sqrt(count)),
                       "log_likelihood_seconds": round(time.time() - started, 1)})
        if per_image:
            result["log_likelihood_per_image"] = [float(v) for v in bound]
    pixels = float(np.prod(model.image_shape))
    for key in ("elbo", "log_likelihood"):
        if key in result:
            result[f"{key}_bits_per_dim"] = -result[key] / (pixels * math.log(2.0))
    return result


def paired_difference(a, b):
    """Mean of `a - b` over paired per-image values, and its standard error.

    For two models scored on the same images (same K, same images), the
    standard error of the mean difference is std(a_i - b_i) / sqrt(n): the
    variation between images, which dominates each model's own standard
    error, cancels.

    Returns:
      `(mean difference, standard error)` as floats.

    Raises:
      ValueError: `a` and `b` are not 1-D arrays of the same length >= 2.
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.ndim != 1 or a.shape != b.shape or len(a) < 2:
        raise ValueError(f"a and b must be 1-D arrays of the same length >= 2 (per-image "
                         f"values of two models on the same images), got shapes {a.shape} "
                         f"and {b.shape}.")
    difference = a - b
    return float(difference.mean()), float(difference.std(ddof=1) / math.sqrt(len(a)))


def as_batches(dataset):
    """Concatenates a `tf.data` dataset of image batches into one array."""
    return np.concatenate([batch.numpy() for batch in dataset])


PREPROCESSING = {
    "dynamic": "binarized by one fixed Bernoulli draw per pixel (seed {seed})",
    "threshold": "binarized by thresholding at 0.5",
    None: "grey levels scaled to [0, 1]",
}


def binarize_for_evaluation(images, mode, seed=0):
    """Applies a variant's binarization to a fixed evaluation set.

    `dynamic` draws one Bernoulli sample per pixel with a fixed seed (the
    usual protocol for dynamically binarized MNIST test sets).

    Returns:
      `(images, description)`: the evaluation images and how they were made.
    """
    if mode not in PREPROCESSING:
        raise ValueError(f"binarize must be one of {sorted(map(str, PREPROCESSING))}, "
                         f"got {mode!r}.")
    description = PREPROCESSING[mode].format(seed=seed)
    if mode == "dynamic":
        return data_lib.bernoulli_draw(images, [seed, 7]).numpy(), description
    if mode == "threshold":
        return data_lib.threshold(images).numpy(), description
    return images, description


def evaluate_variant(name_or_folder, data=None, split="test", num_samples=5000, limit=None,
                     record=False, command=None, log=None, data_dir=None, progress=False,
                     precision="float32"):
    """Loads a trained variant (verified), measures it on a data split and,
    with `record=True`, stores the result in its card.

    The folder is verified when the model is loaded; `record` writes only if
    no file changed in between (`tfladder.zoo.artifacts.record_evaluation`).

    Args:
      name_or_folder: A zoo name or a variant folder.
      data: A `tfladder.data` source (default: the variant's own).
      split, limit: Which images (the first `limit` of `split`).
      num_samples: K of L_K (0 skips it).
      record: Write the result into the folder's card (refused for a zoo
        name: copy the folder first).
      command: How the evaluation was launched, recorded with the numbers.
      data_dir: Folder of local copies `<dataset>.npz` (see `tfladder.data`).
      progress: Show a progress bar over the images of L_K.
      precision: The Keras dtype policy the model computes under
        (`tfladder.precision`; the likelihood, KL terms and L_K stay float32).
        Recorded in the result (and the card) as `precision`.

    Returns:
      The dict of `evaluate`, plus `data`, `split`, `preprocessing`, `command`,
      `precision`.

    Raises:
      ValueError: bad arguments, images of the wrong shape, a tampered
        folder, or `record` on an installed or changed folder.
    """
    if isinstance(num_samples, bool) or not isinstance(num_samples, (int, np.integer)) \
            or num_samples < 0:
        raise ValueError(f"num_samples must be an integer >= 0 (0 skips L_K), got "
                         f"{num_samples!r}.")
    folder = zoo.artifact_dir(name_or_folder)
    if record and not pathlib.Path(os.fspath(name_or_folder)).expanduser().is_dir():
        raise ValueError(f"{name_or_folder!r} is a zoo name: its card belongs to the installed "
                         f"package. Copy the variant folder first (`cp -r {folder} "
                         f"my_{folder.name}`) and evaluate the copy.")
    check_precision(precision)
    digests = artifacts.verify(folder)
    with dtype_policy(precision):
        model = zoo.load(folder, verify=False)
    config = artifacts.read_config(folder)
    spec = config.get("data") or {"source": "mnist_offline", "binarize": None}
    source = data or spec["source"]
    data_lib.check_available(source, data_dir)
    images = data_lib.load_arrays(source, split, limit=limit, data_dir=data_dir)
    if tuple(images.shape[1:]) != tuple(model.image_shape):
        raise ValueError(f"data {source} split {split!r} has images of shape "
                         f"{tuple(images.shape[1:])}, but the model expects "
                         f"{tuple(model.image_shape)}.")
    images, preprocessing = binarize_for_evaluation(images, spec.get("binarize"))
    result = evaluate(model, images, num_samples=num_samples, log=log, progress=progress)
    path = data_lib.local_file(source, data_dir)
    if path:   # a place: record the file's name and hash, not where it was
        digest = artifacts.sha256(path)
        result["data_file"], result["data_sha256"] = os.path.basename(path), digest
        # A file given by path stands for the variant's dataset only if it is the
        # very file the variant was trained from (same sha256); else only its name is known.
        if data and os.path.isfile(data) and digest != spec.get("sha256"):
            source = os.path.basename(path)
        else:
            source = spec["source"]
    result.update({"data": str(source), "split": split, "preprocessing": preprocessing,
                   "precision": precision,
                   "command": command or f"tfladder.evaluation.evaluate_variant("
                                         f"{str(name_or_folder)!r}, num_samples={num_samples})"})
    if record:
        variant = config.get("variant")
        description = zoo.VARIANTS[variant].description if variant in zoo.VARIANTS else None
        artifacts.record_evaluation(folder, result, expected=digests, description=description)
    return result


def summary_table(result, name=""):
    """A short text table of `evaluate_variant`'s result (what `tfladder evaluate` prints)."""
    lines = [f"{name} on {result.get('data')} split {result.get('split')}, "
             f"{result['num_images']} images ({result.get('preprocessing', '')})".strip()]
    pixels_note = ""
    if "elbo_bits_per_dim" in result:
        pixels_note = f"   ({result['elbo_bits_per_dim']:.3f} bits/dim)"
    lines.append(f"  {'ELBO':<16}{result['elbo']:10.2f} nats{pixels_note}")
    if result.get("num_samples"):
        lines.append(f"  {'L_' + str(result['num_samples']):<16}{result['log_likelihood']:10.2f} "
                     f"± {result['log_likelihood_stderr']:.2f} nats "
                     f"({result['log_likelihood_bits_per_dim']:.3f} bits/dim)")
    lines.append(f"  {'layer':<8}{'dim':>5}{'KL (nats)':>12}{'active':>8}")
    for l, (kl, active, dim) in enumerate(zip(result["kl_per_layer"], result["active_units"],
                                              result["latent_dims"])):
        lines.append(f"  {l + 1:<8}{dim:>5}{kl:>12.2f}{active:>8}")
    return "\n".join(lines)
