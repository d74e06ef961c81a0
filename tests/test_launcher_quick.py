"""The in-process launcher's per-job shortcuts (hydra_plugins/mushin_nb_plugins/_quick.py):
each gives exactly what Hydra's parser / OmegaConf's YAML dumper give for the forms it
covers, and declines every other form. Compared against the real Hydra and OmegaConf."""

import random

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
