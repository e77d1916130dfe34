"""The benchmark's recorded runs (bench/results.py): target marks, merging, the markdown."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import results
from bench.results import Measure, Run


@pytest.mark.parametrize(
    ("value", "target", "expected"),
    [
        (1.0, "<= 1.0", True),
        (1.01, "<= 1.0", False),
        (0.8, ">= 0.8", True),
        (0.79, ">= 0.8", False),
        (2.0, "< 2", False),
        (1.99, "< 2", True),
        (0.5, "> 0.4", True),
        (3.0, None, None),
    ],
)
def test_met(value: float, target: str | None, expected: bool | None) -> None:
    assert results.met(value, target) is expected


@pytest.mark.parametrize("target", ["1.0", "<=", "== 1", "<= one", "<= 1.0x"])
def test_a_malformed_target_is_refused(target: str) -> None:
    with pytest.raises(ValueError, match="target"):
        results.met(1.0, target)


def test_marks_and_cells() -> None:
    assert results.mark(1.5, "<= 1.1") == "MISSED"
    assert results.mark(1.0, "<= 1.1") == "met"
    assert results.mark(1.0, None) == ""
    assert Measure("a", "ratio a", 1.534, "x", "<= 1.1").cell() == "1.53x (MISSED)"
    assert Measure("b", "read", 4.761, "ms").cell() == "4.76 ms"
    assert Measure("c", "rate", 1290.4, "req/s").cell() == "1290 req/s"
    assert Measure("d", "added", 1.0, "reads").cell() == "1.00 point reads"


def run(label: str, **values: float) -> Run:
    return Run(
        label=label,
        date="2026-12-02 07:00",
        commit="abc1234",
        machine={"nproc": "2", "cpu": "AMD EPYC"},
        measures=[Measure(k, f"measure {k}", v, "x", "<= 1.0") for k, v in values.items()],
    )


def test_merge_puts_the_new_run_first_and_replaces_one_of_the_same_label() -> None:
    old = [run("before", a=2.0), run("second", a=1.5)]
    merged = results.merge(old, run("after", a=1.0))
    assert [r.label for r in merged] == ["after", "before", "second"]
    again = results.merge(merged, run("before", a=1.9))
    assert [r.label for r in again] == ["before", "after", "second"]
    assert again[0].measures[0].value == 1.9


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "results.json"
    runs = [run("after", a=0.9, b=1.2), run("before", a=2.0)]
    runs[0].notes.append("quick run")
    results.save(path, runs)
    assert results.load(path) == runs
    assert json.loads(path.read_text())["runs"][0]["label"] == "after"
    assert (tmp_path / "RESULTS.md").read_text() == results.render(runs)
    assert results.load(tmp_path / "missing.json") == []


def test_render_keeps_previous_runs_beside_the_newest() -> None:
    newest = run("after", a=0.9, b=1.2)
    older = run("before", a=2.0, c=3.0)
    newest.measures.append(Measure("d", "measure d", 5.0, "ms"))  # no target
    text = results.render([newest, older])
    targets, _, everything = text.partition("## All measures")
    header = "| measure | target | after | before |"
    assert header in targets.splitlines()
    assert header in everything.splitlines()
    assert "| measure d |  | 5.00 ms |  |" not in targets.splitlines()
    assert "| measure d |  | 5.00 ms |  |" in everything.splitlines()
    assert "| measure a | <= 1.0 | 0.90x (met) | 2.00x (MISSED) |" in targets.splitlines()
    lines = everything.splitlines()
    # the newest run's order, then what only older runs have; a missing value is empty
    assert "| measure a | <= 1.0 | 0.90x (met) | 2.00x (MISSED) |" in lines
    assert "| measure b | <= 1.0 | 1.20x (MISSED) |  |" in lines
    assert "| measure c | <= 1.0 |  | 3.00x (MISSED) |" in lines
    assert lines.index("| measure b | <= 1.0 | 1.20x (MISSED) |  |") < lines.index(
        "| measure c | <= 1.0 |  | 3.00x (MISSED) |"
    )
    assert "| commit | abc1234 | abc1234 |" in targets.splitlines()
    assert "| CPU model | AMD EPYC | AMD EPYC |" in targets.splitlines()


def test_render_escapes_table_cells() -> None:
    text = results.render([run("a | b", x=1.0)])
    assert "| a \\| b |" in text


def test_render_without_runs() -> None:
    assert "No run recorded yet." in results.render([])


def test_recorder_prints_and_records_a_ratio_with_its_mark(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from bench.common import Recorder

    rec = Recorder()
    rec.ratio("r", "create / floor", 1.234, "<= 1.1")
    rec.ratio("s", "throughput", 0.5)
    rec.ratio("r", "create / floor", 1.05, "<= 1.1")  # measured again: replaces
    out = capsys.readouterr().out
    assert "ratio create / floor: 1.23   target <= 1.1: MISSED" in out
    assert "ratio create / floor: 1.05   target <= 1.1: met" in out
    assert "ratio throughput: 0.50\n" in out
    assert [(m.key, m.value, m.target) for m in rec.measures] == [
        ("s", 0.5, None),
        ("r", 1.05, "<= 1.1"),
    ]


def test_interleaved_alternates_the_order_of_the_sides() -> None:
    from bench.common import interleaved

    calls: list[str] = []
    sides = [(name, lambda name=name: calls.append(name)) for name in ("a", "b", "c")]
    samples = interleaved(sides, 3)
    assert calls == ["a", "b", "c", "c", "b", "a", "a", "b", "c"]
    assert {name: len(s) for name, s in samples.items()} == {"a": 3, "b": 3, "c": 3}


def test_a_value_is_judged_at_the_precision_it_is_shown() -> None:
    assert results.met(1.104, "<= 1.1") is True  # shown as 1.10
    assert results.met(1.106, "<= 1.1") is False  # shown as 1.11
