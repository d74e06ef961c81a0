"""A job template's configuration without a second Hydra composition.

Hydra composes a sweep's configuration once for the launch (the *master* config,
every override applied but the sweeps) and ``BasicLauncher`` composes it again per
job (``load_sweep_config``: the same defaults, the hydra overrides and the job's
overrides). For jobs whose overrides only set values, the second composition differs
from the master config by exactly what :func:`derive_sweep_config` does: the swept
values applied as Hydra applies them, keys added by ``+`` overrides in the order the
overrides give them, and the fields ``load_configuration`` sets from the overrides
(``hydra.overrides.task``, ``hydra.job.override_dirname``, ``hydra.runtime.cwd``,
``hydra.job.env_set``).

It answers None (the launcher then composes with Hydra) for anything else: a
config-group choice left open (``???``), Hydra callbacks, a set ``hydra.mode``, a
config directory on the search path, a primary config that is not one
``ConfigStore`` node without a defaults list, a ``+``
on a nested key or on a key that is there already, a value with an interpolation, an
override of the master that the job overrides do not account for.

No ``from __future__ import annotations`` under ``hydra_plugins`` (see
``sweeper.py``).
"""

import os
from typing import Any

__all__ = ["derive_sweep_config"]


def _primary_keys(config_name: Any) -> list[str] | None:
    """The keys of the primary config, when it is one ConfigStore node without a
    defaults list (mushin_nb's task config); else None."""
    from hydra.core.config_store import ConfigStore
    from omegaconf import DictConfig

    try:
        node = ConfigStore.instance().load(f"{config_name}.yaml").node
    except Exception:
        return None
    if not isinstance(node, DictConfig) or "defaults" in node or "hydra" in node:
        return None
    return [str(k) for k in node.keys()]


def _split(master: Any, overrides: list[str], parsed: list[Any]) -> list[Any] | None:
    """The job overrides the master config has not applied (its sweeps), or None when
    the master holds an override the job's do not account for."""
    given = [str(o) for o in master.hydra.overrides.task]
    fixed = set(given) & set(overrides)
    swept = [o for t, o in zip(overrides, parsed) if t not in fixed]
    swept_keys = {o.key_or_group for o in swept}
    for t in given:
        if t not in fixed and t.partition("=")[0].lstrip("+~") not in swept_keys:
            return None
    return swept


def _apply(cfg: Any, o: Any) -> None:
    """One value override, as Hydra's ``_apply_overrides_to_config`` applies it (any
    error: the caller composes with Hydra, which reports it)."""
    from omegaconf import OmegaConf

    key, value = o.key_or_group, o.value()
    if o.is_add():
        if OmegaConf.select(cfg, key, throw_on_missing=False) is not None:
            raise ValueError(f"{key} is there already")
        OmegaConf.update(cfg, key, value, merge=True, force_add=True)
    elif o.is_force_add():
        OmegaConf.update(cfg, key, value, merge=True, force_add=True)
    else:
        OmegaConf.update(cfg, key, value, merge=True)


def derive_sweep_config(master: Any, overrides: list[str], parsed: list[Any]) -> Any:
    """What ``config_loader.load_sweep_config(master, overrides)`` composes, made
    from the master config; None when that cannot be told without composing.

    ``parsed`` are the job's ``overrides`` parsed; each sets a plain value (the
    launcher's fast path checks that).
    """
    from omegaconf import OmegaConf, open_dict, read_write

    from mushin_nb._compat.omegaconf_copy import copy_config

    h = master.hydra
    if h.callbacks or h.mode is not None or any(str(v) == "???" for v in h.runtime.choices.values()):
        return None
    if any(str(s.schema) not in ("pkg", "structured") for s in h.runtime.config_sources):
        return None  # config files of the user's: the primary config may be one of them
    base = _primary_keys(h.job.config_name)
    swept = _split(master, overrides, parsed)
    if base is None or swept is None:
        return None
    added = [o.key_or_group for o in parsed if o.is_add() or o.is_force_add()]
    if any("." in k for k in added) or any("${" in str(o.value()) for o in parsed):
        return None
    if any(o.key_or_group in master and (o.is_add() or o.is_force_add()) for o in swept):
        return None
    cfg = copy_config(master)
    try:
        for o in swept:
            _apply(cfg, o)
    except Exception:
        return None
    # keys added by + overrides come after the primary config's, in the overrides' order
    new = [k for k in dict.fromkeys(added) if k not in base]
    if set(cfg.keys()) != {"hydra", *base, *new} or any(k not in cfg for k in base):
        return None
    with read_write(cfg), open_dict(cfg):
        for k in new:
            cfg[k] = cfg.pop(k)
        hc = cfg.hydra
        hc.overrides.task = list(overrides)
        cfg_dirname = hc.job.config.override_dirname
        lines = sorted(o.input_line for o in parsed if o.key_or_group not in cfg_dirname.exclude_keys)
        hc.job.override_dirname = cfg_dirname.item_sep.join(lines).replace("=", cfg_dirname.kv_sep)
        hc.runtime.cwd = os.getcwd()
        for key in hc.job.env_copy:
            hc.job.env_set[key] = os.environ[key]
    OmegaConf.copy_cache(from_config=master, to_config=cfg)
    return cfg
