"""Every patch of a third-party internal, in one place.

A *patch* reads or writes something a third-party package does not publish (a
private attribute or module, an object's ``__dict__``). Each is a :class:`Patch`
in :data:`PATCHES` with the versions it was written for and a guard
(:func:`usable`): the installed version is in that range *and* a probe finds the
internals in the expected shape (it runs the patch on a small object and compares
with the public path). When the guard refuses, callers take the public path,
which does the same more slowly. Each patch has tests in ``tests/test_compat.py``.
:func:`public_path` and the environment variable ``MUSHIN_NB_COMPAT_OFF`` (names
separated by commas, or ``all``; job processes read it too) force the public path.

This module imports nothing of mushin_nb and anything may import it; third-party packages
are imported where used. Sections: *Hydra / OmegaConf* (per-job work; the
``omegaconf-shared-nodes`` patch is in :mod:`.shared_nodes`); *notebook layer*.

The Hydra / OmegaConf patches are kept: their public paths cost far more than
the 0.5 ms a job allowed (``bench/launcher_public.py``, 1,000 trivial jobs through
``MultiRunMetricsWorkflow.run``, CPU ms a job, 2 shared cores under load): patched
5.4; the public path of ``omegaconf-shared-nodes`` +8.9, ``hydra-config-assign``
+11.6, ``omegaconf-yaml-dumper`` +2.5; all three +22.0 (Hydra composing every job
instead: 68 ms a job at 200 jobs).

Examples
--------
>>> PATCHES["omegaconf-yaml-dumper"].versions, usable("omegaconf-yaml-dumper")
('>=2.3,<2.4', True)
>>> with public_path("omegaconf-yaml-dumper"):
...     usable("omegaconf-yaml-dumper")
False
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

__all__ = ["Patch", "PATCHES", "OFF_ENV", "register", "usable", "refusal", "public_path", "installed_version"]
__all__ += ["code_names"]

OFF_ENV = "MUSHIN_NB_COMPAT_OFF"
"""The environment variable that forces public paths: patch names separated by commas, or ``all``."""


# ============================================================================ registry


@dataclass(frozen=True)
class Patch:
    """One patch of a third-party internal: its ``name``; the distribution whose
    internals it touches (``package``) and the ``versions`` it was written for
    (``">=A.B,<C.D"``); what it touches (``internals``); what runs when the guard
    refuses (``public_path``); a ``probe`` that raises when the internals are not
    in the shape the patch expects.

    Examples
    --------
    >>> Patch("demo", "omegaconf", ">=2.0,<3", "-", "-", lambda: None).in_range((2, 3, 1))
    True
    """

    name: str
    package: str
    versions: str
    internals: str
    public_path: str
    probe: Callable[[], None]

    def in_range(self, version: tuple[int, ...] | None) -> bool:
        """Whether ``version`` is one this patch was written for."""
        lo, hi = self.versions.split(",")
        return version is not None and _parse_version(lo) <= version < _parse_version(hi)


PATCHES: dict[str, Patch] = {}
"""Every registered patch, by name."""
_verdicts: dict[str, str | None] = {}
_forced: set[str] = set()
_lock = threading.Lock()


def register(patch: Patch) -> Patch:
    """Add ``patch`` to :data:`PATCHES` (by its name) and return it."""
    PATCHES[patch.name] = patch
    with _lock:
        _verdicts.pop(patch.name, None)
    return patch


def _parse_version(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", text)[:3])


def installed_version(package: str) -> tuple[int, ...] | None:
    """The installed version of a distribution as numbers, or None if absent."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return _parse_version(version(package))
    except PackageNotFoundError:
        return None


def _forced_off(name: str) -> bool:
    if name in _forced or "all" in _forced:
        return True
    env = os.environ.get(OFF_ENV)
    if not env:
        return False
    names = {n.strip() for n in env.split(",")}
    return name in names or "all" in names


def refusal(name: str) -> str | None:
    """Why the guard of patch ``name`` refuses it (the caller then takes the
    public path), or None when the patch may be used.

    Examples
    --------
    >>> refusal("omegaconf-shared-nodes") is None
    True
    >>> with public_path("omegaconf-shared-nodes"):
    ...     refusal("omegaconf-shared-nodes")
    'forced off (public_path() or MUSHIN_NB_COMPAT_OFF)'
    >>> with public_path():
    ...     [usable(n) for n in ("omegaconf-shared-nodes", "hydra-config-assign")]
    [False, False]
    """
    patch = PATCHES[name]
    if _forced_off(name):
        return f"forced off (public_path() or {OFF_ENV})"
    with _lock:
        if name in _verdicts:
            return _verdicts[name]
    found = installed_version(patch.package)
    if not patch.in_range(found):
        shown = ".".join(map(str, found)) if found is not None else "not installed"
        why: str | None = f"{patch.package} {shown} is not {patch.versions}"
    else:
        try:
            patch.probe()
            why = None
        except Exception as e:  # the internals differ: public path
            why = f"{patch.package}'s internals differ: {type(e).__name__}: {e}"
    with _lock:
        _verdicts[name] = why
    return why


def code_names(obj: Any) -> set[str]:
    """The names and attributes a function's code uses (its comments do not count):
    what a probe looks for in the third-party function a patch replaces or relies on.

    Examples
    --------
    >>> def f(x):
    ...     return x.real  # imag
    >>> sorted(code_names(f))
    ['real', 'x']
    """
    import ast
    import inspect
    import textwrap

    tree = ast.parse(textwrap.dedent(inspect.getsource(obj)))
    return {
        n.id if isinstance(n, ast.Name) else n.attr
        for n in ast.walk(tree)
        if isinstance(n, ast.Name | ast.Attribute)
    }


def usable(name: str) -> bool:
    """Whether patch ``name`` may be used here (see :func:`refusal`)."""
    return refusal(name) is None


@contextmanager
def public_path(*names: str) -> Iterator[None]:
    """Within the block, the guards of ``names`` (all patches if none given)
    refuse, so callers take the public path (tests and benchmarks use this)."""
    add = set(names) if names else {"all"}
    unknown = add - set(PATCHES) - {"all"}
    if unknown:
        raise ValueError(
            f"public_path({', '.join(sorted(unknown))}): no such patch; the patches are {sorted(PATCHES)}"
        )
    with _lock:
        added = add - _forced
        _forced.update(added)
    try:
        yield
    finally:
        with _lock:
            _forced.difference_update(added)


def _refresh(name: str) -> None:
    """Forget the cached verdict of ``name`` (tests that change the internals)."""
    with _lock:
        _verdicts.pop(name, None)


# ============================================================================ Hydra / OmegaConf
#
# The in-process launcher (hydra_plugins/mushin_nb_plugins) composes the
# configuration once per shape of job overrides and makes each job's config from
# that template. These patches keep that per-job work well under a millisecond.

__all__ += ["JobConfigs", "JobConfigBuilder", "hydra_config", "yaml_dump"]
__all__ += ["OMEGACONF_SHARED_NODES", "HYDRA_CONFIG_ASSIGN", "OMEGACONF_YAML_DUMPER"]

OMEGACONF_SHARED_NODES = "omegaconf-shared-nodes"
HYDRA_CONFIG_ASSIGN = "hydra-config-assign"
OMEGACONF_YAML_DUMPER = "omegaconf-yaml-dumper"


# ---------------------------------------------------------------- hydra-config-assign
#
# During a job, ``HydraConfig.get()`` must give the job's Hydra config (the
# ``${hydra:...}`` resolver and user code read it). Public API:
# ``HydraConfig.instance().set_config(cfg)``, which makes a masked deep copy
# (~2.3 ms), plus one more to restore the previous config after the job. The
# patch assigns the job's ready-made {hydra: ...} config to the singleton's
# ``cfg`` attribute and puts the previous one back.


@contextmanager
def hydra_config(full: Any, hroot: Any = None) -> Iterator[Any]:
    """Within the block, ``HydraConfig.get()`` is the job's Hydra config; after
    it, the previous one. Yields the ``{hydra: ...}`` config HydraConfig holds:
    ``hroot`` itself (the job's ready-made ``{hydra: ...}`` config) with the
    ``hydra-config-assign`` patch, else ``HydraConfig.set_config(full)``'s copy.

    Examples
    --------
    >>> from hydra.core.hydra_config import HydraConfig
    >>> from hydra.conf import HydraConf
    >>> from omegaconf import OmegaConf
    >>> cfg = OmegaConf.create({"hydra": OmegaConf.structured(HydraConf)})
    >>> with hydra_config(cfg):
    ...     HydraConfig.get().job.chdir is None
    True
    """
    from hydra.core.hydra_config import HydraConfig

    hc = HydraConfig.instance()
    old: Any = hc.cfg
    assign = usable(HYDRA_CONFIG_ASSIGN)
    if hroot is not None and assign:
        hc.cfg = hroot
    else:
        hc.set_config(full)
    try:
        yield hc.cfg
    finally:
        if assign:
            hc.cfg = old
        elif old is not None:
            hc.set_config(old)


def _probe_hydra_config() -> None:
    from hydra.conf import HydraConf
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    hc = HydraConfig.instance()
    if "cfg" not in vars(hc):
        raise AttributeError("HydraConfig has no cfg attribute")
    old = hc.cfg
    root = OmegaConf.create({"hydra": OmegaConf.structured(HydraConf)})
    try:
        hc.cfg = root  # type: ignore[assignment]
        if HydraConfig.get() is not root.hydra:
            raise AssertionError("HydraConfig.get() does not return cfg.hydra")
    finally:
        hc.cfg = old


register(
    Patch(
        HYDRA_CONFIG_ASSIGN,
        package="hydra-core",
        versions=">=1.3,<1.4",
        internals="HydraConfig.instance().cfg assigned (and restored) directly",
        public_path="HydraConfig.instance().set_config(job config) before the job and "
        "set_config(previous) after it (a masked deep copy each)",
        probe=_probe_hydra_config,
    )
)


# ---------------------------------------------------------------- omegaconf-yaml-dumper
#
# ``hydra.yaml`` is rendered from a text template per job: the per-job fields are
# dumped as plain containers with OmegaConf's own YAML Dumper (its quoting of
# strings that read as bool/int/float), so the text is what ``OmegaConf.to_yaml``
# writes. Public API: ``OmegaConf.to_yaml(obj)``, which first builds a config from
# the plain container (~1.1 ms more a job).

_SAMPLE = {
    "a": ["true", "1", "1.5", "x=1", "null", "ü", "", "a: b", "~", "1e3", "0x1f", "yes"],
    "b": {"c": None, "d": 3, "e": 2.5, "f": False, "g": []},
}


_DUMP_ARGS: dict[str, Any] = {"default_flow_style": False, "allow_unicode": True, "sort_keys": False}


def _omegaconf_dumper() -> Any:
    from omegaconf._utils import get_omega_conf_dumper

    return get_omega_conf_dumper()


def yaml_dump(obj: Any) -> str:
    """``OmegaConf.to_yaml(obj)`` of a plain container (dicts, lists, scalars).

    Examples
    --------
    >>> print(yaml_dump({"job": {"num": 3, "id": "3", "flag": "true"}}), end="")
    job:
      num: 3
      id: '3'
      flag: 'true'
    """
    if usable(OMEGACONF_YAML_DUMPER):
        import yaml

        return str(yaml.dump(obj, Dumper=_omegaconf_dumper(), **_DUMP_ARGS))
    from omegaconf import OmegaConf

    return OmegaConf.to_yaml(obj)


def _probe_yaml_dumper() -> None:
    import yaml
    from omegaconf import OmegaConf

    dumper = _omegaconf_dumper()
    if not (isinstance(dumper, type) and issubclass(dumper, yaml.Dumper)):
        raise TypeError(f"get_omega_conf_dumper() returned {dumper!r}")
    for sample in (_SAMPLE, _SAMPLE["a"]):
        got = yaml.dump(sample, Dumper=dumper, **_DUMP_ARGS)
        if got != OmegaConf.to_yaml(sample):
            raise AssertionError(f"the dumper writes {got!r}, OmegaConf.to_yaml another text")


register(
    Patch(
        OMEGACONF_YAML_DUMPER,
        package="omegaconf",
        versions=">=2.3,<2.4",
        internals="omegaconf._utils.get_omega_conf_dumper (OmegaConf.to_yaml's YAML Dumper)",
        public_path="OmegaConf.to_yaml(plain container)",
        probe=_probe_yaml_dumper,
    )
)
from .hydra_search import HYDRA_CONFIG_SEARCH_PATH  # noqa: E402  (registers the patch)
from .notebook import *  # noqa: E402,F403  (the notebook layer's section: its names are ours too)
from .notebook import __all__ as _notebook_all  # noqa: E402
from .panel_push import PANEL_PUSH_IN_ORDER  # noqa: E402  (registers the patch)
from .shared_nodes import JobConfigBuilder, JobConfigs  # noqa: E402  (registers the patch)
from .zen_args import OMEGACONF_ARGS_ATTRIBUTE  # noqa: E402  (registers the patch)

__all__ += [*_notebook_all, HYDRA_CONFIG_SEARCH_PATH, OMEGACONF_ARGS_ATTRIBUTE, PANEL_PUSH_IN_ORDER]
