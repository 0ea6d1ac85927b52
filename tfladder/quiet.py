"""Quiet start-up for the `tfladder` command (a low module: imports nothing of tfladder).

TensorFlow's C++ runtime writes INFO lines (oneDNN, CUDA probing) to file
descriptor 2 before `TF_CPP_MIN_LOG_LEVEL` takes effect. When this process
is the `tfladder` command, they are sent to /dev/null, while Python's own
`sys.stderr` (errors, warnings, progress) keeps the real stderr. The logs
stay visible with `--verbose`, or when the user set `TF_CPP_MIN_LOG_LEVEL`
to 0 or 1 (asking for INFO / WARNING lines). Library users are never touched.
"""
import os
import sys


def is_cli():
    """Whether this process runs the `tfladder` command."""
    argv = list(getattr(sys, "orig_argv", sys.argv))
    if "-m" in argv:
        module = argv[argv.index("-m") + 1] if argv.index("-m") + 1 < len(argv) else ""
        return module in ("tfladder", "tfladder.cli")
    return os.path.basename(sys.argv[0] or "") == "tfladder"


def silence_native_logs():
    """For the `tfladder` command only: native logs to /dev/null unless asked for."""
    if not is_cli() or "--verbose" in sys.argv:
        return
    if os.environ.get("TF_CPP_MIN_LOG_LEVEL", "") in ("0", "1"):
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        sys.stderr.flush()
        python_stderr = os.dup(2)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.close(devnull)
        sys.stderr = os.fdopen(python_stderr, "w", buffering=1)
    except OSError:   # no usable fd 2 (e.g. closed): nothing to silence
        pass
