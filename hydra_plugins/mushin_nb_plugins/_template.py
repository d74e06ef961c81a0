"""The fast path of the in-process launcher: one Hydra composition per *shape* of
job overrides (the same keys with the same override types), then each job's
configuration and files made from it.

Per job, the job's values are applied to a copy of the task part of the
composed configuration (``OmegaConf.update``); its Hydra config is the
template's with the fields that differ between jobs (``hydra.job.num``, ``id``,
``override_dirname``, ``hydra.overrides.task``, ``hydra.runtime.output_dir`` /
``cwd``, and every interpolation) made anew (``mushin_nb._compat``'s
``JobConfigBuilder``). The files are those of Hydra's ``run_job``
(``.hydra/config.yaml``, ``hydra.yaml``, ``overrides.yaml``, the job log), with
``hydra.yaml`` rendered from a text template (``_job_yaml``); the first job of
every template checks the fast results against OmegaConf's.

No ``from __future__ import annotations`` under ``hydra_plugins`` (see
``sweeper.py``). Imported lazily by ``launcher.py``.
"""

import functools
import logging
import os
import re
import threading
from collections.abc import Sequence
from typing import Any

from mushin_nb._compat import JobConfigBuilder, JobConfigs
from mushin_nb._compat.omegaconf_copy import copy_config, set_value

from ._derive import derive_sweep_config
from ._job_logging import JobLogging, flush_log_handlers
from ._job_yaml import JOB_FIELDS, HydraYamlTemplate, TaskYamlTemplate, overrides_from_chunk

__all__ = [
    "JobTemplate",
    "NeedsComposition",
    "MISS",
    "plain_value",
    "overrides_dirname",
    "interpolation_paths",
    "running_job",
]

log = logging.getLogger(__name__)

MISS: Any = object()  # "not known without OmegaConf's resolver"
_REF = re.compile(r"\$\{([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)\}")


_RUNNING = threading.local()


def running_job() -> tuple[str, list[str], int] | None:
    """While a job of this launcher's fast path runs in this thread: its
    ``hydra.runtime.output_dir``, ``hydra.overrides.task`` and ``hydra.job.num``
    (what ``HydraConfig.get()`` holds, without reading the config); else None.

    Examples
    --------
    >>> running_job() is None
    True
    """
    return getattr(_RUNNING, "job", None)


class NeedsComposition(Exception):
    """This job needs Hydra's own composition (e.g. a value its typed node refuses)."""


def plain_value(v: Any) -> bool:
    """Whether an override's value is one the fast path applies itself (a scalar
    or a list of them; a dict merges into the node it overrides: compose).

    Examples
    --------
    >>> plain_value([1, "a", None]), plain_value({"a": 1})
    (True, False)
    """
    if v is None or isinstance(v, (bool, int, float, str)):
        return True
    if isinstance(v, list):
        return all(plain_value(x) for x in v)
    return False


def overrides_dirname(
    overrides: Sequence[Any], exclude_keys: Sequence[str], item_sep: str, kv_sep: str
) -> str:
    """``hydra.job.override_dirname`` of parsed overrides, as Hydra computes it
    (sorted ``input_line`` s, not the excluded keys, ``=`` replaced by ``kv_sep``).
    Each template checks it against Hydra's own value for its first job.

    Examples
    --------
    >>> from hydra.core.override_parser.overrides_parser import OverridesParser
    >>> parsed = OverridesParser.create().parse_overrides(["y=2", "x=a", "seed=0"])
    >>> overrides_dirname(parsed, ["seed"], ",", "=")
    'x=a,y=2'
    """
    lines = sorted(str(o.input_line) for o in overrides if o.key_or_group not in exclude_keys)
    return item_sep.join(lines).replace("=", kv_sep)


def interpolation_paths(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """The paths (keys, list indices) under ``node`` of every interpolation.

    Examples
    --------
    >>> from omegaconf import OmegaConf
    >>> interpolation_paths(OmegaConf.create({"a": 1, "b": {"c": "${a}"}, "l": [0, "${a}"]}))
    [('b', 'c'), ('l', 1)]
    """
    from omegaconf import DictConfig, ListConfig, OmegaConf

    out: list[tuple[Any, ...]] = []
    keys: Sequence[Any] = range(len(node)) if isinstance(node, ListConfig) else list(node.keys())
    for k in keys:
        if OmegaConf.is_interpolation(node, k):
            out.append(path + (k,))
        elif not OmegaConf.is_missing(node, k):
            child = node[k]
            if isinstance(child, (DictConfig, ListConfig)):
                out.extend(interpolation_paths(child, path + (k,)))
    return out


def _raw_at(plain: Any, keys: Sequence[Any]) -> Any:
    """The value at ``keys`` of a plain container (interpolations as text), or MISS."""
    d = plain
    for k in keys:
        if isinstance(d, dict) and k in d:
            d = d[k]
        elif isinstance(d, list) and isinstance(k, int) and 0 <= k < len(d):
            d = d[k]
        else:
            return MISS
    return d


def _scalar(v: Any) -> Any:
    """``v`` when it is a plain scalar that is no interpolation and not missing, else MISS."""
    if isinstance(v, str) and ("${" in v or v == "???"):
        return MISS
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    return MISS


def _task_scalar(task_cfg: Any, keys: Sequence[str]) -> Any:
    """The plain scalar at ``keys`` of the task config, or MISS."""
    from omegaconf import DictConfig, OmegaConf

    node = task_cfg
    try:
        for n, k in enumerate(keys):
            if OmegaConf.is_interpolation(node, k) or OmegaConf.is_missing(node, k):
                return MISS
            node = node[k]
            if n < len(keys) - 1 and not isinstance(node, DictConfig):
                return MISS
    except Exception:
        return MISS
    return _scalar(node)


def _varies(plain: Any, path: tuple[Any, ...], interps: set[Any], seen: tuple[Any, ...]) -> bool:
    """Whether the interpolation at ``path`` (under ``hydra``; ``plain`` holds the raw
    values) may resolve differently between jobs: it refers to a per-job field, a task
    key, a container, or is not plain ``${hydra.a.b}`` references (a resolver such as
    ``${now:...}``, a relative or escaped one). Plain references are followed.

    Examples
    --------
    >>> plain = {"job": {"name": "n", "num": 0}, "a": "${hydra.job.name}", "b": "x${hydra.a}",
    ...          "c": "${hydra.job.num}", "d": "${now:%H}", "e": "${x}", "f": "${hydra.c}"}
    >>> interps = {("a",), ("b",), ("c",), ("d",), ("e",), ("f",)}
    >>> [k for k in "abcdef" if _varies(plain, (k,), interps, ())]
    ['c', 'd', 'e', 'f']
    """
    raw = _raw_at(plain, path)
    if not isinstance(raw, str) or path in seen or "\\" in raw:
        return True
    for i, part in enumerate(_REF.split(raw)):
        if i % 2 == 0:
            if "${" in part:
                return True
            continue
        keys = tuple(part.split("."))
        rel = keys[1:]
        if keys[0] != "hydra" or any(rel[: len(f)] == f or f[: len(rel)] == rel for f in JOB_FIELDS):
            return True
        target = _raw_at(plain, rel)
        if target is MISS or isinstance(target, (dict, list)):
            return True
        if (rel in interps or (isinstance(target, str) and "${" in target)) and _varies(
            plain, rel, interps, seen + (path,)
        ):
            return True
    return False


class JobTemplate:
    """The composed configuration of one shape of job overrides, and what is
    needed to make each job's configuration and files from it.

    Parameters
    ----------
    launcher : MushinLauncher
        Its ``hydra_context``, ``config``, ``task_function`` and ``job_id``.
    overrides : list of str
        The first job's overrides (Hydra composes the template with them).
    parsed : list of Override
        The same, parsed.

    Attributes
    ----------
    usable : bool
        False when a check against Hydra's composition failed: the launcher then
        composes this shape's jobs with Hydra.
    """

    def __init__(self, launcher: Any, overrides: list[str], parsed: list[Any]) -> None:
        from hydra import version
        from hydra.core.utils import JobRuntime
        from omegaconf import OmegaConf, open_dict, read_write

        self.launcher = launcher
        # composed by Hydra, exactly as BasicLauncher does it
        # made from the master config when that is exact (_derive), else composed by
        # Hydra exactly as BasicLauncher does it
        cfg = derive_sweep_config(launcher.config, list(overrides), parsed)
        self.derived = cfg is not None
        if cfg is None:
            cfg = launcher.hydra_context.config_loader.load_sweep_config(launcher.config, list(overrides))
        # the frozen Hydra config every job's Hydra config is made from (masked_copy
        # copies the hydra node: nothing is shared with cfg)
        with open_dict(cfg):
            cfg.hydra.job.id = 0
            cfg.hydra.job.num = 0
        with read_write(cfg.hydra.runtime), open_dict(cfg.hydra.runtime):
            cfg.hydra.runtime.output_dir = "/"
        self.frozen = OmegaConf.masked_copy(cfg, "hydra")
        OmegaConf.set_readonly(self.frozen.hydra, True)
        h = self.frozen.hydra
        # the task config: the composed config without its hydra node (no copy: cfg is ours)
        with read_write(cfg), open_dict(cfg):
            del cfg["hydra"]
        self.task = cfg
        # paths (under hydra) of the nodes made per job: per-job fields + interpolations
        self.interp = [p for p in interpolation_paths(h) if p not in JOB_FIELDS]
        self.plain: Any = OmegaConf.to_container(h, resolve=False)  # raw values
        # an interpolation of constants only (e.g. ${hydra.job.name}) resolves to the same
        # value in every job: its node is shared with the template like any constant
        interps = set(self.interp)
        varying = [p for p in self.interp if _varies(self.plain, p, interps, ())]
        self.builder = JobConfigBuilder(self.frozen, list(JOB_FIELDS) + varying)
        # constants of run_job
        chdir = h.job.chdir
        if chdir is None and version.base_at_least("1.2"):
            chdir = False
        self.chdir = chdir
        self.output_subdir = h.output_subdir
        self.env_set = OmegaConf.to_container(h.job.env_set, resolve=True) if h.job.env_set else {}
        dirname = h.job.config.override_dirname
        self.kv_sep, self.item_sep = dirname.kv_sep, dirname.item_sep
        self.exclude_keys = list(dirname.exclude_keys)
        self.job_name = h.job.name
        self._const: dict[tuple[str, ...], Any] = {}
        self.fast_interp = True
        self.checking = True  # the first job: compare the fast paths with OmegaConf
        self.sweep_dir_raw = self.plain["sweep"]["dir"]
        self.sweep_subdir_raw = self.plain["sweep"]["subdir"]
        # job logging: per job only its interpolations are resolved
        self.logging = JobLogging(self.plain.get("job_logging"), h.verbose)
        self.logging_interp = [p[1:] for p in self.interp if p and p[0] == "job_logging"]
        self.yaml = HydraYamlTemplate(self.frozen)
        self.yaml_ok = True
        self.task_yaml = TaskYamlTemplate(cfg, [o.key_or_group for o in parsed])
        self.task_name = JobRuntime.instance().get("name")
        mine = overrides_dirname(parsed, self.exclude_keys, self.item_sep, self.kv_sep)
        self.usable = mine == str(h.job.override_dirname)

    # ------------------------------------------------------------ interpolations
    def _ref(self, path: str, values: dict[tuple[str, ...], Any], task_cfg: Any) -> Any:
        keys = tuple(path.split("."))
        if keys[0] == "hydra":
            rel = keys[1:]
            if rel in values:
                return values[rel]
            if any(rel[: len(f)] == f or f[: len(rel)] == rel for f in JOB_FIELDS):
                return MISS
            if rel not in self._const:
                self._const[rel] = _scalar(_raw_at(self.plain, rel))
            return self._const[rel]
        return _task_scalar(task_cfg, keys)

    def _resolve(self, raw: Any, values: dict[tuple[str, ...], Any], task_cfg: Any) -> Any:
        """``str`` of a raw string value with ``${a.b}`` references resolved
        without OmegaConf's grammar parser; MISS when it is not that simple."""
        if self.fast_interp is False or not isinstance(raw, str):
            return MISS
        if "${" not in raw:
            return raw
        if "\\" in raw:
            return MISS
        out = []
        for i, part in enumerate(_REF.split(raw)):
            if i % 2 == 0:
                if "${" in part:
                    return MISS
                out.append(part)
            else:
                v = self._ref(part, values, task_cfg)
                if v is MISS:
                    return MISS
                out.append(str(v))
        return "".join(out)

    def _select(
        self, full: Any, key: str, raw: Any, values: dict[tuple[str, ...], Any], task_cfg: Any
    ) -> str:
        from omegaconf import OmegaConf

        v = self._resolve(raw, values, task_cfg)
        if v is not MISS and not self.checking:
            return str(v)
        ref = str(OmegaConf.select(full, key))
        if v is not MISS and ref != v:  # checked on the first job of the template
            self.fast_interp = False
        return ref

    # ------------------------------------------------------------ per job
    def _task_config(self, parsed: list[Any]) -> Any:
        """The task config: the template's, with this job's values."""
        from omegaconf import OmegaConf

        task_cfg = copy_config(self.task)  # copy.deepcopy, made directly
        try:
            for o in parsed:
                force_add = o.is_add() or o.is_force_add()
                value = o.value()
                if force_add or not set_value(task_cfg, o.key_or_group, value):  # update, made directly
                    OmegaConf.update(task_cfg, o.key_or_group, value, merge=True, force_add=force_add)
        except Exception:
            raise NeedsComposition() from None  # e.g. a value its typed node refuses
        return task_cfg

    def _job_values(self, overrides: list[str], idx: int, parsed: list[Any]) -> dict[tuple[str, ...], Any]:
        job_id = idx if self.launcher.job_id == "num" else f"{self.job_name}_{idx}"
        return {
            ("job", "override_dirname"): overrides_dirname(
                parsed, self.exclude_keys, self.item_sep, self.kv_sep
            ),
            ("job", "id"): job_id,
            ("job", "num"): idx,
            ("overrides", "task"): list(overrides),
            ("runtime", "cwd"): os.getcwd(),
            ("runtime", "output_dir"): "/",
        }

    def run(self, overrides: list[str], idx: int, parsed: list[Any]) -> Any:
        """Run one job (``BasicLauncher``'s ``run_job``); returns its ``JobReturn``.
        Raises :class:`NeedsComposition` when the job needs Hydra's composition."""
        from omegaconf import OmegaConf

        task_cfg = self._task_config(parsed)
        values = self._job_values(overrides, idx, parsed)
        job = self.builder.build(task_cfg, values)
        # resolver cache (e.g. ${now:...}) as Hydra's load_sweep_config copies it
        OmegaConf.copy_cache(from_config=self.launcher.config, to_config=job.full)
        old_cwd = os.getcwd()
        chdir = True if self.chdir is None else bool(self.chdir)  # None: version_base < 1.2 (Hydra 1.1)
        try:
            with job.held():
                full = job.full
                output_dir = self._select(full, "hydra.sweep.dir", self.sweep_dir_raw, values, task_cfg)
                subdir = self._select(full, "hydra.sweep.subdir", self.sweep_subdir_raw, values, task_cfg)
                output_dir = os.path.join(output_dir, subdir)
                values[("runtime", "output_dir")] = os.path.abspath(output_dir)
                job.set(("runtime", "output_dir"), values[("runtime", "output_dir")])
                _mkdir(output_dir)
                if chdir:
                    os.chdir(output_dir)
                    working_dir = output_dir
                else:
                    working_dir = os.getcwd()
                return self._call(job, task_cfg, values, overrides, parsed, working_dir)
        finally:
            self.checking = False
            job.release()
            if chdir:
                os.chdir(old_cwd)

    def _call(
        self,
        job: JobConfigs,
        task_cfg: Any,
        values: dict[tuple[str, ...], Any],
        overrides: list[str],
        parsed: list[Any],
        working_dir: str,
    ) -> Any:
        """Logging, files, callbacks and the task call of ``run_job``."""
        from hydra.core.utils import JobStatus, env_override

        from ._lazy_return import LazyJobReturn

        launcher = self.launcher
        # the return keeps what this job's Hydra config is made from, not the config
        ret = LazyJobReturn(
            functools.partial(_hydra_root, self.builder, task_cfg, values), values[("job", "num")]
        )
        ret.cfg = task_cfg
        ret.overrides = list(overrides)
        ret.working_dir = working_dir
        self._configure_logging(job.full, values, task_cfg)
        if self.output_subdir is not None:
            self._write_files(
                values[("runtime", "output_dir")], task_cfg, job.hroot, values, overrides, parsed
            )
        callbacks = launcher.hydra_context.callbacks
        with env_override(self.env_set):  # type: ignore[arg-type]
            callbacks.on_job_start(config=job.full, task_function=launcher.task_function)
            before = getattr(_RUNNING, "job", None)
            _RUNNING.job = (values[("runtime", "output_dir")], ret.overrides, values[("job", "num")])
            try:
                ret.return_value = launcher.task_function(task_cfg)
                ret.status = JobStatus.COMPLETED
            except Exception as e:
                ret.return_value = e
                ret.status = JobStatus.FAILED
            finally:
                _RUNNING.job = before
        ret.task_name = self.task_name
        flush_log_handlers()
        callbacks.on_job_end(config=job.full, job_return=ret)
        return ret

    def _configure_logging(self, full: Any, values: dict[tuple[str, ...], Any], task_cfg: Any) -> None:
        resolved: dict[Any, Any] = {}
        if self.logging.plain is not None:
            for p in self.logging_interp:
                key = "hydra.job_logging." + ".".join(str(k) for k in p)
                raw = _raw_at(self.logging.plain, p)
                resolved[p] = self._select(full, key, raw, values, task_cfg)
        self.logging.configure(lambda: full.hydra.job_logging, resolved)

    def _write_files(
        self,
        output_dir: str,
        task_cfg: Any,
        hroot: Any,
        values: dict[tuple[str, ...], Any],
        overrides: list[str],
        parsed: list[Any],
    ) -> None:
        from omegaconf import OmegaConf

        from mushin_nb._compat import yaml_dump

        d = os.path.join(output_dir, str(self.output_subdir))
        _mkdir(d)
        config = self.task_yaml.render([o.value() for o in parsed])
        if config is None or self.checking:  # first job of this template: check against OmegaConf
            ref = OmegaConf.to_yaml(task_cfg)
            if config is not None and config != ref:
                log.debug("mushin_nb launcher: config.yaml template differs from OmegaConf; not used")
                self.task_yaml.pieces = None
            config = ref
        _write(os.path.join(d, "config.yaml"), config)
        text = None
        chunks: dict[Any, str] = {}
        if self.yaml_ok:
            vals = dict(values)
            vals[("job", "id")] = str(values[("job", "id")])
            text, chunks = self.yaml.render(vals)
            if self.checking:  # first job of this template: check against OmegaConf
                ref = OmegaConf.to_yaml(hroot)
                self.yaml_ok = text == ref
                if not self.yaml_ok:
                    log.debug("mushin_nb launcher: hydra.yaml template differs from OmegaConf; not used")
                text = ref
        if text is None:
            text = OmegaConf.to_yaml(hroot)
        _write(os.path.join(d, "hydra.yaml"), text)
        ov_text = overrides_from_chunk(chunks.get(("overrides", "task")))
        if ov_text is None or self.checking:
            ref = yaml_dump(list(overrides))
            if ov_text is not None and ov_text != ref:
                self.yaml_ok = False
            ov_text = ref
        _write(os.path.join(d, "overrides.yaml"), ov_text)


def _hydra_root(builder: JobConfigBuilder, task_cfg: Any, values: dict[tuple[str, ...], Any]) -> Any:
    """A job's ``{hydra: ...}`` config, made again from the values it was made from."""
    job = builder.build(task_cfg, values)
    job.release()
    return job.hroot


def _write(path: str, text: str) -> None:
    """``open(path, "w", encoding="utf-8").write(text)`` in three system calls."""
    data = memoryview(text.encode("utf-8"))
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0), 0o666)
    try:
        while data:
            data = data[os.write(fd, data) :]
    finally:
        os.close(fd)


def _mkdir(path: str) -> None:
    """``os.makedirs(path, exist_ok=True)``; one system call when only ``path`` is new."""
    try:
        os.mkdir(path)
    except FileExistsError:
        if not os.path.isdir(path):
            raise
    except FileNotFoundError:  # a parent is missing too
        os.makedirs(path, exist_ok=True)
