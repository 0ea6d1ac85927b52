"""The variant folder: the only code that reads or writes one.

A trained variant is a folder (shipped with the package, or written by
`tfladder train` into `WORKDIR/model`) holding

| file | content |
| --- | --- |
| `config.json` | variant, family, the model's `get_config()`, data, recipe, versions |
| `saved_model/` | SavedModel export (see `tfladder.export`); it also holds the Keras weights, once |
| `metrics.json`, `README.md` | the model card: measured numbers and the commands that made them |
| `samples.png`, `traversal.png` | figures |
| `SHA256SUMS` | sha256 of every other file (the `sha256sum` format) |

Rules this module enforces:

- **Verified before trusted.** `verify` checks every file against
  `SHA256SUMS` and refuses unlisted files, symlinks (to files or folders),
  hard-linked files and paths outside the folder, before anything is read.
- **Never half-written.** A new folder is written aside and renamed into
  place (`write_folder`); a card update (`record_evaluation`) writes a
  complete staged copy, verifies it, and swaps it in
  (`fileio.replace_folder`): a crash at any instant leaves the old folder or
  the new one, both loadable.
- **Never through a link, never into the installed package.**

Folders written by earlier versions keep the weights a second time in
`model.weights.h5`; `load_weights` reads that file when it is listed.
"""
import dataclasses
import hashlib
import json
import os
import pathlib
import re
import shutil
import site
import sysconfig

import keras
import tensorflow as tf
import tensorflow_probability as tfp

from tfladder import export, figures, fileio
from tfladder.models import FAMILIES
from tfladder.zoo import modelcard

CHECKSUMS = "SHA256SUMS"
CONFIG = "config.json"
WEIGHTS = "model.weights.h5"       # folders written by earlier versions only
SAVED_MODEL = "saved_model"
SAVED_WEIGHTS = f"{SAVED_MODEL}/variables/variables.index"
METRICS = "metrics.json"
CARD = "README.md"

# Upper bounds on what a config.json may ask to build (a checksum-valid but
# hostile or mistyped config must fail fast, not exhaust memory).
MAX_PARAMETERS = 200_000_000
MAX_IMAGE_SIDE = 1024
MAX_LAYERS = 64
MAX_HIDDEN_LAYERS = 64

_LINE = re.compile(r"^([0-9a-fA-F]{64}) ([ *])(.+)$")


# --------------------------------------------------------------- verifying
def sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_listing(folder):
    """The `{relative path: sha256}` of `folder/SHA256SUMS`.

    Accepts what `sha256sum` writes in text (`<hex>  path`) and binary
    (`<hex> *path`) mode, in lower or upper case.

    Raises:
      ValueError: no listing, a malformed line, or a path outside the folder.
    """
    folder = pathlib.Path(folder)
    listing = folder / CHECKSUMS
    if listing.is_symlink() or not listing.is_file():
        raise ValueError(f"{folder} has no {CHECKSUMS}; refusing to load unverified artifacts.")
    listed = {}
    for line in listing.read_text().splitlines():
        if not line.strip():
            continue
        match = _LINE.match(line)
        if not match:
            raise ValueError(f"{listing}: malformed line {line!r}; expected '<sha256>  <path>' "
                             "(64 hex digits, two spaces or ' *', then the path).")
        digest, _, relative = match.groups()
        posix = pathlib.PurePosixPath(relative)
        if posix.is_absolute() or ".." in posix.parts:
            raise ValueError(f"{listing}: refusing a path outside the folder: {relative!r}.")
        listed[posix.as_posix()] = digest.lower()
    return listed


def verify(folder):
    """Checks that `SHA256SUMS` lists exactly the files of `folder`, with their sha256.

    Returns:
      `{relative path: sha256}` of every verified file (`SHA256SUMS` included),
      to compare with a later `verify` of the same folder.

    Raises:
      ValueError: no listing, a malformed line, a path outside the folder, a
        missing, unlisted, linked or modified file.
    """
    folder = pathlib.Path(folder)
    present = set(fileio.check_no_links(folder))
    listed = read_listing(folder)
    for relative, digest in listed.items():
        path = folder / relative
        if relative not in present:
            raise ValueError(f"Artifact {path} listed in {CHECKSUMS} is missing.")
        actual = sha256(path)
        if actual != digest:
            raise ValueError(f"Checksum mismatch for {path}: expected sha256 {digest}, got "
                             f"{actual}. The file is corrupt or was modified; nothing was loaded.")
    unlisted = sorted(present - set(listed) - {CHECKSUMS})
    if unlisted:
        raise ValueError(f"{folder}: files not covered by {CHECKSUMS}: {', '.join(unlisted)}; "
                         "refusing to load unverified artifacts.")
    for required in (CONFIG, WEIGHTS if WEIGHTS in listed else SAVED_WEIGHTS):
        if required not in listed:
            raise ValueError(f"{folder / CHECKSUMS} does not list {required}; refusing to load.")
    return {**listed, CHECKSUMS: sha256(folder / CHECKSUMS)}


def write_checksums(folder):
    """Writes `SHA256SUMS` covering every file under `folder` (sorted, relative)."""
    folder = pathlib.Path(folder)
    lines = [f"{sha256(folder / relative)}  {relative}"
             for relative in fileio.check_no_links(folder) if relative != CHECKSUMS]
    fileio.write_text_atomically(folder / CHECKSUMS, "\n".join(lines) + "\n")


# ----------------------------------------------------------------- reading
def read_config(folder):
    """`config.json` of a folder, checked for the keys `load` needs and for sizes
    that could not be built (see `check_model_config`)."""
    folder = pathlib.Path(folder)
    config = json.loads((folder / CONFIG).read_text())
    if not isinstance(config, dict):
        raise ValueError(f"{folder / CONFIG}: expected a JSON object.")
    missing = [key for key in ("family", "model_config") if key not in config]
    if missing:
        raise ValueError(f"{folder / CONFIG} has no {' or '.join(map(repr, missing))}: expected "
                         "the config.json that tfladder writes.")
    if config["family"] not in FAMILIES:
        raise ValueError(f"{folder / CONFIG}: unknown family {config['family']!r}; expected one "
                         f"of {sorted(FAMILIES)}.")
    check_model_config(config["model_config"], where=str(folder / CONFIG))
    return config


def check_model_config(model_config, where="model config"):
    """Refuses configurations too large to build on any machine, before building.

    Bounds: image sides <= `MAX_IMAGE_SIDE`, <= `MAX_LAYERS` latent layers,
    <= `MAX_HIDDEN_LAYERS` hidden layers per block, and an estimate of the
    dense parameters (hidden widths squared, times the hidden layers) <=
    `MAX_PARAMETERS`.
    """
    if not isinstance(model_config, dict):
        raise ValueError(f"{where}: model_config must be a JSON object.")

    def ints(key, value):
        values, pending = [], [value]
        while pending:
            item = pending.pop()
            if isinstance(item, (list, tuple)):
                if len(values) + len(pending) + len(item) > 10_000:
                    raise ValueError(f"{where}: {key} is too long.")
                pending.extend(reversed(item))
            else:
                values.append(item)
        for v in values:
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v != int(v) or v < 0:
                raise ValueError(f"{where}: {key} must hold non-negative integers, got {value!r}.")
        return [int(v) for v in values]

    shape = ints("image_shape", model_config.get("image_shape", []))
    if len(shape) != 3 or max(shape[:2], default=0) > MAX_IMAGE_SIDE or shape[2] > 4:
        raise ValueError(f"{where}: image_shape must be [height, width, channels] with sides "
                         f"<= {MAX_IMAGE_SIDE} and <= 4 channels, got {shape}.")
    latents = ints("latent_dims", model_config.get("latent_dims", []))
    if not 1 <= len(latents) <= MAX_LAYERS or max(latents) > 65536:
        raise ValueError(f"{where}: latent_dims must list 1 to {MAX_LAYERS} sizes <= 65536, "
                         f"got {len(latents)} layers.")
    hidden_layers = ints("num_hidden_layers", model_config.get("num_hidden_layers", 2))[0]
    if hidden_layers > MAX_HIDDEN_LAYERS:
        raise ValueError(f"{where}: num_hidden_layers must be <= {MAX_HIDDEN_LAYERS}, got "
                         f"{hidden_layers}.")
    widths = ints("hidden_units", model_config.get("hidden_units") or [0])
    filters = ints("conv_filters", model_config.get("conv_filters") or [0])
    pixels = shape[0] * shape[1] * shape[2]
    estimate = (sum(w * w for w in widths) * max(hidden_layers, 1)
                + pixels * max(widths) * 2 + sum(f * f * 9 for f in filters) * 2)
    if estimate > MAX_PARAMETERS:
        raise ValueError(f"{where}: hidden_units {max(widths)}, num_hidden_layers "
                         f"{hidden_layers}, conv_filters up to {max(filters)} and image_shape "
                         f"{shape} would make about {estimate:.3g} parameters, more than the "
                         f"{MAX_PARAMETERS:.0e} tfladder builds from a config file.")


def build_model(config):
    """The model a checked `config.json` describes (weights not loaded)."""
    return FAMILIES[config["family"]].from_config(config["model_config"])


def load_weights(model, folder):
    """Loads the weights of a verified folder into `model` (built from its config):
    from `model.weights.h5` in folders of earlier versions, else from the
    SavedModel (`export.restore_weights`, which checks they fit the model)."""
    folder = pathlib.Path(folder)
    if (folder / WEIGHTS).exists():
        model.load_weights(str(folder / WEIGHTS))
    else:
        export.restore_weights(model, folder / SAVED_MODEL)
    return model


def read_metrics(folder):
    path = pathlib.Path(folder) / METRICS
    return json.loads(path.read_text()) if path.exists() else {}


def is_installed(folder):
    """Whether `folder` lies inside an installed package (site-packages)."""
    roots = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"],
             *site.getsitepackages(), site.getusersitepackages()}
    return any(fileio.inside(folder, root) for root in roots if root and os.path.isdir(root))


# ----------------------------------------------------------------- writing
def versions():
    """Versions of the libraries a model was trained with."""
    return {"tensorflow": tf.__version__, "keras": keras.__version__,
            "tensorflow_probability": tfp.__version__}


def config_dict(model, variant=None, data=None, recipe=None):
    """The content of `config.json` for `model` (variant, data, recipe: dataclasses)."""
    return {
        "variant": variant.name if variant else None,
        "description": variant.description if variant else None,
        "family": family_of(model),
        "model_config": model.get_config(),
        "data": dataclasses.asdict(data) if data else None,
        "recipe": dataclasses.asdict(recipe) if recipe else None,
        "license": variant.license if variant else None,
        "versions": versions(),
    }


def write_config(folder, model, variant=None, data=None, recipe=None):
    """Writes `config.json` for `model` into `folder`."""
    folder = pathlib.Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    fileio.write_text_atomically(folder / CONFIG, _dumps(config_dict(model, variant, data,
                                                                     recipe)))


def render_card(folder, description=None):
    """Writes `README.md` from `config.json` and `metrics.json` (`modelcard.card_markdown`)."""
    folder = pathlib.Path(folder)
    config = json.loads((folder / CONFIG).read_text())
    figures = [name for name in modelcard.OPTIONAL_FIGURES if (folder / name).exists()]
    text = modelcard.card_markdown(config, read_metrics(folder), figures,
                                   description=description or config.get("description"))
    fileio.write_text_atomically(folder / CARD, text)


def write_folder(folder, write):
    """Creates the variant folder `folder` by calling `write(staged)` on an empty
    staged copy beside it, adding `SHA256SUMS`, verifying, and renaming it into
    place (an existing `folder` is replaced in one step). A crash leaves the
    previous folder, or none, never a partial one."""
    folder = pathlib.Path(folder)
    staged = fileio.staging_path(folder, "new")
    shutil.rmtree(staged, ignore_errors=True)
    staged.mkdir(parents=True)
    try:
        write(staged)
        write_checksums(staged)
        verify(staged)
        if folder.is_symlink():
            raise ValueError(f"{folder} is a symbolic link; refusing to write through it.")
        if folder.exists():
            fileio.replace_folder(folder, staged)
        else:
            os.rename(staged, folder)
            fileio.fsync_dir(folder.parent)
    finally:
        shutil.rmtree(staged, ignore_errors=True)
    return folder


def update_folder(folder, write, expected=None, description=None, files=()):
    """Changes a verified variant folder in one step: `write(staged)` adds or
    rewrites `files` (relative paths) in a staged copy, the card is re-rendered
    and re-checksummed, the copy is verified and swapped in.

    Never through a symlink and never into an installed package. `expected`
    is what `verify` returned when the folder was read (e.g. when the
    evaluated model was loaded): if any file changed since, nothing is
    written. Every file other than `files`, `metrics.json`, `README.md` and
    `SHA256SUMS` must come out unchanged.

    Raises:
      ValueError: the folder is installed, linked, unverified or changed.
    """
    folder = pathlib.Path(folder)
    if folder.is_symlink():
        raise ValueError(f"{folder} is a symbolic link; refusing to write through it.")
    if is_installed(folder):
        raise ValueError(f"{folder} belongs to an installed package; copy the variant folder "
                         f"first (e.g. `cp -r {folder} my_{folder.name}`) and update the copy.")
    before = verify(folder)
    if expected is not None and before != expected:
        changed = sorted(k for k in set(before) | set(expected)
                         if before.get(k) != expected.get(k))
        raise ValueError(f"{folder} changed while it was being read ({', '.join(changed)}); "
                         "nothing was written.")
    mutable = {METRICS, CARD, CHECKSUMS, *files}
    staged = fileio.staging_path(folder, "update")
    shutil.rmtree(staged, ignore_errors=True)
    try:
        shutil.copytree(folder, staged, symlinks=True)
        write(staged)
        render_card(staged, description)
        write_checksums(staged)
        after = verify(staged)
        kept = {k: v for k, v in before.items() if k not in mutable}
        if {k: v for k, v in after.items() if k not in mutable} != kept:
            raise ValueError(f"{folder} changed while it was being updated; nothing was "
                             "written.")
        fileio.replace_folder(folder, staged)
    finally:
        shutil.rmtree(staged, ignore_errors=True)
    return verify(folder)


def write_variant(folder, model, metrics, variant=None, data=None, recipe=None, seed=0):
    """Writes `model` as a variant folder (`write_folder`): config, weights,
    SavedModel, sample and traversal figures, `metrics.json`, card, checksums."""
    def write(staged):
        write_config(staged, model, variant, data, recipe)
        export.export_saved_model(model, staged / SAVED_MODEL)
        figures.save_png(figures.sample_grid(model, seed=seed), staged / "samples.png")
        figures.save_png(figures.traversal_figure(model, seed=seed), staged / "traversal.png")
        fileio.write_text_atomically(staged / METRICS, _dumps(metrics))
        render_card(staged, variant.description if variant else None)

    return write_folder(folder, write)


def record_evaluation(folder, result, expected=None, description=None):
    """Stores an evaluation (`tfladder.evaluation.evaluate`'s dict) in the card of
    `folder` under its split, with `update_folder`'s guarantees."""
    result = {"split": "test", "command": "tfladder.evaluation.evaluate", **result}
    metrics = read_metrics(folder)
    metrics.setdefault("evaluations", {})[result["split"]] = result

    def write(staged):
        fileio.write_text_atomically(pathlib.Path(staged) / METRICS, _dumps(metrics))

    return update_folder(folder, write, expected=expected, description=description)


def family_of(model):
    for name, cls in FAMILIES.items():
        if type(model) is cls:
            return name
    raise ValueError(f"{type(model).__name__} is not a registered tfladder family "
                     f"({sorted(FAMILIES)}).")


def _dumps(value):
    return json.dumps(value, indent=2, default=_json_default)


def _json_default(value):
    if isinstance(value, tuple):
        return list(value)
    if hasattr(value, "item"):    # NumPy scalars
        return value.item()
    raise TypeError(f"not JSON serializable: {value!r}")


# ----------------------------------------------------------- distribution
ARCHIVE_SUFFIX = ".tar.gz"
MAX_ARCHIVE_BYTES = 100 * 2**20     # every distributed file stays under the index's 100 MB


def pack(folder, out_dir):
    """Writes `folder` (verified) as a reproducible `<name>.tar.gz` in `out_dir`.

    Entries are sorted, with mtime 0 and no owner, so the same folder always
    gives the same bytes (and sha256).

    Returns:
      `(path, sha256, size)` of the archive.
    """
    import gzip
    import tarfile
    folder, out_dir = pathlib.Path(folder), pathlib.Path(out_dir)
    files = verify(folder)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{folder.name}{ARCHIVE_SUFFIX}"

    def write(tmp):
        with open(tmp, "wb") as raw, gzip.GzipFile(filename="", fileobj=raw, mode="wb",
                                                     mtime=0) as zipped, \
                tarfile.open(fileobj=zipped, mode="w", format=tarfile.PAX_FORMAT) as archive:
            for relative in sorted(files):
                info = archive.gettarinfo(str(folder / relative), arcname=relative)
                info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
                info.mode = 0o644
                with open(folder / relative, "rb") as handle:
                    archive.addfile(info, handle)

    fileio.write_atomically(path, write)
    size = path.stat().st_size
    if size > MAX_ARCHIVE_BYTES:
        raise ValueError(f"{path} is {size / 2**20:.1f} MB, over the {MAX_ARCHIVE_BYTES >> 20} "
                         "MB that a distributed file may have.")
    return path, sha256(path), size


def unpack(archive, folder):
    """Extracts a `pack` archive into the new folder `folder` and verifies it.

    Only regular files and folders are extracted (no links, no absolute or
    `..` paths, no devices); the folder is staged beside `folder` and renamed
    into place once it verifies, so a failure leaves nothing.
    """
    import tarfile
    folder = pathlib.Path(folder)
    staged = fileio.staging_path(folder, "unpack")
    shutil.rmtree(staged, ignore_errors=True)
    staged.mkdir(parents=True)
    try:
        with tarfile.open(archive, "r:gz") as tar:
            members = tar.getmembers()
            total = 0
            for member in members:
                posix = pathlib.PurePosixPath(member.name)
                if not (member.isfile() or member.isdir()) or posix.is_absolute() \
                        or ".." in posix.parts:
                    raise ValueError(f"{archive}: refusing the entry {member.name!r} (only "
                                     "regular files inside the folder are accepted).")
                total += member.size
            if total > 4 * MAX_ARCHIVE_BYTES:
                raise ValueError(f"{archive} would unpack to {total >> 20} MB; refusing it.")
            tar.extractall(staged, members=members, filter="data")
        verify(staged)
        folder.parent.mkdir(parents=True, exist_ok=True)
        os.rename(staged, folder)
    finally:
        shutil.rmtree(staged, ignore_errors=True)
    return folder
