"""Damage stays local, and files like any tool's (issue 10, points 5 and 8).

Real sweeps are run, then files of their directory are damaged as a disk, a killed
writer or a hostile user would, then the directory is reloaded: the untouched cells
come back with their exact values, the damaged cells are marked (a failed result of
error type DamagedResult) or missing, one RuntimeWarning names the files, and
``resume=True`` re-runs exactly the damaged cells (counted by the task's calls).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from mushin_nb import MultiRunMetricsWorkflow, _store, load_netcdf, multirun, save_netcdf
from mushin_nb.cli import main as cli_main

pytestmark = pytest.mark.usefixtures("cleandir")

CALLS: list[tuple[int, int]] = []
X, Y = [1, 2, 3], [0, 1]
CELLS = [(x, y) for x in X for y in Y]


class Grid(MultiRunMetricsWorkflow):
    @staticmethod
    def task(x: int, y: int) -> dict:
        CALLS.append((x, y))  # the in-process launcher: the test counts the jobs run
        return dict(s=10 * x + y, v=np.arange(3) * x + y)


def run_grid(d: str = "d", *, resume: bool = False, xs=X) -> tuple[Path, xr.Dataset]:
    CALLS.clear()
    wf = Grid()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        wf.run(x=multirun(list(xs)), y=multirun(Y), working_dir=d, progress=False, resume=resume)
    return Path(d).absolute(), wf.to_xarray()


def index_lines(d: Path) -> list[bytes]:
    return (d / ".mushin" / "index.jsonl").read_bytes().splitlines(keepends=True)


def line_of(d: Path, cell: tuple[int, int]) -> int:
    """0-based index line of the cell's record."""
    want = [X.index(cell[0]), Y.index(cell[1])]
    for n, line in enumerate(index_lines(d)):
        if json.loads(line)["index"] == want:
            return n
    raise AssertionError(cell)


def job_dir(d: Path, cell: tuple[int, int]) -> Path:
    return d / json.loads(index_lines(d)[line_of(d, cell)])["subdir"]


def reload(d: Path) -> tuple[MultiRunMetricsWorkflow, xr.Dataset, list[str]]:
    """load_from_dir + to_xarray, and mushin_nb's RuntimeWarnings on the way."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        wf = MultiRunMetricsWorkflow().load_from_dir(d)
        ds = wf.to_xarray()
    msgs = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    return wf, ds, [m for m in msgs if m.startswith("mushin_nb:")]


def marked(wf: MultiRunMetricsWorkflow) -> set[tuple[int, int]]:
    """The cells shown as damaged (failed, DamagedResult)."""
    out = set()
    for r in wf._results:
        if r.status == "failed" and (r.error or {}).get("type") == "DamagedResult":
            out.add((X[r.index[0]], Y[r.index[1]]))
    return out


def assert_local(ds: xr.Dataset, ref: xr.Dataset, lost: set[tuple[int, int]]) -> None:
    """Every cell but ``lost`` has its exact value; the lost ones have none."""
    for x, y in CELLS:
        s = ds["s"].sel(x=x, y=y)
        v = ds["v"].sel(x=x, y=y).values
        if (x, y) in lost:
            assert np.isnan(s.item()) and np.isnan(v).all(), (x, y)
        else:
            assert s.item() == ref["s"].sel(x=x, y=y).item(), (x, y)
            np.testing.assert_array_equal(v, ref["v"].sel(x=x, y=y).values)


def assert_resume_reruns(d: Path, ref: xr.Dataset, cells: set[tuple[int, int]]) -> None:
    """resume=True runs exactly ``cells``, then everything reloads exact and clean."""
    _, ds = run_grid(str(d), resume=True)
    assert sorted(CALLS) == sorted(cells)
    xr.testing.assert_identical(ds, ref)
    _, again, _ = reload(d)
    xr.testing.assert_identical(again, ref)


# ---------------------------------------------------------------- result files


def test_missing_npz_costs_its_cell_only():
    d, ref = run_grid()
    npz = job_dir(d, (2, 0)) / _store.RESULT_NPZ
    os.unlink(npz)
    wf, ds, msgs = reload(d)
    assert_local(ds, ref, {(2, 0)})
    assert marked(wf) == {(2, 0)}
    (msg,) = msgs
    assert str(npz.relative_to(d)) in msg and "is missing" in msg and "x=2, y=0" in msg
    assert "resume=True" in msg
    (r,) = [r for r in wf._results if r.status == "failed"]
    assert r.error["type"] == "DamagedResult" and str(npz) in r.error["message"]
    assert_resume_reruns(d, ref, {(2, 0)})
    assert reload(d)[2] == []  # re-run: nothing damaged any more


def _truncate(p: Path) -> None:
    p.write_bytes(p.read_bytes()[:150])


def _garbage(p: Path) -> None:
    p.write_bytes(b"\x00\x01 not a zip archive at all")


def _pickled(p: Path) -> None:
    # an archive holding a pickle: never loaded (allow_pickle=False)
    with open(p, "wb") as f:
        np.savez(f, v=np.array([{"evil": 1}], dtype=object))


def _wrong_names(p: Path) -> None:
    with open(p, "wb") as f:
        np.savez(f, other=np.arange(3))


@pytest.mark.parametrize("damage", [_truncate, _garbage, _pickled, _wrong_names])
def test_corrupt_npz_costs_its_cell_only(damage):
    d, ref = run_grid()
    npz = job_dir(d, (3, 1)) / _store.RESULT_NPZ
    damage(npz)
    wf, ds, msgs = reload(d)
    assert_local(ds, ref, {(3, 1)})
    assert marked(wf) == {(3, 1)}
    (msg,) = msgs
    assert str(npz.relative_to(d)) in msg and "x=3, y=1" in msg
    assert_resume_reruns(d, ref, {(3, 1)})


def test_corrupt_json_is_read_from_its_index_line():
    """The index line holds the same record: nothing is lost, the reload does not
    even read the file (10k jobs reload fast); `check` finds it, --repair rewrites it."""
    d, ref = run_grid()
    js = job_dir(d, (1, 1)) / _store.RESULT_JSON
    js.write_text('{"index": [0, 1], "status": "do')
    wf, ds, msgs = reload(d)
    xr.testing.assert_identical(ds, ref)
    assert msgs == [] and marked(wf) == set()
    assert cli_main(["check", str(d)]) == 1
    assert cli_main(["check", "--repair", str(d)]) == 0
    assert json.loads(js.read_text())["scalars"]["s"] == 11
    assert_resume_reruns(d, ref, set())


def test_corrupt_json_without_index_line_leaves_its_cell_missing():
    """No index line names the job (torn) and its result file is corrupt: its cell is
    unknown, shown missing, and resume=True re-runs exactly it."""
    d, ref = run_grid()
    lines = index_lines(d)
    n = line_of(d, (2, 1))
    js = job_dir(d, (2, 1)) / _store.RESULT_JSON
    (d / ".mushin" / "index.jsonl").write_bytes(b"".join(lines[:n] + lines[n + 1 :]))
    js.write_bytes(b"\xff\xfe garbage")
    wf, ds, msgs = reload(d)
    assert_local(ds, ref, {(2, 1)})
    assert marked(wf) == set()  # its cell is unknown: missing, not marked
    (msg,) = msgs
    assert str(js.relative_to(d)) in msg and "UTF-8" in msg
    assert_resume_reruns(d, ref, {(2, 1)})


# ---------------------------------------------------------------- the index


def test_garbage_index_line_is_skipped_and_its_job_found_by_scanning():
    d, ref = run_grid()
    lines = index_lines(d)
    lines[2] = b'{"index": [0, 1], "status": "done", "subd\x00 garbage\n'
    (d / ".mushin" / "index.jsonl").write_bytes(b"".join(lines))
    wf, ds, msgs = reload(d)
    xr.testing.assert_identical(ds, ref)  # the job's own result file was read
    (msg,) = msgs
    assert "index.jsonl line 3" in msg and "JSON" in msg
    assert_resume_reruns(d, ref, set())


def test_garbage_index_line_and_lost_job_dir_cost_one_cell():
    d, ref = run_grid()
    n = line_of(d, (1, 0))
    shutil.rmtree(job_dir(d, (1, 0)))
    lines = index_lines(d)
    lines[n] = b"[1, 2, 3]\n"  # JSON, but not a job record
    (d / ".mushin" / "index.jsonl").write_bytes(b"".join(lines))
    wf, ds, msgs = reload(d)
    assert_local(ds, ref, {(1, 0)})
    (msg,) = msgs
    assert f"index.jsonl line {n + 1}" in msg and "not a job record" in msg
    assert_resume_reruns(d, ref, {(1, 0)})


def test_invalid_utf8_in_index():
    d, ref = run_grid()
    lines = index_lines(d)
    n = line_of(d, (3, 0))
    shutil.rmtree(job_dir(d, (3, 0)))  # and its job's directory: that cell is lost
    lines[n] = lines[n].replace(b'"done"', b'"d\xffne"')
    (d / ".mushin" / "index.jsonl").write_bytes(b"".join(lines))
    wf, ds, msgs = reload(d)
    assert_local(ds, ref, {(3, 0)})
    (msg,) = msgs
    assert f"index.jsonl line {n + 1}" in msg and "UTF-8" in msg
    assert_resume_reruns(d, ref, {(3, 0)})


def test_torn_last_line_then_a_resume_appends_whole_lines():
    d, ref = run_grid()
    lines = index_lines(d)
    last = json.loads(lines[-1])
    cell = (X[last["index"][0]], Y[last["index"][1]])
    (d / ".mushin" / "index.jsonl").write_bytes(b"".join(lines[:-1]) + lines[-1][:40])
    wf, ds, msgs = reload(d)
    xr.testing.assert_identical(ds, ref)  # found by scanning its directory
    (msg,) = msgs
    assert f"index.jsonl line {len(lines)}" in msg and "torn" in msg
    shutil.rmtree(d / last["subdir"])
    assert_resume_reruns(d, ref, {cell})
    # the resumed job's line did not glue onto the torn one
    recs, _ = _store.read_index_raw(d)
    assert any(r["index"] == last["index"] and r["run_id"] != last["run_id"] for r in recs)


def test_live_poll_skips_garbage_lines():
    wf = Grid()
    run = wf.start(x=multirun(X), y=multirun(Y), working_dir="d")
    run.wait(120)
    d = Path("d").absolute()
    with open(d / ".mushin" / "index.jsonl", "ab") as f:
        f.write(b"garbage\n\xff\xfe\n[1]\n{}\n")
        f.write(
            json.dumps({"index": [0, 0], "status": "done", "subdir": "../x", "run_id": run.run_id}).encode()
        )
        f.write(b"\n")
        f.write(json.dumps({"index": "0", "status": "done", "subdir": "0", "run_id": run.run_id}).encode())
        f.write(b'\n{"torn": ')
    run._offset = 0
    run._seen.clear()
    run.poll()  # no exception
    assert run.status["done"] == len(CELLS)
    assert run.dataset["s"].sel(x=2, y=1).item() == 21


# ---------------------------------------------------------------- the manifest


def test_corrupt_manifest_is_rebuilt_from_the_run_copies():
    d, ref = run_grid()
    run_grid(resume=True)  # a second run: two per-run copies
    m = d / ".mushin" / "manifest.json"
    m.write_text('{"format": 1, "spec": {"params": [')
    wf, ds, msgs = reload(d)
    xr.testing.assert_identical(ds, ref)
    (msg,) = msgs
    assert ".mushin/manifest.json" in msg and "rebuilt" in msg
    assert_resume_reruns(d, ref, set())
    assert cli_main(["check", "--repair", str(d)]) == 0
    assert reload(d)[2] == []


def test_missing_manifest_is_rebuilt_with_each_runs_grid():
    d, small = run_grid(xs=[1, 2])
    d, ref = run_grid(resume=True)  # the grid grew: two runs with different grids
    assert sorted(CALLS) == [(3, 0), (3, 1)]
    os.unlink(d / ".mushin" / "manifest.json")
    wf, ds, msgs = reload(d)
    xr.testing.assert_identical(ds, ref)
    (msg,) = msgs
    assert "manifest.json is missing" in msg
    assert_resume_reruns(d, ref, set())


def test_rebuilt_manifest_keeps_only_the_runs_of_the_current_sweep():
    """A run without resume replaced an earlier sweep in the directory: the rebuilt
    manifest does not bring that earlier sweep's results back."""
    d, _ = run_grid()
    d, ref = run_grid(xs=[5])
    os.unlink(d / ".mushin" / "manifest.json")
    _, ds, msgs = reload(d)
    xr.testing.assert_identical(ds, ref)
    assert len(msgs) == 1


def test_corrupt_manifest_without_copies_reloads_from_the_job_dirs_and_refuses_resume():
    """No manifest and no per-run copies: each job's own files still place its result
    (multirun.yaml + .hydra/overrides.yaml), with one warning naming the manifest; a
    resume is refused with a clear error (new jobs could not be placed safely)."""
    d, ref = run_grid()
    shutil.rmtree(d / ".mushin" / "runs")
    (d / ".mushin" / "manifest.json").write_text("nonsense")
    wf, ds, msgs = reload(d)
    assert_local(ds, ref, set())
    (msg,) = msgs
    assert "manifest.json" in msg and "rebuilt from multirun.yaml" in msg
    with pytest.raises(FileNotFoundError, match="per-run copies are lost"):
        run_grid(str(d), resume=True)


@pytest.mark.parametrize("torn", ["hydra.yaml", "overrides.yaml"])
def test_torn_hydra_file_without_manifest_costs_its_job_only(torn):
    """No manifest and no per-run copies, and one job's .hydra file cut short (a kill
    mid-write): that job is left out with a warning naming the file; every other cell
    reloads exactly."""
    d, ref = run_grid()
    shutil.rmtree(d / ".mushin" / "runs")
    os.unlink(d / ".mushin" / "manifest.json")
    f = job_dir(d, (3, 1)) / ".hydra" / torn
    f.write_text("hydra:\n  job: [\n" if torn == "hydra.yaml" else "- x=3\n- 'y=")
    wf, ds, msgs = reload(d)
    assert_local(ds, ref, {(3, 1)})
    assert any(str(f.parent.relative_to(d)) in m and "cannot be read" in m for m in msgs), msgs


# ---------------------------------------------------------------- outside the sweep directory


@pytest.mark.parametrize("kind", ["dotdot", "absolute"])
def test_index_record_pointing_outside_is_not_followed(kind, tmp_path):
    d, ref = run_grid()
    n = line_of(d, (2, 0))
    src = job_dir(d, (2, 0))
    outside = tmp_path / "outside"
    outside.mkdir()
    moved = Path(shutil.move(str(src), str(outside / src.name)))
    # what is outside claims another value: it must never be read
    rec = json.loads((moved / _store.RESULT_JSON).read_text())
    rec["scalars"]["s"] = 999
    (moved / _store.RESULT_JSON).write_text(json.dumps(rec))
    lines = index_lines(d)
    rec = json.loads(lines[n])
    rec["subdir"] = f"../outside/{src.name}" if kind == "dotdot" else str(moved)
    rec["scalars"]["s"] = 999
    lines[n] = (json.dumps(rec) + "\n").encode()
    (d / ".mushin" / "index.jsonl").write_bytes(b"".join(lines))
    wf, ds, msgs = reload(d)
    assert_local(ds, ref, {(2, 0)})
    assert marked(wf) == {(2, 0)}
    (msg,) = msgs
    assert f"index.jsonl line {n + 1}" in msg and "not followed" in msg
    assert ("'..'" if kind == "dotdot" else "absolute path") in msg
    assert 999 not in ds["s"].values
    assert_resume_reruns(d, ref, {(2, 0)})


def test_symlinked_job_dir_pointing_outside_is_not_followed(tmp_path):
    d, ref = run_grid()
    src = job_dir(d, (1, 1))
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    moved = Path(shutil.move(str(src), str(outside / src.name)))
    np.savez(moved / _store.RESULT_NPZ, v=np.full(3, 999))  # never read
    src.symlink_to(moved, target_is_directory=True)
    with pytest.raises(ValueError, match="symbolic link to .*outside the sweep directory"):
        _store.job_dir_within(d, src.name)
    wf, ds, msgs = reload(d)
    assert_local(ds, ref, {(1, 1)})
    assert marked(wf) == {(1, 1)}
    (msg,) = msgs
    assert "symbolic link" in msg and "not followed" in msg
    # a start there is refused, naming the link (a job would write through it) ...
    with pytest.raises(ValueError, match=rf"symbolic links that lead outside it \({src.name}\)"):
        run_grid(str(d), resume=True)
    # ... and once the link is removed, resume re-runs exactly that cell
    src.unlink()
    assert_resume_reruns(d, ref, {(1, 1)})


def test_job_dir_within(tmp_path):
    d = tmp_path / "sweep"
    (d / "3" / "a").mkdir(parents=True)
    (d / "latest").symlink_to(d / "3")  # a link inside the sweep directory is fine
    (d / "out").symlink_to(tmp_path)
    assert _store.job_dir_within(d, "3") == d / "3"
    assert _store.job_dir_within(d, "3/a") == d / "3" / "a"
    assert _store.job_dir_within(d, "./3") == d / "3"
    assert _store.job_dir_within(d, "latest/a") == d / "latest" / "a"
    assert _store.job_dir_within(d, "not-there-yet") == d / "not-there-yet"
    for bad in ["..", "../sweep/3", "3/../../x", "/etc", str(d / "3"), "", ".", "out", "out/sweep/3"]:
        with pytest.raises(ValueError):
            _store.job_dir_within(d, bad)


# ---------------------------------------------------------------- mushin-nb check


def test_check_reports_and_repair_rebuilds(capsys, tmp_path):
    d, ref = run_grid()
    # damage: a garbage index line, a corrupt result file (its index line holds it),
    # a missing .npz, a stale temporary file of a dead writer; and the lock of a
    # sweep process that died (os._exit: it never released it)
    js = job_dir(d, (1, 0)) / _store.RESULT_JSON
    npz = job_dir(d, (3, 1)) / _store.RESULT_NPZ
    dead = _dead_pid()
    tmp = job_dir(d, (2, 0)) / _store.temp_name(_store.RESULT_JSON, pid=dead)
    lines = index_lines(d)
    lines.insert(1, b"not json\n")
    (d / ".mushin" / "index.jsonl").write_bytes(b"".join(lines))
    js.write_text("{")
    os.unlink(npz)
    tmp.write_text("{partial")
    holder = _hold_lock_and_die(d)

    assert cli_main(["check", str(d)]) == 1
    out = capsys.readouterr().out
    assert "cells: 6: 5 done, 0 failed, 0 cancelled, 1 damaged, 0 missing" in out
    assert "index.jsonl line 2" in out
    assert str(js.relative_to(d)) in out and str(npz.relative_to(d)) in out
    assert tmp.name in out and f"pid {dead}" in out
    assert f"lock: held by pid {holder} on host" in out and "stale" in out
    assert "DAMAGED" in out

    assert cli_main(["check", "--repair", str(d)]) == 1  # the .npz cannot be rebuilt
    out = capsys.readouterr().out
    assert f"rewrote {js.relative_to(d)}" in out
    assert "rebuilt .mushin/index.jsonl" in out
    assert f"removed {tmp.relative_to(d)}" in out
    assert "could not repair" in out and str(npz.relative_to(d)) in out and "resume=True" in out
    assert f"removed the lock of pid {holder}" in out and not (d / ".mushin" / "lock").exists()
    assert not tmp.exists()
    assert json.loads(js.read_text())["scalars"]["s"] == 10
    assert all(json.loads(line) for line in index_lines(d))
    assert (d / ".mushin" / "index.damaged.jsonl").exists()

    assert_resume_reruns(d, ref, {(3, 1)})
    # healthy now, checked as a user would: a subprocess
    p = subprocess.run(
        [sys.executable, "-m", "mushin_nb.cli", "check", str(d)], capture_output=True, text=True, timeout=300
    )
    assert p.returncode == 0, p.stdout + p.stderr
    assert "result: healthy" in p.stdout and "lock:" not in p.stdout


def _hold_lock_and_die(d: Path) -> int:
    """The pid of a process that took the sweep directory's lock and died holding it."""
    code = (
        "import os, sys\n"
        "from mushin_nb._lock import SweepLock\n"
        "SweepLock(sys.argv[1]).acquire()\n"
        "print(os.getpid(), flush=True)\n"
        "os._exit(0)\n"
    )
    p = subprocess.run([sys.executable, "-c", code, str(d)], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    return int(p.stdout)


def test_repair_waits_for_a_live_sweep(capsys):
    from mushin_nb._lock import SweepLock

    d, ref = run_grid()
    lines = index_lines(d)
    (d / ".mushin" / "index.jsonl").write_bytes(b"garbage\n" + b"".join(lines))
    with SweepLock(d):
        assert cli_main(["check", str(d)]) == 1
        assert f"lock: held by pid {os.getpid()}" in capsys.readouterr().out
        assert cli_main(["check", "--repair", str(d)]) == 1
        err = capsys.readouterr().err
        assert "being written by a sweep" in err and "Nothing was changed" in err
        assert index_lines(d)[0] == b"garbage\n"
        # sure that process is dead: --break-lock (here the holder is this test: it is not)
        assert cli_main(["check", "--break-lock", str(d)]) == 2
        assert "--break-lock only goes with --repair" in capsys.readouterr().err
    assert cli_main(["check", "--repair", str(d)]) == 0
    assert index_lines(d)[0] != b"garbage\n"
    with SweepLock(d):
        assert cli_main(["check", "--repair", "--break-lock", str(d)]) == 0
        assert "removed the lock of pid" in capsys.readouterr().out
        assert not (d / ".mushin" / "lock").exists()


def test_check_repair_rebuilds_a_lost_index(capsys):
    d, ref = run_grid()
    (d / ".mushin" / "index.jsonl").write_bytes(b"\xff" * 100 + b"\n")
    assert cli_main(["check", "--repair", str(d)]) == 0
    assert len(index_lines(d)) == len(CELLS)
    _, ds, msgs = reload(d)
    xr.testing.assert_identical(ds, ref)
    assert msgs == []


def test_check_user_mistakes_exit_2_without_traceback(capsys, tmp_path):
    (tmp_path / "file").write_text("x")
    (tmp_path / "plain").mkdir()
    for arg, words in [
        (tmp_path / "nope", "does not exist"),
        (tmp_path / "file", "is a file"),
        (tmp_path / "plain", "not a mushin-nb sweep directory"),
    ]:
        assert cli_main(["check", str(arg)]) == 2
        err = capsys.readouterr().err
        assert "DIR" in err and str(arg) in err and words in err
    p = subprocess.run(
        [sys.executable, "-m", "mushin_nb.cli", "check", str(tmp_path / "nope")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert p.returncode == 2 and "Traceback" not in p.stderr and "does not exist" in p.stderr
    with pytest.raises(SystemExit) as e:
        cli_main(["check"])
    assert e.value.code == 2 and "DIR" in capsys.readouterr().err


# ---------------------------------------------------------------- files like any tool's


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_files_follow_the_umask(umask, mode):
    old = os.umask(umask)
    try:
        d, ds = run_grid()
        nc = save_netcdf(ds, "out.nc")
    finally:
        os.umask(old)
    meta = d / ".mushin"
    files = [meta / "manifest.json", meta / "index.jsonl", nc, *meta.glob("runs/*.json")]
    for sub in [job_dir(d, c) for c in CELLS]:
        files += [sub / _store.RESULT_JSON, sub / _store.RESULT_NPZ]
    assert len(files) == 4 + 2 * len(CELLS)
    for f in files:
        assert oct(f.stat().st_mode & 0o777) == oct(mode), f
    xr.testing.assert_identical(load_netcdf(nc), ds)


def _dead_pid() -> int:
    p = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    return int(p.stdout)  # exited and reaped


def test_stale_temp_files_are_removed_only_when_their_writer_is_gone():
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        dead = _dead_pid()
        target = Path("out.nc").absolute()
        ds = xr.Dataset({"a": ("x", [1.0, 2.0])}, coords={"x": [1, 2]})
        left = target.parent / _store.temp_name(target.name, pid=dead)
        busy = target.parent / _store.temp_name(target.name, pid=live.pid)
        other = target.parent / _store.temp_name("other.nc", pid=dead)
        for f in (left, busy, other):
            f.write_bytes(b"\0" * 1000)
        save_netcdf(ds, target)
        assert not left.exists()  # its writer is gone
        assert busy.exists() and other.exists()  # a live writer's; another file's
        assert [p.name for p in target.parent.glob(".out.nc.*")] == [busy.name]

        # a job's result write: the next job directory gets leftovers of both
        d, ref = run_grid()
        os.unlink(job_dir(d, (2, 1)) / _store.RESULT_NPZ)
        nxt = d / str(len(CELLS))  # where resume=True runs the damaged cell
        nxt.mkdir()
        leftovers = {
            name: (nxt / _store.temp_name(name, pid=dead), nxt / _store.temp_name(name, pid=live.pid))
            for name in (_store.RESULT_JSON, _store.RESULT_NPZ)
        }
        for pair in leftovers.values():
            for f in pair:
                f.write_text("partial")
        assert_resume_reruns(d, ref, {(2, 1)})
        assert (nxt / _store.RESULT_NPZ).exists()
        for gone, kept in leftovers.values():
            assert not gone.exists() and kept.exists()
    finally:
        live.kill()
        live.wait()


def test_metric_named_like_a_savez_keyword_is_stored():
    class Kw(MultiRunMetricsWorkflow):
        @staticmethod
        def task(x: int) -> dict:
            return dict(file=np.arange(2) * x, allow_pickle=np.ones(2) * x)

    wf = Kw()
    wf.run(x=multirun([1, 2]), working_dir="k", progress=False)
    ds = MultiRunMetricsWorkflow().load_from_dir("k").to_xarray()
    np.testing.assert_array_equal(ds["file"].sel(x=2).values, [0, 2])
    xr.testing.assert_identical(ds, wf.to_xarray())
