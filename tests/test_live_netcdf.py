"""Live NetCDF (issue 14): ``start(..., save="results.nc")`` writes the file while the
sweep runs, in place; it opens at any moment (in another process too, and after a
``kill -9``), and at the end it is what save_netcdf writes of the final Dataset."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from mushin_nb import MultiRunMetricsWorkflow, load_netcdf, multirun, save_netcdf
from mushin_nb._live_netcdf import LiveNetCDF
from mushin_nb._livedata import LiveDataset
from mushin_nb._store import JobResult
from mushin_nb._sweep import Param, SweepSpec

pytestmark = pytest.mark.usefixtures("cleandir")


def wait_until(cond, timeout=60.0, what="condition"):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


class Gated(MultiRunMetricsWorkflow):
    """Each job waits until the test creates ``go_<x>`` in ``gate_dir``."""

    @staticmethod
    def task(x: int, gate_dir: str) -> dict:
        go = Path(gate_dir) / f"go_{x}"
        end = time.monotonic() + 60
        while not go.exists() and time.monotonic() < end:
            time.sleep(0.01)
        return dict(y=x * 10, curve=np.arange(3.0) * x, name="n" * (x + 1))


def done_in(path) -> dict[int, float]:
    ds = load_netcdf(path)
    return {int(x): float(ds["y"].sel(x=x)) for x in ds["x"].values if ds["status"].sel(x=x).item() == "done"}


def test_the_file_fills_in_while_the_sweep_runs_and_ends_as_save_netcdf(cleandir):
    gates = cleandir / "gates"
    gates.mkdir()
    run = Gated().start(x=multirun([1, 2, 3]), gate_dir=str(gates), working_dir="d", save="live.nc")
    path = cleandir / "live.nc"
    assert path.exists()  # the whole grid, at once
    first = load_netcdf(path)
    assert first["status"].values.tolist() in (["pending"] * 3, ["running", "pending", "pending"])
    (gates / "go_2").touch()
    (gates / "go_1").touch()
    wait_until(lambda: len(done_in(path)) >= 2, what="two cells in the file")
    ds = load_netcdf(path)
    assert ds["y"].values.tolist()[:2] == [10.0, 20.0] and np.isnan(ds["y"].values[2])
    assert ds["name"].values.tolist() == ["nn", "nnn", ""]
    assert ds["status"].values.tolist()[:2] == ["done", "done"] and ds["status"].values[2] in (
        "pending",
        "running",
    )
    np.testing.assert_array_equal(ds["curve"].values[1], [0.0, 2.0, 4.0])
    (gates / "go_3").touch()
    final = run.wait(60)
    on_disk = load_netcdf(path)
    xr.testing.assert_identical(on_disk, load_netcdf(save_netcdf(final, cleandir / "after.nc")))
    xr.testing.assert_identical(on_disk, final)
    assert on_disk["y"].dtype == np.int64  # every cell done: ints exact again, as in the Dataset


KILLED = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from mushin_nb import MultiRunMetricsWorkflow, multirun

    class Gated(MultiRunMetricsWorkflow):
        @staticmethod
        def task(x: int, gate_dir: str, fast: bool) -> dict:
            go = Path(gate_dir) / f"go_{x}"
            while not fast and not go.exists():
                time.sleep(0.01)
            return dict(y=x * 10, label="v" * (x % 7))

    if __name__ == "__main__":
        n, fast = int(sys.argv[2]), sys.argv[3] == "fast"
        Gated().run(x=multirun(list(range(n))), gate_dir=sys.argv[1], fast=fast, working_dir="d",
                    save="live.nc", progress=False)
    """
)


def _index_cells(sweep_dir: Path) -> set[int]:
    """The cells whose job finished (the sweep's own record of them)."""
    lines = (sweep_dir / ".mushin" / "index.jsonl").read_text().splitlines()
    return {
        json.loads(line)["index"][0]
        for line in lines
        if line.strip() and json.loads(line)["status"] == "done"
    }


def _check_file(path: Path, n: int) -> dict[int, float]:
    """The file opens; every cell it calls done holds its job's values, the others are
    NaN ("" for text) with the state they had."""
    ds = load_netcdf(path)
    assert ds["x"].values.tolist() == list(range(n))
    done = done_in(path)
    for x in range(n):
        if x in done:
            assert done[x] == 10 * x and ds["label"].sel(x=x).item() == "v" * (x % 7)
        else:
            assert ds["status"].sel(x=x).item() in ("pending", "running")
            assert np.isnan(ds["y"].sel(x=x).item()) and ds["label"].sel(x=x).item() == ""
    return done


def test_kill_9_leaves_a_file_with_every_cell_written_before_and_resume_continues_it(cleandir):
    gates = cleandir / "gates"
    gates.mkdir()
    Path("killed.py").write_text(KILLED)
    proc = subprocess.Popen([sys.executable, "killed.py", str(gates), "6", "gated"], cwd=cleandir)
    path = cleandir / "live.nc"
    try:
        for x in range(3):
            (gates / f"go_{x}").touch()
        # this process reads the file while the other writes it
        wait_until(lambda: path.exists() and len(done_in(path)) == 3, timeout=120, what="3 cells in the file")
        wait_until(lambda: load_netcdf(path)["status"].sel(x=3).item() == "running", what="job 3 running")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    done = _check_file(path, 6)
    assert set(done) == _index_cells(cleandir / "d") == {0, 1, 2}
    assert load_netcdf(path)["status"].values.tolist() == ["done"] * 3 + ["running", "pending", "pending"]
    # resume=True with the same save= continues the same file
    sys.path.insert(0, str(cleandir))
    try:
        import killed

        for x in range(6):
            (gates / f"go_{x}").touch()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # the dead process's lock is taken over
            killed.Gated().run(
                x=multirun(list(range(6))),
                gate_dir=str(gates),
                fast=False,
                working_dir="d",
                save="live.nc",
                resume=True,
                progress=False,
            )
        assert _check_file(path, 6) == {x: 10.0 * x for x in range(6)}
    finally:
        sys.path.remove(str(cleandir))
        sys.modules.pop("killed", None)


def test_kill_9_at_any_moment_of_a_fast_sweep(cleandir):
    """Jobs that finish as fast as they can, killed while the file is being written:
    the file opens, and each cell it holds is right."""
    Path("killed.py").write_text(KILLED)
    proc = subprocess.Popen([sys.executable, "killed.py", str(cleandir), "400", "fast"], cwd=cleandir)
    path = cleandir / "live.nc"
    try:
        wait_until(lambda: path.exists() and len(done_in(path)) >= 20, timeout=120, what="cells in the file")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    done = _check_file(path, 400)
    finished = _index_cells(cleandir / "d")
    assert 20 <= len(done) and set(done) <= finished


# ------------------------------------------------------------------ the writer itself


def _live(shape=(4,)) -> LiveDataset:
    return LiveDataset(
        SweepSpec([Param("x", list(range(shape[0])), [str(i) for i in range(shape[0])], swept=True)])
    )


def _same_values(path, live: LiveDataset) -> None:
    """The file holds what the live Dataset holds (text and ints may differ in dtype
    while the sweep runs: fixed-width text, ints as float while cells are missing)."""
    got, want = load_netcdf(path), live.snapshot(warn=False)
    assert set(got.data_vars) == set(want.data_vars)
    xr.testing.assert_equal(got, want)


def test_cells_are_written_in_place_and_layout_changes_rewrite_the_file(cleandir):
    live = _live()
    f = LiveNetCDF(live, "f.nc", every=0)
    assert f.rewrites == 1
    steps = [
        ((0,), {"a": 1.5}),  # the first metric: the file is written whole
        ((1,), {"a": 2.5}),  # in place
        ((2,), {"a": 3.5, "b": "x"}),  # a new metric: the file is written whole
        ((3,), {"a": 4.5, "b": "é" * 20}),  # 40 bytes of text: a wider column
    ]
    for idx, metrics in steps:
        live.add(JobResult(index=idx, status="done", metrics=metrics))
        f.flush()
        _same_values("f.nc", live)
    assert f.rewrites == 4 and f.cells_written == 1
    live.set_status((0,), "failed")
    f.flush()
    assert load_netcdf("f.nc")["status"].values.tolist()[0] == "failed"
    assert f.rewrites == 4 and f.cells_written == 2
    f.close()
    xr.testing.assert_identical(
        load_netcdf("f.nc"), load_netcdf(save_netcdf(live.snapshot(warn=False), "g.nc"))
    )


def test_ragged_and_int_metrics_and_a_deleted_file(cleandir):
    live = _live((3,))
    f = LiveNetCDF(live, "f.nc", every=0)
    live.add(JobResult(index=(0,), status="done", metrics={"n": 1, "c": np.arange(2)}))
    f.flush()
    _same_values("f.nc", live)
    live.add(JobResult(index=(1,), status="done", metrics={"n": 2, "c": np.arange(3)}))  # ragged: grows
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        f.flush()
        _same_values("f.nc", live)
        os.unlink("f.nc")  # someone deletes the file: the next write puts it back
        live.add(JobResult(index=(2,), status="done", metrics={"n": 3, "c": np.arange(3)}))
        f.flush()
        _same_values("f.nc", live)
        f.close()
        assert load_netcdf("f.nc")["n"].dtype == np.int64


def test_save_is_checked_before_anything_happens(cleandir):
    Path("taken.nc").write_text("x")
    Path("adir").mkdir()
    cases = [
        (3, TypeError, "give the path of a NetCDF file"),
        ("taken.nc", FileExistsError, "resume=True continues it"),
        ("adir", IsADirectoryError, "give a file name"),
    ]
    for save, err, words in cases:
        with pytest.raises(err, match=words):
            Gated().start(x=multirun([1]), gate_dir=".", working_dir="never", save=save)
        assert not Path("never").exists()
    assert Path("taken.nc").read_text() == "x"


def test_run_save_during_and_after_the_run(cleandir):
    gates = cleandir / "gates"
    gates.mkdir()
    run = Gated().start(x=multirun([0, 1]), gate_dir=str(gates), working_dir="d")
    p = run.save("later.nc")
    assert p == cleandir / "later.nc" and run.save("later.nc") == p  # once per path
    with pytest.raises(FileExistsError, match="overwrite=True"):
        LiveNetCDF(run._live, p)  # another writer of the same file
    for x in (0, 1):
        (gates / f"go_{x}").touch()
    final = run.wait(60)
    xr.testing.assert_identical(load_netcdf(p), final)
    assert run.save("later.nc") == p  # written live by this run: final already
    Path("other.nc").write_text("x")
    with pytest.raises(FileExistsError):
        run.save("other.nc")
    other = run.save("other.nc", overwrite=True)  # after the end: one save_netcdf
    xr.testing.assert_identical(load_netcdf(other), final)


def test_the_magic_save_writes_the_file_while_the_sweep_runs(cleandir):
    pytest.importorskip("IPython")
    sys.path.insert(0, str(Path(__file__).parent))
    from _ipy import shell

    ip = shell()
    ip.run_cell("import threading\nmagic_gate = threading.Event()")
    body = "def task(x: int) -> dict:\n    magic_gate.wait(30)\n    return dict(y=x)"
    res = ip.run_cell(f"%%mushin_sweep x=1,2,3 -o mds --background --no-view --save live.nc\n{body}")
    assert res.success, res.error_in_exec
    path = cleandir / "live.nc"
    assert path.exists() and load_netcdf(path)["status"].values.tolist()[1:] == ["pending", "pending"]
    ip.run_cell("magic_gate.set()")
    run = ip.user_ns["mds_run"]
    final = run.wait(60)
    wait_until(lambda: not any(t.name == "mushin-magic-finish" for t in threading.enumerate()))
    xr.testing.assert_identical(load_netcdf(path), final)
