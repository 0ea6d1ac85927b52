"""How much of the OMNIGLOT test bound is the split: unseen alphabets vs unseen drawers.

python benchmarks/omniglot_split.py --data omniglot28.npz [--epochs 30] [--num_samples 1000]
    [--eval_images 2000] [--workdir /tmp/tfladder_omniglot_split]
    [--out benchmarks/results/omniglot_split.md]

The LVAE paper's OMNIGLOT numbers (Table 2) are on IWAE's split, whose test
characters come from alphabets seen in training; `lvae_omniglot` is tested on
Lake's 20 evaluation alphabets, never seen in training. One model answers how
much that costs: `lvae_omniglot`'s architecture and recipe, trained on drawers
1-15 of every background character (14,460 images; the other 5 drawers are its
validation split), then scored with the same K on

* the held-out drawers 16-20 of the background characters (seen alphabets and
  characters, new hands: the easier, IWAE-like protocol), and
* Lake's evaluation alphabets (unseen alphabets: `lvae_omniglot`'s protocol).

`--eval_images` images of each set are drawn at random (seed 0, the same for
every run) rather than taken first, because the files are ordered by alphabet.
Both sets are binarized by one fixed Bernoulli draw per pixel. The split file is
written into `--workdir` (never into the repository).
"""
import json
import pathlib
import time

import numpy as np
from absl import app, flags

from tfladder import data as data_lib
from tfladder import evaluation, training, zoo

FLAGS = flags.FLAGS
flags.DEFINE_string("data", None, "Path of omniglot28.npz (Lake's 28x28 characters).")
flags.DEFINE_integer("epochs", 30, "Training epochs (lvae_omniglot trains 100).")
flags.DEFINE_integer("num_samples", 1000, "K of L_K.")
flags.DEFINE_integer("eval_images", 2000, "Images scored per test set (random, seed 0).")
flags.DEFINE_string("workdir", "/tmp/tfladder_omniglot_split", "Split file and checkpoints.")
flags.DEFINE_string("out", "benchmarks/results/omniglot_split.md", "Markdown output.")

DRAWERS = 20
TRAIN_DRAWERS = 15


def drawer_split(path, out):
    """Writes `out` (.npz): background drawers 1-15 as train, 16-20 as test, plus the
    evaluation alphabets as `x_alphabets`. Rows of the source are ordered by
    character and then drawer (PROVENANCE.md), so the drawer is row % 20."""
    with np.load(path) as arrays:
        background, evaluation_set = arrays["x_train"], arrays["x_test"]
        characters = arrays["char_train"]
    if len(background) % DRAWERS or np.any(characters.reshape(-1, DRAWERS)
                                           != characters[::DRAWERS, None]):
        raise ValueError(f"{path}: expected 20 consecutive drawers per character.")
    drawer = np.arange(len(background)) % DRAWERS
    np.savez(out, x_train=background[drawer < TRAIN_DRAWERS],
             x_test=background[drawer >= TRAIN_DRAWERS], x_alphabets=evaluation_set)
    return out


def subset(images, count, seed=0):
    rows = np.random.RandomState(seed).permutation(len(images))[:count]
    return images[np.sort(rows)]


def main(argv):
    del argv
    if not FLAGS.data:
        raise app.UsageError("--data: the path of omniglot28.npz is needed.")
    root = pathlib.Path(FLAGS.workdir)
    root.mkdir(parents=True, exist_ok=True)
    split_file = drawer_split(FLAGS.data, root / "omniglot_drawers.npz")
    base = zoo.get("lvae_omniglot")
    started = time.time()
    result = training.train(base, root / "run", data=str(split_file), epochs=FLAGS.epochs,
                            verbose=2)
    train_seconds = time.time() - started
    rows = []
    for label, split in (("held-out drawers 16-20 of the background characters", "test"),
                         ("Lake's evaluation alphabets (unseen)", "alphabets")):
        images = subset(data_lib.load_arrays(str(split_file), split), FLAGS.eval_images)
        images, preprocessing = evaluation.binarize_for_evaluation(images, "dynamic")
        metrics = evaluation.evaluate(result.model, images, num_samples=FLAGS.num_samples)
        rows.append((label, metrics))
        print(label, json.dumps({k: metrics[k] for k in ("elbo", "log_likelihood")}),
              flush=True)
    k = FLAGS.num_samples
    history = result.history
    command = (f"python benchmarks/omniglot_split.py --data omniglot28.npz --epochs "
               f"{FLAGS.epochs} --num_samples {k} --eval_images {FLAGS.eval_images}")
    lines = [
        "# OMNIGLOT: unseen alphabets vs unseen drawers", "", f"Command: `{command}`", "",
        f"`lvae_omniglot`'s model and recipe, {FLAGS.epochs} epochs, trained on drawers 1-15 "
        f"of the 964 background characters ({len(data_lib.load_arrays(str(split_file), 'train'))}"
        f" images; {train_seconds:.0f} s here). Final train ELBO "
        f"{history['elbo'][-1]:.2f}, validation ELBO (drawers 16-20) "
        f"{history['val_elbo'][-1]:.2f}. Each test set: {FLAGS.eval_images} images drawn at "
        f"random (seed 0), {preprocessing}.", "",
        f"| test set | ELBO | L_{k} (± s.e.) | KL per layer |", "| --- | --- | --- | --- |"]
    for label, m in rows:
        lines.append(f"| {label} | {m['elbo']:.2f} | {m['log_likelihood']:.2f} ± "
                     f"{m['log_likelihood_stderr']:.2f} | "
                     + ", ".join(f"{v:.1f}" for v in m["kl_per_layer"]) + " |")
    gap = rows[0][1]["log_likelihood"] - rows[1][1]["log_likelihood"]
    # Two independent samples of images: the standard errors add in quadrature.
    gap_stderr = float(np.hypot(rows[0][1]["log_likelihood_stderr"],
                                rows[1][1]["log_likelihood_stderr"]))
    lines += ["", f"The split accounts for **{gap:.2f} ± {gap_stderr:.2f} nats** of L_{k} with "
              "this model: the same model scores that much better on new drawings of "
              "characters it has seen than on alphabets it has not.", ""]
    out = pathlib.Path(FLAGS.out)
    out.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    app.run(main)
