"""Safe loading of user-supplied `.keras` files.

#### Examples

```python
import tfladder
model = tfladder.zoo.build("vae_mnist")
model.build()
model.save("vae.keras")
same = tfladder.load_keras("vae.keras")     # Keras safe mode, compiled if it was saved so
```
"""
import json
import os
import pathlib
import warnings
import zipfile

import keras
# No public API holds safe mode on against keras.config.enable_unsafe_deserialization().
from keras.src.saving.serialization_lib import SafeModeScope

from tfladder.zoo import artifacts
from tfladder import models  # noqa: F401  Registers every tfladder layer and model.

KERAS_SUFFIX = ".keras"
# A .keras archive is inflated member by member: bound what it may expand to.
MAX_UNCOMPRESSED_BYTES = 4 * 2**30
MAX_COMPRESSION_RATIO = 100


def load_keras(path, compile=True):
    """Loads a user-supplied `.keras` file without running code from it.

    The file is read with `keras.saving.load_model(path, safe_mode=True)`
    inside a safe-mode scope, so safe mode holds even after
    `keras.config.enable_unsafe_deserialization()`. Safe mode refuses a
    `Lambda` layer's Python bytecode and any class that is neither Keras's
    nor registered (tfladder's layers and models are registered on import).
    Only local files are accepted, never a URL or remote path. Unlike
    `tfladder.zoo.load`, there is no checksum to verify: the file is
    whatever its author saved.

    Args:
      path: A local file whose name ends in `.keras` (written by `model.save`).
      compile: Restore the saved training configuration (the optimizer) as
        well, like `keras.saving.load_model`'s default; a file saved from an
        uncompiled model loads uncompiled either way.

    Returns:
      The Keras model.

    Raises:
      ValueError: `path` does not end in `.keras`, is not a zip archive, or
        holds something safe mode refuses; the message names the file.
      FileNotFoundError: no file at `path`.

    Warns:
      UserWarning: if the file was saved with another Keras version.
    """
    path = pathlib.Path(os.fspath(path)).expanduser()
    if path.suffix != KERAS_SUFFIX:
        raise ValueError(f"path must be a {KERAS_SUFFIX} file, got {str(path)!r}; load a zoo "
                         "variant or a trained folder with tfladder.zoo.load.")
    if not path.is_file():
        raise FileNotFoundError(f"No such {KERAS_SUFFIX} file: {str(path)!r}.")
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{path} is not a {KERAS_SUFFIX} archive (a zip file written by "
                         "model.save).")
    _check_archive(path)
    _warn_on_keras_version(path)
    try:
        with SafeModeScope(True):
            return keras.saving.load_model(path, compile=compile, safe_mode=True)
    except (ValueError, TypeError, KeyError, AttributeError, OSError, zipfile.BadZipFile) as error:
        reason = " ".join(str(error).split())
        if len(reason) > 500:
            reason = reason[:500] + " ..."
        raise ValueError(f"Could not load {path} safely: {reason} (tfladder.load_keras "
                         "always keeps Keras safe mode on).") from error


def _check_archive(path):
    """Refuses a zip bomb and a model too large to build, before Keras reads the file."""
    with zipfile.ZipFile(path) as archive:
        members = archive.infolist()
        total = sum(member.file_size for member in members)
        if total > MAX_UNCOMPRESSED_BYTES:
            raise ValueError(f"{path} would inflate to {total / 2**30:.1f} GiB, more than the "
                             f"{MAX_UNCOMPRESSED_BYTES // 2**30} GiB tfladder.load_keras reads.")
        for member in members:
            if member.file_size > 2**20 and \
                    member.file_size > MAX_COMPRESSION_RATIO * max(member.compress_size, 1):
                raise ValueError(f"{path}: member {member.filename} inflates "
                                 f"{member.file_size / max(member.compress_size, 1):.0f}-fold "
                                 f"(at most {MAX_COMPRESSION_RATIO} is accepted); refusing a "
                                 "possible zip bomb.")
        try:
            config = json.loads(archive.read("config.json"))
        except (KeyError, ValueError):
            return   # Keras reports a missing or broken config itself.
    if isinstance(config, dict) and str(config.get("registered_name", "")).startswith("tfladder>"):
        artifacts.check_model_config(config.get("config"), where=f"{path} config.json")


def _warn_on_keras_version(path):
    """Warns if the archive's `metadata.json` names another Keras version."""
    try:
        with zipfile.ZipFile(path) as archive:
            saved_with = json.loads(archive.read("metadata.json")).get("keras_version")
    except (KeyError, ValueError, AttributeError, zipfile.BadZipFile):
        return   # No readable metadata: Keras itself decides whether it loads.
    if saved_with and saved_with != keras.__version__:
        warnings.warn(f"{path} was saved with Keras {saved_with}, this is Keras "
                      f"{keras.__version__}; outputs may differ slightly.", stacklevel=3)
