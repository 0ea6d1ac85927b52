"""Training / evaluation speed of the zoo variants against the machine's matmul peak.

python benchmarks/throughput.py [--variants lvae_mnist,vlae_mnist] [--steps 20] [--windows 5]

Writes benchmarks/results/throughput.md. Rates are medians of timed windows
after warm-up; the peak is a float32 2048x2048 matmul measured in the same run.
"""
import pathlib
import sys
import tempfile

from absl import app, flags

from tfladder import benchmarking, zoo
from tfladder.export import export_saved_model

FLAGS = flags.FLAGS
flags.DEFINE_list("variants", ["vae_mnist", "hvae_mnist", "lvae_mnist", "vlae_mnist",
                               "topdown_mnist"], "Zoo variants to measure.")
flags.DEFINE_integer("steps", 20, "Training steps per timed window.")
flags.DEFINE_integer("windows", 5, "Timed windows (the median is reported).")
flags.DEFINE_integer("num_samples", 5000, "K for the L_K evaluation throughput.")
flags.DEFINE_integer("eval_images", 10, "Images per timed L_K window.")
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
        row = {"variant": name, "batch": batch, "gflop_per_step": flops / 1e9}
        for jit in (False, True):
            model = benchmarking.compiled(lambda: zoo.build(name, seed=0), jit)
            rate = benchmarking.training_throughput(model, images, batch, FLAGS.steps,
                                                    FLAGS.windows)
            row[f"train_{jit}"] = rate
            row[f"peak_{jit}"] = flops * rate / batch / peak
        model = zoo.build(name, seed=0)
        row["eval"] = benchmarking.log_likelihood_throughput(
            model, images[:FLAGS.eval_images], FLAGS.num_samples)
        with tempfile.TemporaryDirectory() as directory:
            export_saved_model(model, directory)
            row["latency"] = benchmarking.sample_latency(directory)
        rows.append(row)
        print(row, flush=True)
    k = FLAGS.num_samples
    lines = [
        "# Throughput", "",
        f"Command: `python {' '.join(sys.argv)}`", "",
        f"Practical peak (float32 2048x2048 matmul, same run): {peak / 1e9:.1f} GFLOP/s. "
        "Training rates are medians of timed windows after warm-up; FLOPs per step "
        "come from the TensorFlow profiler on the train step's graph.", "",
        f"| variant | batch | GFLOP/step | train ex/s (XLA off) | % of peak | train ex/s (XLA on) "
        f"| % of peak | L_{k} importance samples/s | L_{k} on 10,000 images (projected) "
        "| SavedModel sample(64) latency |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        projected = 10_000 * k / r["eval"] / 60
        lines.append(
            f"| {r['variant']} | {r['batch']} | {r['gflop_per_step']:.2f} | "
            f"{r['train_False']:.0f} | {r['peak_False']:.1%} | {r['train_True']:.0f} | "
            f"{r['peak_True']:.1%} | {r['eval']:.0f} | {projected:.0f} min | "
            f"{r['latency'] * 1000:.1f} ms |")
    pathlib.Path(FLAGS.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    app.run(main)
