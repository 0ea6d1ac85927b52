"""What a Keras user reaches for beyond `fit`: presets, `export`, a Functional
feature extractor, and monitorable metrics. Mixed into `HierarchicalModel`.

Presets are the zoo seen from the classes (one registry, two doors, the
keras-hub convention): `tfladder.zoo` registers itself with
`set_preset_backend` when it is imported (`import tfladder` does), so this
module needs nothing from the outer ring.

#### Examples

```python
import keras, tfladder
tfladder.LadderVAE.presets                        # {"lvae_mnist": "...", ...}
model = tfladder.LadderVAE.from_preset("lvae_mnist")
model.save_to_preset("my_lvae")                   # a verified variant folder
features = model.feature_extractor(kind="mean")   # Functional: images -> means
features.trainable = False
head = keras.layers.Dense(10, activation="softmax")(features.output)
classifier = keras.Model(features.input, head)
model.export("exported")                          # keras.layers.TFSMLayer("exported")
```
"""
import keras
import tensorflow as tf
# No public API declares whether a subclassed model's own tracker should be
# maximized (Keras' monitor callbacks read `_direction` only from the metrics
# of a MetricsList; keras/src/callbacks/monitor_callback.py).
from keras.src.trainers.compile_utils import MetricsList

from tfladder import export as export_lib
from tfladder.serialization import register

_PRESET_BACKEND = None

# Which way each reported metric should go (for EarlyStopping, ModelCheckpoint, ...).
HIGHER_IS_BETTER = ("elbo",)


def set_preset_backend(backend):
    """Called by `tfladder.zoo`: `backend` offers `presets(family_class)`,
    `family_of(name_or_folder)` and `load(name_or_folder, **overrides)` and
    `save(model, folder)`."""
    global _PRESET_BACKEND
    _PRESET_BACKEND = backend


def _backend():
    if _PRESET_BACKEND is None:
        raise RuntimeError("presets need tfladder.zoo: `import tfladder` first.")
    return _PRESET_BACKEND


class _Presets:
    """`Family.presets`: `{name: description}` of the pretrained variants of a family."""

    def __get__(self, instance, owner):
        return _backend().presets(owner)


class KerasAPI:
    """Presets, `export`, `feature_extractor` and metric directions."""

    presets = _Presets()

    # ----------------------------------------------------------- presets
    @classmethod
    def from_preset(cls, preset, **overrides):
        """The pretrained model of zoo variant `preset` (or of a variant folder),
        verified like `tfladder.zoo.load`; `overrides` are constructor arguments
        (e.g. `kl_warmup_steps=1000` to restart the warm-up for fine-tuning).

        Raises:
          ValueError: unknown preset, a tampered folder, or a preset of another
            family (the message names the class to use).
        """
        family_class = _backend().family_of(preset)
        if not issubclass(family_class, cls):
            raise ValueError(f"{preset!r} is a {family_class.__name__} preset; load it with "
                             f"tfladder.{family_class.__name__}.from_preset({preset!r}) or "
                             f"tfladder.zoo.load({preset!r}).")
        return _backend().load(preset, **overrides)

    def save_to_preset(self, folder):
        """Writes this model as a verified variant folder (config, weights,
        SavedModel, figures, card, `SHA256SUMS`) that `from_preset` and
        `tfladder.zoo.load` accept. `folder` must not exist yet, or be empty."""
        return _backend().save(self, folder)

    # ------------------------------------------------------------ export
    def export(self, filepath, format="tf_saved_model", verbose=True, input_signature=None,
               **kwargs):
        """Keras' `model.export`: a SavedModel with tfladder's tensor endpoints
        (`encode`, `decode`, `generate`, `sample`, `elbo`, see `tfladder.export`)
        and the default endpoint `serve`: the per-example ELBO terms of images
        (the `elbo` endpoint, one fixed seed), so that
        `keras.layers.TFSMLayer(filepath)` works with its defaults."""
        if format != "tf_saved_model":
            raise ValueError(f"format must be 'tf_saved_model' for tfladder models, got "
                             f"{format!r}.")
        if input_signature is not None or kwargs:
            raise ValueError("tfladder models export fixed endpoints; input_signature and "
                             f"{sorted(kwargs)} are not supported.")
        path = export_lib.export_saved_model(self, filepath)
        if verbose:
            print(f"Saved a SavedModel to {path} (endpoints: "
                  f"{', '.join(export_lib.endpoint_functions(self))}).")
        return path

    # ------------------------------------------------ fit / evaluate guards
    def fit(self, *args, sample_weight=None, **kwargs):
        """`keras.Model.fit`; `sample_weight` is refused (Keras would drop it
        silently for inputs without targets)."""
        _refuse_sample_weight(sample_weight)
        return super().fit(*args, **kwargs)

    def evaluate(self, *args, sample_weight=None, **kwargs):
        """`keras.Model.evaluate`; `sample_weight` is refused, as in `fit`."""
        _refuse_sample_weight(sample_weight)
        return super().evaluate(*args, **kwargs)

    # ------------------------------------------------- feature extraction
    def feature_extractor(self, layers=None, kind="mean", concatenate=True):
        """A Functional `keras.Model` from images to posterior statistics.

        Args:
          layers: Latent layers to return, 1-based, bottom -> top (default all).
          kind: "mean" (the posterior means, conditioned on the means of the
            layers above) or "mean_and_scale" (means and standard deviations).
          concatenate: One tensor `[B, sum of dims]` instead of one per layer.

        The result can be frozen, saved (`.keras`), exported and used inside a
        user's Functional model.
        """
        layers = list(range(1, self.num_layers + 1)) if layers is None else list(layers)
        bad = [l for l in layers if not (isinstance(l, int) and 1 <= l <= self.num_layers)]
        if bad or not layers:
            raise ValueError(f"layers must list layer numbers in 1..{self.num_layers}, got "
                             f"{layers!r}.")
        if kind not in PosteriorFeatures.KINDS:
            raise ValueError(f"kind must be one of {PosteriorFeatures.KINDS}, got {kind!r}.")
        self.build()
        inputs = keras.Input(self.image_shape, name="x")
        outputs = PosteriorFeatures(self, layers=layers, kind=kind, concatenate=concatenate,
                                    name="posterior_features")(inputs)
        return keras.Model(inputs, outputs, name=f"{self.name}_features")

    # ------------------------------------------------- metric directions
    def _metrics_with_directions(self, trackers):
        """`trackers` plus a `MetricsList` of the same trackers, each marked "up"
        or "down", so that `monitor="val_elbo"` works without `mode="max"`."""
        for tracker in trackers:
            tracker._direction = "up" if tracker.name in HIGHER_IS_BETTER else "down"
        return list(trackers) + [_Directions(list(trackers), name="tfladder_directions")]


class _Directions(MetricsList):
    """Holds the trackers for Keras' monitor callbacks only: it reports nothing
    itself (the trackers report their own results)."""

    def result(self):
        return {}


def _refuse_sample_weight(sample_weight):
    if sample_weight is not None:
        raise ValueError("sample_weight is not supported: tfladder models train on the "
                         "unweighted ELBO of every image; repeat or drop images instead.")


@register
class PosteriorFeatures(keras.layers.Layer):
    """Posterior means (and scales) of a tfladder model, as tensors.

    Wraps a trained model so that a Functional graph can use its encoder:
    `x [B, H, W, C]` -> per-layer `loc` (or `[loc, scale]`), computed with
    every layer conditioned on the means above it (`infer(use_mean=True)`).
    """

    KINDS = ("mean", "mean_and_scale")

    def __init__(self, model, layers, kind="mean", concatenate=True, **kwargs):
        super().__init__(**kwargs)
        if isinstance(model, dict):
            model = keras.saving.deserialize_keras_object(model)
        self.model = model
        self.layer_numbers = [int(l) for l in layers]
        self.kind = kind
        self.concatenate = bool(concatenate)

    def build(self, input_shape):
        self.model.build()
        self.built = True

    def call(self, x):
        x = self.model.cast_inputs(x)
        inference = self.model.infer(x, tf.constant([0, 0], tf.int32), use_mean=True)
        outputs = []
        for l in self.layer_numbers:
            posterior = inference.layers[l - 1].posterior
            outputs.append(posterior.loc)
            if self.kind == "mean_and_scale":
                outputs.append(posterior.scale)
        if self.concatenate:
            return tf.concat(outputs, axis=-1) if len(outputs) > 1 else outputs[0]
        return outputs

    def compute_output_shape(self, input_shape):
        dims = []
        for l in self.layer_numbers:
            dims += [self.model.latent_dims[l - 1]] * (2 if self.kind == "mean_and_scale" else 1)
        if self.concatenate:
            return (input_shape[0], sum(dims))
        return [(input_shape[0], d) for d in dims]

    def get_config(self):
        return {**super().get_config(), "model": keras.saving.serialize_keras_object(self.model),
                "layers": self.layer_numbers, "kind": self.kind,
                "concatenate": self.concatenate}
