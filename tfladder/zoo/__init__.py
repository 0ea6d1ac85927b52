"""The tfladder model zoo: named variants as data, and their shipped artifacts.

A variant is a `Variant`: the model family and its constructor arguments,
the data it trains on, and the training recipe. `VARIANTS` is the registry;
`available()`, `build(name)` (untrained), `load(name)` (pretrained) and
`card(name)` look names up there, never in a chain of name checks.

A trained variant is a folder (shipped under `zoo/<name>/`, or written by
`tfladder train` into its workdir); `tfladder.zoo.artifacts` owns its layout,
its checksums and every write into it. `load` verifies all files first.

#### Examples

```python
import tfladder
tfladder.zoo.available()                 # ['hvae_mnist', 'lvae_mnist', ...]
model = tfladder.zoo.load("vlae_mnist")  # verified, pretrained Keras model
model.sample(16, seed=0)
```
"""
import difflib
import importlib.resources
import json
import os
import pathlib
import warnings

from tfladder import fileio
from tfladder.models import FAMILIES
from tfladder.models.keras_api import set_preset_backend
from tfladder.zoo import artifacts
from tfladder.zoo.artifacts import (CHECKSUMS, CONFIG, METRICS, WEIGHTS, versions,  # noqa: F401
                                    write_checksums, write_config)
from tfladder.zoo.variants import (CELEBA, MNIST, NON_COMMERCIAL, OMNIGLOT, SVHN,  # noqa: F401
                                   VARIANTS, DataSpec, Recipe, Variant)


# ----------------------------------------------------------------- lookups
def available():
    """Names of every registered variant, sorted."""
    return sorted(VARIANTS)


def get(name):
    """The `Variant` registered as `name`.

    Raises:
      ValueError: for an unknown name, listing the close matches.
    """
    if name in VARIANTS:
        return VARIANTS[name]
    close = difflib.get_close_matches(str(name), VARIANTS, n=3, cutoff=0.4)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    raise ValueError(f"Unknown zoo variant {name!r}.{hint} Available: {', '.join(available())}. "
                     "A path to a trained variant folder is also accepted.")


def build(name, **overrides):
    """An untrained model of variant `name` (constructor `overrides` win)."""
    variant = get(name)
    return FAMILIES[variant.family](**{**variant.model, **overrides})


def artifact_dir(name_or_path):
    """The folder of a variant: `name_or_path` itself if it is a folder, else the
    installed copy (inside the package) or the cached download of that name.

    Raises:
      ValueError: unknown name. FileNotFoundError: a known variant that is
        neither installed nor cached here (the message says how to get it).
    """
    path = pathlib.Path(os.fspath(name_or_path)).expanduser()
    if path.is_dir():
        return path
    name = str(name_or_path)
    get(name)
    shipped = zoo_root() / name
    if (shipped / CONFIG).exists():
        return shipped
    cached = _cache_folder(name)
    if cached is not None and (cached / CONFIG).exists():
        return cached
    raise FileNotFoundError(_how_to_get(name))


# ------------------------------------------------------------ distribution
# The package carries the quick-start variant; every other pretrained variant
# is one archive, listed with its sha256 in `index.json` (shipped in the
# package), fetched on first use into a cache and verified (the keras-hub /
# keras.applications convention).
INDEX = "index.json"
ZOO_URL_ENV = "TFLADDER_ZOO_URL"
CACHE_ENV = "TFLADDER_CACHE"
DEFAULT_ZOO_URL = "https://github.com/tfladder/tfladder/releases/download/v{version}/"


def index():
    """`{name: {"archive", "sha256", "size"}}` of the published archives."""
    path = zoo_root() / INDEX
    if not path.is_file():
        return {}
    return json.loads(path.read_text()).get("variants", {})


def zoo_url():
    """Where the archives are published (`$TFLADDER_ZOO_URL` overrides)."""
    from tfladder import __version__
    url = os.environ.get(ZOO_URL_ENV) or DEFAULT_ZOO_URL.format(version=__version__)
    return url if url.endswith("/") else url + "/"


def cache_root():
    """`$TFLADDER_CACHE/zoo`, default `~/.cache/tfladder/zoo`."""
    base = os.environ.get(CACHE_ENV) or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "tfladder")
    return pathlib.Path(base).expanduser() / "zoo"


def _cache_folder(name):
    entry = index().get(name)
    return cache_root() / f"{name}-{entry['sha256'][:16]}" if entry else None


def _how_to_get(name, reason=""):
    entry = index().get(name)
    if entry is None:
        return (f"Zoo variant {name!r} is not pretrained in this installation; train it with "
                f"`tfladder train {name}`.")
    url = zoo_url() + entry["archive"]
    return (f"Zoo variant {name!r} is not installed or cached here{reason}. Get it with "
            f"`tfladder fetch {name}` (or tfladder.zoo.fetch({name!r})), which downloads {url} "
            f"({entry['size'] / 2**20:.0f} MB, sha256 {entry['sha256']}) into {cache_root()}; "
            f"offline, download that file elsewhere and run `tfladder fetch {name} --archive "
            f"FILE`. Set ${ZOO_URL_ENV} for a mirror.")


def fetch(name, archive=None, timeout=60):
    """Puts the pretrained variant `name` into the cache and returns its folder.

    Downloads `index()[name]["archive"]` from `zoo_url()` (or takes the local
    file `archive`), checks its sha256 against the index before unpacking
    anything, unpacks and verifies it. A tampered or truncated download is
    refused and nothing is cached.

    Raises:
      ValueError: unknown name, or an archive whose sha256 differs.
      FileNotFoundError: the download failed (the message says what to do).
    """
    import urllib.request
    get(name)
    entry = index().get(name)
    if entry is None:
        raise FileNotFoundError(_how_to_get(name))
    folder = _cache_folder(name)
    if (folder / CONFIG).exists():
        artifacts.verify(folder)
        return folder
    cache_root().mkdir(parents=True, exist_ok=True)
    partial = cache_root() / f".{entry['archive']}.{os.getpid()}.partial"
    try:
        if archive is None:
            url = zoo_url() + entry["archive"]
            try:
                with urllib.request.urlopen(url, timeout=timeout) as response, \
                        open(partial, "wb") as out:
                    received = 0
                    for block in iter(lambda: response.read(1 << 20), b""):
                        received += len(block)
                        if received > entry["size"]:
                            raise ValueError(f"{url} is larger than the {entry['size']} bytes "
                                             "the index lists; refusing it.")
                        out.write(block)
            except OSError as error:
                raise FileNotFoundError(_how_to_get(name, f" and downloading {url} failed "
                                                          f"({error})")) from error
            source = partial
        else:
            source = pathlib.Path(archive)
        actual = artifacts.sha256(source)
        if actual != entry["sha256"]:
            raise ValueError(f"{entry['archive']} has sha256 {actual}, but the index lists "
                             f"{entry['sha256']}: the file is corrupt or was modified; nothing "
                             "was cached.")
        artifacts.unpack(source, folder)
    finally:
        partial.unlink(missing_ok=True)
    return folder


def pack_release(out_dir, names=None):
    """Packs pretrained variants into `out_dir` (one archive each) and writes
    `zoo/index.json` with their sha256: what a release publishes.

    Run from a source checkout:
    `python -c "import tfladder; tfladder.zoo.pack_release('dist/zoo')"`.
    """
    entries = {}
    for name in names or available():
        folder = zoo_root() / name
        if not (folder / CONFIG).exists():
            continue
        path, digest, size = artifacts.pack(folder, out_dir)
        entries[name] = {"archive": path.name, "sha256": digest, "size": size}
    text = json.dumps({"variants": entries}, indent=2, sort_keys=True) + "\n"
    fileio.write_text_atomically(zoo_root() / INDEX, text)
    return entries


def zoo_root():
    """Where the shipped artifacts are: the installed `tfladder._zoo` package
    (a wheel), or `zoo/` beside the package in a source checkout (editable)."""
    try:
        return pathlib.Path(str(importlib.resources.files("tfladder._zoo")))
    except ModuleNotFoundError:
        return pathlib.Path(__file__).resolve().parents[2] / "zoo"


# A trained model's schedules are finished: loaded for fine-tuning with a new
# optimizer (whose step counter starts at 0), they must not start over.
FINISHED_SCHEDULES = {"kl_warmup_steps": 0, "progressive_steps": 0, "fade_in_steps": 0}


def load(name_or_path, verify=True, **overrides):
    """The pretrained Keras model of a shipped variant (or of a variant folder).

    Every file listed in `SHA256SUMS` is checked before anything is read
    (`artifacts.verify`); a missing, truncated, modified, unlisted or linked
    file raises and nothing is loaded. The model is rebuilt from
    `config.json` (plain data, no code, sizes bounded) and its weights.

    Schedules: the KL warm-up (and a VLAE's progressive schedule) follow the
    optimizer's step counter, `optimizer.iterations`. A pretrained model is
    returned with them finished (`kl_warmup_steps=0`, `progressive_steps=0`,
    `fade_in_steps=0`: beta = 1, every layer on), so fine-tuning it with a new
    optimizer keeps beta = 1; pass e.g. `kl_warmup_steps=1000` to restart the
    warm-up from the new optimizer's step 0.

    Args:
      name_or_path: A zoo name or a variant folder.
      verify: Check `SHA256SUMS` first (keep True).
      **overrides: Constructor arguments that replace the stored ones.

    Raises:
      ValueError: unknown name, a checksum mismatch, or a config that cannot
        be built.
      FileNotFoundError: missing artifacts.
    """
    try:
        folder = artifact_dir(name_or_path)
    except FileNotFoundError:
        if str(name_or_path) not in index():
            raise
        folder = fetch(str(name_or_path))     # first use: download, verify, cache
    if verify:
        artifacts.verify(folder)
    config = artifacts.read_config(folder)
    _warn_on_version_change(config.get("versions", {}), folder)
    stored = config["model_config"]
    unknown = sorted(set(overrides) - set(stored))
    if unknown:
        raise ValueError(f"unknown constructor override(s) {unknown} for {name_or_path!r}; "
                         f"valid: {sorted(stored)}.")
    finished = {k: v for k, v in FINISHED_SCHEDULES.items() if k in stored}
    config = {**config, "model_config": {**stored, **finished, **overrides}}
    artifacts.check_model_config(config["model_config"], where="overrides")
    model = artifacts.build_model(config)
    return artifacts.load_weights(model, folder)


def save_model(model, folder):
    """Writes `model` as a verified variant folder that `load` and
    `Family.from_preset` accept (`model.save_to_preset(folder)`).

    Raises:
      ValueError: `folder` exists and is not empty.
    """
    folder = pathlib.Path(folder)
    if folder.is_symlink() or folder.is_file() or (folder.is_dir() and any(folder.iterdir())):
        raise ValueError(f"folder {folder} exists and is not an empty folder; expected a new "
                         "or empty folder for the preset.")
    if folder.is_dir():
        folder.rmdir()
    return artifacts.write_variant(folder, model, {"saved_by": "save_to_preset"})


class _PresetBackend:
    """The zoo seen from the model classes (`Family.presets`, `from_preset`)."""

    def presets(self, family_class):
        def pretrained(name):
            try:
                artifact_dir(name)
                return True
            except FileNotFoundError:
                return name in index()
        return {name: variant.description for name, variant in sorted(VARIANTS.items())
                if issubclass(FAMILIES[variant.family], family_class) and pretrained(name)}

    def family_of(self, preset):
        path = pathlib.Path(os.fspath(preset)).expanduser()
        if path.is_dir():
            return FAMILIES[artifacts.read_config(path)["family"]]
        return FAMILIES[get(str(preset)).family]

    def load(self, preset, **overrides):
        return load(preset, **overrides)

    def save(self, model, folder):
        return save_model(model, folder)


set_preset_backend(_PresetBackend())


def card(name_or_path, verify=True):
    """The model card of a trained variant: `metrics.json` as a dict, plus
    the card text under "card" and the folder under "path".

    Like `load`, checks every file against `SHA256SUMS` first (a card's
    numbers are only as good as the folder they describe).

    Raises:
      ValueError: unknown name or a checksum mismatch.
    """
    folder = artifact_dir(name_or_path)
    if verify:
        artifacts.verify(folder)
    text = (folder / artifacts.CARD).read_text() if (folder / artifacts.CARD).exists() else ""
    return {**artifacts.read_metrics(folder), "card": text, "path": str(folder)}


def data_spec(name_or_path):
    """The data section of a trained variant's `config.json`."""
    config = artifacts.read_config(artifact_dir(name_or_path))
    return config.get("data") or {"source": "mnist_offline", "binarize": None}


def verify_checksums(folder):
    """`artifacts.verify`: every file of `folder` checked against `SHA256SUMS`."""
    return artifacts.verify(folder)


def _warn_on_version_change(trained_with, folder):
    current = versions()
    changed = {k: (v, current.get(k)) for k, v in trained_with.items() if current.get(k) != v}
    if changed:
        detail = ", ".join(f"{k} {old} -> {new}" for k, (old, new) in changed.items())
        warnings.warn(f"{folder} was trained with different library versions ({detail}); "
                      "numbers may differ slightly from its model card.", stacklevel=3)
