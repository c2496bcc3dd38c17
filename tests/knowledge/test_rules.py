"""Interaction rules: the demo's interactions.csv, sets, matching, ordering, and bad files."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from snapid.data.demo import INTERACTIONS
from snapid.knowledge import KnowledgeError
from snapid.knowledge.rules import Rule, match_rules, parse_rules


def write(path, text: str):
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def demo_rules(tmp_path_factory):
    from snapid.data import demo

    root = tmp_path_factory.mktemp("tables")
    demo._write_tables(root)
    return parse_rules(root / "interactions.csv")


def test_demo_interactions_csv(demo_rules):
    assert len(demo_rules) == len(INTERACTIONS)
    for rule, (a, b, severity, ko, en) in zip(demo_rules, INTERACTIONS, strict=True):
        assert rule.classes == tuple(sorted([str(a), str(b)]))
        assert rule.severity == severity and rule.message == {"ko": ko, "en": en}


def test_demo_pairs_match_only_together(demo_rules):
    assert match_rules(demo_rules, ["7342"]) == []
    assert match_rules(demo_rules, ["7342", "1899"]) == []
    (warning,) = match_rules(demo_rules, ["7342", "4730"])
    assert warning == {"classes": ["4730", "7342"], "severity": "contraindicated",
                       "message": {"ko": "함께 복용하면 과도한 졸음 (가상)",
                                   "en": "together cause excessive drowsiness (fictional)"}}
    # several objects: every matching pair, most severe first, then file order
    found = match_rules(demo_rules, ["1899", "1900", "7342", "4730", "2482", "4120", "1899"])
    assert [w["classes"] for w in found] == [["2482", "4120"], ["4730", "7342"], ["1899", "1900"]]
    assert [w["severity"] for w in found] == ["contraindicated", "contraindicated", "caution"]


def test_match_accepts_snapshot_dicts_and_numbers(demo_rules):
    as_json = json.loads(json.dumps([r.as_dict() for r in demo_rules]))
    assert match_rules(as_json, [2482, 4120]) == match_rules(demo_rules, ["2482", "4120"])
    assert match_rules([], ["a", "b"]) == [] and match_rules(as_json, []) == []


def test_sets_need_every_member(tmp_path):
    rules = parse_rules(write(tmp_path / "r.csv", "classes,severity,message_en,reason\n"
                                                  "x|y|z,danger,all three,셋 다\n"
                                                  "y|x,info,two,\n"))
    assert rules[0] == Rule(("x", "y", "z"), "danger", {"en": "all three", "und": "셋 다"})
    assert [w["classes"] for w in match_rules(rules, ["x", "y"])] == [["x", "y"]]
    assert [w["severity"] for w in match_rules(rules, ["z", "y", "x", "q"])] == ["danger", "info"]


def test_yaml_rules(tmp_path):
    rules = parse_rules(write(tmp_path / "r.yaml", "rules:\n"
                                                   "  - classes: [b, a]\n    severity: Contraindicated\n"
                                                   "    message: {en: no, ko: 안 돼}\n"
                                                   "  - {a: c, b: d}\n"))
    assert rules == [Rule(("a", "b"), "contraindicated", {"en": "no", "ko": "안 돼"}), Rule(("c", "d"), "caution", {})]


def test_unlisted_severity_sorts_last(tmp_path):
    rules = parse_rules(write(tmp_path / "r.csv", "a,b,severity\np,q,custom-level\np,r,info\n"))
    assert [w["severity"] for w in match_rules(rules, ["p", "q", "r"])] == ["info", "custom-level"]


@pytest.mark.parametrize("text, message", [
    ("a,b\nx,\n", r"r.csv line 2: a rule needs two classes"),
    ("a,b\nx,x\n", r"line 2: class 'x' appears twice"),
    ("a,b\nx,y\ny,x\n", r"line 3: the classes \['x', 'y'\] already have a rule \(r.csv line 2\)"),
    ("a,b,severity\nx,y,very bad!\n", r"line 2: severity 'very bad!' is not a word"),
    ("classes\n" + "|".join(f"c{i}" for i in range(11)) + "\n", r"11 classes in one rule \(limit 10\)"),
    ("class_id,name\n1,x\n", r"line 2: a rule needs two classes"),
])
def test_bad_rules_are_named(tmp_path, text, message):
    with pytest.raises(KnowledgeError, match=message):
        parse_rules(write(tmp_path / "r.csv", text))


def test_hostile_messages_are_kept(tmp_path):
    rules = parse_rules(write(tmp_path / "r.csv", "a,b,message_en\n<script>x</script>,'; DROP TABLE x;--,"
                                                  "\"<img src=x onerror=alert(1)>\"\n"))
    (warning,) = match_rules(rules, ["'; DROP TABLE x;--", "<script>x</script>"])
    assert warning["message"] == {"en": "<img src=x onerror=alert(1)>"}


def test_serving_can_import_rules_without_heavy_modules():
    code = ("import sys, snapid.knowledge.rules; "
            "bad = [m for m in ('torch', 'sqlalchemy', 'httpx') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
