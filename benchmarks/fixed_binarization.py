"""Shipped MNIST models on the fixed-binarization benchmark test set (issue 5, experiment 2).

python benchmarks/fixed_binarization.py [--variants lvae_mnist,hvae_mnist,vae_mnist]
    [--num_samples 1000] [--limit 1000]

The standard fixed binarization of MNIST (Larochelle & Murray 2011;
`../shared/data/binarized_mnist.npz`, test split = one Bernoulli draw of each
MNIST test digit) is scored by the shipped zoo models, which were trained on
the dynamically binarized MNIST training digits (no overlap with the test
digits). Writes benchmarks/results/fixed_binarization.md with test ELBO and
L_K next to published numbers on the same set.
"""
import sys
import time

from absl import app, flags

from tfladder import data, evaluation, zoo

FLAGS = flags.FLAGS
flags.DEFINE_list("variants", ["lvae_mnist", "hvae_mnist", "vae_mnist"], "Shipped variants.")
flags.DEFINE_integer("num_samples", 1000, "K of the importance-weighted bound L_K.")
flags.DEFINE_integer("limit", 1000, "Evaluate the first N test images (0: all 10,000).")
flags.DEFINE_string("data", "../shared/data/binarized_mnist.npz", "The fixed-binarization set.")
flags.DEFINE_string("out", "benchmarks/results/fixed_binarization.md", "Markdown output.")

# Negative log-likelihoods (nats) on binarized MNIST reported elsewhere; the
# sources name the number and how it was estimated.
PUBLISHED = [
    ("VAE (Rezende & Mohamed 2015, Table 1)", "89.9", "pythae reproduction 89.78 (200 IS), "
     "huggingface.co/clementchadebec/reproduced_vae"),
    ("IWAE, k = 5 (Burda et al. 2016, Table 1)", "87.6", "pythae reproduction 87.85 (5000 IS), "
     "huggingface.co/clementchadebec/reproduced_iwae"),
    ("IWAE, k = 50 (Burda et al. 2016, Table 1)", "87.1", "pythae reproduction 86.82 (5000 IS), "
     "huggingface.co/clementchadebec/reproduced_iwae"),
]


def main(argv):
    started = time.time()
    images = data.load_arrays(FLAGS.data, "test", limit=FLAGS.limit or None)
    rows = []
    for name in FLAGS.variants:
        model = zoo.load(name)
        result = evaluation.evaluate(model, images, num_samples=FLAGS.num_samples)
        rows.append(f"| `{name}` | {result['elbo']:.2f} | {result['log_likelihood']:.2f} ± "
                    f"{result['log_likelihood_stderr']:.2f} | "
                    f"{', '.join(str(a) for a in result['active_units'])} |")
    k = FLAGS.num_samples
    command = "python benchmarks/fixed_binarization.py " + " ".join(sys.argv[1:])
    lines = [
        "# Fixed-binarization MNIST (Larochelle & Murray 2011)", "",
        f"Command: `{command.strip()}`", "",
        f"The first {len(images)} images of the test split of `{FLAGS.data}` (already "
        "binary; no further preprocessing), scored by the shipped zoo models. They were "
        "trained on dynamically binarized MNIST training digits, not on this set's "
        "training split, so this measures transfer to the fixed draw as well as the model. "
        f"L_{k}: importance-weighted bound with K = {k}; ± is the standard error over "
        "images. Active units per layer, bottom first.", "",
        f"| model | test ELBO | test L_{k} | active units |", "| --- | --- | --- | --- |",
        *rows, "",
        "Published negative log-likelihoods on binarized MNIST (nats; lower is better, so "
        "compare with minus our numbers):", "",
        "| model | reported NLL | reproduction / source |", "| --- | --- | --- |",
        *[f"| {model} | {nll} | {source} |" for model, nll, source in PUBLISHED], "",
        f"Runtime: {time.time() - started:.0f} s on this machine.",
    ]
    with open(FLAGS.out, "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    app.run(main)
