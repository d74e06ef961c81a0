"""A full disk (a real, small tmpfs): every result written before it filled is kept
and reloads exactly, the sweep ends with a clear error, no cell stays open, and
resume after space is freed completes the grid."""

import subprocess
import warnings

import numpy as np
import pytest

from mushin_nb import MultiRunMetricsWorkflow, SweepError, multirun

pytestmark = pytest.mark.usefixtures("cleandir")


class Big(MultiRunMetricsWorkflow):
    @staticmethod
    def task(x: int) -> dict:
        return dict(y=x * 10, a=np.full(12000, float(x)))  # about 96 kB per job


def test_full_disk_keeps_every_written_result_and_resume_completes(small_disk):
    wd = small_disk / "sweep"
    wf = Big()
    with pytest.raises(SweepError) as err:
        wf.run(x=multirun(list(range(12))), working_dir=str(wd), progress=False)
    msg = str(err.value)
    assert "No space left on device" in msg and "resume=True" in msg
    status = wf.last_run.status
    assert status["pending"] == 0 and status["running"] == 0
    assert 0 < status["done"] < 12
    live = wf.last_run.dataset
    done = [int(x) for x in live["x"].values[live["status"].values == "done"]]
    # every finished cell reloads with its exact value; nothing else shows a value
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the disk-full cells may be reported damaged
        ds = MultiRunMetricsWorkflow().load_from_dir(wd).to_xarray()
    for x in range(12):
        if x in done:
            assert ds["y"].sel(x=x).item() == x * 10
            assert (ds["a"].sel(x=x).values == float(x)).all()
        else:
            assert np.isnan(ds["y"].sel(x=x).item())
    # free space, resume: only the missing cells run, and the grid completes exactly
    subprocess.run(["mount", "-o", "remount,size=4m", str(small_disk)], check=True)
    wf2 = Big()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        wf2.run(x=multirun(list(range(12))), working_dir=str(wd), resume=True, progress=False)
    assert wf2.last_run.skipped == len(done)
    full = wf2.to_xarray()
    assert full["y"].values.tolist() == [x * 10 for x in range(12)]
    assert all((full["a"].sel(x=x).values == float(x)).all() for x in range(12))
