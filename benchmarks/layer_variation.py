"""Experiments 5 and 6 of issue 5: what each latent layer controls, HVAE vs VLAE
(VLAE paper Fig. 3 for the HVAE, Figs. 5-7 for the VLAE).

python benchmarks/layer_variation.py [--models hvae_mnist,vlae_mnist] [--num-images 100]
    [--num-resamples 10] [--extra-models vlae_svhn,vlae_celeba]
    [--colour-images 60] [--colour-resamples 8]

For every MNIST model (zoo names or trained variant folders): redraw the prior
noise of one layer at a time while holding the others fixed
(`tfladder.analysis.layer_effects`) and measure the pixel variance it
controls, the share of generated digits whose class changes (digit classifier
trained here) and the change in ink (stroke thickness proxy). Figures:
per-layer resampling grids for each model side by side, the 2-D grid
traversals of every model whose layers are all 2-D (vlae_mnist), and a
linear probe per layer (`analysis.linear_probe`: logistic regression from
one layer's posterior mean to the digit, MNIST train -> test).

For the colour models of `--extra-models` (issue 12; skipped with a note if
not shipped): the share of the per-layer variation each layer moves, the
share of it that is global colour (`LayerEffects.variance_share`,
`colour_share`), KL per layer on the test split, the per-layer resampling
grids and the issue's goals checked; for SVHN models also the rate at which
an SVHN digit classifier (a small CNN trained here on the subset's 9,000
training images, its test accuracy reported) changes its answer, and the
linear probe per layer. Writes benchmarks/results/layer_variation.md and PNGs.
"""
import json
import pathlib
import sys
import time

import keras
import numpy as np
from absl import app, flags

import common
from tfladder import analysis, data, evaluation, figures, zoo

flags.DEFINE_list("models", ["hvae_mnist", "vlae_mnist"],
                  "MNIST models (zoo names or trained variant folders), compared side by side.")
flags.DEFINE_list("extra-models", ["vlae_svhn", "vlae_celeba"],
                  "Models that only get resampling grids (skipped if not shipped).")
flags.DEFINE_string("mnist", zoo.MNIST, "MNIST .npz (classifier data).")
flags.DEFINE_integer("num-images", 100, "Base codes N per layer.")
flags.DEFINE_integer("num-resamples", 10, "Redraws R of the layer's noise per base code.")
flags.DEFINE_integer("grid-images", 8, "Rows (base codes) of each resampling grid.")
flags.DEFINE_integer("grid-resamples", 8, "Redraws (columns) of each resampling grid.")
flags.DEFINE_integer("seed", 0, "Seed of every draw.")
flags.DEFINE_integer("classifier-epochs", 3, "Epochs of the digit classifier.")
flags.DEFINE_string("out-dir", "benchmarks/results", "Where the .md and .png files go.")
flags.DEFINE_integer("colour-images", 60, "Base codes N per layer for the colour models.")
flags.DEFINE_integer("colour-resamples", 8, "Redraws R per base code for the colour models.")
flags.DEFINE_integer("svhn-classifier-epochs", 10, "Epochs of the SVHN digit classifier.")
flags.DEFINE_integer("probe-train-limit", 20000,
                     "Training images of the MNIST linear probe (the first N).")
flags.DEFINE_string("svhn", zoo.SVHN, "SVHN subset .npz (labels, classifier, probe).")
flags.DEFINE_string("celeba", zoo.CELEBA, "CelebA subset .npz (KL per layer).")
flags.DEFINE_integer("kl-images", 1000, "Test images for the KL per layer of colour models.")

# Issue 12's goals for the colour models (bottom -> top layers).
BOTTOM_COLOUR_MIN, TOP_COLOUR_MAX, MIN_SHARE, MIN_KL = 0.50, 0.35, 0.05, 1.0
PROBE_MARGIN = 0.05   # a probe "finds" the class only this far above chance

PAPER = {
    "svhn": "bottom = colour scheme; 2 = shape variations of the same digit; 3 = digit "
            "identity; top = general structure of the image",
    "celeba": "bottom = ambient colour; 2 = skin and hair colour; 3 = face identity; "
              "top = pose and general structure",
}


def labelled(source, split, limit=None):
    """`(images in [0, 1], integer labels)` of an `.npz` split that has `y_<split>`."""
    images = data.load_arrays(source, split, limit=limit)
    with np.load(source) as arrays:
        labels = arrays[f"y_{split}"][:len(images)].astype(np.int64)
    return images, labels


def svhn_classifier(source, epochs, seed, cache_dir=common.CLASSIFIER_CACHE):
    """A small CNN trained on the SVHN subset's training split, and its test accuracy.

    Cached in `cache_dir` (keyed on epochs and seed). Returns `(probabilities_fn, info)`.
    """
    def build():
        return keras.Sequential([
            keras.Input((32, 32, 3)),
            keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
            keras.layers.MaxPooling2D(2),
            keras.layers.Conv2D(64, 3, padding="same", activation="relu"),
            keras.layers.MaxPooling2D(2),
            keras.layers.Conv2D(128, 3, padding="same", activation="relu"),
            keras.layers.MaxPooling2D(2),
            keras.layers.Flatten(),
            keras.layers.Dropout(0.3),
            keras.layers.Dense(128, activation="relu"),
            keras.layers.Dense(10, activation="softmax")])

    classifier, info = common.cached_classifier(
        "svhn_classifier", build, labelled(source, "train"), labelled(source, "test"),
        epochs, seed, batch_size=64, cache_dir=cache_dir)
    return common.probabilities_fn(classifier), info


def dataset_of(name):
    """"svhn", "celeba" or None: what a trained variant folder was trained on (config.json)."""
    config = json.loads((zoo.artifact_dir(name) / zoo.CONFIG).read_text())
    spec = config.get("data") or {}
    text = f"{spec.get('source')} {spec.get('file')}".lower()
    return "svhn" if "svhn" in text else "celeba" if "celeb" in text else None


def kl_per_layer(model, images, batch_size=100):
    """Mean KL per layer (nats) over `images`, posterior samples with a fixed seed."""
    kl = [model.elbo_terms(images[s:s + batch_size], seed=s).kl_per_layer.numpy()
          for s in range(0, len(images), batch_size)]
    return np.concatenate(kl).mean(0)


def goal_lines(colour, share, kl, class_change=None, probe=None):
    """Issue 12's goals, each with the measured numbers and the margin."""
    top = len(colour) - 1
    above = max(colour[1], colour[2]) if len(colour) > 2 else 0.0
    lines = [
        f"- bottom colour share >= {BOTTOM_COLOUR_MIN:.0%} and above layers 2 and 3: "
        f"{colour[0]:.0%} vs {colour[1]:.0%} / {colour[2]:.0%} — "
        + ("met" if colour[0] >= BOTTOM_COLOUR_MIN and colour[0] > above else
           f"missed (by {max(BOTTOM_COLOUR_MIN - colour[0], above - colour[0], 0):.0%} points)"),
        f"- top colour share <= {TOP_COLOUR_MAX:.0%}: {colour[top]:.0%} — "
        + ("met" if colour[top] <= TOP_COLOUR_MAX else
           f"missed by {colour[top] - TOP_COLOUR_MAX:.0%} points"),
        f"- every layer moves >= {MIN_SHARE:.0%} of the variation: "
        + " / ".join(f"{v:.0%}" for v in share) + " — "
        + ("met" if share.min() >= MIN_SHARE else
           f"missed (smallest {share.min():.1%})"),
        f"- every layer has KL >= {MIN_KL:g} nat: " + " / ".join(f"{v:.2f}" for v in kl)
        + " — " + ("met" if kl.min() >= MIN_KL else f"missed (smallest {kl.min():.2f})"),
    ]
    if class_change is not None:
        upper = max(class_change[2:])
        lines.append(f"- the digit changes more often for layer 3 or 4 than for layer 1: "
                     f"{class_change[0]:.0%} (layer 1) vs {class_change[2]:.0%} / "
                     f"{class_change[3]:.0%} — "
                     + ("met" if upper > class_change[0] else
                        f"missed by {class_change[0] - upper:.0%} points"))
    if probe is not None:
        best = int(np.argmax(probe.test_accuracy))
        above_chance = probe.test_accuracy[best] - probe.chance
        lines.append(f"- the linear probe finds the digit mainly above layer 1: best layer "
                     f"{best + 1} ({probe.test_accuracy[best]:.1%}; layer 1 "
                     f"{probe.test_accuracy[0]:.1%}; chance {probe.chance:.1%}) — "
                     + ("met" if best > 0 and above_chance >= PROBE_MARGIN else
                        f"missed: no layer is {PROBE_MARGIN:.0%} points above chance"
                        if above_chance < PROBE_MARGIN else "missed"))
    return lines


def effect_rows(tag, model, effects, probe):
    rows = []
    for layer in range(model.num_layers):
        variance = effects.pixel_variance[layer]
        rows.append([
            tag, f"{layer + 1}" + (" (top)" if layer == model.num_layers - 1 else ""),
            model.latent_dims[layer], f"{variance:.4f}",
            f"{variance / effects.total_pixel_variance:.0%}",
            f"{effects.class_change_rate[layer]:.0%}",
            f"{effects.ink_change[layer] / effects.mean_ink:.1%}",
            f"{effects.ink_change_same_class[layer] / effects.mean_ink:.1%}",
            f"{probe.test_accuracy[layer]:.1%}"])
    return rows


def main(argv):
    options = common.flag_values()
    started = time.time()
    out_dir = pathlib.Path(options.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    classifier, classifier_info = common.digit_classifier(
        options.mnist, options.classifier_epochs, options.seed)
    judge = common.probabilities_fn(classifier)
    grid_options = dict(num_images=options.grid_images, num_resamples=options.grid_resamples,
                        seed=options.seed)
    probe_train = common.mnist_with_labels(options.mnist, "train", limit=options.probe_train_limit)
    probe_test = common.mnist_with_labels(options.mnist, "test")

    descriptions, tags, rows, grids, totals, figure_lines = [], [], [], [], [], []
    probe_notes = []
    for name in options.models:
        model, description, tag = common.load_model(name)
        descriptions.append(f"- {description}")
        tags.append(tag)
        effects = analysis.layer_effects(model, judge, options.num_images, options.num_resamples,
                                         options.seed)
        binarize = json.loads((zoo.artifact_dir(name) / zoo.CONFIG).read_text()).get(
            "data", {}).get("binarize")
        probe_images = [evaluation.binarize_for_evaluation(x, binarize)[0]
                        for x in (probe_train[0], probe_test[0])]
        probe = analysis.linear_probe(model, probe_images[0], probe_train[1], probe_images[1],
                                      probe_test[1])
        rows += effect_rows(tag, model, effects, probe)
        probe_notes.append(f"{tag}: all layers together {probe.all_layers_test_accuracy:.1%}")
        totals.append(f"{tag}: {effects.total_pixel_variance:.4f}")
        grid = analysis.resampling_figure(model, **grid_options)
        figures.save_png(grid, out_dir / f"layer_resampling_{tag}.png")
        grids.append(grid)
        if all(dim == 2 for dim in model.latent_dims):
            figures.save_png(figures.traversal_figure(model, seed=options.seed),
                             out_dir / f"layer_traversal_{tag}.png")
            figure_lines += [
                f"![{tag} traversals](layer_traversal_{tag}.png)", "",
                f"{tag}: 2-D grid traversals on [-2, 2]^2, one block per layer, top layer "
                "first; only that layer's code moves (the paper's Figure 5).", ""]
    figures.save_png(common.side_by_side(grids, gap=16), out_dir / "layer_variation.png")

    extra_lines, svhn_info = [], None
    for name in options.extra_models:
        try:
            model, description, tag = common.load_model(name)
        except FileNotFoundError:
            extra_lines.append(f"- `{name}`: not shipped in zoo/ yet; skipped.")
            continue
        dataset = dataset_of(name)
        if dataset is None:
            extra_lines.append(f"- `{name}`: not trained on the SVHN or CelebA subset; skipped.")
            continue
        source = options.svhn if dataset == "svhn" else options.celeba
        classifier = probe = None
        if dataset == "svhn":
            classifier, svhn_info = svhn_classifier(source, options.svhn_classifier_epochs,
                                                    options.seed)
            probe = analysis.linear_probe(model, *labelled(source, "train"),
                                          *labelled(source, "test"))
        effects = analysis.layer_effects(model, classifier, options.colour_images,
                                         options.colour_resamples, options.seed)
        kl = kl_per_layer(model, data.load_arrays(source, "test", limit=options.kl_images))
        share, colour = effects.variance_share, effects.colour_share
        figures.save_png(analysis.resampling_figure(model, **grid_options),
                         out_dir / f"layer_resampling_{tag}.png")
        colour_rows = []
        for layer in range(model.num_layers):
            label = f"{layer + 1}" + (" (top)" if layer == model.num_layers - 1 else "")
            colour_rows.append(
                [label, str(model.latent_dims[layer]), f"{kl[layer]:.2f}",
                 f"{effects.pixel_variance[layer]:.4f}", f"{share[layer]:.2f}",
                 f"{colour[layer]:.2f}"]
                + ([f"{effects.class_change_rate[layer]:.0%}"] if classifier else [])
                + ([f"{probe.test_accuracy[layer]:.1%}"] if probe else []))
        header = (["layer", "dim", "KL (nats, test)", "pixel variance", "variance share",
                   "colour share"] + (["digit changes"] if classifier else [])
                  + (["linear probe (test acc.)"] if probe else []))
        extra_lines += [
            f"### {tag}", "", f"Model: {description}.", "",
            f"Paper (Figure {'6' if dataset == 'svhn' else '7'}): {PAPER.get(dataset, '?')}.",
            "", *common.markdown_table(header, colour_rows), "",
            f"Resampling with every layer redrawn moves pixel variance "
            f"{effects.total_pixel_variance:.4f}."
            + (f" Linear probe on all layers together: {probe.all_layers_test_accuracy:.1%} "
               f"(chance {probe.chance:.1%})." if probe else ""), "",
            "Goals of issue 12:", "",
            *goal_lines(colour, share, kl,
                        effects.class_change_rate if classifier else None, probe), "",
            f"![{tag} resampling](layer_resampling_{tag}.png)", "",
            f"{tag}: one block per layer, top layer first; row = a base code, column 1 = its "
            "image, the other columns = only that layer's noise redrawn (the paper's Figures "
            "6-7).", ""]

    lines = [
        "# What each layer controls: HVAE vs VLAE", "",
        f"Command: `python {' '.join(sys.argv)}`", "",
        "Models:", "", *descriptions, "",
        f"Digit classifier (judge): small CNN trained here for {classifier_info['epochs']} "
        f"epochs on the 60,000 MNIST training digits, **test accuracy "
        f"{classifier_info['test_accuracy']:.2%}** on the 10,000 test digits.", "",
        f"Protocol: {options.num_images} base codes e ~ N(0, I) per model; for each layer l, "
        f"the noise e_l of that layer alone is redrawn {options.num_resamples} times per code "
        f"(seed {options.seed}) and the likelihood means are compared with the base image. "
        "*pixel variance*: mean over codes and pixels of the variance over redraws; "
        "*share*: that variance over the variance of fully independent ancestral samples "
        f"({'; '.join(totals)}); *class changes*: share of redraws whose predicted digit "
        "differs from the base image's; *ink change*: mean |ink(redraw) - ink(base)| relative "
        "to the mean ink (ink = mean pixel intensity, a stroke-thickness proxy), over all "
        "redraws and over the redraws whose class held.", "",
        *common.markdown_table(
            ["model", "layer", "dim", "pixel variance", "share of total", "class changes",
             "ink change", "ink change, class kept", "linear probe (test acc.)"], rows),
        "",
        f"*Linear probe*: multinomial logistic regression from the posterior mean of that "
        f"layer alone to the digit, trained on the first {options.probe_train_limit} MNIST "
        f"training digits (binarized as for the model's evaluation), accuracy on the 10,000 "
        f"test digits ({'; '.join(probe_notes)}; chance, the most frequent test digit: "
        f"{np.bincount(probe_test[1]).max() / len(probe_test[1]):.1%}).",
        "",
        "Paper (Zhao et al. 2017): for a hierarchical VAE (Figure 3) the variation is "
        "concentrated in one layer and the others are nearly unused; for the VLAE on MNIST "
        "(Figure 5) the bottom layer controls stroke width, the middle width and tilt, the "
        "top digit identity, i.e. class changes should grow from bottom to top and ink "
        "changes without a class change should be largest at the bottom.", "",
        "![per-layer resampling, models side by side](layer_variation.png)", "",
        f"Per-layer resampling grids, left to right: {', '.join(tags)}. "
        "Within each, one block per layer, top layer first; row = a base code, column 1 = "
        "its image, the other columns = that layer's noise redrawn.", "",
        *figure_lines,
        "## Colour images (issue 12; the paper's Figures 6-7)", "",
        f"Protocol: {options.colour_images} base codes, {options.colour_resamples} redraws of "
        "one layer's noise per code (seed "
        f"{options.seed}), likelihood means. *variance share*: the layer's pixel variance over "
        "the sum over layers; *colour share*: the part of the layer's variance that is the "
        "image's mean colour per channel (`analysis.colour_structure_variance`: global colour "
        "and light), the rest being structure (shape, identity, pose); *KL*: mean over the "
        f"first {options.kl_images} test images. "
        + (f"*digit changes*: share of redraws whose class, by an SVHN classifier (small CNN "
           f"trained here for {svhn_info['epochs']} epochs on the {svhn_info['num_train']} "
           f"training images of the SVHN subset), differs from the base image's; the "
           f"classifier's **test accuracy is {svhn_info['test_accuracy']:.1%}** on the "
           f"{svhn_info['num_test']} test images. *linear probe*: logistic regression from "
           "that layer's posterior mean alone to the digit, SVHN subset train -> test."
           if svhn_info else ""), "",
        *extra_lines, "",
        common.runtime_line(started, classifier_info),
    ]
    (out_dir / "layer_variation.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    app.run(main)
