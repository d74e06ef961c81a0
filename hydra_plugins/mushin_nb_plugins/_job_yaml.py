"""A job's ``.hydra/hydra.yaml`` and ``overrides.yaml`` as text, without
``OmegaConf.to_yaml`` of the whole Hydra config per job.

The template's Hydra config is dumped once with a sentinel in each per-job field
(:data:`JOB_FIELDS`); per job, only those fields are dumped (one small YAML
dump) and their lines are put in the sentinels' places. The launcher checks the
result against ``OmegaConf.to_yaml`` on the first job of every template.

No ``from __future__ import annotations`` under ``hydra_plugins`` (see
``sweeper.py``).

Examples
--------
>>> print(overrides_from_chunk("    task:\\n    - x=1\\n    - y=a\\n"), end="")
- x=1
- y=a
"""

from typing import Any

from mushin_nb._compat import yaml_dump

from ._quick import yaml_scalar

__all__ = ["JOB_FIELDS", "HydraYamlTemplate", "TaskYamlTemplate", "overrides_from_chunk"]

# fields of the Hydra config that differ between the jobs of one sweep
JOB_FIELDS: tuple[tuple[str, ...], ...] = (
    ("job", "override_dirname"),
    ("job", "id"),
    ("job", "num"),
    ("overrides", "task"),
    ("runtime", "cwd"),
    ("runtime", "output_dir"),
)
_SENTINEL = "MUSHINNBFIELD{}X"


class HydraYamlTemplate:
    """``hydra.yaml`` of a template's Hydra config with the per-job fields left
    open.

    Parameters
    ----------
    frozen : DictConfig
        The template's ``{hydra: ...}`` config.

    Attributes
    ----------
    pieces : list or None
        Text pieces and indices into :data:`JOB_FIELDS`; None when the sentinels
        could not all be found (then :meth:`render` returns None).

    Examples
    --------
    >>> from omegaconf import OmegaConf
    >>> fields = {p[0]: {} for p in JOB_FIELDS}
    >>> for p in JOB_FIELDS:
    ...     fields[p[0]][p[1]] = "?"
    >>> frozen = OmegaConf.create({"hydra": {"a": 1, **fields}})
    >>> t = HydraYamlTemplate(frozen)
    >>> values = {p: "v" for p in JOB_FIELDS}
    >>> values[("job", "num")] = 3
    >>> values[("overrides", "task")] = ["x=1"]
    >>> text, chunks = t.render(values)
    >>> with_values = OmegaConf.create({"hydra": {"a": 1, **fields}})
    >>> for p, v in values.items():
    ...     OmegaConf.update(with_values, "hydra." + ".".join(p), v)
    >>> text == OmegaConf.to_yaml(with_values)
    True
    """

    def __init__(self, frozen: Any) -> None:
        from omegaconf import OmegaConf

        cont: Any = OmegaConf.to_container(frozen, resolve=False, enum_to_str=True)
        for i, p in enumerate(JOB_FIELDS):
            d = cont["hydra"]
            for k in p[:-1]:
                d = d[k]
            d[p[-1]] = _SENTINEL.format(i)
        pieces: list[Any] = []
        cur: list[str] = []
        found = 0
        for line in yaml_dump(cont).split("\n"):
            hit = None
            for i in range(len(JOB_FIELDS)):
                if line.endswith(": " + _SENTINEL.format(i)):
                    hit = i
                    break
            if hit is None:
                cur.append(line)
            else:
                pieces.append("\n".join(cur) + ("\n" if cur else ""))
                pieces.append(hit)
                cur = []
                found += 1
        pieces.append("\n".join(cur))
        self.pieces: list[Any] | None = pieces if found == len(JOB_FIELDS) else None

    def render(self, values: dict[tuple[str, ...], Any]) -> tuple[str | None, dict[Any, str]]:
        """``hydra.yaml`` with the job's ``values`` of :data:`JOB_FIELDS`, and each
        field's text (its lines in ``hydra.yaml``); ``(None, {})`` if unusable."""
        if self.pieces is None:
            return None, {}
        chunks = _quick_chunks(values)
        if chunks is None:
            chunks = self._dumped_chunks(values)
        out = [chunks[JOB_FIELDS[x]] if isinstance(x, int) else x for x in self.pieces]
        return "".join(out), chunks

    @staticmethod
    def _dumped_chunks(values: dict[tuple[str, ...], Any]) -> dict[Any, str]:
        # one dump of the per-job fields in their nesting: cut it into the field texts
        tree: dict[str, Any] = {}
        for p in JOB_FIELDS:
            tree.setdefault(p[0], {})[p[1]] = values[p]
        lines = yaml_dump({"hydra": tree}).split("\n")
        starts: dict[tuple[str, ...], int] = {}
        for p in JOB_FIELDS:
            head = "    " + p[1] + ":"
            for j, line in enumerate(lines):
                if line.startswith(head) and (len(line) == len(head) or line[len(head)] == " "):
                    if j not in starts.values():
                        starts[p] = j
                        break
        order = sorted(starts.items(), key=lambda kv: kv[1])
        chunks: dict[Any, str] = {}
        for n, (p, j) in enumerate(order):
            end = order[n + 1][1] if n + 1 < len(order) else len(lines)
            block = lines[j:end]
            # drop the section header lines ("  job:") that precede the next field
            while block and not block[-1].startswith("   "):
                block.pop()
            chunks[p] = "\n".join(block) + "\n"
        return chunks


def _quick_chunks(values: dict[tuple[str, ...], Any]) -> dict[Any, str] | None:
    """The field texts of :meth:`HydraYamlTemplate.render` when every value is a
    scalar (or a list of scalars) :func:`yaml_scalar` writes; else None."""
    chunks: dict[Any, str] = {}
    for p in JOB_FIELDS:
        v = values[p]
        if isinstance(v, list):
            items = [yaml_scalar(x) for x in v]
            if any(x is None for x in items):
                return None
            body = "".join(f"    - {x}\n" for x in items)
            chunks[p] = f"    {p[1]}:\n{body}" if items else f"    {p[1]}: []\n"
        else:
            text = yaml_scalar(v)
            if text is None:
                return None
            chunks[p] = f"    {p[1]}: {text}\n"
    return chunks


class TaskYamlTemplate:
    """``config.yaml`` of a template's task config with the overridden values left
    open: per job only those values are written (:func:`yaml_scalar`).

    Parameters
    ----------
    task : DictConfig
        The template's task config.
    keys : list of str
        The dotted keys the job overrides set (each a value node that holds what it
        is given, as given; else the template is not usable).

    Examples
    --------
    >>> from omegaconf import OmegaConf
    >>> task = OmegaConf.create({"a": {"x": 1}, "b": "${a.x}", "y": "s"})
    >>> t = TaskYamlTemplate(task, ["a.x", "y"])
    >>> t.render([5, "adam"]) == OmegaConf.to_yaml(OmegaConf.create({"a": {"x": 5}, "b": "${a.x}", "y": "adam"}))
    True
    >>> t.render([[1], "adam"]) is None  # not a scalar written here: OmegaConf writes it
    True
    """

    def __init__(self, task: Any, keys: list[str]) -> None:
        self.pieces: list[Any] | None = None
        try:
            self.pieces = self._make(task, keys)
        except Exception:  # any surprise: OmegaConf writes every job's file
            self.pieces = None

    @staticmethod
    def _make(task: Any, keys: list[str]) -> list[Any] | None:
        import copy

        from omegaconf import OmegaConf

        if len(set(keys)) != len(keys):
            return None
        cont: Any = OmegaConf.to_container(task, resolve=False, enum_to_str=True)
        probe = copy.deepcopy(task)
        for i, key in enumerate(keys):
            d = cont
            parts = key.split(".")
            for part in parts[:-1]:
                d = d.get(part) if isinstance(d, dict) else None
            if not isinstance(d, dict) or isinstance(d.get(parts[-1], []), (dict, list)):
                return None
            # a node that keeps what it is given, as given (a typed node converts or refuses)
            for v in (7, "q7", 0.5, True, None):
                OmegaConf.update(probe, key, v, merge=True)
                got = OmegaConf.select(probe, key)
                if type(got) is not type(v) or got != v:
                    return None
            d[parts[-1]] = _SENTINEL.format(i)
        pieces: list[Any] = []
        cur: list[str] = []
        for line in yaml_dump(cont).split("\n"):
            hit = next((i for i in range(len(keys)) if line.endswith(": " + _SENTINEL.format(i))), None)
            if hit is None:
                cur.append(line)
                continue
            cur.append(line[: -len(_SENTINEL.format(hit))])
            pieces.extend(["\n".join(cur), hit])
            cur = [""]
        pieces.append("\n".join(cur))
        return pieces if sum(isinstance(p, int) for p in pieces) == len(keys) else None

    def render(self, values: list[Any]) -> str | None:
        """The job's ``config.yaml`` text with ``values`` (in the order of ``keys``),
        or None when one is not a scalar :func:`yaml_scalar` writes."""
        if self.pieces is None:
            return None
        out = []
        for p in self.pieces:
            if isinstance(p, int):
                text = yaml_scalar(values[p])
                if text is None:
                    return None
                out.append(text)
            else:
                out.append(p)
        return "".join(out)


def overrides_from_chunk(chunk: str | None) -> str | None:
    """``overrides.yaml`` from the ``    task:`` block of ``hydra.yaml``, when every
    item is one short line (then its rendering does not depend on the indent);
    else None."""
    if not chunk:
        return None
    lines = chunk.rstrip("\n").split("\n")
    if len(lines) == 1:
        return "[]\n" if lines[0] == "    task: []" else None
    if lines[0] != "    task:":
        return None
    out = []
    for line in lines[1:]:
        if not line.startswith("    - ") or len(line) > 70:
            return None
        out.append(line[4:])
    return "\n".join(out) + "\n"
