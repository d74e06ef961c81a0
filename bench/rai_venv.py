"""Build the rai-toolbox 0.2.1 virtual environment the benchmark compares with
(``bench/.venv-rai``, gitignored)."""

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
VENV = HERE / ".venv-rai"


def python() -> Path:
    return VENV / "bin" / "python"


def ensure(quiet: bool = False) -> Path:
    py = python()
    ok = (
        py.exists()
        and subprocess.run([str(py), "-c", "import rai_toolbox.mushin"], capture_output=True).returncode == 0
    )
    if ok:
        return py
    t = time.time()
    print(f"building {VENV} (rai-toolbox[mushin]==0.2.1, torch==2.13.0) ...", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    pip = [str(py), "-m", "pip", "install", "-q"]
    subprocess.run(pip + ["torch==2.13.0"], check=True)  # first: any other spec may pull CUDA
    subprocess.run(pip + ["torch==2.13.0", "rai-toolbox[mushin]==0.2.1"], check=True)
    subprocess.run([str(py), "-m", "pip", "uninstall", "-y", "-q", "torchvision"], check=False)
    print(f"built in {time.time() - t:.0f} s", file=sys.stderr)
    return py


if __name__ == "__main__":
    print(ensure())
