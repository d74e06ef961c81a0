"""The in-process launcher's ``JobReturn``: its ``hydra_cfg`` is made when first read.

A job's Hydra config is about 100 container and node objects. Kept in every
``JobReturn`` of a sweep, they are what Python's garbage collector walks again
and again while the sweep runs (0.1-0.2 ms a job at 1,000-3,000 jobs). The job
itself runs with its full Hydra config (``HydraConfig.get()``, the files in
``.hydra/``); its return keeps only the few values that config was made from,
and makes the same config again the first time ``hydra_cfg`` is read. Every
other field is the one the job set.

Imported by the fast path of the in-process launcher (``_template.py``), once
Hydra is loaded.
"""

import dataclasses
import threading
from typing import Any

from hydra.core.utils import JobReturn

__all__ = ["LazyJobReturn", "job_num"]

_LOCK = threading.Lock()


def _plain(fields: dict[str, Any]) -> Any:
    ret = JobReturn()
    for k, v in fields.items():
        setattr(ret, k, v)
    return ret


class LazyJobReturn(JobReturn):
    """A ``JobReturn`` whose ``hydra_cfg`` is ``make()`` on first read (then kept);
    assigning ``hydra_cfg`` replaces it. A copy or a pickle is a plain ``JobReturn``
    with the config made. ``job_num`` is ``hydra_cfg.hydra.job.num`` without making it.

    Examples
    --------
    >>> from omegaconf import OmegaConf
    >>> made = []
    >>> def make():
    ...     made.append(1)
    ...     return OmegaConf.create({"hydra": {"job": {"num": 4}}})
    >>> ret = LazyJobReturn(make, 4)
    >>> ret.job_num, made
    (4, [])
    >>> ret.hydra_cfg.hydra.job.num, ret.hydra_cfg is ret.hydra_cfg, made
    (4, True, [1])
    >>> import pickle
    >>> type(pickle.loads(pickle.dumps(ret))).__name__
    'JobReturn'
    """

    def __init__(self, make: Any, job_num: int) -> None:
        super().__init__()  # sets hydra_cfg = None through the setter
        self.__dict__["_make"] = make
        self.job_num = job_num

    @property  # type: ignore[override]
    def hydra_cfg(self) -> Any:  # pyright: ignore[reportIncompatibleVariableOverride]
        d = self.__dict__
        if d.get("_make") is not None:
            with _LOCK:
                make = d.get("_make")
                if make is not None:
                    d["_hydra_cfg"] = make()
                    d["_make"] = None
        return d.get("_hydra_cfg")

    @hydra_cfg.setter
    def hydra_cfg(self, value: Any) -> None:
        self.__dict__["_hydra_cfg"] = value
        self.__dict__["_make"] = None

    def __reduce__(self) -> Any:
        return (_plain, ({f.name: getattr(self, f.name) for f in dataclasses.fields(self)},))


def job_num(ret: Any) -> int | None:
    """The job number of a ``JobReturn`` (``hydra_cfg.hydra.job.num``); None when it
    has no Hydra config. A :class:`LazyJobReturn`'s is read without making its config.

    Examples
    --------
    >>> job_num(JobReturn()) is None
    True
    """
    n = getattr(ret, "job_num", None) if isinstance(ret, LazyJobReturn) else None
    if n is not None:
        return int(n)
    h = ret.hydra_cfg
    return None if h is None else int(h.hydra.job.num)
