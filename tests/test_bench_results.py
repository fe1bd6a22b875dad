"""The schema of results.json (ecgtransfer.bench.results): every committed bench result loads and round-trips,
older versions are upgraded in one place, a damaged file is one BenchError line naming the file and the field."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from ecgtransfer._formats import RESULTS_FORMAT
from ecgtransfer.bench.report import build
from ecgtransfer.bench.results import BenchResults, CellResult, read_results
from ecgtransfer.errors import BenchError

RESULTS = Path(__file__).resolve().parent.parent / "benchmarks" / "results"
COMMITTED = sorted(RESULTS.glob("*/results.json"))
BENCH = [p for p in COMMITTED if json.loads(p.read_text()).get("format") == RESULTS_FORMAT]
#: the newest committed bench results (every key of this version)
CURRENT = RESULTS / "2026-12-01-cpu-tuned-ds1" / "results.json"
#: keys a results.json of the first version lacked
LATER_KEYS = ("macro_f1_definition", "interrupted", "source_overlap", "invocations", "majority_val", "target_check",
              "sweeps", "lr_scale", "settings_swept", "capped_improving", "primary", "contrasts")


def test_committed_bench_results_load_and_round_trip() -> None:
    assert len(BENCH) >= 2 and CURRENT in BENCH
    for path in BENCH:
        raw = json.loads(path.read_text())
        res = read_results(path)
        again = res.to_dict()
        # the keys it had come back unchanged; keys of later versions are added (the upgrade)
        assert {k: again[k] for k in raw} == raw, path
        assert BenchResults.from_dict(again).to_dict() == again, path  # upgraded once, then a fixed point
        assert all(isinstance(c, CellResult) for c in res.cells) and res.class_names


def test_current_results_round_trip_byte_for_byte(tmp_path) -> None:
    from ecgtransfer._atomic import atomic_write_json

    raw = json.loads(CURRENT.read_text())
    assert set(LATER_KEYS) <= set(raw)
    atomic_write_json(tmp_path / "results.json", read_results(CURRENT).to_dict())
    assert json.loads((tmp_path / "results.json").read_text()) == raw


def test_results_of_the_first_version_are_upgraded_in_one_place() -> None:
    raw = json.loads(CURRENT.read_text())
    old = {k: v for k, v in raw.items() if k not in LATER_KEYS}
    res = BenchResults.from_dict(old)
    assert res.macro_f1_definition is None and res.interrupted is None and res.primary is None
    assert res.contrasts == [] and res.sweeps == {} and res.capped_improving == []
    assert res.invocations == [{"bench_run_id": raw["bench_run_id"], "started_at": None,
                                "finished_at": raw["created_at"], "command": raw["command"], **raw["run"]}]
    md = "\n".join(build(res).md)  # the report of an older version says so
    assert "older definition" in md


def test_other_programs_results_json_are_refused_with_one_line() -> None:
    others = [p for p in COMMITTED if p not in BENCH]
    assert others  # the CPU recipe tables, written by their own scripts
    for path in others:
        with pytest.raises(BenchError) as err:
            read_results(path)
        assert str(path) in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("damage, field", [
    (lambda d: d["cells"][3].update(status="finished"), "cells[3].status"),
    (lambda d: d["cells"][0]["cell"].update(seed="0"), "cells[0].cell.seed"),
    (lambda d: d["cells"][1].update(test=[1]), "cells[1].test"),
    (lambda d: d.update(complete="yes"), "complete"),
    (lambda d: d.update(arms=[{"name": 3}]), "arms[0].name"),
    (lambda d: d["config"].update(fractions=[1, "x"]), "config.fractions[1]"),
    (lambda d: d.pop("store"), "store is missing"),
    (lambda d: d.update(format_version=99), "format_version"),
    (lambda d: d["contrasts"][0].update(fraction="20%"), "contrasts[0].fraction"),
    (lambda d: d["contrasts"][0].pop("diff"), "contrasts[0].diff"),
    (lambda d: d["primary"].update(arm=None), "primary.arm"),
    (lambda d: d["summary"].update(x=[]), "summary.x"),
])
def test_damaged_results_are_one_line_naming_the_file_and_field(tmp_path, damage, field) -> None:
    d = json.loads(CURRENT.read_text())
    damage(d)
    path = tmp_path / "results.json"
    path.write_text(json.dumps(d))
    with pytest.raises(BenchError) as err:
        read_results(path)
    msg = str(err.value)
    assert msg.startswith(f"{path}: ") and field in msg and "\n" not in msg, msg


def _declared(typed: type) -> tuple[set[str], set[str]]:
    """(every key, the required keys) of a TypedDict of the schema."""
    return set(typed.__required_keys__) | set(typed.__optional_keys__), set(typed.__required_keys__)


def test_the_schema_declares_every_nested_key_the_committed_results_hold() -> None:
    """The TypedDicts of bench.results describe the real files: every key of every arm row, contrast, primary and
    summary entry (and their intervals) of every committed results.json is declared, and the required ones are
    there. A key the runner starts writing without declaring it fails here."""
    from ecgtransfer.bench.results import ArmRow, Bootstrap, Contrast, Primary, SummaryEntry

    seen = 0
    for path in BENCH:
        res = read_results(path)
        parts = [(ArmRow, a) for a in res.arms] + [(Contrast, c) for c in res.contrasts] + \
                [(Bootstrap, c["diff"]) for c in res.contrasts] + ([(Primary, res.primary)] if res.primary else [])
        parts += [(SummaryEntry, e) for per_enc in res.summary.values() for per_frac in per_enc.values()
                  for e in per_frac.values()]
        parts += [(Bootstrap, v) for _, e in parts if _ is SummaryEntry for v in e.values()
                  if isinstance(v, dict) and "mean" in v]
        for typed, obj in parts:
            keys, required = _declared(typed)
            assert set(obj) <= keys, (path.parent.name, typed.__name__, sorted(set(obj) - keys))
            assert required <= set(obj), (path.parent.name, typed.__name__, sorted(required - set(obj)))
            seen += 1
    assert seen > 100
