"""Cost of the input checks in the compiled training step (issue 17).

`fit` asserts, inside the graph, that every batch is finite and in the
likelihood's support (`HierarchicalModel.assert_valid_values`). This times
the training step of a variant with the checks and without them (the same
model class with `assert_valid_values` replaced by the identity on that one
instance), in alternating windows of one process, and writes the ratio.

    python benchmarks/input_checks.py --variant lvae_mnist --rounds 15
"""
import pathlib
import sys

from absl import app, flags

from tfladder import benchmarking, zoo

FLAGS = flags.FLAGS
flags.DEFINE_string("variant", "lvae_mnist", "Zoo variant whose training step is timed.")
flags.DEFINE_integer("rounds", 15, "Alternating windows.")
flags.DEFINE_integer("steps", 40, "Steps per window (a multiple of 8).")
flags.DEFINE_string("out", "benchmarks/results/input_checks.md", "Markdown output.")


def main(argv):
    del argv
    variant = zoo.get(FLAGS.variant)
    batch = variant.recipe.batch_size
    images = benchmarking.binary_images(batch * 8, variant.model["image_shape"])
    unchecked = benchmarking.compiled(lambda: zoo.build(FLAGS.variant, seed=0), False)
    unchecked.assert_valid_values = lambda x: x          # this instance only
    models = {"checked (default)": benchmarking.compiled(lambda: zoo.build(FLAGS.variant, seed=0),
                                                         False),
              "unchecked": unchecked}
    rates = benchmarking.interleaved_throughput(
        models, benchmarking.in_memory_batches(images, batch), batch, steps=FLAGS.steps,
        rounds=FLAGS.rounds)
    lines = [f"# Cost of the input checks in the training step ({FLAGS.variant})", "",
             f"Command: `python benchmarks/input_checks.py {' '.join(sys.argv[1:])}`".strip(), "",
             f"{FLAGS.rounds} alternating windows of {FLAGS.steps} steps (batch {batch}); "
             "ratio = checked / unchecked rate per window (median, min-max).", "",
             "| clock | ratio checked / unchecked |", "| --- | --- |"]
    for clock in ("wall", "cpu"):
        median, low, high = benchmarking.ratio_summary(rates, "checked (default)", "unchecked",
                                                       clock)
        lines.append(f"| {'examples/s' if clock == 'wall' else 'examples per CPU-s'} | "
                     f"{median:.3f} ({low:.3f}-{high:.3f}) |")
    lines += ["", "Measured while other jobs ran on the machine's 2 cores: the alternating "
              "windows share that load, so the ratio holds; the absolute rates do not."]
    out = pathlib.Path(FLAGS.out)
    out.write_text("\n".join(lines).rstrip() + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    app.run(main)
