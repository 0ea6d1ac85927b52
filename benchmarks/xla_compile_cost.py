"""What whole-step XLA costs before it pays: the first `fit` of a fresh model.

python benchmarks/xla_compile_cost.py [--variants lvae_mnist,vlae_mnist,topdown_mnist]
    [--repeats 2] [--out benchmarks/results/xla_compile_cost.md]

For each variant, a fresh model (`zoo.build`) is compiled with
`jit_compile=False` and with `jit_compile=True` (tfladder's other defaults) and
fitted for one short epoch (4 steps of 64 `mnist_offline` digits, with a
validation pass on 64 more). The wall-clock time of that first `fit` is
tracing plus compiling plus 4 steps; the difference between the two arms is
what XLA's compilation adds before its faster steps start to pay it back
(`throughput.py` measures the steps). Arms alternate; medians over `--repeats`.
"""
import pathlib
import statistics
import sys
import time

import keras
from absl import app, flags

from tfladder import data as data_lib
from tfladder import evaluation, zoo

FLAGS = flags.FLAGS
flags.DEFINE_list("variants", ["lvae_mnist", "vlae_mnist", "topdown_mnist"], "Zoo variants.")
flags.DEFINE_integer("repeats", 2, "Fresh models per arm and variant.")
flags.DEFINE_string("out", "benchmarks/results/xla_compile_cost.md", "Markdown output.")


def first_fit_seconds(name, jit, train, test):
    model = zoo.build(name, seed=0)
    model.compile(keras.optimizers.Adam(1e-3), jit_compile=jit)
    started = time.perf_counter()
    model.fit(train, validation_data=(test,), batch_size=16, epochs=1, verbose=0)
    return time.perf_counter() - started


def main(argv):
    del argv
    images = data_lib.load_arrays("mnist_offline", "train", limit=128)
    images = evaluation.binarize_for_evaluation(images, "dynamic")[0]
    train, test = images[:64], images[64:]
    rows = []
    for name in FLAGS.variants:
        times = {False: [], True: []}
        for _ in range(FLAGS.repeats):
            for jit in (False, True):
                times[jit].append(first_fit_seconds(name, jit, train, test))
        off, on = statistics.median(times[False]), statistics.median(times[True])
        rows.append(f"| {name} | {off:.1f} | {on:.1f} | {on - off:+.1f} |")
        print(rows[-1], flush=True)
    lines = ["# The first `fit` with and without whole-step XLA", "",
             f"Command: `python {' '.join(sys.argv)}`", "",
             "One epoch of 4 steps (batch 16) plus a validation pass, on a fresh model; "
             f"medians of {FLAGS.repeats} alternating repeats.", "",
             "| variant | seconds, XLA off | seconds, XLA on | XLA adds |",
             "| --- | --- | --- | --- |", *rows, ""]
    pathlib.Path(FLAGS.out).write_text("\n".join(lines))


if __name__ == "__main__":
    app.run(main)
