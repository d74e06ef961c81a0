"""Issue 10, points 1-3: validate, then mutate; one writer per sweep directory;
internal identifiers never pass through Hydra's grammar unquoted."""

import hashlib
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import mushin_nb._launch as _launch
from mushin_nb import MultiRunMetricsWorkflow, multirun

pytestmark = pytest.mark.usefixtures("cleandir")


def wait_until(cond, timeout=60.0, what="condition"):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def tree(d: Path) -> dict[str, str]:
    """Every file under ``d`` with a hash of its content (and every directory)."""
    out = {}
    for p in sorted(Path(d).rglob("*")):
        rel = p.relative_to(d).as_posix()
        out[rel] = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "<dir>"
    return out


class Counted(MultiRunMetricsWorkflow):
    """Each call leaves a file in ``calls`` so a test can count the jobs that ran."""

    @staticmethod
    def task(x: int, calls: str) -> dict:
        d = Path(calls)
        d.mkdir(exist_ok=True)
        n = len(list(d.glob(f"x{x}_*")))
        (d / f"x{x}_{n}").touch()
        return dict(y=x * 10)


class Gated(MultiRunMetricsWorkflow):
    @staticmethod
    def task(x: int, gate: str) -> dict:
        end = time.monotonic() + 60
        while not Path(gate).exists() and time.monotonic() < end:
            time.sleep(0.01)
        return dict(y=x)


def calls(d: Path) -> list[str]:
    return sorted(p.name for p in Path(d).glob("x*_*"))


def finished_sweep(cleandir: Path) -> tuple[Counted, Path]:
    wf = Counted()
    wf.run(x=multirun([1, 2, 3]), calls=str(cleandir / "calls"), working_dir="done", progress=False)
    return wf, cleandir / "done"


def test_start_refused_by_a_running_sweep_changes_nothing(cleandir):
    wf, done = finished_sweep(cleandir)
    before_disk = tree(done)
    before_ds = wf.to_xarray()
    before_last = wf.last_run
    gate = cleandir / "gate"
    other = Gated().start(x=multirun([1, 2]), gate=str(gate), working_dir="other")
    try:
        with pytest.raises(RuntimeError, match="Another sweep is running"):
            wf.start(x=multirun([1, 2, 3, 4]), calls=str(cleandir / "calls"), working_dir=str(done))
        with pytest.raises(RuntimeError, match="Another sweep is running"):
            wf.run(x=multirun([5]), calls=str(cleandir / "calls"), working_dir=str(done), resume=True)
        with pytest.raises(RuntimeError, match="Another sweep is running"):
            wf.run(x=multirun([5]), calls=str(cleandir / "calls"), working_dir="brand_new")
    finally:
        gate.touch()
        other.wait(timeout=60)
    assert tree(done) == before_disk
    assert not (cleandir / "brand_new").exists()
    assert wf.last_run is before_last
    assert wf.to_xarray().identical(before_ds)
    reloaded = MultiRunMetricsWorkflow().load_from_dir(done).to_xarray()
    assert reloaded["y"].values.tolist() == [10, 20, 30]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(on_error="explode"), "on_error='explode'"),
        (dict(resume="yes"), "resume='yes'"),
        (dict(launcher="jobllib"), "launcher='jobllib' is not a launcher"),
        (dict(sweeper="nope"), "sweeper='nope' is not a sweeper"),
        (dict(jobs=0), "jobs=0"),
        (dict(jobs=2), "jobs=2 needs a parallel launcher"),
        (dict(overrides="x=1"), "overrides='x=1'"),
        (dict(overrides=["hydra/launcher=jobllib"]), "hydra/launcher=jobllib is not a launcher"),
        (dict(resume=True, sweeper="basic"), "default sweeper only"),
        (dict(extra=object()), "has type object"),
        (dict(x=multirun([1, 1])), "more than once"),
    ],
)
def test_bad_arguments_refused_before_anything_is_written(cleandir, kwargs, match):
    wf, done = finished_sweep(cleandir)
    before_disk = tree(done)
    before_ds = wf.to_xarray()
    args = dict(x=multirun([1, 2, 3]), calls=str(cleandir / "calls"), progress=False)
    args.update(kwargs)
    for target in (str(done), "fresh"):
        with pytest.raises((ValueError, TypeError), match=match):
            wf.run(working_dir=target, **args)
        assert tree(done) == before_disk
        assert not (cleandir / "fresh").exists()
    assert wf.to_xarray().identical(before_ds)
    assert not (cleandir / "multirun").exists()


def test_resume_of_a_directory_without_a_sweep_is_refused_and_creates_nothing(cleandir):
    wf = Counted()
    with pytest.raises(FileNotFoundError, match="no mushin_nb sweep to resume"):
        wf.run(x=multirun([1]), calls="c", working_dir="nothing/here", resume=True, progress=False)
    assert not (cleandir / "nothing").exists()
    (cleandir / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no mushin_nb sweep to resume"):
        wf.run(x=multirun([1]), calls="c", working_dir="empty", resume=True, progress=False)
    assert list((cleandir / "empty").iterdir()) == []


def test_changed_task_refusal_on_resume_changes_nothing(cleandir):
    wf, done = finished_sweep(cleandir)
    before = tree(done)

    class Changed(MultiRunMetricsWorkflow):
        @staticmethod
        def task(x: int, calls: str) -> dict:
            return dict(y=-x)

    with pytest.raises(ValueError, match="resume='force'"):
        Changed().run(
            x=multirun([1, 2, 3]),
            calls=str(cleandir / "calls"),
            working_dir=str(done),
            resume=True,
            progress=False,
        )
    assert tree(done) == before


@pytest.mark.parametrize(
    "run_id",
    ["58e023092866", "000000000001", "1e5", "inf", "nan", "null", "true", "a,b", "x=y", "$x", "'q'"],
)
def test_run_ids_that_look_like_other_things_keep_resume_exact(cleandir, monkeypatch, run_id):
    monkeypatch.setattr(_launch, "new_run_id", lambda: run_id)
    wf, done = finished_sweep(cleandir)
    assert calls(cleandir / "calls") == ["x1_0", "x2_0", "x3_0"]
    results_before = {p.parent.name: p.read_bytes() for p in done.glob("*/mushin_result.json")}
    monkeypatch.setattr(_launch, "new_run_id", lambda: run_id + "b")
    wf2 = Counted()
    wf2.run(x=multirun([1, 2, 3, 4]), calls=str(cleandir / "calls"), working_dir=str(done), resume=True)
    # only the new cell ran; the finished job directories were not overwritten
    assert calls(cleandir / "calls") == ["x1_0", "x2_0", "x3_0", "x4_0"]
    for sub, data in results_before.items():
        assert (done / sub / "mushin_result.json").read_bytes() == data
    assert wf2.to_xarray()["y"].values.tolist() == [10, 20, 30, 40]


@pytest.mark.parametrize(
    "name", ["a,b", "x=1", "dollar$x", "it's", 'q"uote', "1e5", "null", "sp ace", "$x{y}"]
)
def test_working_dirs_with_grammar_characters(cleandir, name):
    wd = cleandir / name
    wf = Counted()
    wf.run(x=multirun([1, 2]), calls=str(cleandir / "calls"), working_dir=str(wd), progress=False)
    assert (wd / ".mushin" / "manifest.json").exists()
    assert sorted(p.parent.name for p in wd.glob("*/mushin_result.json")) == ["0", "1"]
    wf.run(
        x=multirun([1, 2, 3]), calls=str(cleandir / "calls"), working_dir=str(wd), resume=True, progress=False
    )
    assert calls(cleandir / "calls") == ["x1_0", "x2_0", "x3_0"]
    assert MultiRunMetricsWorkflow().load_from_dir(wd).to_xarray()["y"].values.tolist() == [10, 20, 30]


HOLDER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    sys.path.insert(0, {tests!r})
    from test_trust_start import Gated
    from mushin_nb import multirun
    wf = Gated()
    wf.run(x=multirun([1, 2]), gate={gate!r}, working_dir={wd!r}, progress=False)
    """
)


def test_a_working_dir_hydra_would_interpolate_is_refused(cleandir):
    with pytest.raises(ValueError, match=r"contains '\$\{'"):
        Counted().run(x=multirun([1]), calls="c", working_dir="a${x}", progress=False)
    assert list(cleandir.iterdir()) == []


def test_a_second_process_writing_the_same_directory_is_refused_by_name(cleandir):
    from mushin_nb._lock import SweepLocked

    wf, done = finished_sweep(cleandir)
    gate = cleandir / "gate"
    wd = cleandir / "shared"
    code = HOLDER.format(tests=str(Path(__file__).parent), gate=str(gate), wd=str(wd))
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=cleandir)
    try:
        wait_until(lambda: (wd / ".mushin" / "manifest.json").exists(), what="the other process's sweep")
        before = tree(wd)
        with pytest.raises(SweepLocked) as err:
            Counted().run(x=multirun([7]), calls="c", working_dir=str(wd), progress=False)
        msg = str(err.value)
        assert str(proc.pid) in msg and os.uname().nodename in msg
        with pytest.raises(SweepLocked):
            Counted().run(x=multirun([7]), calls="c", working_dir=str(wd), resume=True, progress=False)
        assert tree(wd) == before
    finally:
        gate.touch()
        assert proc.wait(timeout=120) == 0
    # once the holder is done, the directory is free again
    Gated().run(x=multirun([1, 2, 3]), gate=str(gate), working_dir=str(wd), resume=True, progress=False)
    assert MultiRunMetricsWorkflow().load_from_dir(wd).to_xarray()["y"].values.tolist() == [1, 2, 3]


def test_a_killed_holder_leaves_a_lock_that_is_taken_over(cleandir):
    gate = cleandir / "gate"
    wd = cleandir / "shared"
    code = HOLDER.format(tests=str(Path(__file__).parent), gate=str(gate), wd=str(wd))
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=cleandir)
    try:
        wait_until(lambda: (wd / ".mushin" / "manifest.json").exists(), what="the other process's sweep")
    finally:
        proc.kill()
        proc.wait(timeout=30)
    gate.touch()
    wf = Gated()
    wf.run(x=multirun([1, 2]), gate=str(gate), working_dir=str(wd), resume=True, progress=False)
    assert wf.to_xarray()["y"].values.tolist() == [1, 2]


def test_the_what_survives_what_table_names_real_tests():
    """docs/troubleshooting.md's table is backed line by line: each test it names exists."""
    import re

    root = Path(__file__).parent
    text = (root.parent / "docs" / "troubleshooting.md").read_text(encoding="utf-8")
    section = text.split("## What survives what", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert len(rows) >= 8
    for row in rows:
        backed = row.rstrip(" |").rsplit("|", 1)[1]
        refs = re.findall(r"`(test_\w+\.py)(?:::(\w+))?`", backed)
        assert refs, f"row without a test: {row}"
        for fname, name in refs:
            src = (root / fname).read_text(encoding="utf-8")
            assert not name or f"def {name}(" in src, f"{fname}::{name} named in the table does not exist"
