"""The in-process launcher's per-job shortcuts (hydra_plugins/mushin_nb_plugins/_quick.py):
each gives exactly what Hydra's parser / OmegaConf's YAML dumper give for the forms it
covers, and declines every other form. Compared against the real Hydra and OmegaConf."""

import random

import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from hydra_plugins.mushin_nb_plugins._job_yaml import TaskYamlTemplate
from hydra_plugins.mushin_nb_plugins._quick import QuickParser, yaml_scalar
from mushin_nb._compat import yaml_dump

TRICKY = [
    "", "yes", "No", "ON", "off", "y", "n", "null", "Null", "~", "true", "x=1", "+x=1", "++x=1",
    "+1", "1", "01", "1.5", "1e3", "/tmp/a-b/c_1", "a,b=2", "inf", "nan", ".inf", "a b", "a:b",
    "a: b", "#a", "-a", "=", "<<", "0x1f", "1:20", "2001-01-01", "_", "/", "+", "x" * 200, "None",
]  # fmt: skip


def test_yaml_scalar_writes_what_omegaconf_writes():
    rng = random.Random(0)
    alpha = "aAzZ_/.=,+-019 :#'\"yYnN~eE!&*\\ü"
    values: list = [None, True, False, 0, -1, 10**20, 1.0, 0.1, -0.0, 1e-5, 1e17, 1e300, float("inf")]
    values += TRICKY + ["".join(rng.choice(alpha) for _ in range(rng.randint(1, 8))) for _ in range(3000)]
    values += [rng.random() * 10 ** rng.randint(-30, 30) for _ in range(2000)]
    written = 0
    for v in values:
        text = yaml_scalar(v)
        if text is None:
            continue
        written += 1
        assert yaml_dump({"k": v}) == f"k: {text}\n", v
        assert yaml_dump({"k": [v]}) == f"k:\n- {text}\n", v
    assert written > len(values) // 3  # the usual values take the shortcut
    assert yaml_scalar("a b") is None and yaml_scalar([1]) is None and yaml_scalar(float("nan")) is None


def test_quick_parser_gives_hydras_overrides_and_declines_the_rest():
    parser = OverridesParser.create()
    quick = QuickParser(parser.parse_override)
    rng = random.Random(1)
    alpha = "aAzZ_019.-+=/ ,:"
    texts = [f"x={v}" for v in ["1", "-0", "0.5", "-1.25", "adam", "True", "nan", "inf", "NULL", "1_0", "00"]]
    for _ in range(3000):
        key = rng.choice(["x", "a.b", "+x", "++y", "_k", "x@p", "~x"])
        texts.append(key + "=" + "".join(rng.choice(alpha) for _ in range(rng.randint(0, 6))))
    parsed = 0
    for t in texts:
        o = quick.parse(t)
        if o is None:
            continue
        parsed += 1
        ref = parser.parse_override(t)
        assert o == ref and type(o.value()) is type(ref.value()), t
    assert parsed > 100 and quick.on
    for t in ["x=[1,2]", "x=a b", "x=true", "x=null", "x=1,2", "~x", "x@pkg=1", "x=${y}", "x='q'"]:
        assert quick.parse(t) is None, t


def test_quick_sweeps_are_hydras_overrides_and_the_rest_declined():
    """parse_sweep against Hydra's parser on random sweeps: the same Override (values of
    the same types, the same job strings) or None."""
    from hydra_plugins.mushin_nb_plugins.sweeper import grid_jobs

    parser = OverridesParser.create()
    quick = QuickParser(parser.parse_override)
    rng = random.Random(2)
    alpha = [
        "1",
        "-0",
        "0.5",
        "-1.25",
        "2.50",
        "10",
        "adam",
        "x_1",
        "True",
        "nan",
        "00",
        "1e3",
        "a b",
        "",
        "[1]",
    ]
    texts = ["x=" + ",".join(str(i) for i in range(1000)), "+a.b=1,2", "++c=0.1,adam,3"]
    for _ in range(2000):
        key = rng.choice(["x", "a.b", "+x", "++y", "_k", "x@p"])
        texts.append(key + "=" + ",".join(rng.choice(alpha) for _ in range(rng.randint(1, 5))))
    parsed = 0
    for t in texts:
        o = quick.parse_sweep(t)
        if o is None:
            continue
        parsed += 1
        (ref,) = parser.parse_overrides([t])
        assert o == ref and [type(v) for v in o.value().list] == [type(v) for v in ref.value().list], t
        assert grid_jobs([o]) == grid_jobs([ref]), t
    assert parsed > 150 and quick.on
    for t in ["x=1", "x=choice(1,2)", "x=range(3)", "x=1, 2", "x=a,'b'", "x=[1,2],3", "x=1,,2", "x=1,true"]:
        assert quick.parse_sweep(t) is None, t


def test_quick_sweeps_stop_at_a_difference():
    def wrong(text):  # a parser that disagrees: the shortcut must stop at once
        return OverridesParser.create().parse_override(text.replace("1", "2"))

    quick = QuickParser(wrong)
    assert quick.parse_sweep("x=1,3") is None and not quick.on
    assert quick.parse_sweep("x=5,6") is None


def test_quick_parser_turns_off_at_a_difference():
    calls = []

    def wrong(text):  # a parser that disagrees: the shortcut must stop at once
        calls.append(text)
        return OverridesParser.create().parse_override(text.replace("1", "2"))

    quick = QuickParser(wrong)
    assert quick.parse("x=1").value() == 2  # the parser's answer, not the shortcut's
    assert not quick.on and quick.parse("x=3") is None


def test_task_yaml_template_is_omegaconf_text_or_declines():
    from dataclasses import dataclass

    task = OmegaConf.create({"a": {"x": 1, "y": "${a.x}"}, "s": "q", "l": [1, 2]})
    t = TaskYamlTemplate(task, ["a.x", "s"])
    for x, s in [(5, "adam"), (-1.5, "/p/q"), (None, "01"), (True, "x=1")]:
        job = OmegaConf.create({"a": {"x": x, "y": "${a.x}"}, "s": s, "l": [1, 2]})
        assert t.render([x, s]) == OmegaConf.to_yaml(job)
    assert t.render([1, "a b"]) is None  # a value written by OmegaConf instead

    @dataclass
    class Typed:
        a: float = 1.0  # a typed node converts what it is given: no template

    assert TaskYamlTemplate(OmegaConf.structured(Typed), ["a"]).pieces is None
    assert TaskYamlTemplate(task, ["l"]).pieces is None  # a list node
    assert TaskYamlTemplate(task, ["a.x", "a.x"]).pieces is None  # a key given twice


# ------------------------------------------------------------------ a template without a second composition


def _templates(monkeypatch):
    """Every job template a sweep makes, with what Hydra composes for its first job."""
    import hydra_plugins.mushin_nb_plugins._template as tmpl

    made = []
    init = tmpl.JobTemplate.__init__

    def recording(self, launcher, overrides, parsed):
        init(self, launcher, overrides, parsed)
        ref = launcher.hydra_context.config_loader.load_sweep_config(launcher.config, list(overrides))
        made.append((self, ref, launcher.config, list(overrides), parsed))

    monkeypatch.setattr(tmpl.JobTemplate, "__init__", recording)
    return made


def test_a_derived_template_is_what_hydra_composes(tmp_path, monkeypatch):
    from hydra_zen import launch, make_config

    from hydra_plugins.mushin_nb_plugins._derive import derive_sweep_config
    from mushin_nb import MultiRunMetricsWorkflow, multirun

    class P(MultiRunMetricsWorkflow):
        @staticmethod
        def task(x: int, name: str, scale: float) -> dict:
            return dict(y=x)

    made = _templates(monkeypatch)
    P().run(x=multirun([1, 2]), name=multirun(["a", "b c"]), scale=0.5, working_dir=str(tmp_path / "m"))
    P().run(scale=0.5, x=multirun([1, 2]), name="q", working_dir=str(tmp_path / "n"), progress=False)
    cfg = make_config(a=1, b=dict(c="q", d=None), lst=[1, 2])
    shapes = [["a=1,2", "+z=x,y", "+w=3"], ["+w=3", "b.c=u,v"], ["a=5", "+z=1,2"], ["+b.d=1,2"]]
    for k, extra in enumerate(shapes):
        launch(
            cfg,
            lambda c: 1,
            overrides=["hydra/launcher=mushin_nb", f"hydra.sweep.dir={tmp_path / str(k)}", *extra],
            multirun=True,
            version_base="1.3",
            to_dictconfig=True,
        )
    assert len(made) >= 6
    for t, ref, master, overrides, parsed in made:
        got = derive_sweep_config(master, overrides, parsed)
        if got is None:  # a form it declines: composed by Hydra
            assert not t.derived and any("." in o.key_or_group and o.is_add() for o in parsed), overrides
            continue
        assert t.derived, overrides
        assert OmegaConf.to_yaml(got) == OmegaConf.to_yaml(ref), overrides  # values and key order
        assert OmegaConf.is_struct(got) and not OmegaConf.is_readonly(got.hydra)
    assert sum(t.derived for t, *_ in made) >= 5


def test_an_add_on_a_key_that_is_there_fails_as_hydra_says(tmp_path):
    from hydra.errors import ConfigCompositionException
    from hydra_zen import launch, make_config

    errors = []
    for launcher in ("basic", "mushin_nb"):
        with pytest.raises(ConfigCompositionException) as ei:
            launch(
                make_config(a=1),
                lambda c: 1,
                overrides=[f"hydra/launcher={launcher}", f"hydra.sweep.dir={tmp_path / launcher}", "+a=2,3"],
                multirun=True,
                version_base="1.3",
            )
        errors.append(str(ei.value))
    assert errors[0] == errors[1] and "already at 'a'" in errors[0]


def test_copy_config_is_deepcopy():
    import copy

    from mushin_nb import _compat
    from mushin_nb._compat.omegaconf_copy import _same_as_deepcopy, copy_config

    assert _same_as_deepcopy()
    holder = {"list": [1, 2]}  # a mutable object in a config that allows objects: copied too
    cfg = OmegaConf.create({"a": {"b": [1, {"c": "${x}"}]}, "x": 3, "m": "???", "o": holder},
                           flags={"allow_objects": True})  # fmt: skip
    OmegaConf.set_struct(cfg, True)
    got, want = copy_config(cfg), copy.deepcopy(cfg)
    assert OmegaConf.to_yaml(got) == OmegaConf.to_yaml(want) and OmegaConf.is_struct(got)
    assert got.a.b[1].c == 3 and OmegaConf.is_missing(got, "m")
    assert got.o == holder and got.o is not holder
    got.x = 4
    got.a.b.append(5)
    assert (got.a.b[1].c, cfg.a.b[1].c, len(cfg.a.b)) == (4, 3, 2)
    with _compat.public_path(_compat.OMEGACONF_SHARED_NODES):  # the guard refuses: copy.deepcopy
        assert OmegaConf.to_yaml(copy_config(cfg)) == OmegaConf.to_yaml(want)


def test_set_value_is_omegaconf_update():
    """set_value against OmegaConf.update on a structured config of typed, untyped and
    nested fields (the kind hydra-zen's builds makes): the same values, node types and
    refusals; declined where update does more than set a value node; never used when the
    guard refuses."""
    from dataclasses import dataclass, field
    from typing import Any

    from mushin_nb import _compat
    from mushin_nb._compat.omegaconf_copy import _same_as_update, copy_config, set_both, set_value

    assert _same_as_update()

    @dataclass
    class Task:  # what hydra-zen's builds makes of a typed signature
        n: int = 1
        lr: float = 0.1
        name: str = "a"
        flag: bool = False
        anything: Any = None

    @dataclass
    class Root:
        t: Task = field(default_factory=Task)
        free: Any = 0
        d: Any = field(default_factory=lambda: {"k": 1})

    base = OmegaConf.structured(Root)
    OmegaConf.set_struct(base, True)
    cases = [("t.n", 3), ("t.lr", 2), ("t.name", 5), ("t.flag", True), ("t.anything", "x"), ("free", 0.5),
             ("d.k", "adam"), ("t.n", "abc"), ("t.lr", "zero"), ("t.flag", "maybe"), ("free", "${t.n}"),
             ("d", 1), ("t.n", None), ("missing", 1), ("t.missing", 1)]  # fmt: skip
    direct = 0
    for key, value in cases:
        got, want = copy_config(base), copy_config(base)
        fast, ref, done = set_both(set_value, got, want, key, value)
        direct += done
        assert fast == ref, (key, value, fast, ref)
        assert OmegaConf.to_yaml(got) == OmegaConf.to_yaml(want), (key, value)
        assert [type(got.t._get_node(k)) for k in got.t] == [type(want.t._get_node(k)) for k in want.t]
    assert direct == 7  # the plain sets; the 3 refusals of a typed node raise as update raises
    for key, value in [("d", 1), ("free", None), ("free", "${t.n}"), ("free", [1]), ("missing", 1)]:
        assert not set_value(copy_config(base), key, value), (key, value)
    with _compat.public_path(_compat.OMEGACONF_SHARED_NODES):  # the guard refuses: update's path
        assert not set_value(copy_config(base), "t.n", 2)
