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
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = [
    "LauncherInfo",
    "LAUNCHERS",
    "DEFAULT_LAUNCHER",
    "resolve_launcher",
    "workers_overrides",
    "installed_launchers",
    "registered_hydra_launchers",
    "launcher_label",
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

    def text(self) -> str:
        return self.label or self.name


DEFAULT_LAUNCHER = "mushin_nb"

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
)


def _by_name() -> dict[str, LauncherInfo]:
    out: dict[str, LauncherInfo] = {}
    for info in LAUNCHERS:
        out[info.name] = info
        for a in info.aliases:
            out.setdefault(a, info)
    return out


def registered_hydra_launchers() -> list[str]:
    """The Hydra launcher config names this environment has (after Hydra's plugin scan)."""
    from hydra.core.config_store import ConfigStore
    from hydra.core.plugins import Plugins

    import hydra_plugins.mushin_nb_plugins.launcher  # noqa: F401  (registers hydra/launcher=mushin_nb)

    Plugins.instance()  # imports the installed plugins, which register their configs
    repo = ConfigStore.instance().repo.get("hydra", {}).get("launcher", {})
    return sorted(k[: -len(".yaml")] if k.endswith(".yaml") else k for k in repo)


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
    valid = ", ".join(repr(n) for n in installed_launchers())
    if info is not None:
        raise ValueError(
            f"launcher={name!r} is not installed in this environment (it needs the Hydra launcher "
            f"plugin {info.hydra!r}); choose one of {valid}."
        )
    raise ValueError(f"launcher={name!r} is not a launcher this environment has; choose one of {valid}.")


def workers_overrides(info: LauncherInfo, n: int) -> list[str]:
    """The Hydra overrides that give ``info`` ``n`` parallel workers (``jobs=n``)."""
    if info.workers is not None:
        return [f"{info.workers}={int(n)}"]
    if info.serial:
        if n != 1:
            raise ValueError(
                f"jobs={n} needs a parallel launcher: launcher='joblib' (local processes) or "
                "'submitit_local' / 'submitit_slurm'."
            )
        return []
    raise ValueError(
        f"jobs={n} is not understood by launcher={info.name!r}; set its parallelism with its own "
        "Hydra settings in overrides=[...] (see docs/scaling.md), or use launcher='joblib'."
    )


def launcher_label(name: str) -> str:
    """What the panel's launcher menu shows for a launcher name."""
    info = _by_name().get(name)
    return info.text() if info is not None else name
