"""The base class shared by every tfladder family.

A family implements three things on top of `HierarchicalModel`:

* `infer(x, seed, training, use_mean)` -> `InferencePass`: one stochastic pass
  through inference and generative networks, giving for every latent layer the
  posterior, the prior it is measured against, the sample and its KL term;
* `decode(z)`: latents (bottom -> top) -> distribution over x;
* `generate(noise)`: per-layer standard-normal noise -> distribution over x.

Everything else (ELBO, KL per layer, importance-weighted bound, sampling,
input validation, `train_step` / `test_step` with warm-up, free bits and
importance-weighted training) lives here once.

#### Mathematical details

With latent layers l = 1 (nearest x) ... L (top):

```none
log w(x, z) = log p(x | z) + sum_l [log p(z_l | .) - log q(z_l | .)]
ELBO(x)     = E_q[log p(x | z)] - sum_l KL_l                        (distortion, rate)
L_K(x)      = E[log 1/K sum_k w(x, z_k)],  z_k ~ q(z | x)            (Burda et al. 2016)
loss(x)     = -E_q[log p(x | z)] + beta * sum_l KL_l,  beta = min(1, step / warmup_steps)
```

`KL_l` is analytic where q and p condition on the same sample (LVAE, VLAE,
top-down VAE) and the single-sample estimate `log q - log p` otherwise (stacked
HVAE). Free bits (Kingma et al. 2016) replace `KL_l` by `max(free_bits, KL_l)`
averaged over the batch.
"""
import inspect
import math
import random
from typing import NamedTuple

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfladder import gaussian, replicas
from tfladder.checks import (MAX_SEED, check_non_negative_int, check_positive_int,  # noqa: F401
                             check_seed)
from tfladder.layers.observations import get_observation
from tfladder.models.keras_api import KerasAPI

tfd = tfp.distributions

_TRAIN_SALT = 0
_TEST_SALT = 1


class LayerTerms(NamedTuple):
    """What one inference pass yields for one latent layer."""
    posterior: tfd.Normal   # q(z_l | .), batch shape [B, d_l]
    prior: tfd.Normal       # p(z_l | z_{l+1}) or N(0, I), batch shape [B, d_l]
    z: tf.Tensor            # [B, d_l] the sample used further on
    kl: tf.Tensor           # [B] KL term of this layer, in nats


class InferencePass(NamedTuple):
    """One pass x -> z -> p(x | z)."""
    layers: list            # list[LayerTerms], bottom -> top
    likelihood: object      # distribution over x; log_prob(x) -> [B]


class ElboTerms(NamedTuple):
    """Per-example ELBO decomposition, in nats."""
    elbo: tf.Tensor          # [B]
    distortion: tf.Tensor    # [B]  -E_q log p(x | z)
    rate: tf.Tensor          # [B]  sum of kl_per_layer
    kl_per_layer: tf.Tensor  # [B, L] bottom -> top


class HierarchicalModel(KerasAPI, keras.Model):
    """Base class of all tfladder models (see the module docstring).

    Args:
      image_shape: `(H, W, C)` of the images.
      latent_dims: Sizes of the latent layers, bottom -> top.
      observation: Name or `{"name": ..., **kwargs}` of the observation model
        (`"bernoulli"`, `"gaussian"`, `"logistic_mixture"`).
      kl_warmup_steps: Steps over which beta rises linearly from 0 to 1
        (0: no warm-up). `tfladder.training` converts epochs to steps.
      free_bits: Minimum KL per layer, in nats, averaged over the batch
        (0: off).
      num_importance_samples: K > 1 trains on the importance-weighted bound
        L_K instead of the (warmed-up) ELBO.
      seed: Integer seed of every random draw the model makes in training and
        evaluation; a random one is chosen (and saved in the config) if None.
    """

    supports_likelihood_head = False   # families that build the head for `extra_params`
    likelihood_head = None             # the head itself, where a family builds one

    def __init__(self, image_shape, latent_dims, observation="bernoulli",
                 kl_warmup_steps=0, free_bits=0.0, num_importance_samples=1,
                 seed=None, **kwargs):
        super().__init__(**kwargs)
        self.image_shape = _check_image_shape(image_shape)
        self.latent_dims = _check_latent_dims(latent_dims)
        self.observation_spec = observation if isinstance(observation, str) else dict(observation)
        self.kl_warmup_steps = check_non_negative_int("kl_warmup_steps", kl_warmup_steps)
        if not free_bits >= 0:
            raise ValueError(f"free_bits must be >= 0 nats, got {free_bits!r}.")
        self.free_bits = float(free_bits)
        self.num_importance_samples = check_positive_int(
            "num_importance_samples", num_importance_samples)
        self.seed = check_seed("seed", seed) if seed is not None else random.randrange(2 ** 31)
        self.xla_optimizer_update = True    # set by `compile`
        self.observation = get_observation(self.observation_spec)
        self.params_per_channel = self.observation.params_per_channel
        self.extra_params = self.observation.extra_params(self.image_shape[-1])
        if self.extra_params and not self.supports_likelihood_head:
            raise ValueError(f"observation {self.observation_spec!r} needs a likelihood head "
                             f"(pixel_scales / channel_coupling), which {type(self).__name__} "
                             "does not have; use it with VariationalLadderAutoencoder.")
        self._trackers = {name: keras.metrics.Mean(name=name) for name in self.metric_names}
        # Count (not average) of updates skipped in the epoch for a non-finite loss or gradient.
        self._trackers["skipped_updates"] = keras.metrics.Sum(name="skipped_updates")
        # Under whole-step XLA (`jit_compile`), which drops graph assertions, the
        # compiled steps count bad batches here instead (`_raise_for_bad_batches`).
        self._bad_batches = {"support": keras.metrics.Sum(name="bad_batches_support"),
                             "finite": keras.metrics.Sum(name="bad_batches_finite")}

    # ------------------------------------------------------------------ API
    @property
    def num_layers(self):
        return len(self.latent_dims)

    @property
    def metric_names(self):
        return (["loss", "elbo", "distortion", "rate", "beta", "skipped_updates"]
                + [f"kl_{l + 1}" for l in range(len(self.latent_dims))])

    @property
    def metrics(self):
        # The trackers, each marked "up" (elbo) or "down" for Keras' monitor
        # callbacks: EarlyStopping(monitor="val_elbo") needs no mode="max".
        return self._metrics_with_directions(self._trackers.values())

    def infer(self, x, seed, training=False, use_mean=False, repeats=1):
        """One pass x -> z -> p(x | z); see the module docstring.

        With `repeats` = K > 1 the pass draws K posterior samples per image: the
        deterministic bottom-up features are computed once per image and
        repeated sample-major (`repeat_rows`), and the stochastic layers and
        the likelihood have K * B rows, row k * B + b belonging to image b.
        The noise is that of a pass over `repeat_rows(x, K)`.
        """
        raise NotImplementedError

    def decode(self, z, training=False):
        """Latents `[z_1, ..., z_L]` (bottom -> top) -> distribution over x."""
        raise NotImplementedError

    def generate(self, noise, training=False):
        """Per-layer N(0, I) noise (bottom -> top) -> distribution over x."""
        raise NotImplementedError

    def encode(self, x, seed=None):
        """Posterior distributions `q(z_l | .)`, bottom -> top.

        Upper posteriors of the hierarchical families condition on samples
        of other layers; with `seed=None` they condition on posterior means
        (deterministic), with a seed on reparameterised samples.
        """
        x = self.prepare_inputs(x)
        inference = self.infer(x, _as_seed(seed, self.seed), use_mean=seed is None)
        return [layer.posterior for layer in inference.layers]

    def sample(self, num_samples, seed=0, mean=True):
        """Ancestral samples from the prior: `[num_samples, H, W, C]` images.

        Args:
          num_samples: Number of images.
          seed: Integer seed (stateless: the same seed gives the same images).
          mean: Return the likelihood mean p(x | z) (the usual way to show a
            VAE sample) instead of a draw from it.

        Raises:
          ValueError: `num_samples` outside [1, `max_samples`] (the images of
            one call are held in memory: at most 2**28 pixel values, 1 GiB).
        """
        num_samples = check_positive_int("num_samples", num_samples)
        if num_samples > self.max_samples:
            raise ValueError(f"num_samples must be at most {self.max_samples} for "
                             f"{self.image_shape} images (1 GiB of pixels per call), got "
                             f"{num_samples}; draw them in several calls.")
        return self.sample_from_seed(num_samples, _as_seed(seed, 0), mean=mean)

    @property
    def max_samples(self):
        """The most images one `sample` call draws (2**28 pixel values, 1 GiB)."""
        return MAX_SAMPLE_VALUES // int(np.prod(self.image_shape))

    def sample_from_seed(self, num_samples, seed, mean=True):
        """`sample` for a `[2]` int32 seed tensor (graph friendly, used by exports)."""
        noise_seed, pixel_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
        likelihood = self.generate(self.prior_noise(num_samples, noise_seed))
        if mean:
            return likelihood.mean()
        return likelihood.sample(seed=pixel_seed)

    def prior_noise(self, num_samples, seed=0):
        """Standard-normal noise, one `[num_samples, d_l]` tensor per layer.

        `seed` is an int or a `[2]` int32 tensor (stateless: same seed, same noise).
        """
        seeds = tf.unstack(tf.random.experimental.stateless_split(
            _as_seed(seed, 0), self.num_layers))
        return [tf.random.stateless_normal([num_samples, dim], s)
                for dim, s in zip(self.latent_dims, seeds)]

    def elbo_terms(self, x, seed=None, training=False):
        """`ElboTerms` (elbo, distortion, rate, kl_per_layer), all per example."""
        x = self.prepare_inputs(x)
        return self._elbo_terms(x, _as_seed(seed, self.seed), training)

    def elbo(self, x, seed=None):
        """Per-example evidence lower bound L_1, in nats: `[B]`."""
        return self.elbo_terms(x, seed).elbo

    def kl_per_layer(self, x, seed=None):
        """Per-example KL of each latent layer, in nats: `[B, L]` bottom -> top."""
        return self.elbo_terms(x, seed).kl_per_layer

    def log_likelihood(self, x, num_samples=5000, seed=None, max_batch=None):
        """Importance-weighted estimate L_K of log p(x), in nats: `[B]`.

        The K samples are drawn in chunks so that memory stays bounded
        (`max_batch` images per forward pass; default 100 * 784 pixels per
        chunk x batch, roughly) and reduced with a running log-sum-exp.
        L_1 = ELBO <= L_K <= L_{K+1} <= log p(x) in expectation.

        Args:
          x: Images `[B, H, W, C]`.
          num_samples: K >= 1.
          seed: Integer seed.
          max_batch: Largest number of (image, sample) pairs per forward pass.

        Raises:
          ValueError: `num_samples` outside [1, `MAX_IMPORTANCE_SAMPLES`].
        """
        num_samples = check_positive_int("num_samples", num_samples)
        if num_samples > MAX_IMPORTANCE_SAMPLES:
            raise ValueError(f"num_samples must be at most {MAX_IMPORTANCE_SAMPLES:,} "
                             f"importance samples per image, got {num_samples:,}.")
        x = self.prepare_inputs(x)
        batch = int(x.shape[0])
        if max_batch is None:
            max_batch = max(batch, 4096 * 784 // int(np.prod(self.image_shape)))
        chunk = max(1, min(num_samples, int(max_batch) // batch))
        seed = _as_seed(seed, self.seed)
        running = tf.fill([batch], -np.inf)
        for start in range(0, num_samples, chunk):
            size = min(chunk, num_samples - start)
            chunk_seed = tf.random.experimental.stateless_fold_in(seed, start)
            log_w = self._chunk_log_weights(x, chunk_seed, tf.constant(size))
            running = tf.reduce_logsumexp(
                tf.stack([running, tf.reduce_logsumexp(log_w, axis=0)]), axis=0)
        return running - math.log(num_samples)

    # ------------------------------------------------------ the math, once
    def log_weights(self, x, seed, training=False, repeats=1):
        """`log w = log p(x | z) + sum_l [log p(z_l | .) - log q(z_l | .)]`: `[B]`.

        With `repeats` = K: `[K * B]` weights of K samples per image, sample-major
        (see `infer`).
        """
        copies = repeat_rows(x, repeats)
        if "repeats" in inspect.signature(self.infer).parameters:
            inference = self.infer(x, seed, training=training, repeats=repeats)
        else:   # A subclass whose infer predates `repeats`: a pass over the copies.
            inference = self.infer(copies, seed, training=training)
        log_w = inference.likelihood.log_prob(copies)
        for layer in inference.layers:
            log_w += tf.reduce_sum(layer.prior.log_prob(layer.z)
                                   - layer.posterior.log_prob(layer.z), axis=-1)
        return log_w

    @tf.function(reduce_retracing=True)
    def _chunk_log_weights(self, x, seed, num_samples):
        """`[num_samples, B]` log weights of `num_samples` samples per image.

        The bottom-up pass runs once per image (`infer(repeats=...)`), not once
        per sample: for lvae_mnist about 1.6x the samples per second of a pass
        over `num_samples` copies of `x` (benchmarks/results/throughput*.md).
        """
        batch = tf.shape(x)[0]
        log_w = self.log_weights(x, seed, repeats=num_samples)
        return tf.reshape(log_w, [num_samples, batch])

    def _elbo_terms(self, x, seed, training=False):
        inference = self.infer(x, seed, training=training)
        distortion = -inference.likelihood.log_prob(x)
        kl = tf.stack([layer.kl for layer in inference.layers], axis=-1)   # [B, L]
        rate = tf.reduce_sum(kl, axis=-1)
        return ElboTerms(elbo=-(distortion + rate), distortion=distortion, rate=rate,
                         kl_per_layer=kl)

    def beta(self, step):
        """KL weight of the warm-up at optimizer step `step` (Sonderby et al. sec. 2.3)."""
        if self.kl_warmup_steps == 0:
            return tf.constant(1.0)
        return tf.minimum(1.0, tf.cast(step, tf.float32) / float(self.kl_warmup_steps))

    # ------------------------------------------------------------ training
    def _step_seed(self, salt):
        """A stateless seed per (model seed, step): reproducible after a resume.

        Every replica gets the same seed; `batch_noise` gives each its own rows
        of the global batch's noise.
        """
        step = self.optimizer.iterations if self.optimizer is not None else 0
        return tf.random.experimental.stateless_fold_in(
            tf.constant([self.seed, salt], tf.int32), tf.cast(step, tf.int32))

    def _loss_terms(self, x, seed, beta, training):
        """Per-example loss pieces: (summed loss over the local batch, ElboTerms)."""
        terms = self._elbo_terms(x, seed, training=training)
        local_count = tf.cast(tf.shape(x)[0], tf.float32)
        if self.num_importance_samples > 1:
            k = self.num_importance_samples
            seeds = tf.random.experimental.stateless_split(seed, k)
            log_w = tf.stack([self.log_weights(x, seeds[i], training=training)
                              for i in range(k)])
            loss_sum = -tf.reduce_sum(gaussian.log_mean_exp(log_w, axis=0))
        elif self.free_bits > 0:
            kl_mean = tf.reduce_sum(terms.kl_per_layer, axis=0) / tf.maximum(local_count, 1.0)
            kl_sum = local_count * tf.reduce_sum(tf.maximum(kl_mean, self.free_bits))
            loss_sum = tf.reduce_sum(terms.distortion) + beta * kl_sum
        else:
            loss_sum = tf.reduce_sum(terms.distortion + beta * terms.rate)
        return loss_sum, terms

    def compile(self, optimizer="adam", xla_optimizer_update=True, **kwargs):
        """`keras.Model.compile`, fast by default, then builds the model and the
        optimizer so that every variable exists before a checkpoint is restored.

        Defaults that differ from Keras' (each can be set as usual):
        `steps_per_execution=DEFAULT_STEPS_PER_EXECUTION` (8 training steps per
        call of the compiled loop, 1 under a multi-worker strategy): Keras then
        runs batch-level callbacks (`on_train_batch_end`, progress-bar updates,
        `TerminateOnNaN`) once per call instead of once per step; epoch-level
        callbacks are unaffected. The optimizer update is XLA-compiled.

        Args:
          xla_optimizer_update: Compile the optimizer update with XLA (one fused
            pass per variable instead of Keras' ~27 small ops; see
            `tfladder.replicas.apply_if`). False keeps Keras' own update.
        """
        if kwargs.get("steps_per_execution") is None:
            multi_worker = isinstance(tf.distribute.get_strategy(),
                                      tf.distribute.MultiWorkerMirroredStrategy)
            kwargs["steps_per_execution"] = 1 if multi_worker else DEFAULT_STEPS_PER_EXECUTION
        for argument in ("loss", "loss_weights", "metrics", "weighted_metrics"):
            if kwargs.get(argument) is not None:
                raise ValueError(f"compile({argument}=...) is not supported: tfladder models "
                                 "train on their own objective (the ELBO, or L_K) and report "
                                 "loss, elbo, distortion, rate and kl_<l> themselves.")
        self.xla_optimizer_update = bool(xla_optimizer_update)
        super().compile(optimizer=optimizer, **kwargs)
        self.build()
        self.optimizer.build(self.trainable_variables)

    def compile_from_config(self, config):
        """Recompiles a model loaded from a `.keras` file (our `compile` is custom)."""
        self.compile(**keras.saving.deserialize_keras_object(config))

    def _support_message(self):
        return ("x is outside the support of the likelihood: expected "
                f"{self.observation.support}")

    def _xla_step(self):
        """True inside a step that Keras compiles with XLA (`jit_compile`)."""
        return bool(self.jit_compile) and not self.run_eagerly

    def _count_bad_batches(self, x, finite=True):
        """The XLA steps' input check: counts a batch outside the likelihood's
        support (and, with `finite=True`, one with NaN or Inf values); returns
        whether the batch is good."""
        is_finite = tf.math.is_finite(x)
        in_support = self.observation.in_support(tf.where(is_finite, x, tf.zeros_like(x)))
        all_finite = tf.reduce_all(is_finite) if finite else tf.constant(True)
        self._bad_batches["support"].update_state(1.0 - tf.cast(in_support, tf.float32))
        self._bad_batches["finite"].update_state(1.0 - tf.cast(all_finite, tf.float32))
        return tf.logical_and(in_support, all_finite)

    def _raise_for_bad_batches(self):
        """After a compiled XLA call: raises the message the graph assertions
        would have raised if any batch of the call was bad (and starts the
        counts afresh, so the model can be used again with good data)."""
        counts = dict(zip(self._bad_batches, tf.stack(      # one read from the device
            [metric.result() for metric in self._bad_batches.values()]).numpy()))
        if not any(counts.values()):
            return
        for metric in self._bad_batches.values():
            metric.reset_state()
        if counts["support"]:
            raise ValueError(self._support_message())
        raise ValueError("x contains NaN or Inf values; expected finite pixels")

    def _checked(self, function):
        """`function` (a compiled train / test / predict function), followed by
        the bad-batch check when the steps are XLA-compiled."""
        if not self._xla_step():
            return function

        def checked(*args, **kwargs):
            outputs = function(*args, **kwargs)
            self._raise_for_bad_batches()
            return outputs

        return checked

    def make_train_function(self, force=False):
        if self.train_function is not None and not force:
            return self.train_function
        super().make_train_function(force=force)
        self.train_function = self._checked(self.train_function)
        return self.train_function

    def make_test_function(self, force=False):
        if self.test_function is not None and not force:
            return self.test_function
        super().make_test_function(force=force)
        self.test_function = self._checked(self.test_function)
        return self.test_function

    def make_predict_function(self, force=False):
        if self.predict_function is not None and not force:
            return self.predict_function
        super().make_predict_function(force=force)
        self.predict_function = self._checked(self.predict_function)
        return self.predict_function

    def assert_valid_values(self, x, finite=True):
        """In a graph (`fit`, `evaluate`, `predict`): asserts that `x` is in the
        likelihood's support and, with `finite=True`, finite, naming what was
        expected (eagerly, `prepare_inputs` has checked the values already).

        `train_step` passes `finite=False`: a NaN or Inf batch there is the
        guarded step's business (skipped and counted in `skipped_updates`,
        `StopOnRepeatedSkips` stops a run of them); the support is checked on
        the finite values.
        """
        if tf.executing_eagerly():
            return x
        support = self._support_message()
        is_finite = tf.math.is_finite(x)
        checks = [tf.debugging.Assert(
            self.observation.in_support(tf.where(is_finite, x, tf.zeros_like(x))), [support])]
        if finite:
            checks.append(tf.debugging.Assert(
                tf.reduce_all(is_finite), ["x contains NaN or Inf values; expected finite pixels"]))
        with tf.control_dependencies(checks):
            return tf.identity(x)

    def train_step(self, data):
        """One guarded update (vdvae's habit).

        The loss is `sum(per-example loss) / global batch size`, so that the
        replicas' summed gradients equal single-device gradients. An update whose
        loss or gradient is not finite on any replica is skipped everywhere and
        counted in `skipped_updates`.
        """
        x = self.prepare_inputs(_unpack(data))
        # Graph assertions, or under XLA (which drops them) a count of bad
        # batches that the compiled function's caller turns into the same error.
        good = self._count_bad_batches(x, finite=False) if self._xla_step() else None
        if good is None:
            x = self.assert_valid_values(x, finite=False)
        beta = self.beta(self.optimizer.iterations)
        seed = self._step_seed(_TRAIN_SALT)
        global_count = replicas.global_count(x)
        with tf.GradientTape() as tape:
            loss_sum, terms = self._loss_terms(x, seed, beta, training=True)
            loss = loss_sum / global_count
            # mixed_float16: Keras wraps the optimizer in a LossScaleOptimizer.
            scaled_loss = self.optimizer.scale_loss(loss)
        variables = self.trainable_variables
        grads = tape.gradient(scaled_loss, variables)
        finite = tf.logical_and(tf.math.is_finite(loss),
                                tf.math.is_finite(tf.linalg.global_norm(grads)))
        if good is not None:          # no update from a batch outside the support
            finite = tf.logical_and(finite, good)
        finite = replicas.all_replicas(finite)
        if isinstance(self.optimizer, keras.optimizers.LossScaleOptimizer):
            # It unscales, skips non-finite steps itself and lowers its scale.
            self.optimizer.apply(grads, variables)
        else:
            replicas.apply_if(finite, self.optimizer, grads, variables,
                              xla=self.xla_optimizer_update)
        self._trackers["skipped_updates"].update_state(1.0 - tf.cast(finite, tf.float32))
        return self._update_trackers(loss_sum, terms, beta)

    def test_step(self, data):
        x = self.prepare_inputs(_unpack(data))
        if self._xla_step():
            self._count_bad_batches(x)
        else:
            x = self.assert_valid_values(x)
        loss_sum, terms = self._loss_terms(x, self._step_seed(_TEST_SALT), tf.constant(1.0),
                                       training=False)
        return self._update_trackers(loss_sum, terms, tf.constant(1.0))

    def predict_step(self, data):
        """`keras.Model.predict_step` (`call` on the batch), with the XLA input check."""
        x = _unpack(data)
        if self._xla_step():
            self._count_bad_batches(self.prepare_inputs(x))
        return self(x, training=False)

    def _update_trackers(self, loss_sum, terms, beta):
        count = tf.cast(tf.shape(terms.elbo)[0], tf.float32)
        self._trackers["loss"].update_state(loss_sum / tf.maximum(count, 1.0), sample_weight=count)
        self._trackers["elbo"].update_state(terms.elbo)
        self._trackers["distortion"].update_state(terms.distortion)
        self._trackers["rate"].update_state(terms.rate)
        self._trackers["beta"].update_state(beta)
        for l in range(self.num_layers):
            self._trackers[f"kl_{l + 1}"].update_state(terms.kl_per_layer[:, l])
        results = {name: tracker.result() for name, tracker in self._trackers.items()}
        if isinstance(tf.distribute.get_strategy(), tf.distribute.MultiWorkerMirroredStrategy):
            # Keras 3 multi-worker fit cannot reduce scalar logs (keras-team/keras#20585).
            results = {name: tf.reshape(value, [1]) for name, value in results.items()}
        return results

    def call(self, x, training=False):
        """Per-example ELBO terms as a dict of tensors (usable by `predict`).

        The input is checked like `elbo`'s: rank, image shape and dtype always,
        values (finite, in the likelihood's support) eagerly, and inside a
        compiled `predict` by graph assertions.
        """
        x = self.prepare_inputs(x)
        x = self.assert_valid_values(x)
        terms = self._elbo_terms(x, tf.constant([self.seed, 2], tf.int32), training=training)
        return terms._asdict()

    def build(self, input_shape=None):
        """Creates every weight by tracing one pass on a symbolic batch `[None, H, W, C]`
        (so that `summary()` shows the batch dimension as None). Under a
        `tf.distribute` strategy, whose mirrored variables cannot be created
        inside a traced function, one eager pass on a batch of two does it."""
        if self.built:
            return

        def trace(x):
            seed = tf.constant([0, 0], tf.int32)
            self.infer(x, seed)
            self.generate(self.prior_noise(tf.shape(x)[0], seed))

        if tf.distribute.has_strategy():
            trace(tf.zeros((2,) + self.image_shape))
        else:
            tf.function(trace, autograph=False).get_concrete_function(
                tf.TensorSpec((None,) + self.image_shape, tf.float32))
        self.built = True

    def load_weights(self, filepath, *args, **kwargs):
        """Builds the model (creating every weight) before loading `filepath`."""
        self.build()
        return super().load_weights(filepath, *args, **kwargs)

    def get_build_config(self):
        return {"image_shape": list(self.image_shape)}

    def build_from_config(self, config):
        self.build()

    # ---------------------------------------------------------- validation
    def cast_inputs(self, x):
        """float32 in [0, 1]. uint8 images are divided by 255, except a batch that
        holds only 0 and 1, which is binary (as the `.npz` loader reads it)."""
        x = tf.convert_to_tensor(x)
        if x.dtype == tf.uint8:
            white = tf.where(tf.reduce_max(x) <= 1, 1.0, 255.0)
            return tf.cast(x, tf.float32) / white
        return tf.cast(x, tf.float32)

    def prepare_inputs(self, x):
        """Validates images and returns them as float32 in [0, 1].

        Static properties (dtype, rank, image size, empty batch) are always
        checked; values (NaN / Inf, the likelihood's support) are checked when
        running eagerly.

        Raises:
          ValueError: naming what was expected.
        """
        if isinstance(x, tf.data.Dataset):
            raise ValueError("x must be an array of images [B, H, W, C], got a tf.data.Dataset; "
                             "pass datasets to fit / evaluate / predict, or concatenate them "
                             "(tfladder.evaluation.as_batches).")
        if isinstance(x, (tf.RaggedTensor, tf.SparseTensor)):
            raise ValueError(f"x must be a dense array of images [B, H, W, C], got a "
                             f"{type(x).__name__}.")
        if isinstance(x, (list, tuple)):
            try:
                x = np.asarray(x)
            except ValueError as error:   # ragged nesting
                raise ValueError(f"x must be an array of images [B, H, W, C]; a nested list "
                                 f"that is not rectangular was given ({error}).") from None
        if not (hasattr(x, "dtype") and hasattr(x, "shape")) or isinstance(x, (str, bytes)):
            raise ValueError(f"x must be an array of images [B, H, W, C] (NumPy or tensor), "
                             f"got {type(x).__name__}.")
        try:
            dtype = tf.as_dtype(x.dtype)
        except TypeError:
            raise ValueError(f"x must be float in [0, 1] or uint8 in [0, 255], got dtype "
                             f"{x.dtype}.") from None
        if not (dtype.is_floating or dtype == tf.uint8):
            raise ValueError(f"x must be float in [0, 1] or uint8 in [0, 255], got dtype "
                             f"{dtype.name}.")
        shape = tuple(x.shape)
        if len(shape) != 4:
            raise ValueError(
                f"x must have rank 4 [batch, height, width, channels] = [B, "
                f"{', '.join(map(str, self.image_shape))}], got shape {shape}"
                + (" (add a channel axis with x[..., None])" if len(shape) == 3 else "") + ".")
        if tuple(shape[1:]) != self.image_shape:
            raise ValueError(f"x must have image shape {self.image_shape} (height, width, "
                             f"channels), got {tuple(shape[1:])}.")
        if shape[0] == 0:
            raise ValueError("x is an empty batch; expected at least one image.")
        x = self.cast_inputs(x)
        if not self.built:
            self.build()
        if tf.executing_eagerly():
            values = x.numpy()
            if not np.all(np.isfinite(values)):
                raise ValueError("x contains NaN or Inf values; expected finite pixels.")
            error = self.observation.support_error(values)
            if error is not None:
                raise ValueError(f"x is outside the support of the "
                                 f"{type(self.observation).__name__} likelihood: expected {error}.")
        return x

    # ------------------------------------------------------- serialization
    def get_config(self):
        return {
            "image_shape": list(self.image_shape),
            "latent_dims": list(self.latent_dims),
            "observation": self.observation_spec,
            "kl_warmup_steps": self.kl_warmup_steps,
            "free_bits": self.free_bits,
            "num_importance_samples": self.num_importance_samples,
            "seed": self.seed,
            "name": self.name,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)


# ---------------------------------------------------------------- helpers
def _unpack(data):
    """Accepts `x` or `(x,)` / `(x, y)` batches; returns x.

    Raises:
      ValueError: for sample weights (`fit(..., sample_weight=w)`), which the
        ELBO objective does not use.
    """
    if isinstance(data, (tuple, list)):
        if len(data) > 2 and data[2] is not None:
            raise ValueError("sample_weight is not supported: tfladder models train on the "
                             "unweighted ELBO of every image; repeat or drop images instead.")
        return data[0]
    return data


DEFAULT_STEPS_PER_EXECUTION = 8     # `compile`'s default (Keras' is 1)
MAX_SAMPLE_VALUES = 2**28           # pixel values of one `sample` call (1 GiB of float32)
MAX_IMPORTANCE_SAMPLES = 1_000_000  # K of L_K (memory is chunked; this bounds the time)


def _as_seed(seed, default):
    """An int, a `[2]` tensor or None -> a `[2]` int64 stateless seed."""
    if seed is None:
        seed = default
    if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool):
        return tf.constant([check_seed("seed", seed), 0], tf.int32)
    if isinstance(seed, (bool, float, str, bytes)):
        raise ValueError(f"seed must be an integer in [0, 2**31) or a [2] int32 tensor, got "
                         f"{seed!r}.")
    return tf.cast(seed, tf.int32)


def _check_image_shape(image_shape):
    shape = tuple(image_shape)
    if len(shape) != 3 or not all(isinstance(d, (int, np.integer)) and d > 0 for d in shape):
        raise ValueError(f"image_shape must be (height, width, channels) of positive "
                         f"integers, got {image_shape!r}.")
    return tuple(int(d) for d in shape)


def _check_latent_dims(latent_dims):
    if isinstance(latent_dims, (int, np.integer)):
        latent_dims = [latent_dims]
    dims = list(latent_dims)
    if not dims:
        raise ValueError("latent_dims must list at least one latent layer size.")
    return [check_positive_int("latent_dims[i]", d) for d in dims]


def repeat_rows(tensor, repeats):
    """`repeats` copies of `tensor` stacked along the batch axis, sample-major:
    row k * B + b is row b (`repeats` may be a scalar tensor)."""
    if isinstance(repeats, int) and repeats == 1:
        return tensor
    multiples = tf.concat([tf.reshape(tf.cast(repeats, tf.int32), [1]),
                           tf.ones([tf.rank(tensor) - 1], tf.int32)], axis=0)
    return tf.tile(tensor, multiples)


def repeat_normal(distribution, repeats):
    """A `tfd.Normal` whose `loc` and `scale` are `repeat_rows` of `distribution`'s."""
    if isinstance(repeats, int) and repeats == 1:
        return distribution   # the same object, not a copy
    return tfd.Normal(repeat_rows(distribution.loc, repeats),
                      repeat_rows(distribution.scale, repeats))


def standard_normal(batch, dim):
    """The `N(0, I)` prior with batch shape `[batch, dim]`."""
    return tfd.Normal(tf.zeros([batch, dim]), tf.ones([batch, dim]))


def draw(distribution, seed, use_mean):
    """A reparameterised sample `loc + scale * eps` of a Normal, or its mean.

    `eps` comes from `batch_noise`, so a global batch split over replicas gets
    exactly the noise that one device would draw for it.
    """
    if use_mean:
        return distribution.loc
    return distribution.loc + distribution.scale * batch_noise(seed, tf.shape(distribution.loc))


def batch_noise(seed, shape):
    """Standard-normal noise of `shape` = `[local_batch, ...]` for this replica.

    The noise of the whole global batch is drawn from `seed` and each replica
    takes its own rows: replicas get different noise (never the same draw,
    PITFALLS.md), and the result does not depend on the number of replicas.
    Replicas are assumed to hold equal shares of the batch (as with
    `drop_remainder=True`); a ragged last batch still gets valid noise.
    """
    replica = tf.distribute.get_replica_context()
    if replica is None or replica.num_replicas_in_sync == 1:
        return tf.random.stateless_normal(shape, seed)
    local = shape[0]
    total = tf.concat([[local * replica.num_replicas_in_sync], shape[1:]], axis=0)
    start = tf.cast(replica.replica_id_in_sync_group, tf.int32) * local
    return tf.random.stateless_normal(total, seed)[start:start + local]


def layer_seeds(seed, num_layers):
    """`num_layers + 1` independent stateless seeds (one per layer, one for x)."""
    return tf.unstack(tf.random.experimental.stateless_split(seed, num_layers + 1))


def per_layer(name, value, num_layers):
    """An int for every layer, or a list with one entry per layer."""
    if isinstance(value, (int, np.integer)):
        return [int(value)] * num_layers
    values = [int(v) for v in value]
    if len(values) != num_layers:
        raise ValueError(f"{name} must have one entry per latent layer ({num_layers}), "
                         f"got {len(values)}: {values}.")
    return values


def check_noise(noise, latent_dims):
    """Raises a ValueError unless `noise` is one `[B, d_l]` tensor per layer."""
    if len(noise) != len(latent_dims):
        raise ValueError(f"noise must be a list of {len(latent_dims)} tensors (one per latent "
                         f"layer, bottom -> top), got {len(noise)}.")
    for l, (eps, dim) in enumerate(zip(noise, latent_dims)):
        if len(eps.shape) != 2 or eps.shape[-1] != dim:
            raise ValueError(f"noise[{l}] must have shape [batch, {dim}], got "
                             f"{tuple(eps.shape)}.")
