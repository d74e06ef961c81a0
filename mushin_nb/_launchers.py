"""The launcher table: one home for launcher names, their aliases, how each takes a
worker count, and which run jobs one at a time.

The API (``launcher=``), the magic (``--launcher``), the panel's menu and the CLI
all read this table. A name here is what a user types; ``hydra`` is the Hydra
launcher config it runs (``hydra/launcher=<hydra>``).

Examples
--------
>>> info = resolve_launcher("joblib")
>>> info.hydra, workers_overrides(info, 4)
('mushin_nb_joblib', ['hydra.launcher.n_jobs=4'])
>>> resolve_launcher(None).name
'mushin_nb'
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "LauncherInfo",
    "LAUNCHERS",
    "DEFAULT_LAUNCHER",
    "resolve_launcher",
    "workers_overrides",
    "installed_launchers",
    "registered_hydra_launchers",
    "hydra_group_options",
    "unknown_name_hint",
    "launcher_label",
    "launcher_fields",
    "check_launcher_settings",
    "settings_overrides",
]


@dataclass(frozen=True)
class LauncherInfo:
    """One launcher a user can name.

    name: what ``launcher=`` takes; hydra: the Hydra launcher config it runs;
    aliases: other accepted names; workers: the Hydra override that takes ``jobs=N``
    (``None``: the launcher runs one job at a time, or takes its size elsewhere);
    serial: jobs run one at a time in this process; needs: an executable that
    must exist for it to be offered (``sbatch`` for SLURM); label: the panel's text.
    """

    name: str
    hydra: str
    aliases: tuple[str, ...] = ()
    workers: str | None = None
    serial: bool = False
    needs: str | None = None
    label: str = ""
    internal: tuple[str, ...] = ()  # Hydra config names that only this entry runs
    install: str = ""  # how to install it, for the error where it is missing

    def text(self) -> str:
        return self.label or self.name


DEFAULT_LAUNCHER = "mushin_nb"
"""The launcher of ``launcher=None``: the in-process launcher, composing the config once."""

LAUNCHERS: tuple[LauncherInfo, ...] = (
    LauncherInfo("mushin_nb", "mushin_nb", aliases=("fast", ""), serial=True, label="in-process (default)"),
    LauncherInfo("basic", "basic", serial=True, label="basic (Hydra's own)"),
    LauncherInfo(
        "joblib", "mushin_nb_joblib", workers="hydra.launcher.n_jobs", internal=("mushin_nb_joblib",)
    ),
    LauncherInfo("hydra_joblib", "joblib", workers="hydra.launcher.n_jobs", label="hydra_joblib (stock)"),
    LauncherInfo(
        "submitit_local",
        "mushin_nb_submitit_local",
        # submitit_local starts a whole batch at once: batches of n
        workers="hydra.sweeper.max_batch_size",
        internal=("mushin_nb_submitit_local",),
    ),
    LauncherInfo(
        "submitit_slurm",
        "mushin_nb_submitit_slurm",
        aliases=("slurm",),
        workers="hydra.launcher.array_parallelism",
        needs="sbatch",
        internal=("mushin_nb_submitit_slurm",),
    ),
    # Dask and Ray (issue 11): their configs are registered only where the engine is installed
    LauncherInfo(
        "dask",
        "mushin_nb_dask",
        workers="hydra.launcher.n_jobs",
        internal=("mushin_nb_dask",),
        label="dask (a Dask cluster)",
        install="pip install 'mushin-nb[dask]'",
    ),
    LauncherInfo(
        "ray",
        "mushin_nb_ray",
        workers="hydra.launcher.n_jobs",
        internal=("mushin_nb_ray",),
        label="ray (a Ray cluster)",
        install="pip install 'mushin-nb[ray]'",
    ),
)
"""The launcher table: every launcher a user can name, in menu order."""


def _by_name() -> dict[str, LauncherInfo]:
    out: dict[str, LauncherInfo] = {}
    for info in LAUNCHERS:
        out[info.name] = info
        for a in info.aliases:
            out.setdefault(a, info)
    return out


def hydra_group_options(group: str) -> list[str]:
    """The config names Hydra finds for a config ``group`` (e.g. ``hydra/launcher``):
    those the installed plugins register in the ConfigStore and those YAML files on
    Hydra's config search path give (a lab's own plugin), read as Hydra reads them
    when it composes a run, without touching Hydra's global state.

    >>> "mushin_nb" in hydra_group_options("hydra/launcher")
    True
    """
    from hydra.core.config_store import ConfigStore
    from hydra.core.plugins import Plugins

    import hydra_plugins.mushin_nb_plugins.launcher  # noqa: F401  (registers hydra/launcher=mushin_nb)
    import hydra_plugins.mushin_nb_plugins.sweeper  # noqa: F401  (registers hydra/sweeper=mushin_nb)

    Plugins.instance()  # imports the installed plugins, which register their configs
    names = {k[: -len(".yaml")] if k.endswith(".yaml") else k for k in ConfigStore.instance().list(group)}
    # YAML configs on Hydra's search path (a lab's own, search-path plugins): read through
    # Hydra's internals, guarded (mushin_nb._compat.hydra_search); refused: ConfigStore only
    from mushin_nb._compat.hydra_search import search_path_options

    names.update(search_path_options(group) or [])
    return sorted(names)


def registered_hydra_launchers() -> list[str]:
    """The Hydra launcher config names this environment has (after Hydra's plugin scan)."""
    return hydra_group_options("hydra/launcher")


def installed_launchers() -> list[str]:
    """The ``launcher=`` names usable here, the in-process default first, then
    ``basic``, then the installed plugins (``submitit_slurm`` only where ``sbatch``
    exists)."""
    hydra_names = set(registered_hydra_launchers())
    out = [
        i.name
        for i in LAUNCHERS
        if i.hydra in hydra_names and (i.needs is None or shutil.which(i.needs) is not None)
    ]
    internal = {n for i in LAUNCHERS for n in (i.hydra, *i.internal)}
    out += sorted(n for n in hydra_names if n not in internal and n not in out)
    return out


def resolve_launcher(name: str | None, *, known: Iterable[str] | None = None) -> LauncherInfo:
    """The table entry for a ``launcher=`` name (``None``: the default). A Hydra
    launcher plugin that is not in the table (e.g. a lab's own) is accepted by its
    Hydra config name. An unknown name raises ``ValueError`` listing the valid ones."""
    if name is None:
        name = DEFAULT_LAUNCHER
    if not isinstance(name, str):
        raise TypeError(f"launcher={name!r}: give a launcher name (a str), e.g. launcher='joblib'")
    table = _by_name()
    hydra_names = set(known) if known is not None else set(registered_hydra_launchers())
    info = table.get(name)
    if info is not None and info.hydra in hydra_names:
        return info
    if info is None and name in hydra_names:
        internal = {n for i in LAUNCHERS for n in i.internal}
        if name in internal:  # e.g. mushin_nb_joblib: the entry that runs it
            return next(i for i in LAUNCHERS if name in i.internal)
        return LauncherInfo(name, name)
    usable = installed_launchers()
    valid = ", ".join(repr(n) for n in usable)
    if info is not None:
        needs = info.install or f"the Hydra launcher plugin {info.hydra!r}"
        raise ValueError(
            f"launcher={name!r} is not installed in this environment (it needs {needs}); "
            f"choose one of {valid}."
        )
    aliases = [a for i in LAUNCHERS if i.name in usable for a in i.aliases if a]
    hint = unknown_name_hint(name, [*usable, *aliases])
    also = f" (aliases: {', '.join(repr(a) for a in aliases)})" if aliases else ""
    raise ValueError(
        f"launcher={name!r} is not a launcher this environment has; {hint}choose one of {valid}{also}."
    )


def unknown_name_hint(name: str, valid: Iterable[str]) -> str:
    """``"did you mean 'x'? "`` for the valid name closest to a misspelled one, else ``""``.

    >>> unknown_name_hint("jobllib", ["mushin_nb", "joblib"])
    "did you mean 'joblib'? "
    """
    import difflib

    close = difflib.get_close_matches(name, list(valid), n=1)
    return f"did you mean {close[0]!r}? " if close else ""


def workers_overrides(info: LauncherInfo, n: int) -> list[str]:
    """The Hydra overrides that give ``info`` ``n`` parallel workers (``jobs=n``)."""
    if info.workers is not None:
        return [f"{info.workers}={int(n)}"]
    if info.serial:
        if n != 1:
            raise ValueError(
                f"jobs={n} needs a parallel launcher: launcher='joblib' (local processes), "
                "'submitit_local' / 'submitit_slurm', 'dask' or 'ray'."
            )
        return []
    raise ValueError(
        f"jobs={n} is not understood by launcher={info.name!r}; set its parallelism with its own "
        "Hydra settings in overrides=[...] (see docs/scaling.md), or use launcher='joblib'."
    )


def launcher_fields(info: LauncherInfo) -> list[str] | None:
    """The settings (``hydra.launcher.<field>``) of a launcher's config, from its
    registered dataclass; None when its config is not a dataclass (e.g. a YAML
    config of a lab's own plugin) or cannot be read: then any key is passed on."""
    from hydra.core.config_store import ConfigStore
    from omegaconf import OmegaConf

    registered_hydra_launchers()  # Hydra's plugin scan registers the configs
    node = ConfigStore.instance().repo.get("hydra", {}).get("launcher", {}).get(f"{info.hydra}.yaml")
    if node is None:
        return None
    cfg = getattr(node, "node", None)
    if cfg is None:
        return None
    try:
        typ = OmegaConf.get_type(cfg)
    except Exception:
        return None
    if typ is None or typ is dict or not hasattr(typ, "__dataclass_fields__"):
        return None
    return [k for k in cfg.keys() if not str(k).startswith("_")]


def _setting_key(override: str) -> tuple[str, str] | None:
    """(field, the override's key) of a ``hydra.launcher.<field>[...]=...`` override."""
    key = override.partition("=")[0].strip().lstrip("+~")
    if not key.startswith("hydra.launcher."):
        return None
    return key[len("hydra.launcher.") :].split(".", 1)[0], key


def check_launcher_settings(info: LauncherInfo, overrides: Iterable[str]) -> None:
    """Refuse, before anything is submitted, a ``hydra.launcher.<field>`` override that
    the chosen launcher's config has no field for (a misspelled ``partition``, a SLURM
    setting given to the joblib launcher, ...), naming the launcher's settings.

    >>> check_launcher_settings(resolve_launcher("joblib"), ["hydra.launcher.n_jobs=2"])
    >>> check_launcher_settings(resolve_launcher("joblib"), ["hydra.launcher.partition=gpu"])
    Traceback (most recent call last):
    ...
    ValueError: overrides: 'hydra.launcher.partition=gpu': launcher='joblib' has no setting 'partition'; ...
    """
    found = [(o, k) for o in overrides if (k := _setting_key(str(o))) is not None]
    if not found:
        return
    fields = launcher_fields(info)
    if fields is None:
        return
    for o, (name, _key) in found:
        if name not in fields:
            raise _unknown_setting(info, name, fields, f"overrides: {o!r}")


def _unknown_setting(info: LauncherInfo, name: str, fields: list[str], where: str) -> ValueError:
    import difflib

    close = difflib.get_close_matches(name, fields, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return ValueError(
        f"{where}: launcher={info.name!r} has no setting {name!r}; {hint}"
        f"its settings are {', '.join(fields)} (give them as launcher_settings={{...}} or "
        "overrides=['hydra.launcher.<setting>=...']). Nothing was submitted."
    )


def settings_overrides(info: LauncherInfo, settings: Mapping[str, Any] | None) -> list[str]:
    """The Hydra overrides for ``launcher_settings={field: value}`` (checked against the
    launcher's config like :func:`check_launcher_settings`).

    >>> settings_overrides(resolve_launcher("submitit_slurm", known=["mushin_nb_submitit_slurm"]),
    ...                    {"partition": "debug", "timeout_min": 5})
    ["hydra.launcher.partition='debug'", 'hydra.launcher.timeout_min=5']
    >>> settings_overrides(resolve_launcher("submitit_slurm", known=["mushin_nb_submitit_slurm"]),
    ...                    {"additional_parameters": {"mail-type": "END"}})
    ["++hydra.launcher.additional_parameters={mail-type:'END'}"]
    """
    from ._sweep import render_value

    if settings is None:
        return []
    if not isinstance(settings, Mapping):
        raise TypeError(
            f"launcher_settings={settings!r}: give a dict of the launcher's settings, e.g. "
            "launcher_settings={'partition': 'gpu', 'timeout_min': 60}"
        )
    out: list[str] = []
    for k, v in settings.items():
        if not isinstance(k, str) or not k.isidentifier():
            raise ValueError(
                f"launcher_settings: {k!r} is not a setting name; use the launcher's field names"
            )
        # a dict setting (sbatch's additional_parameters, ...) brings keys the config
        # does not have yet: Hydra adds them only with "++" (a plain override is refused)
        add = "++" if isinstance(v, Mapping) else ""
        out.append(f"{add}hydra.launcher.{k}={render_value(v, name=f'launcher_settings[{k!r}]')}")
    fields = launcher_fields(info)
    if fields is not None:
        for k in settings:
            if k not in fields:
                raise _unknown_setting(info, k, fields, f"launcher_settings[{k!r}]")
    return out


def launcher_label(name: str) -> str:
    """What the panel's launcher menu shows for a launcher name."""
    info = _by_name().get(name)
    return info.text() if info is not None else name
