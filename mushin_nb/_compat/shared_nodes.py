"""The ``omegaconf-shared-nodes`` patch: each job's Hydra config made from the
template's frozen one, sharing every node that does not change between jobs
(:class:`JobConfigBuilder`). Registered in :data:`mushin_nb._compat.PATCHES`;
re-exported by :mod:`mushin_nb._compat`.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from . import OMEGACONF_SHARED_NODES, Patch, hydra_config, register, usable

__all__ = ["JobConfigBuilder", "JobConfigs"]


# ---------------------------------------------------------------- omegaconf-shared-nodes
#
# A job's Hydra config is the template's (frozen, read-only) Hydra config with a
# few per-job fields. Public API: copy.deepcopy of the whole tree (~150 nodes),
# twice (the job's {hydra: ...} root and the hydra node of the full config):
# ~4.6 ms a job. The patch builds new container objects only along the paths
# to the per-job fields and shares every other node with the template, by
# writing the nodes' ``_content`` / ``_parent`` / ``_metadata`` / ``_flags_cache``.


def _oc_share(node: Any, root: bool = False) -> Any:
    """A new container with a copy of ``node``'s metadata whose children are the
    same node objects (not re-parented), with no parent; a new resolver cache if ``root``."""
    from collections import defaultdict

    res = object.__new__(type(node))
    md = _oc_metadata(node)
    md.resolver_cache = defaultdict(dict) if root else md.resolver_cache  # OmegaConf uses the root's
    res.__dict__["_metadata"] = md
    res.__dict__["_flags_cache"] = None
    content = node.__dict__["_content"]
    if isinstance(content, dict):
        content = dict(content)
    elif isinstance(content, list):
        content = list(content)
    res.__dict__["_content"] = content
    res.__dict__["_parent"] = None
    return res


def _oc_copy_leaf(node: Any) -> Any:
    """A copy of a value node (or of a small container) with no parent."""
    if "_content" in node.__dict__:  # a container (e.g. hydra.overrides.task)
        parent = node.__dict__["_parent"]
        try:
            node.__dict__["_parent"] = None
            res = copy.deepcopy(node)
        finally:
            node.__dict__["_parent"] = parent
    else:
        res = object.__new__(type(node))
        res.__dict__.update(node.__dict__)
        res.__dict__["_metadata"] = _oc_metadata(node)
        res.__dict__["_flags_cache"] = None
    res.__dict__["_parent"] = None
    return res


def _oc_metadata(node: Any) -> Any:
    """A copy of ``node``'s metadata (a dataclass: ``copy.copy`` without its reduce
    protocol) with its own flags."""
    md = node.__dict__["_metadata"]
    new = object.__new__(type(md))
    new.__dict__.update(md.__dict__)
    new.flags = None if md.flags is None else dict(md.flags)
    return new


def _oc_set_strings(leaf: Any, items: Any) -> bool:
    """``leaf._set_value(items)`` for a shared list of strings (``hydra.overrides.task``):
    each item a copy of the template's first element node, set (validated) as OmegaConf
    sets it, with its index and parent. False (nothing changed) otherwise."""
    content = leaf.__dict__.get("_content")  # a value node has none
    if not (isinstance(content, list) and content and isinstance(items, list)) or "_content" in (
        content[0].__dict__
    ):
        return False
    if not all(type(v) is str for v in items):
        return False
    new = []
    for i, v in enumerate(items):
        e = _oc_copy_leaf(content[0])
        e._set_value(v)
        e.__dict__["_metadata"].key = i
        e.__dict__["_parent"] = leaf
        new.append(e)
    leaf.__dict__["_content"] = new
    leaf.__dict__["_metadata"].object_type = list
    return True


def _oc_child(node: Any, key: Any) -> Any:
    return node.__dict__["_content"][key]


def _oc_attach(parent: Any, key: Any, node: Any) -> None:
    parent.__dict__["_content"][key] = node
    node.__dict__["_parent"] = parent


def _oc_reparent(node: Any, parent: Any) -> None:
    node.__dict__["_parent"] = parent
    node._invalidate_flags_cache()


def _oc_set_detached(leaf: Any, value: Any) -> None:
    """Set a value node of a read-only tree (validated as OmegaConf does)."""
    parent = leaf.__dict__["_parent"]
    leaf.__dict__["_parent"] = None
    try:
        leaf._set_value(value)
    finally:
        leaf.__dict__["_parent"] = parent


class JobConfigs:
    """One job's configs (see :class:`JobConfigBuilder`): ``hroot``, its
    ``{hydra: ...}`` config (``HydraConfig`` holds it, ``JobReturn.hydra_cfg`` is
    it), and ``full``, the task config's keys plus ``hydra`` (interpolations
    resolve in it; Hydra callbacks get it)."""

    def __init__(self, hroot: Any, full: Any, shared: bool) -> None:
        self.hroot = hroot
        self.full = full
        self.shared = shared
        self._held: Any = None

    @contextmanager
    def held(self) -> Iterator[None]:
        """Within the block, ``HydraConfig.get()`` is this job's Hydra config
        (see :func:`hydra_config`); :meth:`set` changes it too."""
        with hydra_config(self.full, self.hroot) as held:
            self._held = held
            try:
                yield
            finally:
                self._held = None

    def set(self, path: Sequence[str], value: Any) -> None:
        """Set the per-job field ``hydra.<path>`` (one of the builder's ``paths``)
        in both configs."""
        if self.shared:
            node = _oc_child(self.full, "hydra")
            for k in path:
                node = _oc_child(node, k)
            _oc_set_detached(node, value)
        else:
            for root in (self.hroot, self.full):
                _set_public(root.hydra, path, value)
        if self._held is not None and self._held is not self.hroot:  # HydraConfig holds a copy
            _set_public(self._held.hydra, path, value)

    def release(self) -> None:
        """After the job: ``hroot`` stands on its own (its hydra node's parent is
        ``hroot`` again, no longer ``full``)."""
        if self.shared:
            _oc_reparent(_oc_child(self.full, "hydra"), self.hroot)


def _set_public(hydra: Any, path: Sequence[str], value: Any) -> None:
    from omegaconf import open_dict, read_write

    parent = hydra
    for k in path[:-1]:
        parent = parent[k]
    with read_write(parent), open_dict(parent):
        parent[path[-1]] = value


class JobConfigBuilder:
    """Makes each job's configs from a template's frozen Hydra config.

    ``frozen`` (``{hydra: ...}``, read-only) is never changed; ``paths`` are the
    paths under ``hydra`` of the nodes that differ between jobs (the per-job fields
    and every interpolation). With the ``omegaconf-shared-nodes`` patch (``shared``;
    by default when its guard allows it), a job's configs share every other node
    with ``frozen``; on the public path they are deep copies.

    Examples
    --------
    >>> from omegaconf import OmegaConf
    >>> frozen = OmegaConf.create({"hydra": {"job": {"num": 0, "name": "${hydra.run}"}, "run": "r"}})
    >>> OmegaConf.set_readonly(frozen.hydra, True)
    >>> b = JobConfigBuilder(frozen, [("job", "num"), ("job", "name")])
    >>> job = b.build(OmegaConf.create({"x": 1}), {("job", "num"): 7})
    >>> job.hroot.hydra.job.num, job.full.hydra.job.name, job.full.x, frozen.hydra.job.num
    (7, 'r', 1, 0)
    >>> job.release()
    """

    def __init__(self, frozen: Any, paths: Sequence[tuple[Any, ...]], *, shared: bool | None = None) -> None:
        self.frozen = frozen
        self.leaves = [tuple(p) for p in paths]
        spine: set[tuple[Any, ...]] = set()
        for p in self.leaves:
            for n in range(1, len(p)):
                spine.add(p[:n])
        self.spine = sorted(spine, key=len)
        self.shared = usable(OMEGACONF_SHARED_NODES) if shared is None else shared

    def build(self, task_cfg: Any, values: Mapping[tuple[Any, ...], Any]) -> JobConfigs:
        """The configs of one job: the per-job fields set to ``values``; ``full``
        holds ``task_cfg``'s keys."""
        if self.shared:
            return self._build_shared(task_cfg, values)
        return self._build_public(task_cfg, values)

    def _build_shared(self, task_cfg: Any, values: Mapping[tuple[Any, ...], Any]) -> JobConfigs:
        root = _oc_share(self.frozen, root=True)
        h = _oc_share(_oc_child(root, "hydra"))
        _oc_attach(root, "hydra", h)
        made: dict[tuple[Any, ...], Any] = {(): h}
        for p in self.spine:
            parent = made[p[:-1]]
            node = _oc_share(_oc_child(parent, p[-1]))
            _oc_attach(parent, p[-1], node)
            made[p] = node
        for p in self.leaves:
            parent, c = made[p[:-1]], _oc_child(made[p[:-1]], p[-1])
            leaf = _oc_share(c) if p in values and "_content" in c.__dict__ else _oc_copy_leaf(c)
            if p in values and not _oc_set_strings(leaf, values[p]):
                leaf._set_value(values[p])
            _oc_attach(parent, p[-1], leaf)
        full = _oc_share(task_cfg, root=True)
        full.__dict__["_content"]["hydra"] = h
        _oc_reparent(h, full)
        return JobConfigs(root, full, shared=True)

    def _build_public(self, task_cfg: Any, values: Mapping[tuple[Any, ...], Any]) -> JobConfigs:
        from omegaconf import open_dict

        hroot = copy.deepcopy(self.frozen)
        for p, v in values.items():
            _set_public(hroot.hydra, p, v)
        full = copy.deepcopy(task_cfg)
        with open_dict(full):
            full["hydra"] = hroot.hydra  # OmegaConf copies it
        return JobConfigs(hroot, full, shared=False)


def _probe_shared_nodes() -> None:
    from omegaconf import DictConfig, OmegaConf

    frozen = OmegaConf.create(
        {"hydra": {"job": {"num": 0, "id": "${hydra.job.num}", "name": "${x}"}, "task": ["a"], "k": "v"}}
    )
    OmegaConf.set_readonly(frozen.hydra, True)
    before = OmegaConf.to_yaml(frozen)
    node = frozen.hydra
    missing = [a for a in ("_metadata", "_content", "_parent", "_flags_cache") if a not in node.__dict__]
    missing += [a for a in ("flags", "resolver_cache") if not hasattr(node.__dict__["_metadata"], a)]
    missing += [m for m in ("_set_value", "_invalidate_flags_cache") if not callable(getattr(node, m, None))]
    if missing:
        raise AttributeError(f"DictConfig has no {', '.join(missing)}")
    paths = [("job", "num"), ("job", "id"), ("job", "name"), ("task",)]
    values = {("job", "num"): 3, ("task",): ["b", "c"]}
    task = OmegaConf.create({"x": "X", "y": {"z": 1}})
    got = JobConfigBuilder(frozen, paths, shared=True).build(task, values)
    want = JobConfigBuilder(frozen, paths, shared=False).build(task, values)
    got.set(("job", "id"), "7")
    want.set(("job", "id"), "7")
    checks = [
        (OmegaConf.to_yaml(got.hroot), OmegaConf.to_yaml(want.hroot)),
        (OmegaConf.select(got.full, "hydra.job.name"), "X"),
        (OmegaConf.to_container(got.full, resolve=True), OmegaConf.to_container(want.full, resolve=True)),
    ]
    got.release()
    checks += [
        (OmegaConf.to_yaml(got.hroot), OmegaConf.to_yaml(want.hroot)),
        (OmegaConf.to_yaml(frozen), before),
        (isinstance(got.hroot.hydra, DictConfig) and got.hroot.hydra._get_parent() is got.hroot, True),
    ]
    for n, (a, b2) in enumerate(checks):
        if a != b2:
            raise AssertionError(f"check {n}: {a!r} != {b2!r}")


register(
    Patch(
        OMEGACONF_SHARED_NODES,
        package="omegaconf",
        versions=">=2.3,<2.4",
        internals="nodes' __dict__ (_content, _parent, _metadata, _flags_cache), "
        "Node._set_value, Node._invalidate_flags_cache; the task config's copy and values "
        "(omegaconf_copy: copy_config, set_value)",
        public_path="copy.deepcopy of the template's Hydra config per job (twice) and "
        "setting the per-job fields with read_write/open_dict; copy.deepcopy of the task "
        "config and OmegaConf.update of each job value",
        probe=_probe_shared_nodes,
    )
)
