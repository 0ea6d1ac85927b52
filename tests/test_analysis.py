"""tfladder.analysis: Gibbs chains and per-layer resampling on tiny untrained models."""
import numpy as np
import pytest
import tensorflow as tf

from tests.helpers import IMAGE_SHAPE, small_model
from tfladder import analysis

NUM_CLASSES = 3


@pytest.fixture(scope="module")
def hvae():
    return small_model("hvae")        # latent_dims [8, 4]


@pytest.fixture(scope="module")
def vlae():
    return small_model("vlae")        # latent_dims [2, 2, 2]


@pytest.fixture(scope="module")
def x():
    rng = np.random.RandomState(0)
    return (rng.rand(4, *IMAGE_SHAPE) < 0.3).astype(np.float32)


def projection_classifier(reference):
    """A deterministic 'classifier' that sees small changes: the class of an image is
    the argmax of three fixed random projections of (image - reference), one-hot."""
    projections = np.random.RandomState(1).randn(int(np.prod(IMAGE_SHAPE)), NUM_CLASSES)

    def classify(images):
        flat = (np.asarray(images, np.float64) - reference).reshape(len(images), -1)
        return np.eye(NUM_CLASSES)[np.argmax(flat @ projections, -1)]

    return classify


def constant_classifier(images):
    return np.tile([[0.2, 0.5, 0.3]], (len(images), 1))


def test_resample_layer_shapes(vlae):
    resamples = analysis.resample_layer(vlae, 1, num_images=3, num_resamples=5, seed=0)
    assert resamples.base.shape == (3,) + IMAGE_SHAPE
    assert resamples.resampled.shape == (3, 5) + IMAGE_SHAPE
    assert np.all((resamples.resampled >= 0) & (resamples.resampled <= 1))


@pytest.mark.parametrize("family", ["hvae", "vlae"])
def test_holding_all_noise_fixed_gives_zero_variation(family, request):
    model = request.getfixturevalue(family)
    fixed = analysis.resample_layers(model, [], num_images=3, num_resamples=4, seed=0)
    np.testing.assert_allclose(fixed.resampled, np.repeat(fixed.base[:, None], 4, axis=1),
                               atol=1e-6)
    assert analysis.pixel_variance(fixed) < 1e-12
    # ... while redrawing any layer the generator uses moves the images.
    assert np.all(analysis.per_layer_variation(model, 3, 4, seed=0) > 1e-10)


def test_base_images_are_the_generated_means(vlae):
    resamples = analysis.resample_layer(vlae, 0, num_images=3, num_resamples=2, seed=7)
    root = analysis._stateless_seed(7)
    noise = vlae.prior_noise(3, tf.random.experimental.stateless_fold_in(root, 0))
    np.testing.assert_allclose(resamples.base, vlae.generate(noise).mean().numpy(), atol=1e-6)


def test_a_layer_the_generator_ignores_has_zero_variation():
    # VLAE: z~_2 = u_2([z~_3; v_2(z_2)]); a zero first kernel in v_2 cuts z_2 off.
    vlae = small_model("vlae")
    vlae.build()
    kernel = vlae.generative_rungs[1].v.dense_layers[0].kernel
    kernel.assign(np.zeros(kernel.shape, np.float32))
    variation = analysis.per_layer_variation(vlae, num_images=3, num_resamples=4, seed=0)
    assert variation[1] < 1e-12
    assert variation[0] > 1e-10 and variation[2] > 1e-10
    # HVAE: p(z_1 | z_2) through prior_mlp_1; a zero first kernel cuts the top layer off.
    hvae = small_model("hvae")
    hvae.build()
    kernel = hvae.prior_mlps[0].dense_layers[0].kernel
    kernel.assign(np.zeros(kernel.shape, np.float32))
    variation = analysis.per_layer_variation(hvae, num_images=3, num_resamples=4, seed=0)
    assert variation[1] < 1e-12 and variation[0] > 1e-10


def test_resampling_is_deterministic_under_a_seed(hvae):
    first = analysis.resample_layer(hvae, 1, 2, 3, seed=5)
    again = analysis.resample_layer(hvae, 1, 2, 3, seed=5)
    other = analysis.resample_layer(hvae, 1, 2, 3, seed=6)
    np.testing.assert_array_equal(first.resampled, again.resampled)
    assert not np.allclose(first.resampled, other.resampled)


def test_bad_layer_and_counts_are_refused(hvae):
    with pytest.raises(ValueError, match=r"layer must be .*\[0, 1\]"):
        analysis.resample_layer(hvae, 2, 2, 2)
    with pytest.raises(ValueError, match="num_resamples"):
        analysis.resample_layer(hvae, 0, 2, 0)


@pytest.mark.parametrize("family", ["hvae", "vlae"])
def test_gibbs_chain_stays_in_support_and_is_seeded(family, request, x):
    model = request.getfixturevalue(family)
    chain = analysis.gibbs_chain(model, x, num_steps=3, seed=1)
    assert chain.samples.shape == (3,) + x.shape and chain.means.shape == (3,) + x.shape
    assert set(np.unique(chain.samples)) <= {0.0, 1.0}            # Bernoulli support
    assert np.all((chain.means >= 0) & (chain.means <= 1))
    model.prepare_inputs(chain.samples[-1])                          # a valid model input
    np.testing.assert_array_equal(chain.samples,
                                  analysis.gibbs_chain(model, x, 3, seed=1).samples)
    assert not np.array_equal(chain.samples, analysis.gibbs_chain(model, x, 3, seed=2).samples)


def test_gibbs_chain_of_a_markov_model_reads_only_the_bottom_layer(x):
    """Cutting the top layer out of p(z_1 | z_2) leaves the chain unchanged, since
    x ~ p(x | z_1) and z_1 ~ q(z_1 | x) do not involve z_2."""
    model = small_model("hvae")
    model.build()
    before = analysis.gibbs_chain(model, x, 2, seed=3)
    for variable in model.prior_mlps[0].trainable_variables:
        variable.assign(np.zeros(variable.shape, np.float32))
    after = analysis.gibbs_chain(model, x, 2, seed=3)
    np.testing.assert_array_equal(before.samples, after.samples)


def test_gibbs_figure_layout(hvae, x):
    chain = analysis.gibbs_chain(hvae, x, 3, seed=0)
    grid = analysis.gibbs_figure(x, chain, steps=[1, 3])
    assert grid.shape == (4 * 29 + 1, 3 * 29 + 1, 1) and grid.dtype == np.uint8
    with pytest.raises(ValueError, match="steps"):
        analysis.gibbs_figure(x, chain, steps=[4])


def test_layer_effects_with_a_classifier(vlae):
    resamples = analysis.resample_layer(vlae, 0, 8, 3, seed=0)
    # Relative to the mean image, an untrained model's images differ enough to classify.
    classifier = projection_classifier(resamples.base.mean(0))
    effects = analysis.layer_effects(vlae, classifier, num_images=8, num_resamples=3, seed=0)
    assert effects.pixel_variance.shape == (3,) and effects.class_change_rate.shape == (3,)
    assert np.all((effects.class_change_rate >= 0) & (effects.class_change_rate <= 1))
    # The class change rate of layer 0 recomputed by hand from the same resamples.
    base = np.argmax(classifier(resamples.base), -1)
    assert len(set(base)) > 1            # else the check below could not see mixed-up rows
    new = np.argmax(classifier(resamples.resampled.reshape((-1,) + IMAGE_SHAPE)), -1)
    assert effects.class_change_rate[0] == pytest.approx(np.mean(new.reshape(8, 3)
                                                                 != base[:, None]))
    assert effects.ink_change[0] == pytest.approx(np.mean(np.abs(
        analysis.ink(resamples.resampled) - analysis.ink(resamples.base)[:, None])))
    # A classifier that ignores the image never changes its mind.
    constant = analysis.class_change_rate(constant_classifier, vlae, 4, 3, seed=0)
    np.testing.assert_array_equal(constant, np.zeros(3))


def test_classifier_scores_on_known_probabilities():
    images = np.zeros((4, *IMAGE_SHAPE), np.float32)
    probabilities = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 0, 0]], np.float64)
    scores = analysis.classifier_scores(lambda batch: probabilities[:len(batch)], images)
    np.testing.assert_allclose(scores.class_histogram, [0.5, 0.25, 0.25])
    assert scores.class_entropy == pytest.approx(-(0.5 * np.log(0.5) + 0.5 * np.log(0.25)))
    assert scores.classes_covered == 3 and scores.mean_confidence == pytest.approx(1.0)
    # Confident one-hot predictions: score = exp(entropy of the histogram).
    assert scores.classifier_score == pytest.approx(np.exp(scores.class_entropy), rel=1e-6)
    uniform = analysis.classifier_scores(lambda batch: np.full((len(batch), 3), 1 / 3), images)
    assert uniform.classifier_score == pytest.approx(1.0)
    with pytest.raises(ValueError, match="softmax"):
        analysis.classifier_scores(lambda batch: np.full((len(batch), 3), 2.0), images)


def test_resampling_figure_has_one_block_per_layer(vlae):
    blocks = analysis.resampling_blocks(vlae, num_images=2, num_resamples=3, seed=0)
    assert len(blocks) == 3
    assert blocks[0].shape == (2 * 29 + 1, 4 * 29 + 1, 1)
    assert analysis.resampling_figure(vlae, num_images=2, num_resamples=3).shape[0] == \
        3 * (2 * 29 + 1) + 2 * 4


def test_colour_structure_split_adds_up_and_separates_the_two():
    rng = np.random.default_rng(0)
    shape = (3, 5, 4, 4, 3)
    # Only the global colour moves: all variance is colour.
    colour_only = np.broadcast_to(rng.random((3, 5, 1, 1, 3)), shape)
    v_colour, v_structure = analysis.colour_structure_variance(colour_only)
    assert v_colour > 0 and v_structure == pytest.approx(0.0, abs=1e-12)
    # A zero-mean pattern moves with the colour fixed: all variance is structure.
    pattern = rng.normal(size=shape)
    pattern -= pattern.mean(axis=(2, 3), keepdims=True)
    v_colour, v_structure = analysis.colour_structure_variance(0.5 + pattern)
    assert v_colour == pytest.approx(0.0, abs=1e-12) and v_structure > 0
    # In general the two add up to the pixel variance.
    mixed = rng.random(shape)
    assert sum(analysis.colour_structure_variance(mixed)) == pytest.approx(
        analysis.pixel_variance(mixed), rel=1e-10)


# ------------------------------------------- a generator with known factors
class _Means:
    def __init__(self, images):
        self._images = images

    def mean(self):
        return self._images


class KnownFactors:
    """A hand-built 'model' whose layers control known factors of 8x8 colour images:
    layer 1 (bottom) = a global colour offset per channel, layer 2 = the column of a
    bright vertical bar (a shape: it moves no mean colour), layer 3 = nothing."""
    latent_dims = [3, 1, 2]
    num_layers = 3
    size = 8

    def prior_noise(self, num_samples, seed=0):
        seeds = tf.unstack(tf.random.experimental.stateless_split(
            analysis._stateless_seed(seed), self.num_layers))
        return [tf.random.stateless_normal([num_samples, d], s)
                for d, s in zip(self.latent_dims, seeds)]

    def bar_column(self, e_shape):
        return np.clip(np.floor((np.asarray(e_shape)[:, 0] + 2.0) * 2.0), 0, self.size - 1)

    def generate(self, noise):
        e_colour, e_shape, _ = (np.asarray(e) for e in noise)
        colour = 0.5 + 0.2 * np.tanh(e_colour)                       # [N, 3]
        images = np.tile(colour[:, None, None, :], (1, self.size, self.size, 1))
        columns = self.bar_column(e_shape).astype(int)
        images[np.arange(len(images)), :, columns, :] += 0.25
        return _Means(tf.constant(images, tf.float32))


def bar_classifier(images):
    """Class = which quarter of the image holds the brightest column (one-hot)."""
    profile = np.asarray(images).mean(axis=(1, 3))                  # [N, W]
    return np.eye(4)[np.argmax(profile, -1) // 2]


def test_layer_effects_recover_which_layer_moves_colour_and_which_the_shape():
    effects = analysis.layer_effects(KnownFactors(), bar_classifier, num_images=40,
                                     num_resamples=8, seed=0)
    share, colour = effects.variance_share, effects.colour_share
    assert share.shape == colour.shape == (3,)
    np.testing.assert_allclose(share.sum(), 1.0)
    assert share[0] > 0.1 and share[1] > 0.1 and share[2] == 0.0
    assert colour[0] > 0.99           # the colour layer moves colour only
    assert colour[1] < 0.01           # the bar moves no mean colour
    assert colour[2] == 0.0           # an unused layer: no variation, share 0 (not NaN)
    # The digit-like classifier follows the shape layer only.
    assert effects.class_change_rate[0] == 0.0 and effects.class_change_rate[2] == 0.0
    assert effects.class_change_rate[1] > 0.3


def test_variance_and_colour_shares_by_hand():
    np.testing.assert_allclose(analysis.variance_shares([1.0, 3.0, 0.0]), [0.25, 0.75, 0.0])
    np.testing.assert_allclose(analysis.variance_shares([0.0, 0.0]), [0.0, 0.0])
    np.testing.assert_allclose(analysis.colour_shares([0.5, 0.0, 0.0], [1.0, 2.0, 0.0]),
                               [0.5, 0.0, 0.0])


# ----------------------------------------------------------- linear probe
class _Posterior:
    def __init__(self, loc):
        self.loc = tf.constant(loc, tf.float32)


class ClassInTheSecondLayer:
    """encode(x): layer 1 = noise unrelated to the class, layer 2 = a noisy one-hot code
    of the class. The 'images' x are the labels themselves, shaped [N, 1, 1, 1]."""
    latent_dims = [4, 5]

    def encode(self, x):
        labels = np.asarray(x)[:, 0, 0, 0].astype(int)
        rng = np.random.RandomState(int(labels.sum()) % 1000 + len(labels))
        noise = rng.randn(len(labels), 4)
        code = 2.0 * np.eye(5)[labels] + 0.5 * rng.randn(len(labels), 5)
        return [_Posterior(noise), _Posterior(code)]


def test_linear_probe_finds_the_class_in_the_informative_layer_only():
    rng = np.random.RandomState(0)
    train_labels, test_labels = rng.randint(0, 5, 1000), rng.randint(0, 5, 400)
    as_images = lambda labels: labels.astype(np.float32)[:, None, None, None]
    probe = analysis.linear_probe(ClassInTheSecondLayer(), as_images(train_labels),
                                  train_labels, as_images(test_labels), test_labels)
    assert probe.test_accuracy.shape == (2,)
    assert probe.test_accuracy[1] > 0.95
    assert probe.test_accuracy[0] < probe.chance + 0.1
    assert probe.all_layers_test_accuracy > 0.95
    assert 0.2 <= probe.chance < 0.3


def test_logistic_regression_separates_linearly_separable_classes():
    rng = np.random.RandomState(1)
    x = rng.randn(300, 2)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(int)
    predict = analysis.logistic_regression(x * 10.0 + 3.0, y, 2)   # scale-free: standardised
    assert np.mean(predict(x * 10.0 + 3.0) == y) > 0.97


def test_linear_probe_on_a_real_model(vlae):
    rng = np.random.RandomState(0)
    images = (rng.rand(30, *IMAGE_SHAPE) < 0.3).astype(np.float32)
    labels = rng.randint(0, 3, 30)
    probe = analysis.linear_probe(vlae, images[:20], labels[:20], images[20:], labels[20:],
                                  num_steps=20)
    assert probe.test_accuracy.shape == (3,) and probe.train_accuracy.shape == (3,)
    assert np.all((probe.test_accuracy >= 0) & (probe.test_accuracy <= 1))
