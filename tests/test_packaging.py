"""The wheel: under 30 MB, it carries the quick-start variant (which loads
outside the source tree, offline) and the index of the other variants' archives.

Slow (builds a wheel and a virtual environment): `python -m pytest -m slow`.
"""
import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_wheel_in_fresh_venv_carries_the_quick_start(tmp_path):
    shipped = sorted(p.name for p in (ROOT / "zoo").iterdir() if (p / "SHA256SUMS").exists())
    if not shipped:
        pytest.skip("no shipped zoo artifacts yet")
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "-q",
                    "-w", str(tmp_path / "dist")], check=True, timeout=600)
    wheel = next((tmp_path / "dist").glob("tfladder-*.whl"))
    assert wheel.stat().st_size < 30 * 2**20, wheel.stat().st_size
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
        "model = zoo.load('vlae_mnist')\n"
        "assert model.sample(2, seed=0).shape[0] == 2\n"
        "try:\n"
        "    zoo.load('lvae_mnist')\n"
        "except FileNotFoundError as error:\n"
        "    assert 'tfladder fetch lvae_mnist' in str(error), error\n"
        "print('LOADED', sorted(zoo.available()))\n")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", TFLADDER_ZOO_URL="http://127.0.0.1:9/",
               TFLADDER_CACHE=str(tmp_path / "cache"))
    process = subprocess.run([str(python), "-c", script], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=600)
    assert process.returncode == 0, process.stderr[-3000:]
    assert "LOADED" in process.stdout
