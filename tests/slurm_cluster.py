"""The real single-node SLURM cluster of the tests, started from the project's own
``scripts/cluster/slurm_start.sh`` once per test session and stopped by pid with
``slurm_stop.sh`` when its last user releases it (tests/test_cluster_slurm.py and
tests/test_notebooks_scale.py share it).

``acquire(required=...)``: the cluster (its ``SLURM_CONF`` is exported to this
process, and the tests' directory put on ``PYTHONPATH`` for the array tasks), or
None when SLURM is not installed here (or not as root) and neither ``required`` nor
``CI`` is set (the reason is in :data:`why_not`). With ``CI`` set, a cluster that
cannot start fails the test with the reason.
"""

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
START = ROOT / "scripts" / "cluster" / "slurm_start.sh"
STOP = ROOT / "scripts" / "cluster" / "slurm_stop.sh"
HERE = Path(__file__).resolve().parent
PROGRAMS = ("munged", "mariadbd", "slurmdbd", "slurmctld", "slurmd", "sbatch", "sacct")


@dataclass
class Cluster:
    state: Path
    conf: str
    pids: list[int]


_cluster: Cluster | None = None
_users = 0
_saved: dict[str, str | None] = {}
why_not = ""


def missing() -> list[str]:
    return [p for p in PROGRAMS if not (shutil.which(p) or os.path.exists(f"/usr/sbin/{p}"))]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is not running
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except (OSError, IndexError):
        return True


def acquire(*, required: bool = True) -> Cluster | None:
    """The session's cluster (started on first use); see the module docstring.
    Without it: ``pytest.skip`` if ``required``, else None."""
    global _cluster, _users, why_not
    if _cluster is not None:
        _users += 1
        return _cluster
    if not os.environ.get("CI"):
        gone = missing()
        if gone:
            why_not = (
                f"SLURM is not installed here (no {', '.join(gone)}); CI installs it (apt-get install "
                "munge slurm-client slurmctld slurmd slurmdbd mariadb-server) and runs these"
            )
        elif os.geteuid() != 0:
            why_not = "the test SLURM cluster's daemons run as root: run the tests as root (CI does)"
        if why_not:
            if required:
                pytest.skip(why_not)
            return None
    state = Path(tempfile.mkdtemp(prefix="mushin-slurm-"))
    try:
        p = subprocess.run(
            ["bash", str(START), str(state)],
            capture_output=True,
            text=True,
            timeout=900,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as e:
        subprocess.run(["bash", str(STOP), str(state), "--remove"], capture_output=True, timeout=300)
        pytest.fail(f"the SLURM test cluster did not start within {e.timeout} s: {e.stderr!r:.3000}")
    if p.returncode != 0:
        pytest.fail(
            f"the SLURM test cluster did not start (scripts/cluster/slurm_start.sh exited {p.returncode}):\n"
            f"{p.stderr[-4000:]}"
        )
    out = dict(line.split("=", 1) for line in p.stdout.splitlines() if "=" in line)
    _cluster = Cluster(state=state, conf=out["SLURM_CONF"], pids=[int(x) for x in out["PIDS"].split()])
    _users = 1
    _saved.update({k: os.environ.get(k) for k in ("SLURM_CONF", "PYTHONPATH")})
    os.environ["SLURM_CONF"] = _cluster.conf
    # the array tasks import the tests' workflows (slurm_tasks) and unpickle Hydra's
    # plugin registry, the tests' plugins included
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [str(HERE), str(HERE / "plugins")] + ([_saved["PYTHONPATH"]] if _saved["PYTHONPATH"] else [])
    )
    return _cluster


def release() -> None:
    """One user less; the last one stops the cluster and checks nothing of it runs."""
    global _cluster, _users
    if _cluster is None:
        return
    _users -= 1
    if _users > 0:
        return
    cluster, _cluster = _cluster, None
    for k, v in _saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    s = subprocess.run(["bash", str(STOP), str(cluster.state)], capture_output=True, text=True, timeout=300)
    left = [pid for pid in cluster.pids if alive(pid)]
    if s.returncode != 0 or left:
        raise AssertionError(
            f"slurm_stop.sh left processes running ({left}; exit {s.returncode}):\n{s.stderr[-2000:]}"
        )
    shutil.rmtree(cluster.state, ignore_errors=True)
