"""`mushin-nb demo` and `mushin-nb export`, run as a user would."""

import hashlib
import subprocess
import sys

import pytest
import xarray as xr

from mushin_nb import __version__, load_netcdf, multirun


def cli(*args, cwd=None):
    """Run ``mushin-nb ARGS`` in a fresh process, as a user would."""
    return subprocess.run(
        [sys.executable, "-m", "mushin_nb.cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=cwd,
    )


def test_demo_writes_netcdf_and_prints_means(tmp_path):
    out = cli("demo", "--out", tmp_path / "demo", "--no-progress", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "mean accuracy per learning rate" in out.stdout
    assert "lr=0.01" in out.stdout and "lr=1 " in out.stdout
    ds = load_netcdf(tmp_path / "demo" / "lr_sweep.nc")
    assert dict(ds.sizes) == {"lr": 3, "seed": 3} and float(ds["accuracy"].min()) > 0.5
    # export the sweep directory again, with the job directories
    out2 = cli("export", tmp_path / "demo" / "sweep", tmp_path / "e.nc", "--with-dirs")
    assert out2.returncode == 0, out2.stderr
    exported = load_netcdf(tmp_path / "e.nc")
    xr.testing.assert_identical(exported.drop_vars("working_subdir"), ds)
    assert exported["working_subdir"].sel(lr=0.1, seed=2).item().startswith(str(tmp_path))
    # an existing file is not replaced without --overwrite
    out3 = cli("export", tmp_path / "demo" / "sweep", tmp_path / "e.nc")
    assert out3.returncode == 2 and "add --overwrite" in out3.stderr
    assert_one_line_error(out3, "export")


def test_demo_numpy_model_matches_without_torch(tmp_path):
    from mushin_nb import multirun
    from mushin_nb._demo import LRSweepNumpy

    wf = LRSweepNumpy()
    wf.run(lr=multirun([0.01, 1.0]), seed=multirun([0, 1]), working_dir=str(tmp_path / "s"), progress=False)
    acc = wf.to_xarray()["accuracy"]
    assert float(acc.sel(lr=1.0).mean()) > float(acc.sel(lr=0.01).mean()) - 0.05
    assert float(acc.min()) > 0.5


def assert_one_line_error(out, command: str) -> None:
    """A user's mistake: one line ``mushin-nb COMMAND: error: ...`` on stderr, in the
    CLI's flags, no traceback and no Python keyword-argument advice."""
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"mushin-nb {command}: error: "), out.stderr
    for api_term in ("Traceback", "overwrite=True", "resume=True", "mushin_nb/", 'File "'):
        assert api_term not in out.stderr, out.stderr


def tree(root):
    """Every file under ``root`` with its content hash (a refused command changes none)."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in root.rglob("*")
        if p.is_file()
    }


@pytest.mark.parametrize(
    "args, command, expected",
    [
        (["export", "{t}/nope", "{t}/x.nc"], "export", "SWEEP_DIR {t}/nope: it does not exist"),
        (["export", "{t}/plain", "{t}/x.nc"], "export", "is not a sweep directory"),
        (["export", "{t}/plain/f.txt", "{t}/x.nc"], "export", "is a file, not a directory"),
        (["export", "{t}/plain", "{t}/plain"], "export", "OUT {t}/plain: it is a directory"),
        (["check", "--break-lock", "{t}/plain"], "check", "--break-lock only goes with --repair"),
        (["demo", "--out", "{t}/plain/f.txt"], "demo", "it is a file, not a directory"),
        (
            ["demo", "--out", "{t}/empty", "--resume"],
            "demo",
            "holds no earlier demo sweep; run without --resume",
        ),
        (["demo", "--out", "{t}/empty", "--resume", "--overwrite"], "demo", "give one"),
        (["serve", "x.py:C", "--port", "abc"], "serve", "invalid int value: 'abc'"),
    ],
)
def test_user_mistakes_are_one_line_errors_in_flag_terms(tmp_path, args, command, expected):
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "f.txt").write_text("not a sweep")
    before = tree(tmp_path)
    out = cli(*[a.format(t=tmp_path) for a in args], cwd=tmp_path)
    assert out.returncode == 2, (out.returncode, out.stderr)
    if command == "serve":  # argparse's own usage error: usage line, then the error line
        assert f"mushin-nb {command}: error: " in out.stderr and expected in out.stderr
        assert "Traceback" not in out.stderr
    else:
        assert_one_line_error(out, command)
        assert expected.format(t=tmp_path) in out.stderr, out.stderr
    assert tree(tmp_path) == before and not (tmp_path / "empty").exists()  # nothing written


def test_version_and_help():
    out = cli("--version")
    assert out.returncode == 0 and out.stdout.strip() == f"mushin-nb {__version__}"
    out = cli("--help")
    assert out.returncode == 0 and "``" not in out.stdout and ":class:" not in out.stdout
    for command in ("demo", "export", "check", "serve"):
        assert command in out.stdout
    out = cli("demo", "--help")
    assert "--resume" in out.stdout and "--overwrite" in out.stdout


def test_demo_keeps_earlier_results_resumes_them_or_overwrites(tmp_path):
    from mushin_nb._demo import demo_workflow

    out_dir = tmp_path / "demo"
    # an earlier demo that ran 3 of its 9 jobs (the same workflow, as the CLI runs it)
    demo_workflow().run(
        lr=multirun([0.01]), seed=multirun([0, 1, 2]), working_dir=str(out_dir / "sweep"), progress=False
    )
    before = tree(out_dir)
    refused = cli("demo", "--out", out_dir, "--no-progress", cwd=tmp_path)
    assert refused.returncode == 2
    assert_one_line_error(refused, "demo")
    assert "--resume" in refused.stderr and "--overwrite" in refused.stderr
    assert tree(out_dir) == before and not (out_dir / "lr_sweep.nc").exists()

    resumed = cli("demo", "--out", out_dir, "--no-progress", "--resume", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert "9 jobs (3 reused from the earlier sweep)" in resumed.stdout
    ds = load_netcdf(out_dir / "lr_sweep.nc")
    assert dict(ds.sizes) == {"lr": 3, "seed": 3} and bool(ds["accuracy"].notnull().all())
    after = tree(out_dir)
    job_files = [f for f in before if f.split("/")[1].isdigit()]  # sweep/<job>/...
    assert job_files and all(after[f] == before[f] for f in job_files)  # reused, not run again

    again = cli("demo", "--out", out_dir, "--no-progress", cwd=tmp_path)  # lr_sweep.nc and the sweep exist
    assert again.returncode == 2 and "lr_sweep.nc" in again.stderr
    replaced = cli("demo", "--out", out_dir, "--no-progress", "--overwrite", cwd=tmp_path)
    assert replaced.returncode == 0, replaced.stderr
    assert "reused" not in replaced.stdout and "9 jobs in" in replaced.stdout
    assert dict(load_netcdf(out_dir / "lr_sweep.nc").sizes) == {"lr": 3, "seed": 3}


def test_engine_warnings_are_the_commands_own(tmp_path):
    """A damaged index: export reads the rest and warns as ``mushin-nb export: warning:``,
    with no source path or line of this package."""
    from mushin_nb._demo import LRSweepNumpy

    LRSweepNumpy().run(
        lr=multirun([0.1, 1.0]), seed=multirun([0]), working_dir=str(tmp_path / "s"), progress=False
    )
    index = tmp_path / "s" / ".mushin" / "index.jsonl"
    index.write_text("{torn\n" + index.read_text())
    out = cli("export", tmp_path / "s", tmp_path / "e.nc")
    assert out.returncode == 0, out.stderr
    assert out.stderr.startswith("mushin-nb export: warning: ") and "index.jsonl line 1" in out.stderr
    assert "mushin_nb/" not in out.stderr and "RuntimeWarning" not in out.stderr, out.stderr
    assert load_netcdf(tmp_path / "e.nc")["accuracy"].notnull().all()


def test_demo_ctrl_c_exits_130_keeping_what_finished_and_resume_runs_the_rest(tmp_path):
    """Ctrl-C (SIGINT) of ``mushin-nb demo`` while its first job runs: exit code 130, one
    line that says what was kept and the ``--resume`` command; the resume runs the rest."""
    import signal
    import time

    out_dir = tmp_path / "demo"
    proc = subprocess.Popen(
        [sys.executable, "-m", "mushin_nb.cli", "demo", "--out", str(out_dir), "--no-progress"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )
    try:
        manifest = out_dir / "sweep" / ".mushin" / "manifest.json"
        end = time.monotonic() + 120
        while not manifest.exists() and proc.poll() is None and time.monotonic() < end:
            time.sleep(0.01)  # the sweep started: its first job imports the model (seconds)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130, (proc.returncode, stdout, stderr)
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mushin-nb demo: error: interrupted; kept "), stderr
    assert "of 9 jobs" in stderr and f"mushin-nb demo --out {out_dir} --resume" in stderr
    assert "Traceback" not in stderr and not (out_dir / "lr_sweep.nc").exists()
    kept = int(lines[0].split("kept ")[1].split(" ")[0])
    assert kept < 9
    resumed = cli("demo", "--out", out_dir, "--no-progress", "--resume", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert (f"9 jobs ({kept} reused from the earlier sweep)" if kept else "9 jobs in") in resumed.stdout
    assert bool(load_netcdf(out_dir / "lr_sweep.nc")["accuracy"].notnull().all())


def test_demo_whose_jobs_fail_exits_1_with_the_resume_command(tmp_path, small_disk):
    """Jobs that cannot write their results (a full disk): exit code 1, the failures
    summed up and the ``--resume`` command to run once the cause is fixed."""
    out_dir = small_disk / "demo"
    # fill the small disk but for room for the sweep's own files and a job or two
    filler = small_disk / "filler"
    free = __import__("shutil").disk_usage(small_disk).free
    filler.write_bytes(b"\0" * max(free - 96 * 1024, 0))
    out = cli("demo", "--out", out_dir, "--no-progress", cwd=tmp_path)
    assert out.returncode == 1, (out.returncode, out.stdout, out.stderr)
    lines = out.stderr.splitlines()
    k = next(i for i, line in enumerate(lines) if line.startswith("mushin-nb demo: error: "))
    # before the error, at most the one-line warning that a job log could not be written
    assert all(line.startswith("mushin-nb demo: warning: the job log ") for line in lines[:k]), out.stderr
    assert "of 9 are kept" in out.stderr and f"mushin-nb demo --out {out_dir} --resume" in out.stderr
    for noise in ("Traceback", 'File "', "Logging error"):
        assert noise not in out.stderr, out.stderr
    filler.unlink()  # the cause fixed: the resume runs the failed jobs
    resumed = cli("demo", "--out", out_dir, "--no-progress", "--resume", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert bool(load_netcdf(out_dir / "lr_sweep.nc")["accuracy"].notnull().all())
