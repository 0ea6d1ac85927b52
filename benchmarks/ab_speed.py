"""Training or L_K speed of zoo variants against an earlier checkout, A/B in one run.

python benchmarks/ab_speed.py --baseline PATH [--variants vlae_svhn,vlae_celeba]
    [--workload train|log_likelihood]
    [--arms baseline:float32,current:float32,current:mixed_bfloat16]
    [--rounds 7] [--steps 16] [--out benchmarks/results/throughput_vlae.md]

`--baseline` is another checkout of tfladder (e.g. `git worktree add ../baseline
<commit>`), the code to compare against. Each arm is one worker process that
imports tfladder from its checkout (`PYTHONPATH`), builds the variant with
`tfladder.zoo.build`, compiles it the plain Keras way
(`model.compile(keras.optimizers.Adam(1e-3))`, that checkout's defaults) under
the arm's Keras dtype policy, and warms up. The workers then train in
alternating windows of `--steps` steps (the starting arm rotates every round),
each on its own persistent stream of random images (8-bit levels, or binary
pixels for the binarized variants; the step's cost does not depend on them); a window is timed inside its worker (wall
clock and the worker's own CPU time), so every arm meets the same background
load and ratios are taken per round against the first arm's window.
"""
import json
import os
import pathlib
import statistics
import subprocess
import sys
import time

from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_string("baseline", None, "A checkout of tfladder to compare against.")
flags.DEFINE_list("variants", ["vlae_svhn", "vlae_celeba"], "Zoo variants to time.")
flags.DEFINE_list("arms", ["baseline:float32", "current:float32", "current:mixed_bfloat16"],
                  "checkout:policy[:NAME=VALUE...]; checkout is 'baseline' or 'current', "
                  "NAME=VALUE are environment variables of that worker. The first arm is "
                  "the reference of the ratios.")
flags.DEFINE_integer("rounds", 7, "Alternating rounds (one window per arm each).")
flags.DEFINE_integer("steps", 16, "Training steps per window (a multiple of 8).")
flags.DEFINE_integer("warmup", 16, "Untimed steps per worker before the first window.")
flags.DEFINE_string("out", "benchmarks/results/throughput_vlae.md", "Markdown output.")
flags.DEFINE_enum("workload", "train", ["train", "log_likelihood"], "What a window times.")
flags.DEFINE_integer("images", 10, "log_likelihood: images per window.")
flags.DEFINE_integer("num_samples", 2000, "log_likelihood: importance samples per image.")
flags.DEFINE_string("worker", None, "Internal: run as a worker for VARIANT:POLICY.")

CURRENT = pathlib.Path(__file__).resolve().parents[1]


def worker(spec):
    """Builds and warms up the model, then times one window per line read on stdin."""
    import keras
    import numpy as np

    from tfladder import benchmarking, zoo

    name, policy = spec.split(":")
    keras.config.set_dtype_policy(policy)
    if FLAGS.workload == "log_likelihood":
        return log_likelihood_worker(name)
    variant = zoo.get(name)
    batch = variant.recipe.batch_size
    shape = (batch * 8,) + tuple(variant.model["image_shape"])
    rng = np.random.RandomState(0)
    # Binary pixels for the binarized (Bernoulli) variants, 8-bit levels otherwise.
    images = ((rng.rand(*shape) > 0.5) if variant.data.binarize
              else rng.randint(0, 256, size=shape) / 255.0)
    data = iter(benchmarking.in_memory_batches(images.astype("float32"), batch))
    model = zoo.build(name, seed=0)
    model.compile(keras.optimizers.Adam(1e-3))
    model.make_train_function()
    per_call = int(model.steps_per_execution)
    calls = max(1, FLAGS.steps // per_call)

    def run(n_calls):
        for _ in range(n_calls):
            model.train_function(data)
        int(model.optimizer.iterations.numpy())           # waits for the last step

    run(max(1, FLAGS.warmup // per_call))
    serve(lambda window: run(calls), calls * per_call * batch, per_call)


def serve(run_window, work, steps_per_execution):
    """Says ready, then times `run_window(i)` once per "go" read on stdin and
    replies with `work` per wall-clock and per CPU-second (JSON lines)."""
    import tfladder
    print(json.dumps({"ready": True, "steps_per_execution": steps_per_execution,
                      "tfladder": str(pathlib.Path(tfladder.__file__).parent)}), flush=True)
    for window, line in enumerate(sys.stdin, start=1):
        if line.strip() != "go":
            break
        wall, cpu = time.perf_counter(), time.process_time()
        run_window(window)
        print(json.dumps({"wall": work / (time.perf_counter() - wall),
                          "cpu": work / max(time.process_time() - cpu, 1e-9)}), flush=True)


def log_likelihood_worker(name):
    import numpy as np

    from tfladder import zoo

    model = zoo.load(name)
    shape = tuple(model.image_shape)
    x = (np.random.RandomState(0).rand(FLAGS.images, *shape) > 0.5).astype("float32")
    model.log_likelihood(x[:2], num_samples=FLAGS.num_samples)    # traces both shapes
    model.log_likelihood(x, num_samples=FLAGS.num_samples)
    serve(lambda window: model.log_likelihood(x, num_samples=FLAGS.num_samples, seed=window),
          FLAGS.images * FLAGS.num_samples, 0)


def start(arm, variant):
    checkout, policy, *settings = arm.split(":")
    root = CURRENT if checkout == "current" else pathlib.Path(FLAGS.baseline).resolve()
    env = {**os.environ, "PYTHONPATH": str(root), "TF_CPP_MIN_LOG_LEVEL": "2",
           **dict(setting.split("=", 1) for setting in settings)}
    process = subprocess.Popen(
        [sys.executable, str(pathlib.Path(__file__).resolve()), f"--worker={variant}:{policy}",
         f"--steps={FLAGS.steps}", f"--warmup={FLAGS.warmup}",
         f"--workload={FLAGS.workload}", f"--images={FLAGS.images}",
         f"--num_samples={FLAGS.num_samples}"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        text=True, env=env, cwd=root)
    return process


def read(process):
    line = process.stdout.readline()
    if not line:
        raise RuntimeError("a worker exited early (run it alone with --worker to see why)")
    return json.loads(line)


def measure(variant):
    # One worker at a time is built and warmed up, so that start-up does not
    # overlap a timed window; all stay alive for the alternating rounds.
    processes = {}
    for arm in FLAGS.arms:
        processes[arm] = start(arm, variant)
        ready = read(processes[arm])
        print(f"{variant} {arm}: tfladder from {ready['tfladder']}, "
              f"{ready['steps_per_execution']} steps per call", flush=True)
    rates = {arm: {"wall": [], "cpu": []} for arm in FLAGS.arms}
    try:
        for r in range(FLAGS.rounds):
            order = FLAGS.arms[r % len(FLAGS.arms):] + FLAGS.arms[:r % len(FLAGS.arms)]
            for arm in order:
                processes[arm].stdin.write("go\n")
                processes[arm].stdin.flush()
                window = read(processes[arm])
                for clock in ("wall", "cpu"):
                    rates[arm][clock].append(window[clock])
    finally:
        for process in processes.values():
            process.stdin.close()
            process.wait()
    return rates


def table(results):
    reference = FLAGS.arms[0]
    unit = "examples" if FLAGS.workload == "train" else "importance samples"
    lines = [f"| variant | arm (checkout:policy) | {unit}/s (median) | {unit} per CPU-s "
             "(median) | × first arm, wall (median, min–max) | × first arm, per CPU-s "
             "(median, min–max) |", "| --- | --- | --- | --- | --- | --- |"]
    for variant, rates in results.items():
        for arm in FLAGS.arms:
            cells = []
            for clock in ("wall", "cpu"):
                ratios = [a / b for a, b in zip(rates[arm][clock], rates[reference][clock])]
                cells.append(f"{statistics.median(ratios):.2f} ({min(ratios):.2f}–"
                             f"{max(ratios):.2f})")
            lines.append(f"| {variant} | {arm} | {statistics.median(rates[arm]['wall']):.0f} | "
                         f"{statistics.median(rates[arm]['cpu']):.0f} | {cells[0]} | "
                         f"{cells[1]} |")
    return lines


def main(argv):
    del argv
    if FLAGS.worker:
        worker(FLAGS.worker)
        return
    if any(arm.startswith("baseline:") for arm in FLAGS.arms) and not FLAGS.baseline:
        raise app.UsageError("--baseline: a checkout of tfladder is needed for the "
                             "'baseline' arms.")
    results = {variant: measure(variant) for variant in FLAGS.variants}
    baseline_commit = ""
    if FLAGS.baseline:
        baseline_commit = subprocess.run(["git", "-C", FLAGS.baseline, "rev-parse", "--short",
                                          "HEAD"], capture_output=True, text=True).stdout.strip()
    workload = (f"--steps {FLAGS.steps}" if FLAGS.workload == "train" else
                f"--workload log_likelihood --images {FLAGS.images} "
                f"--num_samples {FLAGS.num_samples}")
    command = ("python benchmarks/ab_speed.py --baseline <checkout of "
               f"{baseline_commit or '?'}> --variants {','.join(FLAGS.variants)} --arms "
               f"{','.join(FLAGS.arms)} --rounds {FLAGS.rounds} {workload}")
    window = (f"{FLAGS.steps} training steps" if FLAGS.workload == "train" else
              f"L_{FLAGS.num_samples} of {FLAGS.images} images")
    lines = [f"# {FLAGS.workload.replace('_', ' ').capitalize()} speed, A/B", "",
             f"Command: `{command}`", "",
             f"Baseline checkout: {baseline_commit or 'none'}. "
             f"{FLAGS.rounds} alternating rounds, one window ({window}) per arm each; "
             "ratios per round against the first arm.", ""] + table(results) + [""]
    out = pathlib.Path(FLAGS.out)
    notes = ""
    if out.exists() and "<!-- notes -->" in out.read_text():
        notes = out.read_text()[out.read_text().index("<!-- notes -->"):]
    out.write_text("\n".join(lines) + ("\n" + notes if notes else ""))
    print("\n".join(lines))


if __name__ == "__main__":
    app.run(main)
