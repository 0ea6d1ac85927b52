"""One place that registers tfladder classes for Keras serialization.

Every public layer and model is decorated with :func:`register`, so a `.keras`
file names them ``tfladder>ClassName`` and loads under ``safe_mode``
(`tfladder.keras_files.load_keras`). A low module: it imports nothing of
tfladder, so every layer can import it.
"""
import keras

PACKAGE = "tfladder"


def register(cls):
    """Registers `cls` with Keras under the ``tfladder`` package name."""
    return keras.saving.register_keras_serializable(package=PACKAGE)(cls)
