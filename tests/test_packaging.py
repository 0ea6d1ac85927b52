"""A wheel carries the zoo artifacts: `zoo.load` works outside the source tree.

Slow (builds a wheel and a virtual environment): `python -m pytest -m slow`.
"""
import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_wheel_in_fresh_venv_carries_the_zoo(tmp_path):
    shipped = sorted(p.name for p in (ROOT / "zoo").iterdir() if (p / "SHA256SUMS").exists())
    if not shipped:
        pytest.skip("no shipped zoo artifacts yet")
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "-q",
                    "-w", str(tmp_path / "dist")], check=True, timeout=600)
    wheel = next((tmp_path / "dist").glob("tfladder-*.whl"))
    venv = tmp_path / "venv"
    # System site-packages provide TensorFlow & co.; tfladder itself comes from the wheel.
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)],
                   check=True, timeout=300)
    python = venv / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", str(wheel)],
                   check=True, timeout=600)
    script = (
        "import tfladder, tfladder.zoo as zoo\n"
        f"assert tfladder.__file__.startswith({str(venv)!r}), tfladder.__file__\n"
        f"for name in {shipped!r}:\n"
        "    model = zoo.load(name)\n"
        "    assert model.sample(2, seed=0).shape[0] == 2\n"
        "print('LOADED', sorted(zoo.available()))\n")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    process = subprocess.run([str(python), "-c", script], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=600)
    assert process.returncode == 0, process.stderr[-3000:]
    assert "LOADED" in process.stdout
