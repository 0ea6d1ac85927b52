"""tfladder's LadderVAE against a PyTorch implementation of the same model (issue 16).

python benchmarks/peer_lvae_torch.py [--rounds 9] [--steps 24] [--torch_threads 2,1]
    [--out benchmarks/results/peer_lvae_torch.md]

Needs the `benchmarks` extra (`pip install -e .[benchmarks]`, which brings
torch==2.13.0); the library itself never imports torch.

The baseline is written here, in the configuration of the public PyTorch MLP
Ladder VAE: latents 64-32-16-8-4 and hidden units 512-256-128-64-32 (bottom ->
top), one `Linear -> BatchNorm1d -> LeakyReLU(0.1)` layer per block, a
deterministic bottom-up path with mean and softplus-variance heads, a top-down
path that merges each bottom-up estimate with the prior p(z_l | z_{l+1}) by
precision weighting, an MLP decoder giving Bernoulli logits, analytic Gaussian
KL per layer, Adam 1e-3, batches of 256 MNIST digits binarized afresh per batch,
plain eager PyTorch (its own training step). It runs twice, with
`torch.set_num_threads(2)` (the baseline) and with 1 thread, which is faster
when other jobs load the machine; "best PyTorch" is the faster of the two in
each round.

Against it, `tfladder.LadderVAE` with the same layers, compiled the plain Keras
way (`model.compile(keras.optimizers.Adam(1e-3))`, warmed up by `model.fit`):
* "tfladder, plain compile": the library's defaults (several steps per
  compiled call, XLA-compiled optimizer update);
* "tfladder, Keras defaults": `compile(steps_per_execution=1,
  xla_optimizer_update=False)`, i.e. what a plain `keras.Model` would do;
* "tfladder, plain compile, mixed_bfloat16": the first under
  `keras.config.set_dtype_policy("mixed_bfloat16")`;
* "tfladder, compile(jit_compile=True)": the first with the whole training
  step XLA-compiled (Keras' "auto" leaves XLA off on CPUs), unless
  `--nojit_variant`;
* with `--steps_per_call_variant N`, the first with N steps per compiled call.

All train in alternating windows of `--steps` steps (the starting variant
rotates every round), each on its own persistent stream of batches, as `fit`
runs within an epoch (the Keras models' compiled train function on one
iterator, as `tfladder.benchmarking.interleaved_throughput` does). Rates are
examples per wall-clock second and per CPU-second of this process
(`time.process_time`); ratios are taken per round, against the PyTorch window
of the same round. The float32 and bfloat16 2048x2048 matmul peaks are
measured in the same run.
"""
import os
import pathlib
import statistics
import sys
import time

# libgomp's spin-waiting threads (PyTorch's default) collapse when the machine
# is oversubscribed: a 2-thread Linear+BatchNorm step measured 40x slower than
# with 1 thread under a load average of 8 on 2 cores. Sleeping waiters keep the
# baseline fair on a shared machine; `OMP_WAIT_POLICY=ACTIVE python ...` spins.
# (TensorFlow does not use OpenMP.) Must be set before torch is imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import keras
import numpy as np
import tensorflow as tf
import torch
from absl import app, flags
from torch import nn
from torch.nn import functional as F

import tfladder
from tfladder import benchmarking
from tfladder import data as data_lib

FLAGS = flags.FLAGS
flags.DEFINE_integer("rounds", 9, "Alternating windows per variant.")
flags.DEFINE_integer("steps", 24, "Training steps per window (a multiple of 8).")
flags.DEFINE_integer("warmup", 16, "Warm-up steps of each variant before timing.")
flags.DEFINE_list("torch_threads", ["2", "1"], "torch.set_num_threads of each PyTorch "
                  "variant; the first is the baseline of the ratios.")
flags.DEFINE_bool("jit_variant", True, "Also time compile(jit_compile=True).")
flags.DEFINE_integer("steps_per_call_variant", 0, "If > 0, also time "
                     "compile(steps_per_execution=N) (N divides --steps).")
flags.DEFINE_string("out", "benchmarks/results/peer_lvae_torch.md", "Markdown output.")

LATENTS = [64, 32, 16, 8, 4]
HIDDEN = [512, 256, 128, 64, 32]
BATCH = 256
IMAGE_SHAPE = (28, 28, 1)
PIXELS = 28 * 28
MIN_SCALE = 1e-3          # tfladder's floor on every latent standard deviation
PLAIN = "tfladder, plain compile"
KERAS_DEFAULTS = "tfladder, Keras defaults (steps_per_execution=1, Keras' optimizer update)"
MIXED = "tfladder, plain compile, mixed_bfloat16"
JIT = "tfladder, compile(jit_compile=True)"


# ------------------------------------------------------------ the PyTorch baseline
def block(n_in, n_out):
    """One hidden layer: Linear -> BatchNorm1d -> LeakyReLU(0.1)."""
    return nn.Sequential(nn.Linear(n_in, n_out), nn.BatchNorm1d(n_out), nn.LeakyReLU(0.1))


class GaussianHead(nn.Module):
    """mu = Linear(h), sigma^2 = Softplus(Linear(h)) (+ the floor MIN_SCALE^2)."""

    def __init__(self, n_in, n_out):
        super().__init__()
        self.mu = nn.Linear(n_in, n_out)
        self.var = nn.Linear(n_in, n_out)

    def forward(self, h):
        return self.mu(h), F.softplus(self.var(h)) + MIN_SCALE ** 2


def precision_weighted(mu_q, var_q, mu_p, var_p):
    """sigma^2 = 1 / (1/sigma_q^2 + 1/sigma_p^2), mu = (mu_q/sigma_q^2 + mu_p/sigma_p^2) sigma^2."""
    precision_q, precision_p = 1.0 / var_q, 1.0 / var_p
    var = 1.0 / (precision_q + precision_p)
    return (mu_q * precision_q + mu_p * precision_p) * var, var


def gaussian_kl(mu_q, var_q, mu_p, var_p):
    """KL(N(mu_q, var_q) || N(mu_p, var_p)) summed over units."""
    return 0.5 * (torch.log(var_p / var_q) + (var_q + (mu_q - mu_p) ** 2) / var_p - 1.0).sum(-1)


class TorchLadderVAE(nn.Module):
    def __init__(self, latents=LATENTS, hidden=HIDDEN, pixels=PIXELS):
        super().__init__()
        widths = [pixels] + list(hidden)
        self.up = nn.ModuleList(block(widths[l], widths[l + 1]) for l in range(len(hidden)))
        self.up_heads = nn.ModuleList(GaussianHead(hidden[l], latents[l])
                                      for l in range(len(latents)))
        # p(z_l | z_{l+1}) for l below the top.
        self.prior = nn.ModuleList(block(latents[l + 1], hidden[l])
                                   for l in range(len(latents) - 1))
        self.prior_heads = nn.ModuleList(GaussianHead(hidden[l], latents[l])
                                         for l in range(len(latents) - 1))
        self.decoder = nn.Sequential(block(latents[0], hidden[0]), nn.Linear(hidden[0], pixels))

    def forward(self, x):
        """Per-example ELBO terms: (log p(x | z_1), KL summed over layers)."""
        d, upward = x, []
        for up, head in zip(self.up, self.up_heads):
            d = up(d)
            upward.append(head(d))
        top = len(upward) - 1
        mu, var = upward[top]
        kl = gaussian_kl(mu, var, torch.zeros_like(mu), torch.ones_like(var))
        z = mu + var.sqrt() * torch.randn_like(mu)
        for l in reversed(range(top)):
            mu_p, var_p = self.prior_heads[l](self.prior[l](z))
            mu, var = precision_weighted(*upward[l], mu_p, var_p)
            kl = kl + gaussian_kl(mu, var, mu_p, var_p)
            z = mu + var.sqrt() * torch.randn_like(mu)
        logits = self.decoder(z)
        log_px = -F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(-1)
        return log_px, kl


class TorchTrainer:
    """Adam 1e-3 on -ELBO; each step binarizes its batch of grey digits afresh."""

    def __init__(self, images, threads, seed=0):
        self.threads = threads
        torch.manual_seed(seed)
        self.model = TorchLadderVAE()
        self.model.train()
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=1e-3)
        self.images = torch.from_numpy(images.reshape(len(images), -1).copy())
        self.position = 0

    def next_batch(self):
        if self.position + BATCH > len(self.images):
            self.position = 0
        grey = self.images[self.position:self.position + BATCH]
        self.position += BATCH
        return torch.bernoulli(grey)                     # dynamic binarization

    def step(self):
        log_px, kl = self.model(self.next_batch())
        loss = -(log_px - kl).mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return loss

    def run(self, steps):
        """Trains `steps` steps; returns the mean loss (-ELBO) over them."""
        torch.set_num_threads(self.threads)
        losses = [self.step().detach() for _ in range(steps)]
        return float(torch.stack(losses).mean())


# ------------------------------------------------------------------ tfladder side
def build_tfladder(**compile_kwargs):
    model = tfladder.LadderVAE(IMAGE_SHAPE, latent_dims=LATENTS, hidden_units=HIDDEN,
                               num_hidden_layers=1, batch_norm=True,
                               activation="leaky_relu", observation="bernoulli", seed=0)
    model.compile(keras.optimizers.Adam(1e-3), **compile_kwargs)
    return model


def dynamic_batches(images):
    """Endless batches of `BATCH` digits, each binarized afresh (x ~ Bernoulli(grey))."""
    return (tf.data.Dataset.from_tensor_slices(images).repeat()
            .batch(BATCH, drop_remainder=True)
            .map(lambda grey: tf.cast(tf.random.uniform(tf.shape(grey)) < grey, tf.float32),
                 num_parallel_calls=tf.data.AUTOTUNE)
            .prefetch(tf.data.AUTOTUNE))


class KerasRunner:
    """A compiled tfladder model warmed up by `fit`, then stepped on one iterator."""

    def __init__(self, model, images):
        self.model = model
        dataset = dynamic_batches(images)
        model.fit(dataset, steps_per_epoch=FLAGS.warmup, epochs=1, verbose=0)
        model.make_train_function()
        self.step_fn = model.train_function
        self.iterator = iter(dataset)
        self.run(model.steps_per_execution)              # the new iterator's start-up

    def reset(self):
        self.model.reset_metrics()

    def run(self, steps):
        """Trains `steps` steps; returns the mean loss (-ELBO) since the last `reset`."""
        per_call = self.model.steps_per_execution
        if steps % per_call:
            raise ValueError(f"--steps ({steps}) must be a multiple of {per_call}.")
        for _ in range(steps // per_call):
            logs = self.step_fn(self.iterator)
        return float(logs["loss"])                       # waits for the last step


def matmul_peak(dtype, size=2048, repeats=10, windows=5):
    """(FLOP/s, FLOP per CPU-second) of a size x size matmul in `dtype`
    (`benchmarking.matmul_peak`, which is float32 only, with a dtype)."""
    a = tf.cast(tf.random.normal([size, size]), dtype)
    b = tf.cast(tf.random.normal([size, size]), dtype)
    product = tf.function(lambda a, b: tf.reduce_sum(tf.cast(tf.matmul(a, b), tf.float32)))
    product(a, b).numpy()
    walls, cpus = [], []
    for _ in range(windows):
        started, cpu_started = time.perf_counter(), time.process_time()
        for _ in range(repeats):
            product(a, b).numpy()
        flops = 2.0 * size ** 3 * repeats
        walls.append(flops / (time.perf_counter() - started))
        cpus.append(flops / max(time.process_time() - cpu_started, 1e-9))
    return statistics.median(walls), statistics.median(cpus)


def count_parameters_torch(model):
    return sum(p.numel() for p in model.parameters())


def count_parameters_keras(model):
    return sum(int(np.prod(v.shape)) for v in model.trainable_variables)


def best_of(rates, labels):
    """Per round, the faster of `labels` on each clock (the strongest baseline)."""
    return {clock: [max(values) for values in zip(*(rates[l][clock] for l in labels))]
            for clock in ("wall", "cpu")}


def main(argv):
    del argv
    started = time.time()
    peak32, peak32_cpu = benchmarking.matmul_peak(cpu=True)
    peak16, peak16_cpu = matmul_peak(tf.bfloat16)
    print(f"matmul peaks: float32 {peak32 / 1e9:.1f}, bfloat16 {peak16 / 1e9:.1f} GFLOP/s",
          flush=True)

    # The 5,000 real MNIST digits that ship with the package (grey levels in [0, 1]).
    images = data_lib.load_arrays("mnist_offline", "train").astype(np.float32)

    runners = {}
    torch_labels = []
    for threads in (int(t) for t in FLAGS.torch_threads):
        label = f"PyTorch, {threads} thread{'s' * (threads > 1)} (eager, float32)"
        runners[label] = TorchTrainer(images, threads)
        runners[label].run(FLAGS.warmup)
        torch_labels.append(label)
    baseline = torch_labels[0]
    runners[PLAIN] = KerasRunner(build_tfladder(), images)
    runners[KERAS_DEFAULTS] = KerasRunner(
        build_tfladder(steps_per_execution=1, xla_optimizer_update=False), images)
    previous_policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        runners[MIXED] = KerasRunner(build_tfladder(), images)
    finally:
        keras.config.set_dtype_policy(previous_policy)
    if FLAGS.jit_variant:
        runners[JIT] = KerasRunner(build_tfladder(jit_compile=True), images)
    if FLAGS.steps_per_call_variant > 0:
        runners[f"tfladder, compile(steps_per_execution={FLAGS.steps_per_call_variant})"] = (
            KerasRunner(build_tfladder(steps_per_execution=FLAGS.steps_per_call_variant),
                        images))
    mixed = runners[MIXED].model
    mixed_dtypes = (f"{mixed.decoder.mlp.dense_layers[0].compute_dtype} compute, "
                    f"{mixed.trainable_variables[0].dtype} variables")
    tf_params = count_parameters_keras(runners[PLAIN].model)
    torch_params = count_parameters_torch(runners[baseline].model)
    per_call = {label: getattr(getattr(r, "model", None), "steps_per_execution", 1)
                for label, r in runners.items()}

    labels = list(runners)
    rates = {label: {"wall": [], "cpu": []} for label in labels}
    losses = {}
    work = FLAGS.steps * BATCH
    for round_index in range(FLAGS.rounds):
        order = labels[round_index % len(labels):] + labels[:round_index % len(labels)]
        for label in order:
            getattr(runners[label], "reset", lambda: None)()    # outside the window
            wall, cpu = time.perf_counter(), time.process_time()
            losses[label] = runners[label].run(FLAGS.steps)
            rates[label]["wall"].append(work / (time.perf_counter() - wall))
            rates[label]["cpu"].append(work / max(time.process_time() - cpu, 1e-9))
        print(f"round {round_index + 1}: " + ", ".join(
            f"{label}: {rates[label]['wall'][-1]:.0f}" for label in labels), flush=True)
    best = "best PyTorch"
    rates[best] = best_of(rates, torch_labels)

    load = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    lines = [
        "# tfladder LadderVAE against a PyTorch Ladder VAE (issue 16)", "",
        f"Command: `python {' '.join(sys.argv)}`", "",
        f"torch {torch.__version__} (OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}), "
        f"tensorflow {tf.__version__}, keras {keras.__version__}; {FLAGS.rounds} rounds of "
        f"alternating windows of {FLAGS.steps} training steps (batch {BATCH}), after "
        f"{FLAGS.warmup} warm-up steps each; {(time.time() - started) / 60:.1f} minutes in "
        f"all. Load average (1 / 5 / 15 min) at the end of the run: {load} on "
        f"{os.cpu_count()} cores.", "",
        f"Same model on both sides: {torch_params:,} trainable parameters in PyTorch, "
        f"{tf_params:,} in tfladder. Matmul peaks in this run (2048x2048): float32 "
        f"{peak32 / 1e9:.1f} GFLOP/s ({peak32_cpu / 1e9:.1f} per CPU-second), bfloat16 "
        f"{peak16 / 1e9:.1f} GFLOP/s ({peak16_cpu / 1e9:.1f} per CPU-second). The "
        f"mixed_bfloat16 model's decoder Dense layers: {mixed_dtypes}.", "",
        f"Ratios are per round (median, min-max over the {FLAGS.rounds} rounds): against "
        f"\"{baseline}\" (the baseline), and against the faster PyTorch window of the same "
        "round (\"best PyTorch\", the stricter comparison).", "",
        "| variant | steps per call | ex/s (median) | vs baseline | vs best PyTorch "
        "| ex per CPU-s (median) | vs baseline | vs best PyTorch | -ELBO, last window |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    summary = {}
    for label in labels:
        cells = [label, str(per_call[label])]
        for clock in ("wall", "cpu"):
            cells.append(f"{statistics.median(rates[label][clock]):.0f}")
            for reference in (baseline, best):
                ratio = benchmarking.ratio_summary(rates, label, reference, clock)
                summary[label, reference, clock] = ratio
                cells.append("{:.2f} ({:.2f}-{:.2f})".format(*ratio))
        cells.append(f"{losses[label]:.1f}")
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    out = pathlib.Path(FLAGS.out)
    marker = "<!-- notes -->"
    notes = ""
    if out.exists() and marker in out.read_text():
        notes = out.read_text()[out.read_text().index(marker):]
    out.write_text("\n".join(lines) + "\n" + notes)
    print("\n".join(lines))
    for key, value in summary.items():
        print(key, [round(v, 3) for v in value])


if __name__ == "__main__":
    app.run(main)
