"""Log-likelihood and active units by depth: HVAE vs LVAE (vs top-down), LVAE paper Fig. 3-5.

python benchmarks/depth.py [--families hvae,lvae,topdown] [--depths 1,2,3,4,5]
    [--epochs 10] [--num_samples 1000] [--eval_images 500] [--ablation_depths 5]
    [--dataset mnist|binarized_mnist|omniglot] [--data FILE.npz] [--workdir /tmp/tfladder_depth]

Data: a dataset's local copy `<dataset>.npz` in `$TFLADDER_DATA_DIR` (as for
`tfladder train`), or the file given by `--data`.

Depth d uses the first d layers of the LVAE paper's MNIST model (latents
64-32-16-8-4, MLPs 512/256/128/64/32, leaky ReLU, batch norm, KL warm-up over
the first 10% of the epochs), every run with the same epochs, batch 256, Adam
1e-3 and seed. `--ablation_depths` adds, for every family at those depths, a
run without batch norm and warm-up (the paper's Table 1 columns). With one
stochastic layer HVAE and LVAE are the same model (q(z|x) against N(0, I)), so
the depth-1 LVAE row reuses the depth-1 HVAE run. Each run trains
through `tfladder.training.train` (resumable: rerun the command to continue)
and records the KL of every latent unit on the evaluation images after each
epoch. Then, on the first `--eval_images` test images (one fixed binarization
for `mnist`): ELBO, L_K, KL per layer and active units (Cov_x E_q[z_u] > 0.01).

Writes benchmarks/results/<stem>.md and PNGs (L_K by depth, KL per unit over
training for the deepest HVAE and LVAE, KL per layer). `binarized_mnist` is
the fixed-binarization benchmark set (`binarized_mnist.npz`, 50,000 train /
10,000 test); `omniglot` is Lake's split (e.g. `--data omniglot28.npz`:
Lake's background alphabets for training, the 20 unseen evaluation alphabets
for testing, dynamically binarized), with the same model sizes as MNIST (as
the LVAE paper's Table 2). Needs matplotlib.
"""
import dataclasses
import json
import pathlib
import sys
import time

import numpy as np
from absl import app, flags

from tfladder import data, evaluation, training, zoo
from tfladder.callbacks import KLPerUnitHistory

FLAGS = flags.FLAGS
flags.DEFINE_list("families", ["hvae", "lvae"], "Families: hvae, lvae, topdown.")
flags.DEFINE_list("depths", ["1", "2", "3", "4", "5"], "Numbers of stochastic layers.")
flags.DEFINE_integer("epochs", 10, "Training epochs of every run.")
flags.DEFINE_integer("num_samples", 1000, "K of the importance-weighted bound L_K.")
flags.DEFINE_integer("eval_images", 500, "Test images evaluated (the first N).")
flags.DEFINE_list("ablation_depths", [], "Depths at which every family is also trained "
                  "without batch norm and warm-up (the paper's Table 1 columns).")
flags.DEFINE_enum("dataset", "mnist", ["mnist", "binarized_mnist", "omniglot"],
                  "Training data.")
flags.DEFINE_string("data", None, "A local .npz of --dataset (e.g. omniglot28.npz); default: "
                    "its copy <dataset>.npz in $TFLADDER_DATA_DIR, else TFDS.")
flags.DEFINE_string("workdir", "/tmp/tfladder_depth", "Checkpoints of every run.")
flags.DEFINE_bool("topdown_kl_balancing", False, "Top-down runs: NVAE's KL balancing during "
                  "warm-up (as topdown_mnist); their deltas always see the top-down state.")
flags.DEFINE_string("out", None, "Output stem (default benchmarks/results/depth_<dataset>).")

LATENTS = [64, 32, 16, 8, 4]
HIDDEN = [512, 256, 128, 64, 32]
DATASETS = {   # names, never places: local copies come from --data or $TFLADDER_DATA_DIR
    "mnist": zoo.DataSpec(zoo.MNIST, binarize="dynamic"),
    "binarized_mnist": zoo.DataSpec("binarized_mnist"),
    "omniglot": zoo.DataSpec(zoo.OMNIGLOT, binarize="dynamic"),
}
PAPER = ("LVAE paper (Sønderby et al. 2016), dynamically binarized MNIST, 2000 epochs with "
         "batch norm and warm-up: the 5-layer LVAE reaches ELBO -85.23 and L_5000 -82.12 "
         "(-81.74 after fine-tuning with 10 importance samples); its Fig. 3 / Table 1 "
         "show LVAE improving with every added layer while the bottom-up HVAE stops "
         "improving after 2-3 layers. Per-depth numbers are in the paper's Table 1.")
PAPER_OMNIGLOT = ("LVAE paper (Sønderby et al. 2016) Table 2, OMNIGLOT on IWAE's split "
                  "(test alphabets seen in training), 1,500 epochs with batch norm and "
                  "warm-up, L_5000: 5-layer LVAE -102.11, 5-layer stacked (HVAE) -102.48, "
                  "1-layer VAE -104.51. Here the test alphabets are unseen (Lake's split), "
                  "so the numbers are near, not equal to, the paper's.")


@dataclasses.dataclass(frozen=True)
class Run:
    family: str
    depth: int
    batch_norm: bool = True
    warmup: bool = True

    @property
    def name(self):
        suffix = "" if (self.batch_norm and self.warmup) else "_plain"
        return f"{self.family}_{self.depth}{suffix}"

    def variant(self, spec, epochs):
        model = dict(image_shape=(28, 28, 1), latent_dims=LATENTS[:self.depth],
                     hidden_units=HIDDEN[:self.depth], activation="leaky_relu",
                     batch_norm=self.batch_norm, observation="bernoulli")
        if self.family == "topdown":
            model.update(kl_balancing=FLAGS.topdown_kl_balancing)
        recipe = zoo.Recipe(epochs=epochs, batch_size=256,
                            warmup_epochs=max(1.0, epochs / 10) if self.warmup else 0.0)
        return zoo.Variant(name=f"depth_{self.name}", family=self.family,
                           description=f"{self.family}, {self.depth} layers (depth benchmark)",
                           model=model, data=spec, recipe=recipe)


def canonical(run):
    """The run that trains `run`: one stochastic layer is the same model in HVAE and LVAE."""
    return dataclasses.replace(run, family="hvae") if run.depth == 1 and run.family == "lvae" \
        else run


def train_elbo(model, train_images, batch_size=100):
    """Mean ELBO on training images (same seeds as the test ELBO): beside the
    test ELBO, the generalisation gap of the run."""
    return float(np.mean(np.concatenate([
        model.elbo_terms(train_images[i:i + batch_size], seed=i).elbo.numpy()
        for i in range(0, len(train_images), batch_size)])))


def evaluate_run(model, eval_images, workdir):
    """L_K (`--num_samples`) and the ELBO on `eval_images`; per-image L_K saved beside."""
    metrics = evaluation.evaluate(model, eval_images, num_samples=FLAGS.num_samples,
                                  per_image=True)
    metrics.pop("active_unit_variance")
    np.save(workdir / "log_likelihood_per_image.npy",
            np.asarray(metrics.pop("log_likelihood_per_image")))
    return metrics


def run_one(run, spec, eval_images, train_images, root):
    """Trains (or resumes) one run and evaluates it; cached in root/<name>/eval.json.

    The cache holds for the same `--epochs`; a cached run evaluated on another
    number of images or with another K is evaluated again from its saved model
    (test bounds and train ELBO), and one without a train ELBO gets one.
    """
    workdir = root / run.name
    cached = workdir / "eval.json"
    if cached.exists():
        metrics = json.loads(cached.read_text())
        if metrics.get("epochs") == FLAGS.epochs:
            changed = False
            if (metrics.get("num_images"), metrics.get("num_samples")) != (
                    len(eval_images), FLAGS.num_samples):
                metrics.update(evaluate_run(zoo.load(workdir / training.MODEL_DIR),
                                            eval_images, workdir))
                metrics.pop("train_elbo", None)          # on as many training images
                changed = True
            if "train_elbo" not in metrics:
                metrics["train_elbo"] = train_elbo(zoo.load(workdir / training.MODEL_DIR),
                                                   train_images)
                changed = True
            if changed:
                cached.write_text(json.dumps(metrics, indent=1))
            return metrics
    started = time.time()
    result = training.train(run.variant(spec, FLAGS.epochs), workdir, verbose=2,
                            callbacks=[KLPerUnitHistory(eval_images, workdir / "kl_units.npz")])
    train_seconds = time.time() - started
    metrics = evaluate_run(result.model, eval_images, workdir)
    metrics.update(run=run.name, family=run.family, depth=run.depth,
                   batch_norm=run.batch_norm, warmup=run.warmup, epochs=FLAGS.epochs,
                   train_seconds=round(train_seconds, 1),
                   final_test_elbo_full_split=result.history["val_elbo"][-1],
                   train_elbo=train_elbo(result.model, train_images))
    cached.write_text(json.dumps(metrics, indent=1))
    return metrics


# Paired comparisons at equal depth: (family, the family it is compared with).
PAIRS = (("lvae", "hvae"), ("topdown", "lvae"))


def paired_rows(runs, root, k):
    """LVAE minus HVAE, top-down minus LVAE at each depth (same images, same K):
    mean and paired standard error."""
    rows = []
    for run in runs:
        for family, other in PAIRS:
            if run.family != family or run.depth == 1:
                continue
            partner = dataclasses.replace(run, family=other)
            paths = [root / r.name / "log_likelihood_per_image.npy" for r in (run, partner)]
            if not all(path.exists() for path in paths):
                continue
            mean, stderr = evaluation.paired_difference(*(np.load(path) for path in paths))
            rows.append(f"| {run.name} − {partner.name} | {mean:+.2f} ± {stderr:.2f} | "
                        f"{mean / stderr:+.1f} |")
    if not rows:
        return []
    return ["", f"Paired margins (same images, same K): L_{k} of the first run minus L_{k} "
            "of the second (same depth and settings), mean over images ± the standard error "
            "of the per-image differences (`tfladder.evaluation.paired_difference`).", "",
            "| pair | difference (nats) | margin / standard error |", "| --- | --- | --- |"
            ] + rows


def figures(results, root, stem):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    paths = {}
    # L_K and ELBO against depth, one line per family.
    fig, ax = plt.subplots(figsize=(5.6, 4.0), dpi=120)
    for family in FLAGS.families:
        rows = sorted((r for r in results if r["family"] == family and r["batch_norm"]
                       and r["warmup"]), key=lambda r: r["depth"])
        if not rows:
            continue
        depths = [r["depth"] for r in rows]
        line, = ax.plot(depths, [r["log_likelihood"] for r in rows], "o-",
                        label=f"{family} L_{FLAGS.num_samples}")
        ax.plot(depths, [r["elbo"] for r in rows], "x--", color=line.get_color(),
                label=f"{family} ELBO")
    ax.set_xlabel("stochastic layers")
    ax.set_ylabel("nats")
    ax.set_xticks(sorted({r["depth"] for r in results}))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(f"Test bound by depth ({FLAGS.epochs} epochs)")
    fig.tight_layout()
    paths["depth"] = stem.with_name(stem.name + ".png")
    fig.savefig(paths["depth"])
    plt.close(fig)

    # KL per unit over training for the deepest run of each family.
    deepest = max(int(d) for d in FLAGS.depths)
    runs = [r for r in results if r["depth"] == deepest and r["batch_norm"] and r["warmup"]]
    if runs:
        fig, axes = plt.subplots(1, len(runs), figsize=(4.2 * len(runs), 4.6), dpi=120,
                                 squeeze=False, layout="constrained")
        for ax, r in zip(axes[0], runs):
            with np.load(root / r["run"] / "kl_units.npz") as saved:
                layers = [saved[f"layer_{l + 1}"] for l in range(deepest)]
            # Units sorted by final KL within each layer, layers stacked bottom first.
            blocks = [layer[:, np.argsort(-layer[-1])] for layer in layers]
            heat = np.concatenate(blocks, axis=1).T
            image = ax.imshow(np.log10(np.maximum(heat, 1e-3)), aspect="auto",
                              cmap="viridis", vmin=-3, vmax=1, origin="upper",
                              extent=[0.5, heat.shape[1] + 0.5, heat.shape[0], 0])
            edge = 0
            for layer in layers[:-1]:
                edge += layer.shape[1]
                ax.axhline(edge, color="white", linewidth=0.6)
            ax.set_title(f"{r['family']}: KL per unit (log10 nats)")
            ax.set_xlabel("epoch")
            ax.set_ylabel("unit (layer 1 at the top)")
        fig.colorbar(image, ax=axes[0].tolist(), shrink=0.8)
        paths["kl_units"] = stem.with_name(stem.name + "_kl_units.png")
        fig.savefig(paths["kl_units"])
        plt.close(fig)

        # Layer-wise KL bars.
        fig, ax = plt.subplots(figsize=(5.6, 3.6), dpi=120)
        width = 0.8 / len(runs)
        for i, r in enumerate(runs):
            positions = np.arange(1, deepest + 1) + (i - (len(runs) - 1) / 2) * width
            ax.bar(positions, r["kl_per_layer"], width, label=r["family"])
        ax.set_xlabel("layer")
        ax.set_ylabel("KL (nats)")
        ax.set_title(f"KL per layer, {deepest}-layer models")
        ax.legend()
        fig.tight_layout()
        paths["kl_layers"] = stem.with_name(stem.name + "_kl_layers.png")
        fig.savefig(paths["kl_layers"])
        plt.close(fig)
    return paths


def main(argv):
    spec = DATASETS[FLAGS.dataset]
    if FLAGS.data:
        spec = dataclasses.replace(spec, source=FLAGS.data)
    stem = pathlib.Path(FLAGS.out or f"benchmarks/results/depth_{FLAGS.dataset}")
    stem.parent.mkdir(parents=True, exist_ok=True)
    root = pathlib.Path(FLAGS.workdir) / FLAGS.dataset
    images = data.load_arrays(spec.source, spec.test_split, limit=FLAGS.eval_images)
    images, preprocessing = evaluation.binarize_for_evaluation(images, spec.binarize)
    # Training images for the train ELBO: a seeded random subset as large as the
    # evaluation set (stored orders can be grouped, e.g. OMNIGLOT by alphabet).
    train_images = data.load_arrays(spec.source, spec.train_split)
    train_images = train_images[np.sort(np.random.default_rng(0).permutation(
        len(train_images))[:len(images)])]
    train_images, _ = evaluation.binarize_for_evaluation(train_images, spec.binarize)
    # Depth-major order, so that an interrupted sweep has comparable rows; plain runs last.
    runs = [Run(family, int(depth)) for depth in FLAGS.depths for family in FLAGS.families]
    runs += [Run(family, int(depth), batch_norm=False, warmup=False)
             for depth in FLAGS.ablation_depths for family in FLAGS.families]
    results = []
    for run in runs:
        metrics = dict(run_one(canonical(run), spec, images, train_images, root))
        metrics.update(run=run.name, family=run.family)
        results.append(metrics)
    paths = figures(results, root, stem)

    command = "python benchmarks/depth.py " + " ".join(sys.argv[1:])
    k = FLAGS.num_samples
    lines = [
        f"# Test bound by depth on {FLAGS.dataset}", "",
        f"Command: `{command.strip()}`", "",
        f"Every run: {FLAGS.epochs} epochs, batch 256, Adam 1e-3, seed 0, "
        f"{FLAGS.dataset} ({spec.train_split} split"
        + (", dynamically binarized" if spec.binarize == "dynamic" else "") + "). "
        f"Evaluated on the first {len(images)} {spec.test_split} images ({preprocessing}); "
        f"L_{k} = importance-weighted bound with K = {k}. AU = active units "
        "(Cov_x E_q[z_u] > 0.01) per layer, bottom first. A depth-1 LVAE row is the "
        "depth-1 HVAE run (one stochastic layer is the same model). Train ELBO: on "
        f"{len(images)} {spec.train_split} images drawn at random (seed 0), binarized the same way (its "
        "difference to the ELBO is the generalisation gap).", "",
        f"| run | layers | BN | warm-up | ELBO | train ELBO | L_{k} | KL per layer | "
        "AU per layer | train s |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in results:
        lines.append(
            f"| {r['run']} | {r['depth']} | {'yes' if r['batch_norm'] else 'no'} | "
            f"{'yes' if r['warmup'] else 'no'} | {r['elbo']:.2f} | {r['train_elbo']:.2f} | "
            f"{r['log_likelihood']:.2f} ± {r['log_likelihood_stderr']:.2f} | "
            + ", ".join(f"{v:.1f}" for v in r["kl_per_layer"]) + " | "
            + ", ".join(f"{a}/{d}" for a, d in zip(r["active_units"], r["latent_dims"]))
            + f" | {r['train_seconds']:.0f} |")
    lines += paired_rows(runs, root, k)
    lines += ["", f"Paper: {PAPER_OMNIGLOT if FLAGS.dataset == 'omniglot' else PAPER}", ""]
    lines += [f"![{key}]({path.name})" for key, path in paths.items()]
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    app.run(main)
