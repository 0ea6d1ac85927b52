"""The `tfladder` command: thin wrappers over library functions.

```none
tfladder list
tfladder train VARIANT [--data SOURCE] [--epochs N] [--batch-size B] [--seed S] [--workdir DIR]
               [--strategy default|mirrored|multi_worker|tpu] [--devices D1,D2] [--deterministic]
               [--jit-compile]
tfladder evaluate VARIANT [--data SOURCE] [--split test] [--num-samples K] [--limit N] [--update-card]
tfladder sample VARIANT --out samples.png [--num N] [--seed S]
tfladder traverse VARIANT --out traversal.png [--seed S]
tfladder export VARIANT --out DIR
tfladder card VARIANT
tfladder fetch VARIANT [--archive FILE]
tfladder --help | help [COMMAND] | COMMAND --help
```

TensorFlow's native start-up logs are hidden unless `--verbose` is given
(`tfladder.quiet`).

VARIANT is a zoo name (`tfladder list`) or the folder of a trained variant
(`WORKDIR/model` after `tfladder train`). Bad arguments (flags, names,
data files, a tampered variant folder) print one line that names the argument
and what was expected, and exit with status 2, before anything is written;
file-system failures (permissions, a full disk) and an unloadable checkpoint
print one line and exit with status 1.
"""
import json
import os
import pathlib
import re
import signal
import sys
import threading

from absl import app, flags, logging  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("data", None, "Data source: a tfladder.data name (e.g. mnist_offline, "
                    "mnist) or a path to a .npz file. Default: the variant's own data.")
flags.DEFINE_string("data-dir", None, "A folder of local copies <dataset>.npz (default: "
                    "$TFLADDER_DATA_DIR); without one, TensorFlow Datasets is used.")
flags.DEFINE_string("archive", None, "fetch: a downloaded archive to install instead of "
                    "downloading it.")
flags.DEFINE_enum("precision", "float32", ["float32", "mixed_bfloat16", "mixed_float16"],
                  "train, evaluate: Keras dtype policy (mixed_bfloat16: CPUs with AVX-512 BF16 / AMX, "
                  "TPUs; mixed_float16: GPUs). Latents, KL, likelihood and ELBO stay float32.")
flags.DEFINE_bool("json", False, "evaluate: print the result as JSON.")
flags.DEFINE_string("split", "test", "Split to evaluate.")
flags.DEFINE_integer("epochs", None, "Training epochs (default: the variant's recipe).")
flags.DEFINE_integer("batch-size", None, "Global batch size (default: the variant's recipe).")
flags.DEFINE_integer("seed", None, "Random seed (default: the variant's recipe; 0 for figures).")
flags.DEFINE_integer("limit", None, "Use only the first N images.")
flags.DEFINE_string("workdir", None, "Training folder (checkpoints, logs, the trained model). "
                    "Default: runs/VARIANT.")
flags.DEFINE_string("strategy", "default", "Distribution strategy: default, mirrored, "
                    "multi_worker (from TF_CONFIG) or tpu.")
flags.DEFINE_list("devices", None, "Devices for --strategy mirrored, e.g. /gpu:0,/gpu:1.")
flags.DEFINE_integer("cpu-devices", None, "Split the host CPU into N logical devices first "
                     "(to run --strategy mirrored on a CPU-only machine).")
flags.DEFINE_integer("num-samples", 5000, "K of the importance-weighted bound L_K (0: skip).")
flags.DEFINE_integer("num", 64, "Number of samples to draw (a square grid).")
flags.DEFINE_string("out", None, "Output file (PNG) or folder (export).")
flags.DEFINE_bool("deterministic", False, "train: enable TensorFlow op determinism "
                  "(tf.config.experimental.enable_op_determinism) for bit-identical reruns "
                  "and resumes; may be slower.")
flags.DEFINE_bool("jit-compile", False, "train: compile the whole training step with XLA "
                  "(benchmarks/results/throughput*.md measure when it helps).")
flags.DEFINE_bool("update-card", False, "evaluate: write the results into the variant "
                  "folder's metrics.json and model card.")

COMMANDS = {}
# The flags each command takes: any other flag given to it is refused.
COMMAND_FLAGS = {
    "list": [],
    "train": ["data", "data-dir", "epochs", "batch-size", "seed", "limit", "workdir", "strategy", "devices",
              "cpu-devices", "deterministic", "jit-compile", "precision"],
    "evaluate": ["data", "data-dir", "split", "num-samples", "limit", "update-card", "json",
                 "precision"],
    "sample": ["out", "num", "seed"],
    "traverse": ["out", "seed"],
    "export": ["out"],
    "card": [],
    "fetch": ["archive"],
}
USAGE = {
    "list": "tfladder list",
    "train": "tfladder train VARIANT [flags]",
    "evaluate": "tfladder evaluate VARIANT [flags]",
    "sample": "tfladder sample VARIANT --out FILE.png [flags]",
    "traverse": "tfladder traverse VARIANT --out FILE.png [flags]",
    "export": "tfladder export VARIANT --out DIR",
    "card": "tfladder card VARIANT",
    "fetch": "tfladder fetch VARIANT [--archive FILE]",
}


def command(function):
    """Registers a sub-command under its function name."""
    COMMANDS[function.__name__.rstrip("_")] = function
    return function


def help_text(name=None):
    """`tfladder --help` (the commands) or `tfladder NAME --help` (its flags)."""
    if name is None:
        lines = ["usage: tfladder COMMAND [VARIANT] [flags]", "",
                 "Hierarchical VAEs in Keras: train, evaluate and use the tfladder zoo.",
                 "VARIANT is a zoo name (tfladder list) or a trained variant folder.", "",
                 "commands:"]
        for command_name in COMMAND_FLAGS:
            doc = (COMMANDS[command_name].__doc__ or "").strip().splitlines()[0]
            lines.append(f"  {command_name:<10}{doc}")
        lines += ["", "tfladder COMMAND --help shows the flags of a command.",
                  "--verbose shows TensorFlow's own logs."]
        return "\n".join(lines)
    lines = [f"usage: {USAGE[name]}", "", (COMMANDS[name].__doc__ or "").strip(), ""]
    if COMMAND_FLAGS[name]:
        lines.append("flags:")
        for flag in COMMAND_FLAGS[name]:
            default = FLAGS[flag].default
            shown = "" if default in (None, False) else f" (default: {default})"
            lines.append(f"  --{flag:<14}{FLAGS[flag].help}{shown}")
    return "\n".join(lines)


class UsageError(ValueError):
    """A bad command-line argument."""


def _flag(name):
    return FLAGS[name].value


def _positive(name, value):
    if value is not None and value < 1:
        raise UsageError(f"--{name} must be a positive integer, got {value}.")
    return value


def _seed(default):
    """--seed, or `default` when it is not given."""
    seed = _flag("seed")
    if seed is not None and not 0 <= seed < 2**31:
        raise UsageError(f"--seed must be an integer in [0, 2**31), got {seed}.")
    return default if seed is None else seed


def _creatable(flag, path):
    """Refuses a path that could never be created: one below an existing file."""
    for parent in pathlib.Path(path).absolute().parents:
        if parent.exists():
            if not parent.is_dir():
                raise UsageError(f"--{flag} {path} lies inside {parent}, which is a file, "
                                 "not a folder.")
            return


def _required_out(folder=False):
    """--out, checked before any work: a PNG file, or the export folder if `folder`."""
    if not _flag("out"):
        raise UsageError("--out is required: the "
                         + ("folder" if folder else "PNG file") + " to write.")
    out = pathlib.Path(_flag("out"))
    _creatable("out", out)
    if folder and out.is_file():
        raise UsageError(f"--out must be a folder for the SavedModel, but {out} is a file.")
    if not folder and out.is_dir():
        raise UsageError(f"--out must be a PNG file path, but {out} is a folder.")
    return out


def _one_variant(args):
    if len(args) != 1:
        raise UsageError(f"expected exactly one VARIANT (a zoo name or a trained folder), got "
                         f"{len(args)}: {' '.join(args) or 'none'}.")
    return args[0]


@command
def list_(args):
    """Lists the zoo variants and whether pretrained artifacts are shipped."""
    from tfladder import zoo
    for name in zoo.available():
        variant = zoo.get(name)
        try:
            zoo.artifact_dir(name)
            status = "pretrained"
        except FileNotFoundError:
            status = "download" if name in zoo.index() else "untrained"
        print(f"{name:<15} {variant.family:<8} {status:<11} {variant.description}")


@command
def train(args):
    """Trains a variant; rerunning the same command resumes an interrupted run.

    Resuming continues from the last complete epoch (weights, optimizer state,
    data stream); with --deterministic the result is bit-identical to an
    uninterrupted run.
    """
    from tfladder import distribute, training
    name = _one_variant(args)
    for flag in ("epochs", "batch-size", "limit"):
        _positive(flag, _flag(flag))
    seed = _seed(None)
    workdir = _flag("workdir") or f"runs/{pathlib.Path(name).name}"
    if pathlib.Path(workdir).is_file():
        raise UsageError(f"--workdir must be a folder, but {workdir} is a file.")
    _creatable("workdir", workdir)
    if _flag("cpu-devices") is not None:
        distribute.split_cpu(_positive("cpu-devices", _flag("cpu-devices")))
    strategy = distribute.get_strategy(_flag("strategy"), _flag("devices"))
    from tfladder.callbacks import CheckpointError, StopOnInterrupt
    try:
        result = training.train(name, workdir, data=_flag("data"), epochs=_flag("epochs"),
                                callbacks=[StopOnInterrupt(INTERRUPTED)],
                                strategy=strategy,
                                batch_size=_flag("batch-size"), seed=seed,
                                limit=_flag("limit"), deterministic=_flag("deterministic"),
                                data_dir=_flag("data-dir"), precision=_flag("precision"),
                                jit_compile=_flag("jit-compile"),
                                command="tfladder " + " ".join(sys.argv[1:]))
    except (CheckpointError, training.WorkdirBusy) as error:   # the workdir needs attention
        _fail(error, command="train", status=1)
    print(f"Trained variant written to {result.folder} "
          f"(load it with tfladder.zoo.load({str(result.folder)!r})).")


@command
def evaluate(args):
    """ELBO, L_K, KL and active units on a data split."""
    from tfladder import evaluation
    from tfladder.training import portable_command as training_portable
    name = _one_variant(args)
    num_samples = _flag("num-samples")
    if num_samples < 0:
        raise UsageError(f"--num-samples must be >= 0 (0 skips L_K), got {num_samples}.")
    _positive("limit", _flag("limit"))
    result = evaluation.evaluate_variant(
        name, data=_flag("data"), split=_flag("split"), num_samples=num_samples,
        limit=_flag("limit"), record=_flag("update-card"), data_dir=_flag("data-dir"),
        command=training_portable("tfladder " + " ".join(sys.argv[1:])),
        progress=not _flag("json") and sys.stdout.isatty(), precision=_flag("precision"))
    if _flag("json"):
        print(json.dumps({k: v for k, v in result.items() if k != "active_unit_variance"},
                         indent=2))
    else:
        print(evaluation.summary_table(result, name))


@command
def sample(args):
    """Writes a grid of ancestral samples as a PNG."""
    import math
    from tfladder import figures, zoo
    name = _one_variant(args)
    count = _positive("num", _flag("num"))
    seed = _seed(0)
    out = _required_out()
    model = zoo.load(name)
    cols = int(math.ceil(math.sqrt(count)))
    rows = int(math.ceil(count / cols))
    images = model.sample(rows * cols, seed=seed).numpy()
    figures.save_png(figures.image_grid(images, rows, cols), out)
    print(f"Wrote {rows * cols} samples to {out}.")


@command
def traverse(args):
    """Writes layer-wise traversals (one block per latent layer, top first) as a PNG."""
    from tfladder import figures, zoo
    name = _one_variant(args)
    seed = _seed(0)
    out = _required_out()
    model = zoo.load(name)
    figures.save_png(figures.traversal_figure(model, seed=seed), out)
    print(f"Wrote traversals of {len(model.latent_dims)} layers (top layer first) to {out}.")


@command
def export(args):
    """Exports a SavedModel with encode / decode / generate / sample / elbo endpoints."""
    from tfladder import zoo
    from tfladder.export import export_saved_model
    from tfladder.fileio import inside
    name = _one_variant(args)
    out = _required_out(folder=True)
    folder = zoo.artifact_dir(name)
    if inside(out, folder) or inside(folder, out):
        raise UsageError(f"--out {out} overlaps the variant folder {folder}; expected a folder "
                         "outside it.")
    if out.is_dir() and any(out.iterdir()):
        raise UsageError(f"--out {out} is a folder that is not empty; expected a new or empty "
                         "folder for the SavedModel.")
    model = zoo.load(name)
    export_saved_model(model, out)
    print(f"Exported SavedModel to {out}.")


@command
def fetch(args):
    """Downloads (or installs from --archive) a pretrained variant into the cache, verified."""
    from tfladder import zoo
    name = _one_variant(args)
    folder = zoo.fetch(name, archive=_flag("archive"))
    print(f"{name} is ready in {folder}.")


@command
def card(args):
    """Prints a variant's model card."""
    from tfladder import zoo
    print(zoo.card(_one_variant(args))["card"])


def _fail(message, command=None, status=2):
    """Prints `message` as one line on stderr and exits with `status`."""
    prefix = f"tfladder {command}" if command else "tfladder"
    one_line = " ".join(str(message).splitlines())
    print(f"{prefix}: error: {one_line}", file=sys.stderr)
    sys.exit(status)


def parse_flags(argv):
    """absl flag parsing that reports a bad flag in one line (exit status 2), and
    the help of the commands (`--help`, `-h`, `help [COMMAND]`)."""
    args = argv[1:]
    wants_help = any(a in ("--help", "-h", "--helpfull", "-?") for a in args)
    if wants_help or (args and args[0] == "help"):
        topic = next((a for a in args if a in COMMANDS), None)
        print(help_text(topic))
        sys.exit(0)
    if "--verbose" in args:   # TensorFlow's C++ logs were silenced at import; absl's too.
        argv = [a for a in argv if a != "--verbose"]
        logging.set_verbosity(logging.INFO)
    else:   # the command's own output and errors only (TFDS and TF warn through absl)
        logging.set_verbosity(logging.ERROR)
    try:
        return FLAGS(argv)
    except flags.Error as error:
        command = argv[1] if len(argv) > 1 and argv[1] in COMMANDS else None
        message = str(error)
        # "flag --epochs=abc: invalid literal for int() ...": add what was expected.
        bad_flag = re.match(r"flag --([\w-]+)=", message)
        if bad_flag and bad_flag.group(1) in FLAGS:
            message += f"; expected {FLAGS[bad_flag.group(1)].parser.syntactic_help}"
        _fail(message, command=command)


def main(argv):
    args = argv[1:]
    if not args or args[0] not in COMMANDS:
        given = repr(args[0]) if args else "none"
        _fail(f"expected a command, one of {', '.join(sorted(COMMANDS))}; got {given}.")
    import tensorflow as tf
    try:
        misplaced = [f"--{name}" for name in FLAGS if FLAGS[name].present
                     and name in _ALL_COMMAND_FLAGS and name not in COMMAND_FLAGS[args[0]]]
        if misplaced:
            raise UsageError(f"{' '.join(misplaced)} do(es) not apply to `{args[0]}`; its flags "
                             f"are: {', '.join('--' + f for f in COMMAND_FLAGS[args[0]]) or 'none'}.")
        COMMANDS[args[0]](args[1:])
    except KeyboardInterrupt:
        _fail("interrupted (Ctrl-C); a training run resumes from its last complete epoch when "
              "the same command is run again.", command=args[0], status=130)
    except FileNotFoundError as error:   # a path argument that names nothing
        _fail(error, command=args[0])
    except OSError as error:   # Not the arguments: the file system (permissions, full disk).
        _fail(error, command=args[0], status=1)
    except tf.errors.OpError as error:   # e.g. a write by TensorFlow to a full disk
        _fail(f"{type(error).__name__}: {error.message}", command=args[0], status=1)
    except (UsageError, ValueError) as error:
        _fail(error, command=args[0])


_ALL_COMMAND_FLAGS = {flag for names in COMMAND_FLAGS.values() for flag in names}


INTERRUPTED = threading.Event()


def on_interrupt(signum, frame):
    """SIGINT: remember it (`INTERRUPTED`, checked by `train` between batches,
    so that it is not lost when the exception below lands in a finalizer),
    then raise `KeyboardInterrupt` as Python's own handler does."""
    INTERRUPTED.set()
    raise KeyboardInterrupt


def run():
    """Console-script entry point."""
    signal.signal(signal.SIGINT, on_interrupt)
    try:
        app.run(main, flags_parser=parse_flags)
    except BrokenPipeError:   # e.g. `tfladder --help | head`: the reader left
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(0)
    except KeyboardInterrupt:   # during start-up, before a command runs
        print("tfladder: error: interrupted (Ctrl-C).", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    run()
