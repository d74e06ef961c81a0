import logging
import os
import signal
import sys
from pathlib import Path

import pytest
from hypothesis import settings

# The Ctrl-C tests press it with _thread.interrupt_main(), which does nothing while SIGINT is
# ignored, and a background job of a non-interactive shell (`.ci/run &`, nohup) starts with
# SIGINT ignored: a blocking run would then wait for its jobs instead of being interrupted.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

settings.register_profile("ci", deadline=None, max_examples=25, print_blob=True)
settings.register_profile("fast", deadline=None, max_examples=5)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

# test-only Hydra plugins (e.g. a sweeper that runs jobs in reverse order)
sys.path.insert(0, str(Path(__file__).parent / "plugins"))

try:
    import torch

    torch.set_num_threads(1)
except ImportError:  # pragma: no cover
    pass


@pytest.fixture()
def cleandir(tmp_path, monkeypatch):
    """Run the test inside a fresh temporary directory."""
    monkeypatch.chdir(tmp_path)
    yield tmp_path
    logging.shutdown()


@pytest.fixture(autouse=True)
def _no_leftover_hydra():
    yield
    from hydra.core.global_hydra import GlobalHydra

    assert not GlobalHydra.instance().is_initialized() or getattr(_no_leftover_hydra, "allow", False)


def pytest_collection_modifyitems(config, items):
    """Tests on real clusters (SLURM, Dask, Ray daemons started on this 2-core machine)
    and in a real browser depend on daemons' and a browser's timing under load: each gets
    up to two reruns (pytest-rerunfailures), reported as such in the summary. A test that
    fails three times fails the run."""
    for item in items:
        if item.get_closest_marker("cluster") or item.nodeid.startswith("tests/e2e/"):
            item.add_marker(pytest.mark.flaky(reruns=2, reruns_delay=2))


@pytest.fixture()
def small_disk(tmp_path):
    """A real 600 kB tmpfs (root only; CI runs as root), unmounted afterwards."""
    import shutil
    import subprocess
    import uuid

    mnt = tmp_path / f"disk-{uuid.uuid4().hex[:6]}"
    mnt.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        if os.environ.get("CI"):
            pytest.fail("CI runs as root and must be able to mount a tmpfs for the full-disk test")
        pytest.skip("mounting a tmpfs needs root (CI runs this test)")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=600k", "tmpfs", str(mnt)], capture_output=True)
    if r.returncode != 0:
        if os.environ.get("CI"):
            pytest.fail(f"cannot mount a tmpfs: {r.stderr.decode()}")
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.decode()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)
