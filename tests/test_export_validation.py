"""Exported endpoints reject bad input with a message that says what was expected."""
import numpy as np
import pytest
import tensorflow as tf

from tests.helpers import small_model
from tfladder.export import export_saved_model


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    directory = tmp_path_factory.mktemp("export") / "vae"
    export_saved_model(small_model("vae"), directory)
    return tf.saved_model.load(str(directory))


def _binary(n):
    return (np.random.RandomState(0).rand(n, 28, 28, 1) > 0.5).astype(np.float32)


@pytest.mark.parametrize("endpoint", ["encode", "elbo"])
@pytest.mark.parametrize("bad, match", [
    (np.zeros((0, 28, 28, 1), np.float32), "empty batch"),
    (np.full((2, 28, 28, 1), np.nan, np.float32), "NaN or Inf"),
    (np.full((2, 28, 28, 1), 0.5, np.float32), r"binary values \{0, 1\}"),
    (np.full((2, 28, 28, 1), 255.0, np.float32), "outside the support"),
])
def test_bad_images_fail_with_a_clear_message(served, endpoint, bad, match):
    with pytest.raises(tf.errors.InvalidArgumentError, match=match):
        getattr(served, endpoint)(tf.constant(bad))


@pytest.mark.parametrize("endpoint", ["encode", "elbo"])
def test_wrong_shape_or_dtype_is_refused_by_the_signature(served, endpoint):
    with pytest.raises((ValueError, TypeError)):
        getattr(served, endpoint)(tf.zeros([2, 32, 32, 1]))
    with pytest.raises((ValueError, TypeError)):
        getattr(served, endpoint)(tf.zeros([2, 28, 28, 1], tf.int32))


def test_good_images_still_work(served):
    assert served.elbo(tf.constant(_binary(3)))["elbo"].shape == (3,)


def test_bad_noise_and_sample_count(served):
    with pytest.raises(tf.errors.InvalidArgumentError, match="noise_1 contains NaN"):
        served.generate(tf.fill([2, 8], np.nan))
    with pytest.raises(tf.errors.InvalidArgumentError, match="z_1 contains NaN"):
        served.decode(tf.fill([2, 8], np.inf))
    with pytest.raises(tf.errors.InvalidArgumentError, match="num_samples must be a positive"):
        served.sample(tf.constant(0), tf.constant(1))
