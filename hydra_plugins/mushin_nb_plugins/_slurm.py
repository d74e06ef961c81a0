"""SLURM commands of the submitit launcher (``submitit_launcher.py``): hold a submission
until its submitit folders exist, release it, cancel jobs, and read how a job ended.

Why the hold: submitit (1.5) submits a job or a job array with ``sbatch`` first and only
then creates each job's folder (``.submitit/<array>_<task>/``) while it moves the job's
pickle there. SLURM's output files live in that folder, and ``slurmstepd`` does not
create directories: a task the scheduler starts before the driver reached it fails at
once with no output ("Could not open stdout file", state FAILED, ExitCode 0:53). A busy
driver and a scheduler that starts jobs at once (a quiet cluster, a small test cluster)
meet this race. Submitting with ``--hold`` and releasing the job once every folder
exists removes it, whatever ``submitit_folder`` the user chose.
"""

import logging
import subprocess
import time
from typing import Any

log = logging.getLogger(__name__)


def hold_submission(params: dict[str, Any]) -> bool:
    """Add ``--hold`` to the sbatch flags of ``params`` (the executor's parameters,
    ``slurm_additional_parameters`` among them) unless the user set ``hold``
    themselves. True when the launcher must release the job after submitting it."""
    extra = dict(params.get("slurm_additional_parameters") or {})
    if "hold" in extra:  # the user's own hold: they release the job
        return False
    extra["hold"] = True
    params["slurm_additional_parameters"] = extra
    return True


def release(job_ids: list[str]) -> None:
    """``scontrol release`` the held jobs (an array's id releases all its tasks). If
    SLURM refuses three times, the jobs are cancelled (held, they would wait forever)
    and the error says so; nothing of the sweep ran."""
    if not job_ids:
        return
    cmd = ["scontrol", "release", *job_ids]
    why = ""
    for attempt in range(3):
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.SubprocessError) as e:
            why = str(e)
        else:
            if out.returncode == 0:
                return
            why = (out.stderr or out.stdout).strip() or f"exit code {out.returncode}"
        time.sleep(0.5 * (attempt + 1))
    scancel(job_ids)
    raise RuntimeError(
        f"SLURM job {', '.join(job_ids)} was submitted held (it may start only once submitit has "
        f"created its folders) and `{' '.join(cmd)}` failed three times: {why}. The job was cancelled; "
        "none of its tasks ran. Check that scontrol reaches the controller (the same SLURM_CONF as "
        "sbatch) and run the sweep again."
    )


def scancel(ids: list[str], *opts: str) -> None:
    """``scancel`` the jobs; a failure is logged (the caller goes on)."""
    if not ids:
        return
    cmd = ["scancel", *opts, *ids]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as e:
        log.warning("mushin_nb: %s failed: %s", " ".join(cmd), e)
        return
    if out.returncode != 0:
        log.warning("mushin_nb: %s failed: %s", " ".join(cmd), (out.stderr or out.stdout).strip())


def exit_status(job_id: str) -> str:
    """How SLURM says the job ended, from sacct's ExitCode (``code:signal``) of its
    task step, else of its batch step, else of the job: ``"exited with code 1"``,
    ``"killed by signal 9 (SIGKILL: ...)"``, with the raw value; "" if sacct cannot tell."""
    from mushin_nb._job import describe_exit

    try:
        out = subprocess.run(
            ["sacct", "-n", "-P", "-j", job_id, "-o", "JobID,State,ExitCode"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    rows = {}
    for line in out.stdout.splitlines():
        parts = line.strip().split("|")
        if len(parts) == 3 and ":" in parts[2]:
            rows[parts[0]] = parts[2]
    for key in (f"{job_id}.0", f"{job_id}.batch", job_id):
        if key in rows:
            code, _, sig = rows[key].partition(":")
            if not (code.isdigit() and sig.isdigit()):
                continue
            if int(sig):
                return f"{describe_exit(-int(sig))}, SLURM ExitCode {rows[key]} of {key}"
            if int(code):
                return f"{describe_exit(int(code))}, SLURM ExitCode {rows[key]} of {key}"
    return ""
