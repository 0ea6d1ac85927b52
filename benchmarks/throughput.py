"""Training / evaluation speed of the zoo variants against the machine's matmul peak.

python benchmarks/throughput.py [--variants lvae_mnist,vlae_mnist] [--steps 20] [--windows 5]
    [--profile lvae_mnist] [--rounds 15]

Writes benchmarks/results/throughput.md. Rates are medians of timed windows
after warm-up; the peak is a float32 2048x2048 matmul measured in the same run.
Every rate is given per wall-clock second and per CPU-second of this process
(user + system time), which stays comparable when other jobs load the machine.

For the `--profile` variant (empty: none) the run also records
* the op-level profile of its training step (`benchmarking.op_time_breakdown`),
* the optimizer update compiled by XLA (`HierarchicalModel._apply_if`) against
  Keras' per-op update, measured in alternating windows,
* input starvation: the step fed by the training pipeline (`tfladder.data.load`,
  as `tfladder.training` builds it) against one pre-materialised batch.

Everything from the line `<!-- notes -->` of an existing results file on is kept.
"""
import math
import pathlib
import statistics
import sys
import tempfile

import tensorflow as tf
from absl import app, flags

from tfladder import benchmarking, training, zoo
from tfladder import data as data_lib
from tfladder.export import export_saved_model

FLAGS = flags.FLAGS
flags.DEFINE_list("variants", ["vae_mnist", "hvae_mnist", "lvae_mnist", "vlae_mnist",
                               "topdown_mnist"], "Zoo variants to measure.")
flags.DEFINE_integer("steps", 20, "Training steps per timed window.")
flags.DEFINE_integer("windows", 5, "Timed windows (the median is reported).")
flags.DEFINE_integer("num_samples", 5000, "K for the L_K evaluation throughput.")
flags.DEFINE_integer("eval_images", 10, "Images per timed L_K window.")
flags.DEFINE_string("profile", "lvae_mnist", "Variant to profile, ablate and check for "
                    "input starvation ('' to skip).")
flags.DEFINE_integer("rounds", 15, "Alternating windows of the comparisons.")
flags.DEFINE_string("out", "benchmarks/results/throughput.md", "Markdown output.")

NOTES_MARKER = "<!-- notes -->"


def steps_per_call(variant):
    """What `tfladder.training.train` uses for `variant`, made to divide `--steps`."""
    spec = variant.data
    steps_per_epoch = math.ceil(data_lib.num_examples(spec.source, spec.train_split)
                                / variant.recipe.batch_size)
    return math.gcd(FLAGS.steps, training.default_steps_per_execution(steps_per_epoch))


def measure_variant(name, peak, peak_cpu):
    variant = zoo.get(name)
    batch = variant.recipe.batch_size
    images = benchmarking.binary_images(batch * 8, variant.model["image_shape"])
    flops = benchmarking.train_step_flops(
        benchmarking.compiled(lambda: zoo.build(name, seed=0), False), batch)
    per_call = steps_per_call(variant)
    row = {"variant": name, "batch": batch, "gflop_per_step": flops / 1e9,
           "steps_per_call": per_call}
    for jit in (False, True):
        model = benchmarking.compiled(lambda: zoo.build(name, seed=0), jit, per_call)
        rate, cpu_rate = benchmarking.training_throughput(
            model, images, batch, FLAGS.steps, FLAGS.windows, cpu=True)
        row[f"train_{jit}"] = rate
        row[f"peak_{jit}"] = flops * rate / batch / peak
        row[f"cpu_{jit}"] = cpu_rate
        row[f"cpu_peak_{jit}"] = flops * cpu_rate / batch / peak_cpu
    model = zoo.build(name, seed=0)
    row["eval"] = benchmarking.log_likelihood_throughput(
        model, images[:FLAGS.eval_images], FLAGS.num_samples)
    with tempfile.TemporaryDirectory() as directory:
        export_saved_model(model, directory)
        row["latency"] = benchmarking.sample_latency(directory)
    print(row, flush=True)
    return row


def profile_section(name):
    """Op-level profile, the optimizer-update comparison and the starvation check."""
    variant = zoo.get(name)
    batch = variant.recipe.batch_size
    images = benchmarking.binary_images(batch * 8, variant.model["image_shape"])
    lines = [f"## Profile of one {name} training step (batch {batch})", ""]

    def build(jit=False, xla_update=True):
        return benchmarking.compiled(lambda: zoo.build(name, seed=0), jit,
                                     xla_optimizer_update=xla_update)

    before = build(xla_update=False)
    by_phase_before = benchmarking.op_time_breakdown(before, images, batch, group="phase")
    by_type_before = benchmarking.op_time_breakdown(before, images, batch)
    ops_before = benchmarking.op_count_per_step(before, images, batch)
    after = build()
    by_phase = benchmarking.op_time_breakdown(after, images, batch, group="phase")
    by_type = benchmarking.op_time_breakdown(after, images, batch)
    ops_after = benchmarking.op_count_per_step(after, images, batch)
    ops_xla = benchmarking.op_count_per_step(build(True), images, batch)
    by_type_xla = benchmarking.op_time_breakdown(build(True), images, batch)

    def table(title, breakdowns, top=12):
        keys = []
        for breakdown in breakdowns.values():
            keys += [k for k in list(breakdown)[:top] if k not in keys]
        out = [f"| {title} | " + " | ".join(breakdowns) + " |",
               "| --- |" + " --- |" * len(breakdowns)]
        for key in keys:
            cells = []
            for breakdown in breakdowns.values():
                total = sum(breakdown.values())
                cells.append(f"{breakdown[key] / total:.1%}" if key in breakdown else "")
            out.append(f"| {key} | " + " | ".join(cells) + " |")
        return out

    lines += [
        "Kernel time per op, summed over threads, from the TensorFlow profiler "
        "(`benchmarking.op_time_breakdown`; host trace level 3, 10 steps). Shares of "
        "the summed kernel time; under load a kernel's time includes waits for a core, "
        "so only the shares are meaningful.", "",
        f"Ops per step: {ops_before[0]:.0f} TensorFlow kernels with Keras' optimizer "
        f"update; {ops_after[0]:.0f} kernels + {ops_after[1]:.0f} XLA thunks with the "
        f"XLA-compiled update; {ops_xla[0]:.0f} kernels + {ops_xla[1]:.0f} XLA thunks "
        "with `jit_compile=True`.", "",
    ]
    lines += table("phase", {"Keras update (before)": by_phase_before,
                             "XLA update (now)": by_phase})
    lines += [""]
    lines += table("op type", {"Keras update (before)": by_type_before,
                               "XLA update (now)": by_type,
                               "jit_compile=True": by_type_xla})
    lines += [""]

    # Before / after in alternating windows of one process.
    before_label = "Keras optimizer update (before)"
    models = {before_label: build(xla_update=False),
              "XLA-compiled optimizer update (now)": build(),
              "jit_compile=True (whole step)": build(True)}
    rates = benchmarking.interleaved_throughput(
        models, benchmarking.in_memory_batches(images, batch), batch, steps=10,
        rounds=FLAGS.rounds)
    base_label = next(iter(models))
    lines += [f"### Optimizer update: before / after ({FLAGS.rounds} alternating windows "
              "of 10 steps)", "",
              "| step | ex/s | ratio (median, min-max) | ex per CPU-s | ratio (median, min-max) |",
              "| --- | --- | --- | --- | --- |"]
    for label in models:
        cells = []
        for clock in ("wall", "cpu"):
            median, low, high = benchmarking.ratio_summary(rates, label, base_label, clock)
            cells += [f"{statistics.median(rates[label][clock]):.0f}",
                      f"{median:.2f} ({low:.2f}-{high:.2f})"]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += [""]

    # Python work between steps: one step per compiled call against several.
    per_call = steps_per_call(variant)
    labels = ("1 step per call (before)", f"{per_call} steps per call (now)")
    rates = benchmarking.interleaved_throughput(
        {labels[0]: build(), labels[1]: benchmarking.compiled(
            lambda: zoo.build(name, seed=0), False, per_call)},
        benchmarking.in_memory_batches(images, batch), batch, steps=10 * per_call,
        rounds=FLAGS.rounds)
    lines += [f"### Steps per compiled call ({FLAGS.rounds} alternating windows of "
              f"{10 * per_call} steps)", "",
              "| clock | 1 step per call | " f"{per_call} steps per call | ratio (median, "
              "min-max) |", "| --- | --- | --- | --- |"]
    for clock, unit in (("wall", "ex/s"), ("cpu", "ex per CPU-s")):
        median, low, high = benchmarking.ratio_summary(rates, labels[1], labels[0], clock)
        lines.append(f"| {unit} | {statistics.median(rates[labels[0]][clock]):.0f} | "
                     f"{statistics.median(rates[labels[1]][clock]):.0f} | "
                     f"{median:.2f} ({low:.2f}-{high:.2f}) |")
    lines += [""]

    # Input starvation: the training pipeline against one batch already in memory.
    spec = variant.data
    real = data_lib.load(spec.source, spec.train_split, batch, binarize=spec.binarize,
                         seed=0, epochs=variant.recipe.epochs)
    cached = tf.data.Dataset.from_tensors(next(iter(real))).repeat()
    pipeline_alone = benchmarking.pipeline_rate(real)
    rates = benchmarking.interleaved_throughput(
        {"in-memory batch": build(), "training pipeline": build()},
        {"in-memory batch": cached, "training pipeline": real}, batch, steps=10,
        rounds=FLAGS.rounds)
    lines += ["### Input starvation", "",
              f"`tfladder.data.load({spec.source!r}, {spec.train_split!r}, {batch}, "
              f"binarize={spec.binarize!r}, epochs={variant.recipe.epochs})` (what "
              f"`tfladder.training` feeds `fit`) alone delivers {pipeline_alone:.0f} "
              f"batches/s. Training on it against training on one pre-materialised "
              f"batch, {FLAGS.rounds} alternating windows of 10 steps:", "",
              "| clock | in-memory batch | training pipeline | ratio (median, min-max) |",
              "| --- | --- | --- | --- |"]
    for clock, unit in (("wall", "ex/s"), ("cpu", "ex per CPU-s")):
        median, low, high = benchmarking.ratio_summary(rates, "training pipeline",
                                                       "in-memory batch", clock)
        lines.append(f"| {unit} | {statistics.median(rates['in-memory batch'][clock]):.0f} | "
                     f"{statistics.median(rates['training pipeline'][clock]):.0f} | "
                     f"{median:.2f} ({low:.2f}-{high:.2f}) |")
    lines += [""]
    print("\n".join(lines), flush=True)
    return lines


def main(argv):
    peak, peak_cpu = benchmarking.matmul_peak(cpu=True)
    rows = [measure_variant(name, peak, peak_cpu) for name in FLAGS.variants]
    k = FLAGS.num_samples
    lines = [
        "# Throughput", "",
        f"Command: `python {' '.join(sys.argv)}`", "",
        f"Practical peak (float32 2048x2048 matmul, same run): {peak / 1e9:.1f} GFLOP/s, "
        f"{peak_cpu / 1e9:.1f} GFLOP per CPU-second. Training rates are medians of timed "
        "windows after warm-up (one `fit` call, one iterator, the steps per compiled call "
        "that `tfladder.training.train` uses); FLOPs per step come from "
        "the TensorFlow profiler on the train step's graph. \"% of peak\" divides the "
        "achieved FLOP/s by the matmul's; \"% of CPU peak\" does the same per CPU-second "
        "of this process, which other jobs on the machine do not distort.", "",
        f"| variant | batch | steps/call | GFLOP/step | train ex/s (XLA off) | % of peak | "
        f"ex per CPU-s | % of CPU peak | train ex/s (XLA on) | % of peak | ex per CPU-s | "
        f"% of CPU peak | L_{k} importance samples/s | L_{k} on 10,000 images (projected) "
        "| SavedModel sample(64) latency |",
        "| --- |" + " --- |" * 14,
    ]
    for r in rows:
        projected = 10_000 * k / r["eval"] / 60
        lines.append(
            f"| {r['variant']} | {r['batch']} | {r['steps_per_call']} | "
            f"{r['gflop_per_step']:.2f} | "
            f"{r['train_False']:.0f} | {r['peak_False']:.1%} | {r['cpu_False']:.0f} | "
            f"{r['cpu_peak_False']:.1%} | {r['train_True']:.0f} | {r['peak_True']:.1%} | "
            f"{r['cpu_True']:.0f} | {r['cpu_peak_True']:.1%} | {r['eval']:.0f} | "
            f"{projected:.1f} min | {r['latency'] * 1000:.1f} ms |")
    lines.append("")
    if FLAGS.profile:
        lines += profile_section(FLAGS.profile)
    out = pathlib.Path(FLAGS.out)
    notes = ""
    if out.exists() and NOTES_MARKER in out.read_text():
        notes = out.read_text()[out.read_text().index(NOTES_MARKER):]
    out.write_text("\n".join(lines) + "\n" + notes)
    print("\n".join(lines))


if __name__ == "__main__":
    app.run(main)
