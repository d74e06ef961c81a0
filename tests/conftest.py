import logging
import os
import sys
from pathlib import Path

import pytest
from hypothesis import settings

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
