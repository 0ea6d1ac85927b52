"""Per-unit KL (LVAE paper Figs. 4-5) and its per-epoch history callback."""
import keras
import numpy as np
import pytest

from tests.helpers import IMAGE_SHAPE, small_model
from tfladder import evaluation
from tfladder.callbacks import KLPerUnitHistory


@pytest.fixture(scope="module")
def x():
    rng = np.random.RandomState(0)
    return (rng.rand(8, *IMAGE_SHAPE) < 0.3).astype(np.float32)


def test_per_unit_kl_sums_to_the_layer_kl_of_the_same_draw(x):
    """Below its top, HVAE's layer KL is the single-sample log q - log p of the
    same draw: the unit terms add up to it exactly (the top KL is analytic)."""
    model = small_model("hvae")
    per_unit = evaluation.kl_per_unit(model, x, seed=3)
    assert [u.shape for u in per_unit] == [(d,) for d in model.latent_dims]
    expected = model.elbo_terms(x, seed=3).kl_per_layer.numpy().mean(axis=0)
    np.testing.assert_allclose([u.sum() for u in per_unit[:-1]], expected[:-1],
                               rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("family", ["vlae", "lvae", "hvae"])
def test_per_unit_kl_matches_the_closed_form_in_expectation(family, x):
    """Averaged over many draws, sum_u KL_u -> the analytic KL of each layer."""
    model = small_model(family)
    repeated = np.repeat(x[:2], 1500, axis=0)
    per_unit = evaluation.kl_per_unit(model, repeated, batch_size=3000, seed=1)
    analytic = model.elbo_terms(repeated, seed=1).kl_per_layer.numpy().mean(axis=0)
    for l, (units, layer_kl) in enumerate(zip(per_unit, analytic)):
        assert abs(units.sum() - layer_kl) < 0.05 * max(1.0, layer_kl), f"layer {l + 1}"


def test_history_callback_records_every_epoch_and_resumes(x, tmp_path):
    model = small_model("lvae")
    model.compile(keras.optimizers.Adam(1e-3))
    path = tmp_path / "kl_units.npz"
    model.fit(x, epochs=2, batch_size=4, verbose=0, callbacks=[KLPerUnitHistory(x, path)])
    with np.load(path) as saved:
        np.testing.assert_array_equal(saved["epoch"], [1, 2])
        for l, d in enumerate(model.latent_dims):
            assert saved[f"layer_{l + 1}"].shape == (2, d)
            assert np.all(np.isfinite(saved[f"layer_{l + 1}"]))
        second_epoch = saved["layer_1"][1].copy()
    # A run resumed after epoch 1 keeps epoch 1 and rewrites epoch 2.
    resumed = KLPerUnitHistory(x, path)
    resumed.set_model(model)
    resumed.on_train_begin()
    assert resumed.epochs == [1, 2]
    resumed.on_epoch_end(1)
    with np.load(path) as saved:
        np.testing.assert_array_equal(saved["epoch"], [1, 2])
        assert saved["layer_1"].shape[0] == 2
        np.testing.assert_allclose(saved["layer_1"][1], second_epoch, rtol=1e-5)


def test_paired_difference_cancels_the_variation_between_images():
    rng = np.random.RandomState(0)
    difficulty = rng.normal(-90.0, 20.0, size=4000)            # shared by both models
    a = difficulty + 0.5 + rng.normal(0.0, 1.0, size=4000)
    b = difficulty + rng.normal(0.0, 1.0, size=4000)
    mean, stderr = evaluation.paired_difference(a, b)
    # The difference has std sqrt(2); unpaired standard errors would be ~20 / sqrt(n).
    assert stderr == pytest.approx(np.sqrt(2.0) / np.sqrt(4000), rel=0.05)
    assert abs(mean - 0.5) < 4 * stderr
    with pytest.raises(ValueError, match="same length"):
        evaluation.paired_difference(a, b[:-1])


def test_evaluate_per_image_bounds_average_to_the_reported_bound(x):
    model = small_model("lvae")
    result = evaluation.evaluate(model, x[:6], num_samples=4, batch_size=4, per_image=True)
    per_image = np.asarray(result["log_likelihood_per_image"])
    assert per_image.shape == (6,)
    assert per_image.mean() == pytest.approx(result["log_likelihood"], rel=1e-6)
    # Same seeds: the per-image values are the bounds of a separate call per batch.
    again = model.log_likelihood(x[:4], num_samples=4, seed=0).numpy()
    np.testing.assert_allclose(per_image[:4], again, rtol=1e-5)
