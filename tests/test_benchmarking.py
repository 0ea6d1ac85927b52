"""Benchmark helpers: the FLOP count used for "fraction of peak", the op-level profile
and interleaved rate comparisons (structure only: no timing assertions)."""
import pathlib

import keras
import numpy as np
import pytest

import tfladder
from tfladder import benchmarking


def test_train_step_flops_cover_forward_and_backward_matmuls():
    model = tfladder.VAE((28, 28, 1), latent_dims=[8], hidden_units=64, num_hidden_layers=1,
                         seed=0)
    model.compile(keras.optimizers.Adam(1e-3))
    batch = 32
    # Dense layers: encoder 784->64, heads 64->8 (x2), decoder 8->64, head 64->784.
    forward = 2 * batch * (784 * 64 + 2 * 64 * 8 + 8 * 64 + 64 * 784)
    flops = benchmarking.train_step_flops(model, batch)
    # Backward needs about two matmuls per forward matmul; the rest is elementwise.
    assert 2.5 * forward < flops < 6 * forward, (flops, forward)


def _tiny_lvae():
    model = tfladder.LadderVAE((28, 28, 1), latent_dims=[4, 2], hidden_units=[32, 16],
                               batch_norm=True, seed=0)
    model.compile(keras.optimizers.Adam(1e-3), steps_per_execution=1)   # one step per call
    return model


def test_op_time_breakdown_by_type_and_phase():
    images = benchmarking.binary_images(64, (28, 28, 1))
    by_type = benchmarking.op_time_breakdown(_tiny_lvae(), images, 16, steps=2, warmup=1)
    assert by_type and all(seconds >= 0 for seconds in by_type.values())
    assert any("MatMul" in op for op in by_type), by_type
    total = sum(by_type.values())
    assert total > 0
    assert sum(seconds / total for seconds in by_type.values()) == pytest.approx(1.0)
    assert list(by_type.values()) == sorted(by_type.values(), reverse=True)
    by_phase = benchmarking.op_time_breakdown(_tiny_lvae(), images, 16, steps=2, warmup=1,
                                              group="phase")
    assert {"forward and metrics", "backward"} <= set(by_phase), by_phase
    # The optimizer update is one XLA-compiled function (HierarchicalModel._apply_if).
    assert "XLA" in by_phase and "optimizer update" not in by_phase, by_phase


def test_xla_compiled_step_profiles_as_xla_thunks():
    model = _tiny_lvae()
    model.compile(keras.optimizers.Adam(1e-3), jit_compile=True)
    images = benchmarking.binary_images(32, (28, 28, 1))
    tf_ops, xla_ops = benchmarking.op_count_per_step(model, images, 16, steps=2, warmup=1)
    assert xla_ops > 10 and tf_ops < xla_ops, (tf_ops, xla_ops)


def test_interleaved_throughput_reports_every_round():
    images = benchmarking.binary_images(32, (28, 28, 1))
    models = {"a": _tiny_lvae(), "b": _tiny_lvae()}
    rates = benchmarking.interleaved_throughput(
        models, benchmarking.in_memory_batches(images, 16), 16, steps=2, rounds=2, warmup=1)
    assert set(rates) == {"a", "b"}
    assert all(len(r["wall"]) == 2 and len(r["cpu"]) == 2 for r in rates.values())
    median, low, high = benchmarking.ratio_summary(rates, "b", "a")
    assert low <= median <= high


def test_cached_classifier_trains_once_then_loads_the_same_weights(tmp_path):
    """benchmarks/common.cached_classifier: the second call reads the cache."""
    import sys
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "benchmarks"))
    try:
        import common
    finally:
        sys.path.pop(0)
    rng = np.random.RandomState(0)
    x = rng.rand(64, 4).astype(np.float32)
    y = (x[:, 0] > 0.5).astype(np.int64)

    def build():
        return keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])

    first, info = common.cached_classifier("toy", build, (x, y), (x, y), epochs=2, seed=0,
                                           cache_dir=tmp_path)
    second, again = common.cached_classifier("toy", build, (x, y), (x, y), epochs=2, seed=0,
                                             cache_dir=tmp_path)
    assert not info["cached"] and again["cached"]
    assert again["test_accuracy"] == info["test_accuracy"] and info["num_train"] == 64
    np.testing.assert_allclose(second.predict(x, verbose=0), first.predict(x, verbose=0),
                               rtol=1e-6)
