"""The config names Hydra's search path offers for a group: part of
:mod:`mushin_nb._compat`.

Hydra publishes the names registered in its ConfigStore (``ConfigStore.list``) but
not those that YAML files on its config search path give (a lab's own launcher
config, search-path plugins). Reading them needs Hydra's internal
``ConfigRepository`` and ``create_config_search_path``; the guard
(``hydra-config-search-path``) checks that they are there and in the expected shape.
When it refuses, :func:`search_path_options` returns None and callers use the
ConfigStore's names only (a YAML-only launcher is then refused by name).
"""

from __future__ import annotations

from . import Patch, register, usable

__all__ = ["HYDRA_CONFIG_SEARCH_PATH", "search_path_options"]

HYDRA_CONFIG_SEARCH_PATH = "hydra-config-search-path"
"""The patch's name (reading launcher configs from Hydra's config search path)."""


def _options(group: str) -> list[str]:
    from hydra._internal.config_repository import ConfigRepository
    from hydra._internal.utils import create_config_search_path
    from hydra.core.object_type import ObjectType

    repo = ConfigRepository(config_search_path=create_config_search_path(None))
    return list(repo.get_group_options(group, results_filter=ObjectType.CONFIG))


def search_path_options(group: str) -> list[str] | None:
    """The config names of ``group`` (e.g. ``hydra/launcher``) on Hydra's config
    search path, as Hydra reads them when it composes a run (without touching Hydra's
    global state), or None when the guard refuses.

    >>> "basic" in (search_path_options("hydra/launcher") or ["basic"])
    True
    """
    if not usable(HYDRA_CONFIG_SEARCH_PATH):
        return None
    return _options(group)


def _probe() -> None:
    names = _options("hydra/launcher")
    if "basic" not in names:
        raise AssertionError(f"hydra/launcher options on the search path: {names!r} (no 'basic')")


register(
    Patch(
        HYDRA_CONFIG_SEARCH_PATH,
        package="hydra-core",
        versions=">=1.3,<1.4",
        internals="hydra._internal.config_repository.ConfigRepository.get_group_options, "
        "hydra._internal.utils.create_config_search_path",
        public_path="ConfigStore.instance().list(group): the names plugins register (no YAML-only configs)",
        probe=_probe,
    )
)
