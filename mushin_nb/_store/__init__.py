"""The sweep directory on disk.

Layout (Hydra's own files are untouched and still readable by other tools)::

    <sweep dir>/
      multirun.yaml                  Hydra's
      .mushin/manifest.json          the sweep: parameters and values in order, task, hash
      .mushin/index.jsonl            one line per finished job (appended as jobs finish)
      .mushin/CANCEL                 present while a cancel / stop is in force
      .mushin/columns.npz            the index in columns, with the array metrics stacked: a
                                     cache for fast reloads (used only while it matches the
                                     index and the jobs' .npz files)
      .mushin/runs/<run id>.json     each run's grid, written once: manifest.json is rebuilt
                                     from these when it is missing or damaged
      <subdir>/.hydra/...            Hydra's per-job config, hydra and overrides files
      <subdir>/mushin_result.json    the job's status, parameters, scalar metrics, error
      <subdir>/mushin_result.npz     the job's array metrics (loaded with allow_pickle=False)
      <subdir>/mushin_error.txt      the traceback of a failed job
      <subdir>/mushin_running.json   the job's start marker, while it runs; renamed to
                                     mushin_result.json holding the job's result

Nothing here is pickled: scalars and strings are JSON, arrays are ``.npz``.

Damage stays local: a missing or corrupt result file, a torn or garbage index line or
a damaged manifest costs only the cells involved (see :class:`Damage`). Files follow
the process umask; a temporary file of an interrupted write carries its writer's host
and pid in its name and is removed by the next write to the same file once that writer
is gone. Nothing outside the sweep directory is followed (:func:`job_dir_within`).

The public names below are the store's API (``from mushin_nb import _store;
_store.read_records(...)``); the work is in its modules, one responsibility each:

- ``_layout``: file names, cell states, :func:`job_dir_within`
- ``_values``: what a metric may be (:func:`convert_metrics`)
- ``_files``: atomic writes, temporary files, appends, reads that follow no link
- ``_records``: :class:`JobResult`, its record, :func:`write_job_result`
- ``_damage``: :class:`Damage` and how it is told
- ``_manifest``: the manifest and its per-run copies
- ``_markers``: job start markers and jobs whose process died
- ``_index``: reading results back (:func:`read_records`), the index, cancel
- ``_columns``: the index's compact columnar form (``.mushin/columns.npz``), a cache
  that makes a reload cost the bytes it reads

Examples
--------
>>> import tempfile
>>> from pathlib import Path
>>> from mushin_nb import _store
>>> d = Path(tempfile.mkdtemp())
>>> spec = {"params": [{"name": "x", "values": [1, 2]}]}
>>> _store.write_manifest(d, {"runs": ["r1"], "spec": spec, "run_specs": {"r1": spec}})
>>> r = _store.JobResult(index=(1,), status="done", subdir="1", job_num=1, run_id="r1", metrics={"y": 2.0})
>>> _ = _store.write_job_result(d, d / "1", r)
>>> [(r.index, r.metrics) for r in _store.read_records(d, run_ids=_store.read_manifest(d)["runs"])]
[((1,), {'y': 2.0})]
"""

from __future__ import annotations

from .._proc import process_state
from ._columns import COLUMNS, paused_gc, read_columns, save_columns, store_columns
from ._damage import Damage, damage_report, is_damaged, report_damage, warn_damage
from ._files import (
    DamagedFileError,
    TempFile,
    append_line,
    atomic_write_bytes,
    atomic_write_text,
    create_temp,
    dumps,
    load_result_arrays,
    open_nofollow,
    open_problem,
    parse_json_line,
    read_json,
    remove_stale_temps,
    temp_files,
    temp_name,
    unlink_quiet,
    write_npz,
    write_once,
)
from ._index import (
    archive_index,
    clear_cancel,
    is_cancelled,
    job_dirs_below,
    read_index,
    read_index_raw,
    read_records,
    set_cancel,
    unindexed_dirs,
)
from ._layout import (
    CANCEL,
    DAMAGED,
    ERROR_TXT,
    INDEX,
    MANIFEST,
    META_DIR,
    RESULT_JSON,
    RESULT_NPZ,
    RUNNING_JSON,
    RUNS_DIR,
    STATES,
    job_dir_within,
    subdir_escape,
)
from ._manifest import read_manifest, rebuild_manifest, run_copy_problem, write_manifest, write_run_copies
from ._markers import (
    clear_job_started,
    find_dead_jobs,
    has_result_of,
    mark_job_started,
    marker_dirs,
    read_job_marker,
)
from ._records import JobResult, record_problem, write_job_result
from ._values import (
    MetricNameError,
    MetricValueError,
    check_stored_metrics,
    convert_metrics,
    to_numpy_or_scalar,
)

# errors show (and pickle) under the package's name, where users import them from
for _err in (DamagedFileError, MetricNameError, MetricValueError):
    _err.__module__ = __name__
del _err

__all__ = [
    "CANCEL",
    "COLUMNS",
    "DAMAGED",
    "ERROR_TXT",
    "INDEX",
    "MANIFEST",
    "META_DIR",
    "RESULT_JSON",
    "RESULT_NPZ",
    "RUNNING_JSON",
    "RUNS_DIR",
    "STATES",
    "Damage",
    "DamagedFileError",
    "JobResult",
    "MetricNameError",
    "MetricValueError",
    "TempFile",
    "append_line",
    "archive_index",
    "atomic_write_bytes",
    "atomic_write_text",
    "check_stored_metrics",
    "clear_cancel",
    "clear_job_started",
    "convert_metrics",
    "create_temp",
    "damage_report",
    "dumps",
    "find_dead_jobs",
    "has_result_of",
    "is_cancelled",
    "is_damaged",
    "job_dir_within",
    "job_dirs_below",
    "load_result_arrays",
    "mark_job_started",
    "marker_dirs",
    "open_nofollow",
    "open_problem",
    "parse_json_line",
    "paused_gc",
    "process_state",
    "read_index",
    "read_columns",
    "read_index_raw",
    "read_job_marker",
    "read_json",
    "read_manifest",
    "read_records",
    "rebuild_manifest",
    "record_problem",
    "remove_stale_temps",
    "report_damage",
    "save_columns",
    "store_columns",
    "run_copy_problem",
    "set_cancel",
    "subdir_escape",
    "temp_files",
    "temp_name",
    "to_numpy_or_scalar",
    "unindexed_dirs",
    "unlink_quiet",
    "warn_damage",
    "write_job_result",
    "write_manifest",
    "write_npz",
    "write_once",
    "write_run_copies",
]
