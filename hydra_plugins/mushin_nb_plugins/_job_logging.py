"""A job's logging, as Hydra's ``configure_log(hydra.job_logging, hydra.verbose)``
sets it, without running ``logging.config`` for every job.

Hydra's default job logging writes each job's log to a file in the job's
directory: between two jobs of one template, only that ``FileHandler``'s file
name changes. Then only that handler is replaced (a new ``logging.FileHandler``
with the old one's level, formatter, filters and name, in the old one's place on
every logger that had it); anything else that changed runs ``configure_log``.
Only the public ``logging`` API is used.

No ``from __future__ import annotations`` under ``hydra_plugins`` (see
``sweeper.py``).
"""

import logging
from collections.abc import Callable
from typing import Any

__all__ = ["JobLogging", "all_loggers", "flush_log_handlers"]


def all_loggers() -> list[logging.Logger]:
    """The root logger and every logger created so far.

    Examples
    --------
    >>> all_loggers()[0] is logging.getLogger()
    True
    """
    manager = logging.getLogger().manager
    return [logging.getLogger()] + [
        lg for lg in list(manager.loggerDict.values()) if isinstance(lg, logging.Logger)
    ]


def flush_log_handlers() -> None:
    """Flush the handlers of every logger (what Hydra does after a job).

    Examples
    --------
    >>> flush_log_handlers()
    """
    root = logging.getLogger()
    for lg in [root, *root.manager.loggerDict.values()]:
        for h in getattr(lg, "handlers", None) or ():  # a PlaceHolder has none
            try:
                h.flush()
            except Exception:  # as Hydra: a handler that cannot flush is ignored
                pass


def _handlers_named(names: set[str]) -> dict[str, logging.Handler]:
    found: dict[str, logging.Handler] = {}
    for lg in all_loggers():
        for h in lg.handlers:
            name = h.get_name()
            if name in names:
                found.setdefault(name, h)
    return found


def _say_write_errors_once(handler: logging.Handler) -> None:
    """A job log that cannot be written (a full disk) is said once, as a RuntimeWarning
    naming its file, instead of logging's "--- Logging error ---" traceback per record
    (``Handler.handleError``, overridden on this handler)."""
    if getattr(handler, "_mushin_nb_errors_said", None) is not None:
        return
    handler._mushin_nb_errors_said = False  # type: ignore[attr-defined]

    def handle_error(record: logging.LogRecord) -> None:
        import sys
        import warnings

        if handler._mushin_nb_errors_said:  # type: ignore[attr-defined]
            return
        handler._mushin_nb_errors_said = True  # type: ignore[attr-defined]
        exc = sys.exc_info()[1]
        warnings.warn(
            f"mushin_nb: the job log {getattr(handler, 'baseFilename', handler)} could not be written "
            f"({type(exc).__name__}: {exc}); its records from now on are lost (the jobs' results "
            "are not affected)",
            RuntimeWarning,
            stacklevel=1,
        )

    handler.handleError = handle_error  # type: ignore[method-assign]


def _reopen(handler: logging.FileHandler, filename: str, *, delay: bool) -> None:
    """Point ``handler`` at ``filename``, as a new ``FileHandler(filename, handler.mode,
    handler.encoding, delay, handler.errors)`` in its place would be, keeping the handler
    (its level, formatter, filters and place on every logger): no walk over every
    logger per job (hundreds in a notebook that imported torch, Panel, ...)."""
    import os

    path = os.path.abspath(os.fspath(filename))
    stream = None if delay else open(path, handler.mode, encoding=handler.encoding, errors=handler.errors)
    handler.acquire()
    try:
        try:
            handler.flush()
        except OSError:  # the previous job's file cannot take its last records (a full disk)
            pass
        previous = handler.stream
        handler.stream = stream  # type: ignore[assignment]  # None: opened by the first record (delay)
        handler.baseFilename = path
    finally:
        handler.release()
    if previous is not None:
        try:
            previous.close()
        except OSError:
            pass


def _delay(hconf: Any) -> bool:
    """A job's ``logging.FileHandler`` opens its file at the first record unless its
    config sets ``delay: false``: a job that logs nothing creates no empty log file
    (one file creation fewer per job, which counts on a cluster's file system)."""
    return bool(hconf.get("delay", True))


def _delayed(conf: Any, plain: Any) -> Any:
    """``conf`` (a job's ``hydra.job_logging``) with ``delay: true`` on each
    ``logging.FileHandler`` whose config does not set ``delay`` (see :func:`_delay`)."""
    handlers = (plain or {}).get("handlers") or {}
    names = [
        n
        for n, h in handlers.items()
        if isinstance(h, dict) and h.get("class") == "logging.FileHandler" and "delay" not in h
    ]
    if not names:
        return conf
    from omegaconf import OmegaConf

    out = OmegaConf.create(OmegaConf.to_container(conf, resolve=True))
    for n in names:
        out.handlers[n].delay = True
    return out


def _replace_handler(old: logging.Handler, new: logging.Handler) -> None:
    """``new`` in ``old``'s place (same position) on every logger that has ``old``."""
    for lg in all_loggers():
        hs = list(lg.handlers)
        if not any(h is old for h in hs):
            continue
        k = next(i for i, h in enumerate(hs) if h is old)
        for h in hs[k:]:
            lg.removeHandler(h)
        lg.addHandler(new)
        for h in hs[k + 1 :]:
            lg.addHandler(h)


class JobLogging:
    """Configures the logging of each job of one template.

    Parameters
    ----------
    plain : dict or None
        The template's ``hydra.job_logging`` as a plain container (interpolations
        unresolved); None: no job logging config.
    verbose : Any
        ``hydra.verbose``.

    Examples
    --------
    >>> import os, tempfile
    >>> from omegaconf import OmegaConf
    >>> d = tempfile.mkdtemp()
    >>> def conf(filename):
    ...     return {"version": 1, "disable_existing_loggers": False, "root": {"handlers": ["file"]},
    ...             "handlers": {"file": {"class": "logging.FileHandler", "filename": filename}}}
    >>> root = logging.getLogger()
    >>> saved = list(root.handlers), root.level
    >>> jl = JobLogging(conf("${hydra.runtime.output_dir}/job.log"), False)
    >>> for name in ("a.log", "b.log"):  # the second job only swaps the FileHandler
    ...     path = os.path.join(d, name)
    ...     jl.configure(lambda: OmegaConf.create(conf(path)), {("handlers", "file", "filename"): path})
    ...     root.warning("to %s", name)
    >>> open(os.path.join(d, "b.log")).read()
    'to b.log\\n'
    >>> for h in list(root.handlers):
    ...     root.removeHandler(h); h.close()
    >>> for h in saved[0]:
    ...     root.addHandler(h)
    >>> root.setLevel(saved[1])
    """

    def __init__(self, plain: Any, verbose: Any) -> None:
        self.plain: Any = plain
        self.verbose = verbose
        self._last: dict[Any, Any] | None = None
        self._file_handlers: dict[str, logging.Handler] = {}
        self._root_handlers: list[logging.Handler] = []

    def configure(self, job_logging: Callable[[], Any], resolved: dict[Any, Any]) -> None:
        """Set the logging of a job whose ``hydra.job_logging`` is ``job_logging()``
        and whose interpolated fields of it (by path) are ``resolved``."""
        from hydra.core.utils import configure_log

        if self.plain is None:
            configure_log(None, self.verbose)  # type: ignore[arg-type]
            self._last = None
            return
        swap = self._file_names_to_swap(resolved)
        root = logging.getLogger()
        if swap is None:
            configure_log(_delayed(job_logging(), self.plain), self.verbose)
            names = {
                name
                for name, hconf in (self.plain.get("handlers") or {}).items()
                if isinstance(hconf, dict) and hconf.get("class") == "logging.FileHandler"
            }
            self._file_handlers = _handlers_named(names)
            for h in self._file_handlers.values():
                _say_write_errors_once(h)
        else:
            for name, filename in swap:
                self._swap(name, filename)
        self._root_handlers = list(root.handlers)
        self._last = resolved

    def _file_names_to_swap(self, resolved: dict[Any, Any]) -> list[tuple[str, str]] | None:
        """The (handler name, new file name) pairs, when only FileHandlers' file
        names changed since the previous job; else None."""
        last = self._last
        if last is None or list(logging.getLogger().handlers) != self._root_handlers:
            return None
        swap: list[tuple[str, str]] = []
        handlers = self.plain.get("handlers") or {}
        for p, v in resolved.items():
            if last.get(p) == v:
                continue
            hconf = handlers.get(p[1]) if len(p) == 3 else None
            if (
                len(p) == 3
                and p[0] == "handlers"
                and p[2] == "filename"
                and isinstance(hconf, dict)
                and hconf.get("class") == "logging.FileHandler"
                and p[1] in self._file_handlers
            ):
                swap.append((p[1], str(v)))
            else:
                return None
        return swap

    def _swap(self, name: str, filename: str) -> None:
        old = self._file_handlers[name]
        hconf = self.plain["handlers"][name]
        if type(old) is logging.FileHandler:
            _reopen(old, filename, delay=_delay(hconf))
            return
        new = logging.FileHandler(
            filename,
            mode=hconf.get("mode", "a"),
            encoding=hconf.get("encoding"),
            delay=_delay(hconf),
            errors=hconf.get("errors"),
        )
        new.setLevel(old.level)
        new.setFormatter(old.formatter)
        for f in old.filters:
            new.addFilter(f)
        new.set_name(name)
        _replace_handler(old, new)
        old.close()
        _say_write_errors_once(new)
        self._file_handlers[name] = new
