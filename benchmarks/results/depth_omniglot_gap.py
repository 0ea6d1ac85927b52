"""Why the 5-layer LVAE trails the HVAE on OMNIGLOT (issue 13): generalisation.

Reads two finished runs of `benchmarks/depth.py --dataset omniglot` (their
`history.csv` and saved models) and reports, for each: the per-epoch training
and test ELBO (Keras' logs: the training ELBO is the running mean over the
epoch, in training mode), and, for the final model, the ELBO on all test
images and on as many training images drawn at random (seed 0), both
binarized by one fixed draw, plus a figure of the curves.

usage (from the checkout):
  python benchmarks/results/depth_omniglot_gap.py --workdir ../runs/depth_omni_hist \
      --data omniglot28.npz --runs hvae_5,lvae_5 --out benchmarks/results/depth_omniglot_gap
"""
import csv
import pathlib
import sys

import numpy as np
from absl import app, flags

from tfladder import data, evaluation, training, zoo

flags.DEFINE_string("workdir", None, "The depth benchmark's --workdir.")
flags.DEFINE_string("data", "omniglot", "The OMNIGLOT source (a .npz or a dataset name).")
flags.DEFINE_list("runs", ["hvae_5", "lvae_5"], "Runs to compare.")
flags.DEFINE_integer("lk_images", 2000, "Images of each split for the paired L_K margin "
                     "(the first of the random training subset; test: a random subset).")
flags.DEFINE_integer("num_samples", 200, "K of the paired L_K margin.")
flags.DEFINE_string("out", "benchmarks/results/depth_omniglot_gap", "Output stem.")
FLAGS = flags.FLAGS
NOTES = "<!-- notes -->"


def mean_elbo(model, images, batch=500):
    return float(np.mean(np.concatenate([model.elbo_terms(images[i:i + batch], seed=i)
                                         .elbo.numpy() for i in range(0, len(images), batch)])))


def history(path):
    with open(path) as f:
        rows = list(csv.DictReader(f))
    return (np.array([float(r["elbo"]) for r in rows]),
            np.array([float(r["val_elbo"]) for r in rows]))


def main(argv):
    root = pathlib.Path(FLAGS.workdir) / "omniglot"
    test = data.load_arrays(FLAGS.data, "test")
    train = data.load_arrays(FLAGS.data, "train")
    train = train[np.sort(np.random.default_rng(0).permutation(len(train))[:len(test)])]
    test, how = evaluation.binarize_for_evaluation(test, "dynamic")
    train, _ = evaluation.binarize_for_evaluation(train, "dynamic")
    pick = np.sort(np.random.default_rng(1).permutation(len(test))[:FLAGS.lk_images])
    subsets = {"train": train[:FLAGS.lk_images], "test": test[pick]}
    rows, curves, bounds = [], {}, {}
    for run in FLAGS.runs:
        model = zoo.load(root / run / training.MODEL_DIR)
        for split, images in subsets.items():
            bounds[run, split] = evaluation.evaluate(
                model, images, num_samples=FLAGS.num_samples,
                per_image=True)["log_likelihood_per_image"]
        on_train, on_test = mean_elbo(model, train), mean_elbo(model, test)
        curves[run] = history(root / run / "history.csv")
        best = int(np.argmax(curves[run][1]))
        rows.append(f"| {run} | {on_train:.2f} | {on_test:.2f} | {on_train - on_test:.2f} | "
                    f"{curves[run][1][best]:.2f} (epoch {best + 1}) | "
                    f"{curves[run][1][-1]:.2f} |")
    first, second = FLAGS.runs[:2]
    margins = []
    for split in subsets:
        mean, stderr = evaluation.paired_difference(np.asarray(bounds[second, split]),
                                                    np.asarray(bounds[first, split]))
        margins.append(f"| {split} | {np.mean(bounds[first, split]):.2f} | "
                       f"{np.mean(bounds[second, split]):.2f} | {mean:+.2f} ± {stderr:.2f} |")
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    for run, (tr, te) in curves.items():
        line, = ax.plot(np.arange(1, len(tr) + 1), tr, label=f"{run} train (running)")
        ax.plot(np.arange(1, len(te) + 1), te, "--", color=line.get_color(),
                label=f"{run} test")
    ax.set_ylim(-135, -95)
    ax.set_xlabel("epoch")
    ax.set_ylabel("ELBO (nats)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    stem = pathlib.Path(FLAGS.out)
    fig.savefig(stem.with_suffix(".png"))
    command = "python benchmarks/results/depth_omniglot_gap.py " + " ".join(argv[1:] or sys.argv[1:])
    lines = ["# OMNIGLOT: training vs test ELBO of the 5-layer HVAE and LVAE", "",
             f"Command: `{command.strip()}`", "",
             f"Final models, ELBO (one sample per image, fixed seeds) on all {len(test)} "
             f"test images (the 20 evaluation alphabets) and on {len(train)} training images "
             f"drawn at random (seed 0), both {how}. Per-epoch test ELBO from the "
             "training log.", "",
             "| run | train ELBO | test ELBO | gap | best test ELBO during training | "
             "last epoch's test ELBO |", "| --- | --- | --- | --- | --- | --- |"] + rows + [
             "", f"Paired L_{FLAGS.num_samples} on {FLAGS.lk_images} images of each split "
             "(training: the first of the random subset above; test: drawn at random, "
             f"seed 1), {second} minus {first}, ± the standard error of the per-image "
             "differences (`tfladder.evaluation.paired_difference`):", "",
             f"| split | {first} | {second} | {second} − {first} |",
             "| --- | --- | --- | --- |"] + margins + [
             "", f"![curves]({stem.with_suffix('.png').name})", ""]
    path = stem.with_suffix(".md")
    notes = ""   # hand-written notes below the marker survive a rerun
    if path.exists() and NOTES in path.read_text():
        notes = NOTES + path.read_text().split(NOTES, 1)[1]
    path.write_text("\n".join(lines) + notes)
    print("\n".join(lines))


if __name__ == "__main__":
    flags.mark_flag_as_required("workdir")
    app.run(main)
