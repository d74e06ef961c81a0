"""Fault injection: the promise under crashes, kills, cancels and damaged files.

The promise: every finished job's result is kept, and what the Dataset shows is
exactly what the jobs returned. A Hypothesis state machine drives random sequences
of run / start-then-cancel / kill -9 of a process running the sweep / damage to a
file of the sweep directory / resume / reload over a 4 x 2 grid whose metrics are a
known function of the parameters (``tests/fault_tasks.py``), and checks after every
step:

* every cell whose result was finished (in a run the sweep still counts) and whose
  job files the test has not damaged since is recovered by a reload, with its exact
  scalar and array values and status ``done``;
* no cell shows a value its job did not return: every non-NaN value equals the
  function of its coordinates, and a ``done`` cell shows all of its metrics;
* every status is one of done / failed / cancelled / pending, and once a sweep has
  ended none of its cells is pending or running;
* a resume never re-runs a cell whose result is intact, and a resume that completes
  ends with every cell done and correct (so it re-ran the damaged cells);
* a reload writes nothing, and works while another process writes the sweep;
* nothing outside the sweep directory is followed or written: a job directory
  replaced by a symlink, or an index line naming ``../outside``, leads to a forged
  result with wrong values that must never show, in files that must never change.

What the test itself knows is read from the files with ``json`` and ``numpy``
only (never through the engine): a job directory whose ``mushin_result.json``
parses, says ``done`` for a run the sweep counts, and whose ``.npz`` holds the
right array, is a finished result the engine must show. The index, the manifest
and its per-run copies (``.mushin/runs/``) are derived files: damaging them damages
no cell (each job directory holds its result and, in ``.hydra/``, its parameters).

One named test per fault kind follows the machine, so a failure points at the
fault directly.
"""

from __future__ import annotations

import collections
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import fault_tasks
import numpy as np
import pytest
from fault_tasks import DELAY_ENV, X, Y, array, scalar
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from mushin_nb import MultiRunMetricsWorkflow, multirun

CELLS = frozenset((x, y) for x in X for y in Y)
META = ".mushin"
RESULT_JSON = "mushin_result.json"
RESULT_NPZ = "mushin_result.npz"
ALLOWED = {"done", "failed", "cancelled", "pending"}
# seconds per job in the killed process: with a delay the kill lands while job k+1
# runs; without, jobs follow each other at once and it lands anywhere, a write included
KILL_DELAY = 0.15
CANCEL_DELAY = 0.04  # seconds per job of an in-process sweep that gets cancelled
KILLS_PER_SEQUENCE = 2

# how each file is damaged; every damage leaves bytes that no JSON / npz reader accepts
JOB_FILE_DAMAGE = ["delete", "garbage", "truncate", "bad_utf8"]
NPZ_DAMAGE = ["delete", "garbage", "truncate"]
# ("outside_line": a well-formed line naming a job directory outside the sweep directory)
INDEX_DAMAGE = [
    "garbage_line",
    "bad_utf8_line",
    "torn_line",
    "torn_tail",
    "delete_line",
    "delete_file",
    "outside_line",
]
FORGED = -1.0  # the value of every forged result outside the sweep directory (no job returns it)
MANIFEST_DAMAGE = ["delete", "garbage", "truncate", "bad_utf8"]

TOTALS: collections.Counter[str] = collections.Counter()


# --------------------------------------------------------------------------- the test's own reading


def _read_json(path: Path) -> Any:
    """The file as JSON, or None if it is missing or unreadable."""
    try:
        return json.loads(path.read_bytes().decode("utf-8"))
    except (OSError, ValueError):
        return None


def _cell_of(rec: Any) -> tuple[int, int] | None:
    try:
        i, j = rec["index"]
        return X[i], Y[j]
    except (TypeError, KeyError, ValueError, IndexError):
        return None


class Sweep:
    """One sweep directory, the faults the test can do to it, and the checks."""

    def __init__(self, root: Path):
        self.dir = Path(root).absolute()
        self.dir.mkdir(parents=True, exist_ok=True)
        # the runs whose results the sweep counts, by the test's own bookkeeping:
        # a fresh run starts a new list, a resume appends to it
        self.lineage: list[str] = []
        self.seen_runs: set[str] = set()
        self.steps: list[str] = []
        # True after a run that completed and before any later damage, cancel or kill:
        # then every cell must reload done and exact
        self.complete = False
        # forged results outside the sweep directory, and their files: never followed,
        # never written
        self.outside: dict[Path, dict[str, tuple[int, int]]] = {}

    # ------------------------------------------------------------ what is on disk
    def job_records(self) -> list[dict[str, Any]]:
        """Every job directory's result, read by the test: subdir, cell, status,
        run_id and whether it is an intact finished result with the right values."""
        out = []
        for p in sorted(self.dir.glob(f"*/{RESULT_JSON}")):
            if p.parent.is_symlink():  # not the sweep's own: never followed
                continue
            rec = _read_json(p)
            if not isinstance(rec, dict):
                continue
            cell = _cell_of(rec)
            status = rec.get("status")
            intact = False
            if status == "done" and cell is not None:
                s = (rec.get("scalars") or {}).get("s")
                assert s == scalar(*cell), (
                    f"{p} holds s={s!r} for the cell x={cell[0]}, y={cell[1]}: its job returned "
                    f"{scalar(*cell)!r}"
                )
                a = self._npz_array(p.parent / RESULT_NPZ)
                if a is not None:
                    assert np.array_equal(a, array(*cell)), (
                        f"{p.parent / RESULT_NPZ} holds a={a!r} for x={cell[0]}, y={cell[1]}: its job "
                        f"returned {array(*cell)!r}"
                    )
                    intact = True
            out.append(
                dict(subdir=p.parent.name, cell=cell, status=status, run_id=rec.get("run_id"), intact=intact)
            )
        return out

    @staticmethod
    def _npz_array(path: Path) -> np.ndarray | None:
        try:
            with np.load(path, allow_pickle=False) as z:
                return np.array(z["a"])
        except Exception:
            return None

    def must_keep(self) -> set[tuple[int, int]]:
        """Cells with an intact finished result of a run the sweep counts."""
        return {r["cell"] for r in self.job_records() if r["intact"] and r["run_id"] in self.lineage}

    def done_by(self, run_id: str) -> set[tuple[int, int]]:
        return {r["cell"] for r in self.job_records() if r["run_id"] == run_id and r["status"] == "done"}

    def manifest_ok(self) -> bool:
        return isinstance(_read_json(self.dir / META / "manifest.json"), dict)

    def snapshot(self) -> dict[str, tuple[int, int]]:
        out = {}
        for p in self.dir.rglob("*"):
            if p.is_file():
                st_ = p.stat()
                out[p.relative_to(self.dir).as_posix()] = (st_.st_size, st_.st_mtime_ns)
        return out

    def has_sweep(self) -> bool:
        return (self.dir / META).is_dir()

    def links_out(self) -> list[Path]:
        """Job directories replaced by symlinks that lead outside the sweep directory."""
        return [p for p in self.dir.iterdir() if p.is_symlink()] if self.dir.is_dir() else []

    def manifest_lost(self) -> bool:
        """The manifest and every per-run copy it could be rebuilt from are unreadable."""
        copies = sorted((self.dir / META / "runs").glob("*.json")) if self.has_sweep() else []
        return (
            self.has_sweep()
            and not self.manifest_ok()
            and not any(isinstance(_read_json(p), dict) for p in copies)
        )

    def refused_start(self, *, resume: bool, call: Any, where: str) -> bool:
        """The documented refusals (docs/troubleshooting.md): a sweep directory holding
        symlinks that lead outside it (every start is refused, naming them; the user then
        removes them), and a resume whose manifest and per-run copies are all lost. Each is
        a clear error that changes nothing. Returns True when the start was refused."""
        links = self.links_out()
        if links:
            before = self.snapshot()
            with pytest.raises(ValueError, match="symbolic links that lead outside"):
                got = call()
                if hasattr(got, "cancel"):
                    got.cancel()
                    got.join(60)
            assert self.snapshot() == before, f"{where} was refused but changed the directory"
            for p in links:  # the user follows the advice: remove the links
                p.unlink()
        if resume and self.manifest_lost():
            before = self.snapshot()
            with pytest.raises(FileNotFoundError, match="per-run copies are lost"):
                got = call()
                if hasattr(got, "cancel"):
                    got.cancel()
                    got.join(60)
            assert self.snapshot() == before, f"{where} was refused but changed the directory"
            return True
        return False

    def _refused_resume(self, call: Any, where: str) -> None:
        """resume=True where no sweep was ever started: a clear error, and nothing changes."""
        before = self.snapshot()
        try:
            got = call()
        except (FileNotFoundError, ValueError) as e:
            assert "resume" in str(e), f"{where} was refused with an error that does not say why: {e}"
        else:
            if hasattr(got, "cancel"):  # a started sweep: end it before failing
                got.cancel()
                got.join(60)
            raise AssertionError(f"{where} was not refused")
        assert self.snapshot() == before, f"{where} was refused but changed the directory"

    def _note_runs(self) -> None:
        for r in self.job_records():
            if r["run_id"]:
                self.seen_runs.add(r["run_id"])

    # ------------------------------------------------------------ sweeps in this process
    def run(self, *, resume: bool) -> None:
        """A blocking run (fresh or resume) that must complete with every cell done."""
        self.steps.append(f"run(resume={resume})")
        before = self.must_keep()
        wf = fault_tasks.FaultSweep()
        kw = dict(x=multirun(X), y=multirun(Y), working_dir=str(self.dir), progress=False)
        if resume and not self.has_sweep():
            return self._refused_resume(
                lambda: wf.run(resume=True, **kw), "run(resume=True) in an empty directory"
            )
        if self.refused_start(resume=resume, call=lambda: wf.run(resume=resume, **kw), where="run()"):
            return
        wf.run(resume=resume, **kw)
        run = wf.last_run
        self.lineage = (self.lineage if resume else []) + [run.run_id]
        self._note_runs()
        where = f"after a blocking run(resume={resume})"
        s = run.status
        assert s["done"] == s["total"] == len(CELLS), f"{where}: run.status is {s}; every cell must be done"
        live = run.dataset
        check_dataset(live, must=set(CELLS), where=f"{where}, live run.dataset", status=_status_of(live))
        st_live = _status_of(live)
        assert st_live is not None and set(st_live.values()) == {"done"}, f"{where}: live status {st_live}"
        check_dataset(wf.to_xarray(), must=set(CELLS), where=f"{where}, wf.to_xarray()")
        if resume:
            self._check_resume_kept(before, run.run_id, where)
        self.complete = True

    def start_cancel(self, *, resume: bool, k: int) -> None:
        """start(), cancel after k new results, wait: it ends with done and cancelled cells only."""
        self.steps.append(f"start_cancel(resume={resume}, k={k})")
        self.complete = False
        before = self.must_keep()
        wf = fault_tasks.FaultSweep()
        kw = dict(x=multirun(X), y=multirun(Y), working_dir=str(self.dir))
        if resume and not self.has_sweep():
            return self._refused_resume(
                lambda: wf.start(resume=True, **kw), "start(resume=True) in an empty directory"
            )
        if self.refused_start(resume=resume, call=lambda: wf.start(resume=resume, **kw), where="start()"):
            return
        os.environ[DELAY_ENV] = str(CANCEL_DELAY)
        try:
            run = wf.start(resume=resume, **kw)
            deadline = time.monotonic() + 120
            while not run.done and run.status["done"] - run.skipped < k and time.monotonic() < deadline:
                time.sleep(0.005)
            run.cancel()
            ds = run.wait(120)
        finally:
            os.environ.pop(DELAY_ENV, None)
        assert run.done, "a cancelled sweep did not end within 120 s"
        self.lineage = (self.lineage if resume else []) + [run.run_id]
        self._note_runs()
        where = f"after start(resume={resume}) and cancel() after {k} results"
        st_live = _status_of(ds)
        assert st_live is not None, f"{where}: the live Dataset has no status variable"
        bad = {c: v for c, v in st_live.items() if v not in ("done", "cancelled")}
        assert not bad, f"{where}: cells {bad} after the sweep ended (only done or cancelled are possible)"
        live_done = {c for c, v in st_live.items() if v == "done"}
        check_dataset(ds, must=live_done, where=f"{where}, live run.dataset", status=st_live)
        counts = run.status
        assert counts["done"] == len(live_done) and counts["pending"] == counts["running"] == 0, (
            f"{where}: run.status {counts} disagrees with the Dataset's status {st_live}"
        )
        if resume:
            assert before <= live_done, (
                f"{where}: the intact results of {sorted(before - live_done)} are not shown done "
                "by the resumed run"
            )
            self._check_resume_kept(before, run.run_id, where)
        else:
            ran = self.done_by(run.run_id)
            assert live_done == ran, (
                f"{where}: the live Dataset shows {sorted(live_done)} done, the job directories "
                f"hold results of this run for {sorted(ran)}"
            )
        check_dataset(wf.to_xarray(), must=live_done, where=f"{where}, wf.to_xarray()")

    def _check_resume_kept(self, before: set, run_id: str, where: str) -> None:
        ran = self.done_by(run_id)
        TOTALS["cells re-run by resumes"] += len(ran)
        rerun = ran & before
        assert not rerun, f"{where}: the resume ran {sorted(rerun)} again although their results were intact"

    # ------------------------------------------------------------ a process killed with SIGKILL
    def kill(
        self, *, resume: bool, k: int, worker: subprocess.Popen, fast: bool = False, read: bool = False
    ) -> None:
        """The sweep runs in ``worker``; SIGKILL it once k new results are in the index
        (``fast``: jobs with no delay, so the kill lands at any point; ``read``: reload
        the sweep while it runs, just before the kill)."""
        self.steps.append(f"kill(resume={resume}, k={k}, fast={fast}, read={read})")
        if self.links_out() or (resume and self.manifest_lost()):  # refused before any job: see run()
            return self.run(resume=resume)
        self.complete = False
        before = self.must_keep()
        had_sweep = self.has_sweep()
        known = set(self.seen_runs) | set(self.lineage)
        m = _read_json(self.dir / META / "manifest.json")
        if isinstance(m, dict):
            known |= set(m.get("runs") or [])
        cmd = dict(dir=str(self.dir), resume=resume, delay=0.0 if fast else KILL_DELAY)
        worker.stdin.write(json.dumps(cmd) + "\n")
        worker.stdin.flush()
        deadline = time.monotonic() + 120
        while worker.poll() is None and time.monotonic() < deadline:
            if had_sweep or not resume:  # (a refused resume is let end by itself)
                if self._new_index_lines(known) >= k:
                    break
            time.sleep(0.01)
        if read and worker.poll() is None:
            # a reader while another process writes: it needs no lock, never fails, shows
            # no wrong value, and a resume keeps showing the results it started from
            self.reload(must=before if resume else set(), live=True)
        if worker.poll() is None:
            os.kill(worker.pid, signal.SIGKILL)
            TOTALS["processes killed with SIGKILL"] += 1
        rc = worker.wait()
        out = worker.stdout.read() if worker.stdout else ""
        err = _worker_err(worker)
        if resume and not had_sweep:  # resume where no sweep was ever started: refused
            assert rc not in (0, -signal.SIGKILL) and "resume" in err, (
                f"run(resume=True) in an empty directory: exit code {rc}, expected a refusal:\n{err[-3000:]}"
            )
            return
        if rc != -signal.SIGKILL and not (rc == 0 and "finished" in out):
            raise AssertionError(
                f"the sweep process (run(resume={resume}) in {self.dir}) ended by itself with exit "
                f"code {rc} before it was killed; the task never fails, so run() must not:\n{err[-3000:]}"
            )
        new = {r["run_id"] for r in self.job_records()} - known - {None}
        m = _read_json(self.dir / META / "manifest.json")
        if isinstance(m, dict) and m.get("runs") and m["runs"][-1] not in known:
            new.add(m["runs"][-1])
        assert len(new) <= 1, f"one killed process left results of several runs: {new}"
        if new:
            (run_id,) = new
            self.lineage = (self.lineage if resume else []) + [run_id]
            if resume:
                self._check_resume_kept(
                    before, run_id, f"after kill -9 of run(resume=True) after {k} results"
                )
        self._note_runs()
        self.seen_runs |= new
        # a sweep that ended by itself before the kill completed: every cell is done
        self.complete = rc == 0 and "finished" in out

    def _new_index_lines(self, known: set[str]) -> int:
        try:
            data = (self.dir / META / "index.jsonl").read_bytes()
        except OSError:
            return 0
        n = 0
        for line in data.splitlines():
            try:
                rec = json.loads(line.decode("utf-8"))
            except ValueError:
                continue
            if isinstance(rec, dict) and rec.get("run_id") not in known:
                n += 1
        return n

    # ------------------------------------------------------------ damage
    def damage_job_file(self, name: str, how: str, pick: int, *, finished: bool = False) -> Path | None:
        """Damage the ``name`` file of one job directory (the pick-th that has one; with
        ``finished``, of one that holds an intact finished result if there is one)."""
        cands = sorted(
            (p for p in self.dir.glob(f"*/{name}") if not p.parent.is_symlink()),
            key=lambda p: (len(p.parent.name), p.parent.name),
        )
        if finished:
            keep = {r["subdir"] for r in self.job_records() if r["intact"] and r["run_id"] in self.lineage}
            cands = [p for p in cands if p.parent.name in keep] or cands
        if not cands:
            self.steps.append(f"damage_job_file({name}, {how}) [no such file]")
            return None
        p = cands[pick % len(cands)]
        self.steps.append(f"damage_job_file({p.parent.name}/{name}, {how})")
        self.complete = False
        _damage_bytes(p, how)
        return p

    def damage_index(self, how: str, pick: int) -> Path | None:
        p = self.dir / META / "index.jsonl"
        if not p.exists():
            self.steps.append(f"damage_index({how}) [no index]")
            return None
        data = p.read_bytes()
        lines = data.splitlines(keepends=True)
        self.steps.append(f"damage_index({how}, line {pick % max(len(lines), 1)} of {len(lines)})")
        self.complete = False
        if how == "delete_file":
            p.unlink()
            return p
        if not lines:
            return None
        i = pick % len(lines)
        body = lines[i].rstrip(b"\n")
        if how == "garbage_line":
            lines[i] = b"\x00 garbage {]\n"
        elif how == "bad_utf8_line":
            lines[i] = b"\xff\xfe\xfd\x80 not utf-8\n"
        elif how == "torn_line":  # a line cut short, the next one intact
            lines[i] = body[: max(1, len(body) // 2)] + b"\n"
        elif how == "torn_tail":  # the last line cut short, no newline: a writer killed mid-write
            lines[-1] = lines[-1].rstrip(b"\n")[: max(1, len(lines[-1]) // 2)]
        elif how == "delete_line":
            del lines[i]
        elif how == "outside_line":
            rec = _read_json_bytes(body)
            if not isinstance(rec, dict) or _cell_of(rec) is None:
                rec = dict(index=[0, 0], job_num=0, run_id=self.lineage[-1] if self.lineage else "")
            d = self._forge_outside(rec)
            lines[i] = (
                json.dumps(dict(rec, status="done", subdir=os.path.relpath(d, self.dir))) + "\n"
            ).encode()
        else:  # pragma: no cover
            raise ValueError(how)
        p.write_bytes(b"".join(lines))
        return p

    def _forge_outside(self, rec: dict[str, Any]) -> Path:
        """A finished result for ``rec``'s cell with wrong values, outside the sweep directory."""
        d = self.dir.parent / f"outside{len(self.outside)}"
        d.mkdir()
        forged = dict(rec, status="done", scalars={"s": FORGED}, arrays=["a"], order=["s", "a"])
        forged.update(returned_none=False, error=None)
        (d / RESULT_JSON).write_text(json.dumps(forged))
        np.savez(d / RESULT_NPZ, a=np.full(3, FORGED))
        self.outside[d] = _tree(d)
        return d

    def symlink_job_dir(self, pick: int) -> Path | None:
        """Replace one job directory by a symlink to a forged result outside the sweep."""
        cands = [p.parent for p in self.dir.glob(f"*/{RESULT_JSON}") if not p.parent.is_symlink()]
        cands = [
            d
            for d in sorted(cands, key=lambda d: (len(d.name), d.name))
            if isinstance(_read_json(d / RESULT_JSON), dict)
        ]
        if not cands:
            self.steps.append("symlink_job_dir [no job directory]")
            return None
        d = cands[pick % len(cands)]
        rec = _read_json(d / RESULT_JSON)
        if _cell_of(rec) is None:
            rec = dict(rec, index=[0, 0])
        self.steps.append(f"symlink_job_dir({d.name})")
        self.complete = False
        target = self._forge_outside(rec)
        shutil.rmtree(d)
        d.symlink_to(target, target_is_directory=True)
        return d

    def check_outside(self) -> None:
        for d, before in self.outside.items():
            after = _tree(d)
            assert after == before, (
                f"a file outside the sweep directory was written: {d} changed "
                f"({sorted(set(after) ^ set(before)) or 'contents'})"
            )

    def damage_manifest(self, how: str, what: str = "manifest") -> Path | None:
        """Damage ``.mushin/manifest.json`` (``what="manifest"``), the per-run copies it
        is rebuilt from (``.mushin/runs/*.json``, ``"copies"``), or both (``"both"``)."""
        targets = []
        if what in ("manifest", "both"):
            targets.append(self.dir / META / "manifest.json")
        if what in ("copies", "both"):
            targets.extend(sorted((self.dir / META / "runs").glob("*.json")))
        targets = [p for p in targets if p.exists()]
        if not targets:
            self.steps.append(f"damage_manifest({how}, {what}) [no such file]")
            return None
        self.steps.append(f"damage_manifest({how}, {what})")
        self.complete = False
        for p in targets:
            _damage_bytes(p, how)
        return targets[0]

    # ------------------------------------------------------------ reload
    def reload(self, *, must: set | None = None, live: bool = False) -> Any:
        """Reload with a plain MultiRunMetricsWorkflow and check the Dataset; None if
        there is nothing the reload must give (and it refused). ``live``: a sweep is
        running (cells may be ``running``)."""
        if must is None:
            must = set(CELLS) if self.complete else self.must_keep()
        required = bool(must) or self.manifest_ok()
        where = "reload (MultiRunMetricsWorkflow().load_from_dir(dir).to_xarray())"
        try:
            wf = MultiRunMetricsWorkflow().load_from_dir(self.dir)
            ds = wf.to_xarray()
        except Exception as e:
            if required:
                raise AssertionError(
                    f"{where} failed with {type(e).__name__}: {e}\nwhile the cells {sorted(must)} have "
                    f"intact finished results (manifest intact: {self.manifest_ok()})"
                ) from e
            return None
        if live:
            where += " while another process runs the sweep"
        check_dataset(ds, must=must, where=where, status=_reloaded_status(wf, ds), running_ok=live)
        return ds


def _read_json_bytes(data: bytes) -> Any:
    try:
        return json.loads(data.decode("utf-8"))
    except ValueError:
        return None


def _tree(d: Path) -> dict[str, tuple[int, int]]:
    return {
        p.relative_to(d).as_posix(): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in d.rglob("*")
        if p.is_file()
    }


def _worker_err(proc: subprocess.Popen) -> str:
    f = getattr(proc, "_err_file", None)
    if f is None:
        return ""
    try:
        return Path(f.name).read_text(errors="replace")
    except OSError:
        return ""


def _damage_bytes(p: Path, how: str) -> None:
    if how == "delete":
        p.unlink()
        return
    data = p.read_bytes()
    if how == "garbage":
        p.write_bytes(b"\x00\x01 this is not what was written \xff" * 3)
    elif how == "truncate":
        p.write_bytes(data[: len(data) // 2])
    elif how == "bad_utf8":
        p.write_bytes(b"\xff\xfe" + data)
    else:  # pragma: no cover
        raise ValueError(how)


# --------------------------------------------------------------------------- checking a Dataset


def _position(ds: Any, dim: str, value: int) -> int | None:
    if dim not in ds.coords:
        return None
    coord = ds.coords[dim]
    if coord.dtype.kind not in "iu":  # the coordinates must be the ints that were swept
        return None
    vals = coord.values.tolist()
    return vals.index(value) if value in vals else None


def _status_of(ds: Any) -> dict[tuple[int, int], str] | None:
    if "status" not in ds.data_vars:
        return None
    out = {}
    for x, y in CELLS:
        i, j = _position(ds, "x", x), _position(ds, "y", y)
        if i is not None and j is not None:
            out[(x, y)] = str(ds["status"].isel(x=i, y=j).values)
    return out


def _reloaded_status(wf: Any, ds: Any) -> dict[tuple[int, int], str] | None:
    """The status of each cell of a reloaded sweep: its Dataset's ``status`` if it has
    one, else the cells' records (internal: ``status_array`` over ``wf._results``)."""
    got = _status_of(ds)
    if got is not None:
        return got
    from mushin_nb._dataset import status_array

    # (if these internals are renamed, this fails: the status checks must not vanish)
    st_arr = status_array(wf._spec, wf._results)
    names = [p.name for p in wf._spec.swept]
    assert names == ["x", "y"], f"the reloaded sweep's swept parameters are {names}"
    out = {}
    for x, y in CELLS:
        i, j = _position(ds, "x", x), _position(ds, "y", y)
        if i is not None and j is not None:
            out[(x, y)] = str(st_arr[i, j])
    return out


def check_dataset(
    ds: Any, *, must: set, where: str, status: dict | None = None, running_ok: bool = False
) -> None:
    """The cells in ``must`` show their exact values; no cell shows a value its job
    did not return; statuses are known states and ``done`` means all metrics shown."""
    extra = set(ds.data_vars) - {"s", "a", "status"}
    assert not extra, f"{where}: variables {sorted(extra)} that no job returned"
    problems = []
    for x, y in sorted(CELLS):
        i, j = _position(ds, "x", x), _position(ds, "y", y)
        cell = f"x={x}, y={y}"
        if i is None or j is None:
            if (x, y) in must:
                coords = {
                    d: (str(ds.coords[d].dtype), ds.coords[d].values.tolist())
                    for d in ("x", "y")
                    if d in ds.coords
                }
                problems.append(
                    f"{cell}: finished and intact, but the Dataset has no such cell (coords {coords})"
                )
            continue
        s = float(ds["s"].isel(x=i, y=j).values) if "s" in ds else float("nan")
        a = np.asarray(ds["a"].isel(x=i, y=j).values, dtype=float) if "a" in ds else np.full(3, np.nan)
        shown_s, shown_a = not np.isnan(s), not np.isnan(a).all()
        if shown_s and s != scalar(x, y):
            problems.append(f"{cell}: shows s={s!r}, its job returned {scalar(x, y)!r}")
        if shown_a and not np.array_equal(a, array(x, y)):
            problems.append(f"{cell}: shows a={a.tolist()}, its job returned {array(x, y).tolist()}")
        st_ = None if status is None else status.get((x, y))
        allowed = ALLOWED | {"running"} if running_ok else ALLOWED
        if st_ is not None and st_ not in allowed:
            problems.append(f"{cell}: status {st_!r} (expected one of {sorted(allowed)})")
        if st_ == "done" and not (shown_s and shown_a):
            problems.append(f"{cell}: status done but s={s!r}, a={a.tolist()}")
        if (x, y) in must:
            if not (shown_s and shown_a):
                problems.append(f"{cell}: finished and intact on disk, but shows s={s!r}, a={a.tolist()}")
            if st_ is not None and st_ != "done":
                problems.append(f"{cell}: finished and intact on disk, but its status is {st_!r}")
    assert not problems, f"{where}:\n  " + "\n  ".join(problems)


# --------------------------------------------------------------------------- the killable worker


class _Workers:
    """At most one warm worker process (imports done, waiting for its sweep)."""

    def __init__(self, cwd: Path):
        self.cwd = cwd
        self.proc: subprocess.Popen | None = None

    def _spawn(self) -> subprocess.Popen:
        err = tempfile.NamedTemporaryFile(dir=self.cwd, prefix="worker.", suffix=".err", delete=False)
        p = subprocess.Popen(
            [sys.executable, "-c", fault_tasks.WORKER, str(Path(fault_tasks.__file__).parent)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=err,
            cwd=self.cwd,
            text=True,
        )
        p._err_file = err  # type: ignore[attr-defined]
        return p

    def prespawn(self) -> None:
        if self.proc is None:
            self.proc = self._spawn()

    def take(self) -> subprocess.Popen:
        p = self.proc if self.proc is not None and self.proc.poll() is None else self._spawn()
        self.proc = None
        line = p.stdout.readline()
        if line.strip() != "ready":
            p.kill()
            p.wait()
            raise RuntimeError(f"the worker process did not start: {line!r}\n{_worker_err(p)[-3000:]}")
        return p

    def close(self) -> None:
        if self.proc is not None:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
            self.proc.kill()
            self.proc.wait()
            self.proc = None


# --------------------------------------------------------------------------- the state machine

_ENV: dict[str, Any] = {}


class FaultMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        TOTALS["sequences"] += 1
        self.sweep = Sweep(Path(tempfile.mkdtemp(dir=_ENV["root"], prefix="seq")) / "sweep")
        self.started = False
        self.kills = 0

    @initialize(first=st.sampled_from(["empty", "finished", "cancelled"]), k=st.integers(0, len(CELLS) - 1))
    def begin(self, first: str, k: int) -> None:
        """An empty directory, a finished sweep, or one cancelled after k results."""
        if first == "finished":
            self.run()
        elif first == "cancelled":
            self.start_then_cancel(resume=False, k=k)

    def _step(self, name: str) -> None:
        TOTALS["steps"] += 1
        TOTALS[name] += 1

    @rule()
    def run(self) -> None:
        self._step("run")
        self.sweep.run(resume=False)
        self.started = True

    @rule()
    def resume(self) -> None:
        self._step("resume")
        self.sweep.run(resume=True)
        self.started = True

    @rule(resume=st.booleans(), k=st.integers(0, len(CELLS)))
    def start_then_cancel(self, resume: bool, k: int) -> None:
        self._step("start_cancel")
        self.sweep.start_cancel(resume=resume, k=k)
        self.started = True

    @precondition(lambda self: self.kills < KILLS_PER_SEQUENCE)  # each costs a process: bound the time
    @rule(resume=st.booleans(), k=st.integers(0, len(CELLS)), fast=st.booleans(), read=st.booleans())
    def kill_9(self, resume: bool, k: int, fast: bool, read: bool) -> None:
        self._step("kill_9")
        self.started = True
        self.kills += 1
        if resume and not self.sweep.has_sweep():  # refused before any job: no process needed
            self.sweep.run(resume=True)
            return
        workers: _Workers = _ENV["workers"]
        proc = workers.take()
        try:
            self.sweep.kill(resume=resume, k=k, worker=proc, fast=fast, read=read)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            workers.prespawn()  # the next one imports while the other steps run
        self.started = True

    @rule(
        name=st.sampled_from([RESULT_JSON, RESULT_NPZ]),
        how=st.sampled_from(JOB_FILE_DAMAGE),
        pick=st.integers(0, 40),
        finished=st.booleans(),
    )
    def damage_job_file(self, name: str, how: str, pick: int, finished: bool) -> None:
        self._step("damage_job_file")
        if name == RESULT_NPZ and how == "bad_utf8":
            how = "garbage"
        before = self.sweep.must_keep()
        self.sweep.damage_job_file(name, how, pick, finished=finished)
        TOTALS["finished cells damaged"] += len(before - self.sweep.must_keep())

    @rule(how=st.sampled_from(INDEX_DAMAGE), pick=st.integers(0, 40))
    def damage_index(self, how: str, pick: int) -> None:
        self._step("damage_index")
        self.sweep.damage_index(how, pick)

    @rule(pick=st.integers(0, 40))
    def symlink_job_dir(self, pick: int) -> None:
        self._step("symlink_job_dir")
        self.sweep.symlink_job_dir(pick)

    @rule(how=st.sampled_from(MANIFEST_DAMAGE), what=st.sampled_from(["manifest", "copies", "both"]))
    def damage_manifest(self, how: str, what: str) -> None:
        self._step("damage_manifest")
        self.sweep.damage_manifest(how, what)

    @rule()
    def reload(self) -> None:
        """A reload (here: twice, through the constructor too) writes nothing."""
        self._step("reload")
        self.sweep.steps.append("reload()")
        before = self.sweep.snapshot()
        self.sweep.reload()
        if self.sweep.must_keep() or self.sweep.manifest_ok():
            ds = fault_tasks.FaultSweep(working_dir=self.sweep.dir).to_xarray()
            check_dataset(ds, must=self.sweep.must_keep(), where="FaultSweep(working_dir=dir).to_xarray()")
        after = self.sweep.snapshot()
        changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
        assert not changed, f"a reload changed files of the sweep directory: {changed}"

    @invariant()
    def everything_finished_is_recovered(self) -> None:
        if self.started:
            self.sweep.reload()
        self.sweep.check_outside()

    def teardown(self) -> None:
        TOTALS["max_steps_in_a_sequence"] = max(TOTALS["max_steps_in_a_sequence"], len(self.sweep.steps))
        shutil.rmtree(self.sweep.dir.parent, ignore_errors=True)


FAULT_SETTINGS = settings(
    settings.default,
    # 25 sequences under the "ci" profile (fewer under a smaller one, e.g. "fast")
    max_examples=int(os.environ.get("MUSHIN_FAULT_EXAMPLES", min(25, settings.default.max_examples))),
    stateful_step_count=int(os.environ.get("MUSHIN_FAULT_STEPS", "15")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@pytest.mark.filterwarnings("ignore")
def test_fault_sequences(tmp_path, capsys):
    """Random sequences of runs, cancels, kills, damage, resumes and reloads."""
    TOTALS.clear()
    _ENV["root"] = tmp_path
    _ENV["workers"] = workers = _Workers(tmp_path)
    workers.prespawn()
    t0 = time.monotonic()
    try:
        run_state_machine_as_test(FaultMachine, settings=FAULT_SETTINGS)
    finally:
        workers.close()
        kinds = ", ".join(
            f"{k}: {v}"
            for k, v in sorted(TOTALS.items())
            if k not in ("sequences", "steps", "max_steps_in_a_sequence")
        )
        with capsys.disabled():
            print(
                f"\nfault injection: {TOTALS['sequences']} fault sequences, {TOTALS['steps']} steps "
                f"in {time.monotonic() - t0:.0f} s ({kinds})"
            )


# --------------------------------------------------------------------------- the checks themselves


def _ideal() -> Any:
    import xarray as xr

    s = np.array([[scalar(x, y) for y in Y] for x in X])
    a = np.array([[array(x, y) for y in Y] for x in X])
    status = np.full(s.shape, "done")
    return xr.Dataset(
        {"s": (("x", "y"), s), "a": (("x", "y", "a_dim0"), a), "status": (("x", "y"), status)},
        coords={"x": X, "y": Y},
    )


def _tamper(change: str) -> Any:
    ds = _ideal().copy(deep=True)
    if change == "wrong scalar":
        ds["s"][1, 0] = 99.0
    elif change == "wrong array":
        ds["a"][2, 1, 0] = -1.0
    elif change == "lost cell":
        ds["s"][3, 1] = np.nan
        ds["a"][3, 1] = np.nan
        ds["status"][3, 1] = "pending"
    elif change == "unknown status":
        ds["status"][0, 0] = "running"
    elif change == "string coords":
        ds = ds.assign_coords(x=[str(v) for v in X])
    elif change == "extra variable":
        ds["t"] = ds["s"] * 2
    return ds


@pytest.mark.parametrize(
    "change",
    ["wrong scalar", "wrong array", "lost cell", "unknown status", "string coords", "extra variable"],
)
def test_the_checks_catch_what_they_must(change):
    """The Dataset check passes the exact Dataset and fails each kind of wrong one."""
    ideal = _ideal()
    check_dataset(ideal, must=set(CELLS), where="ideal", status=_status_of(ideal))
    ds = _tamper(change)
    with pytest.raises(AssertionError):
        check_dataset(ds, must=set(CELLS), where=change, status=_status_of(ds))


def test_the_checks_catch_a_done_cell_without_values():
    ds = _tamper("lost cell")
    ds["status"][3, 1] = "done"
    with pytest.raises(AssertionError, match="status done but"):
        check_dataset(ds, must=set(), where="done without values", status=_status_of(ds))


# --------------------------------------------------------------------------- one test per fault


@pytest.fixture()
def sweep(tmp_path):
    return Sweep(tmp_path / "sweep")


@pytest.fixture()
def workers(tmp_path):
    w = _Workers(tmp_path)
    yield w
    w.close()


def _kill(
    sweep: Sweep, workers: _Workers, *, resume: bool, k: int, fast: bool = False, read: bool = False
) -> None:
    proc = workers.take()
    try:
        sweep.kill(resume=resume, k=k, worker=proc, fast=fast, read=read)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _reload_warnings(sweep: Sweep) -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sweep.reload()
    # (a ResourceWarning of numpy's np.load on a corrupt .npz is not the engine's message)
    return [str(w.message) for w in caught if not issubclass(w.category, ResourceWarning)]


def _names(msgs: list[str], path: Path, sweep: Sweep) -> list[str]:
    rel = path.relative_to(sweep.dir).as_posix()
    return [m for m in msgs if rel in m or str(path) in m]


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("resume", [False, True], ids=["fresh", "resume"])
def test_kill_9_keeps_every_finished_result(sweep, workers, resume):
    """SIGKILL of the process running the sweep after 3 results: a reload shows those
    3 exactly; a resume runs only the others and ends with all 8 correct."""
    if resume:  # a killed resume: 2 damaged cells of a finished sweep, killed after 1 re-ran
        sweep.run(resume=False)
        sweep.damage_job_file(RESULT_NPZ, "delete", 0)
        sweep.damage_job_file(RESULT_NPZ, "delete", 4)
        assert len(sweep.must_keep()) == 6
        _kill(sweep, workers, resume=True, k=1)
        assert len(sweep.must_keep()) == 7, sweep.job_records()
    else:
        _kill(sweep, workers, resume=False, k=3)
        assert len(sweep.must_keep()) == 3, sweep.job_records()
    sweep.reload()
    sweep.run(resume=True)
    sweep.reload()


@pytest.mark.filterwarnings("ignore")
def test_kill_9_at_any_point(sweep, workers):
    """Jobs with no delay, so each kill lands anywhere (a result half written, an index
    line missing): a fresh run then a resume are killed, and what finished is kept."""
    _kill(sweep, workers, resume=False, k=2, fast=True)
    sweep.reload()
    _kill(sweep, workers, resume=True, k=2, fast=True)
    sweep.reload()
    sweep.run(resume=True)
    sweep.reload()


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("resume", [False, True], ids=["fresh", "resume"])
def test_reload_while_another_process_runs_the_sweep(sweep, workers, resume):
    """A reader needs no lock: a reload while another process writes the sweep works,
    shows no wrong value, and (for a resume) shows the results it started from."""
    if resume:
        sweep.run(resume=False)
        sweep.damage_job_file(RESULT_NPZ, "delete", 2)
        sweep.damage_job_file(RESULT_NPZ, "delete", 6)
    _kill(sweep, workers, resume=resume, k=1, read=True)
    sweep.reload()


@pytest.mark.filterwarnings("ignore")
def test_kill_9_then_a_fresh_run(sweep, workers):
    """A sweep killed mid-way does not stop the next run in its directory (a lock it
    held is taken over)."""
    _kill(sweep, workers, resume=False, k=2)
    sweep.run(resume=False)
    sweep.reload()


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("resume", [False, True], ids=["fresh", "resume"])
def test_cancel_keeps_every_finished_result(sweep, resume):
    """cancel() after 3 results: no cell is left pending or running, the 3 are kept,
    and a resume runs exactly the others."""
    if resume:
        sweep.run(resume=False)
        sweep.damage_job_file(RESULT_NPZ, "delete", 1)
        sweep.damage_job_file(RESULT_JSON, "delete", 2)
        sweep.damage_job_file(RESULT_NPZ, "garbage", 5)
    sweep.start_cancel(resume=resume, k=1 if resume else 3)
    sweep.reload()
    sweep.run(resume=True)
    sweep.reload()


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("how", JOB_FILE_DAMAGE)
def test_damaged_result_json(sweep, how):
    """A job's mushin_result.json deleted or corrupt: the other cells reload exactly,
    the damaged one shows its true values or none, and a resume completes the grid
    without re-running intact cells."""
    sweep.run(resume=False)
    sweep.damage_job_file(RESULT_JSON, how, 3)
    assert len(sweep.must_keep()) == 7
    sweep.reload()
    sweep.run(resume=True)
    sweep.reload()


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("how", NPZ_DAMAGE)
def test_damaged_result_npz(sweep, how):
    """A job's .npz deleted or corrupt: only that cell is lost (not shown done), a
    reload warns once naming the file, and a resume re-runs exactly that cell."""
    sweep.run(resume=False)
    victim = sweep.damage_job_file(RESULT_NPZ, how, 3)
    assert len(sweep.must_keep()) == 7
    msgs = _reload_warnings(sweep)
    named = _names(msgs, victim, sweep)
    assert len(named) == 1, f"a reload after damage to {victim} warned {msgs}; expected one warning naming it"
    sweep.run(resume=True)
    assert len(sweep.done_by(sweep.lineage[-1])) == 1, sweep.job_records()
    sweep.reload()


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("how", INDEX_DAMAGE)
def test_damaged_index(sweep, how):
    """A garbage, non-UTF-8, torn or missing line of .mushin/index.jsonl (or no index):
    no cell is lost (the job directories hold every result), and a resume re-runs
    nothing."""
    sweep.run(resume=False)
    victim = sweep.damage_index(how, 2)
    msgs = _reload_warnings(sweep)
    if how in ("garbage_line", "bad_utf8_line", "torn_line", "torn_tail", "outside_line"):
        assert len(_names(msgs, victim, sweep)) == 1, (
            f"a reload after damage to a line of {victim} warned {msgs}; expected one warning naming it"
        )
    sweep.run(resume=True)
    assert sweep.done_by(sweep.lineage[-1]) == set(), "the resume re-ran cells whose results were intact"
    sweep.reload()
    sweep.check_outside()


@pytest.mark.filterwarnings("ignore")
def test_job_dir_replaced_by_a_symlink(sweep):
    """A job directory that is a symlink to a result outside the sweep directory is
    not followed (its wrong values never show); a start there is refused, naming the
    link, and changes nothing; once the link is removed a resume re-runs that cell only;
    no run ever writes through the symlink."""
    sweep.run(resume=False)
    sweep.symlink_job_dir(5)
    assert len(sweep.must_keep()) == 7
    sweep.reload()
    sweep.run(resume=True)  # refused (the link named), the link removed, then the resume
    assert len(sweep.done_by(sweep.lineage[-1])) == 1, sweep.job_records()
    sweep.check_outside()
    sweep.symlink_job_dir(5)
    sweep.run(resume=False)  # refused, the link removed, then a fresh run
    sweep.check_outside()
    sweep.reload()


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("how", MANIFEST_DAMAGE)
def test_damaged_manifest(sweep, how):
    """A deleted or corrupt .mushin/manifest.json: every cell still reloads exactly
    (from the job directories), and a resume re-runs nothing."""
    sweep.run(resume=False)
    victim = sweep.damage_manifest(how)
    msgs = _reload_warnings(sweep)
    if how != "delete":
        assert len(_names(msgs, victim, sweep)) == 1, (
            f"a reload after damage to {victim} warned {msgs}; expected one warning naming it"
        )
    sweep.run(resume=True)
    assert sweep.done_by(sweep.lineage[-1]) == set(), "the resume re-ran cells whose results were intact"
    sweep.reload()


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("what", ["copies", "both"])
@pytest.mark.parametrize("how", MANIFEST_DAMAGE)
def test_damaged_manifest_copies(sweep, how, what):
    """The per-run copies the manifest is rebuilt from (.mushin/runs/*.json) damaged,
    alone or with the manifest: the job directories still hold every result and its
    parameters (.hydra/overrides.yaml), so every cell reloads exactly. With the copies
    alone damaged a resume re-runs nothing; with both lost a resume is refused (new jobs
    could not be placed safely beside the old ones) and changes nothing."""
    sweep.run(resume=False)
    sweep.damage_manifest(how, what)
    sweep.reload()
    sweep.run(resume=True)
    if what == "copies":
        assert sweep.done_by(sweep.lineage[-1]) == set(), "the resume re-ran cells whose results were intact"
    else:
        assert sweep.manifest_lost()
    sweep.reload()


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize(
    "damage",
    [f"json-{h}" for h in JOB_FILE_DAMAGE]
    + [f"npz-{h}" for h in NPZ_DAMAGE]
    + [f"index-{h}" for h in INDEX_DAMAGE]
    + [f"manifest-{h}" for h in MANIFEST_DAMAGE],
)
def test_fresh_run_over_a_damaged_sweep(sweep, damage):
    """A new (not resumed) run in a directory with a damaged sweep replaces it and
    completes."""
    sweep.run(resume=False)
    what, how = damage.split("-", 1)
    if what == "json":
        sweep.damage_job_file(RESULT_JSON, how, 3)
    elif what == "npz":
        sweep.damage_job_file(RESULT_NPZ, how, 3)
    elif what == "index":
        sweep.damage_index(how, 2)
    else:
        sweep.damage_manifest(how)
    sweep.run(resume=False)
    sweep.reload()
