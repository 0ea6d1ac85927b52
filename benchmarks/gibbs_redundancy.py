"""Experiment 4 of issue 5: HVAE representational redundancy (VLAE paper Prop. 1, Fig. 2).

python benchmarks/gibbs_redundancy.py [--model hvae_mnist | --model PATH] [--num-images 100]
    [--num-steps 100]

Runs the Gibbs chain z_1 ~ q(z_1 | x), x ~ p(x | z_1) (only the bottom layer)
from binarized MNIST test digits and compares its samples with ancestral
samples that go through every layer (`tfladder.analysis.gibbs_chain`), judged
by a digit classifier trained here: class balance (entropy, coverage),
confidence, classifier score, and the model's own ELBO of both sample sets.
Writes benchmarks/results/gibbs_redundancy.md and two PNG figures.
"""
import json
import math
import pathlib
import sys
import time

import numpy as np
from absl import app, flags

import common
from tfladder import analysis, evaluation, figures, zoo
from tfladder.models.markov import MarkovGenerativeModel

flags.DEFINE_string("model", "hvae_mnist", "Zoo name or trained variant folder.")
flags.DEFINE_string("mnist", zoo.MNIST, "MNIST .npz (start digits and classifier data).")
flags.DEFINE_integer("num-images", 100, "Chains (= start digits) and ancestral samples.")
flags.DEFINE_integer("num-steps", 100, "Gibbs steps per chain.")
flags.DEFINE_list("show-steps", ["1", "2", "5", "10", "20", "50", "100"],
                  "Steps shown in the chain figure and the table (those <= num_steps).")
flags.DEFINE_integer("seed", 0, "Seed of every draw.")
flags.DEFINE_integer("classifier-epochs", 3, "Epochs of the digit classifier.")
flags.DEFINE_string("out-dir", "benchmarks/results", "Where the .md and .png files go.")


def score_row(label, scores, elbo, kept=None):
    commonest = int(np.argmax(scores.class_histogram))
    return [label, f"{scores.class_entropy:.3f}", f"{scores.classes_covered}/10",
            f"{commonest} ({scores.class_histogram[commonest]:.0%})",
            f"{scores.mean_confidence:.3f}", f"{scores.classifier_score:.2f}",
            f"{elbo:.1f}", "—" if kept is None else f"{kept:.0%}"]


def main(argv):
    options = common.flag_values()
    started = time.time()
    out_dir = pathlib.Path(options.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    classifier, classifier_info = common.digit_classifier(
        options.mnist, options.classifier_epochs, options.seed)
    judge = common.probabilities_fn(classifier)
    model, description, _ = common.load_model(options.model)
    binarize = json.loads((zoo.artifact_dir(options.model) / zoo.CONFIG).read_text()).get(
        "data", {}).get("binarize")

    grey, labels = common.mnist_with_labels(options.mnist, "test", limit=options.num_images)
    start, preprocessing = evaluation.binarize_for_evaluation(grey, binarize, options.seed)
    chain = analysis.gibbs_chain(model, start, options.num_steps, seed=options.seed)
    ancestral_means = model.sample(options.num_images, seed=options.seed).numpy()
    ancestral_draws = model.sample(options.num_images, seed=options.seed, mean=False).numpy()

    markov = isinstance(model, MarkovGenerativeModel)
    chain_label = "Gibbs chain on z_1" if markov else "Gibbs chain on all layers"
    ancestral_path = " -> ".join(f"z_{l}" for l in range(model.num_layers, 0, -1)) + " -> x"
    start_class = np.argmax(judge(grey), -1)
    steps = [int(s) for s in options.show_steps if int(s) <= options.num_steps]
    if options.num_steps not in steps:
        steps.append(options.num_steps)
    rows = [score_row(f"test digits (the chains' starts; label accuracy "
                      f"{np.mean(start_class == labels):.0%})",
                      analysis.classifier_scores(judge, grey),
                      float(np.mean(model.elbo(start, seed=options.seed))))]
    for step in steps:
        means = chain.means[step - 1]
        kept = float(np.mean(np.argmax(judge(means), -1) == start_class))
        rows.append(score_row(f"{chain_label}, step {step}",
                              analysis.classifier_scores(judge, means),
                              float(np.mean(model.elbo(chain.samples[step - 1],
                                                       seed=options.seed))), kept))
    rows.append(score_row("ancestral samples (all layers)",
                          analysis.classifier_scores(judge, ancestral_means),
                          float(np.mean(model.elbo(ancestral_draws, seed=options.seed)))))

    side = int(math.isqrt(options.num_images))
    shown = side * side
    comparison = common.side_by_side([
        figures.image_grid(chain.means[-1][:shown], side, side),
        figures.image_grid(ancestral_means[:shown], side, side)], gap=12)
    figures.save_png(comparison, out_dir / "gibbs_redundancy.png")
    rows_shown = min(10, options.num_images)
    figures.save_png(analysis.gibbs_figure(start[:rows_shown],
                                           analysis.GibbsChain(chain.samples[:, :rows_shown],
                                                               chain.means[:, :rows_shown]),
                                           steps),
                     out_dir / "gibbs_redundancy_chain.png")

    lines = [
        "# HVAE representational redundancy: Gibbs chain on z_1 vs ancestral samples", "",
        f"Command: `python {' '.join(sys.argv)}`", "",
        f"Model: {description}.", "",
        f"Digit classifier (judge): small CNN trained here for {classifier_info['epochs']} "
        f"epochs on the 60,000 MNIST training digits, **test accuracy "
        f"{classifier_info['test_accuracy']:.2%}** on the 10,000 test digits.", "",
        f"Chains: {options.num_images} chains "
        + ("z_1 ~ q(z_1 | x), x ~ p(x | z_1)" if markov else "z ~ q(z | x), x ~ p(x | z)")
        + f", started at the first {options.num_images} MNIST test digits ({preprocessing}), "
        f"{options.num_steps} steps, seed {options.seed}. Ancestral samples: {options.num_images} "
        f"draws {ancestral_path}. The classifier sees likelihood means (grey levels); "
        "the ELBO (nats, higher = more typical under the model) is of binary draws.", "",
        *common.markdown_table(
            ["sample set", "class entropy (nats, max ln 10 = 2.303)", "classes covered (>= 1%)",
             "commonest class (share)", "mean max p(y|x)", "classifier score (max 10)",
             "model ELBO", "class kept from start"], rows),
        "",
        "Paper (Zhao et al. 2017, Proposition 1 and Figure 2): if the ELBO were optimal, the "
        "Gibbs chain on the bottom layer alone would sample the data distribution, so the "
        "layers above z_1 are not needed; on MNIST the chain's samples look as good as "
        "ancestral samples.", "",
        "![Gibbs chain (left) vs ancestral samples (right)](gibbs_redundancy.png)", "",
        f"Left: the chains after {options.num_steps} steps; right: ancestral samples "
        "(likelihood means).", "",
        "![chains over time](gibbs_redundancy_chain.png)", "",
        f"Rows: chains; first column the binarized start digit, then the chain at steps "
        f"{', '.join(map(str, steps))}.", "",
        common.runtime_line(started, classifier_info),
    ]
    (out_dir / "gibbs_redundancy.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    app.run(main)
