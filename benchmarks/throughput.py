"""Training / evaluation speed of the zoo variants against the machine's matmul peak.

python benchmarks/throughput.py [--variants lvae_mnist,vlae_mnist] [--steps 20] [--windows 5]

Writes benchmarks/results/throughput.md. Rates are medians of timed windows
after warm-up; the peak is a float32 2048x2048 matmul measured in the same run.
"""
import pathlib
import sys

from absl import app, flags

from tfladder import benchmarking, zoo

FLAGS = flags.FLAGS
flags.DEFINE_list("variants", ["vae_mnist", "hvae_mnist", "lvae_mnist", "vlae_mnist",
                               "topdown_mnist"], "Zoo variants to measure.")
flags.DEFINE_integer("steps", 20, "Training steps per timed window.")
flags.DEFINE_integer("windows", 5, "Timed windows (the median is reported).")
flags.DEFINE_integer("num_samples", 5000, "K for the L_K evaluation throughput.")
flags.DEFINE_string("out", "benchmarks/results/throughput.md", "Markdown output.")


def main(argv):
    peak = benchmarking.matmul_peak()
    rows = []
    for name in FLAGS.variants:
        variant = zoo.get(name)
        batch = variant.recipe.batch_size
        images = benchmarking.binary_images(batch * 8, variant.model["image_shape"])
        flops = benchmarking.train_step_flops(
            benchmarking.compiled(lambda: zoo.build(name, seed=0), False), batch)
        for jit in (False, True):
            model = benchmarking.compiled(lambda: zoo.build(name, seed=0), jit)
            rate = benchmarking.training_throughput(model, images, batch, FLAGS.steps,
                                                    FLAGS.windows)
            rows.append((name, batch, jit, rate, flops * rate / batch / peak))
            print(rows[-1], flush=True)
    lines = [
        "# Throughput", "",
        f"Command: `python {' '.join(sys.argv)}`", "",
        f"Practical peak (float32 2048x2048 matmul, same run): {peak / 1e9:.1f} GFLOP/s.", "",
        "| variant | batch | XLA | train examples/s | fraction of matmul peak |",
        "| --- | --- | --- | --- | --- |",
    ] + [f"| {n} | {b} | {'on' if j else 'off'} | {r:.0f} | {f:.1%} |" for n, b, j, r, f in rows]
    pathlib.Path(FLAGS.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    app.run(main)
