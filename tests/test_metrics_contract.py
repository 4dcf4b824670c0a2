"""metrics.json's decision, conclusions and gate are part of the results contract (docs/design.md, "The results contract"): the
records they are written from (``asdict`` of :class:`Decision`, :class:`Conclusions`, :class:`GateReport`'s rows,
:class:`Survival` and everything they hold)
are recorded per schema version in tests/data/metrics_contract.json, so a field added, removed, renamed or
reordered, or an enum value changed, fails here until ``SCHEMA_VERSION`` is bumped (with a line in its log) and
the record is rewritten: ``python tests/test_metrics_contract.py --write``."""
from __future__ import annotations

import dataclasses
import enum
import json
import sys
import typing
from pathlib import Path

import pytest

from reportgen.results.schema import SCHEMA_VERSION
from reportgen.scoring.decision import Decision
from reportgen.scoring.differ import Differences
from reportgen.scoring.gate import GateReport, GateRow
from reportgen.scoring.rules import Conclusions
from reportgen.scoring.survival import Survival

RECORDED = Path(__file__).parent / "data" / "metrics_contract.json"
ROOTS = (Decision, GateReport, GateRow, Conclusions, Survival, Differences)

pytestmark = pytest.mark.unit


def _name(kind) -> str:
    return kind.__qualname__  # not the module: moving a record between modules changes no byte on disk


def _types_in(hint) -> list:
    """The classes a type hint names (Optional[X], tuple[X, ...], dict[str, X], X | None ...)."""
    if isinstance(hint, type):
        return [hint]
    found = []
    for arg in typing.get_args(hint):
        found += _types_in(arg)
    return found


def _reach(kind, seen: dict) -> None:
    if _name(kind) in seen:
        return
    if isinstance(kind, type) and issubclass(kind, enum.Enum):
        seen[_name(kind)] = {"values": [member.value for member in kind]}
        return
    if not dataclasses.is_dataclass(kind):
        return
    seen[_name(kind)] = {"fields": [f.name for f in dataclasses.fields(kind)]}
    hints = typing.get_type_hints(kind)
    for f in dataclasses.fields(kind):
        for inner in _types_in(hints[f.name]):
            _reach(inner, seen)


def _reach_value(value, seen: dict) -> None:
    """Records held in fields whose type does not say so (a bare ``tuple``), found on a real decision."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        _reach(type(value), seen)
        for f in dataclasses.fields(value):
            _reach_value(getattr(value, f.name), seen)
    elif isinstance(value, enum.Enum):
        _reach(type(value), seen)
    elif isinstance(value, (tuple, list)):
        for item in value:
            _reach_value(item, seen)
    elif isinstance(value, dict):
        for item in value.values():
            _reach_value(item, seen)


def contract(decisions=()) -> dict:
    seen: dict = {}
    for root in ROOTS:
        _reach(root, seen)
    for decision in decisions:
        _reach_value(decision, seen)
    return dict(sorted(seen.items()))


def _sample_decisions() -> list:
    """Real conclusions and decisions whose every optional part is filled: a recommendation with its sensitivity and McNemar test, a
    degenerate candidate, constraints that fail, a criterion left out for one candidate."""
    from reportgen.inputs.config import DecisionSettings
    from test_decision import _run

    made = [_run({"big": (20.0, 0.9, 3.0, 40.0), "small": (3.0, 0.4, 1.2, 10.0), "mid": (8.0, 0.5, 1.5, 20.0)})[0],
            _run({"a": (5.0, 0.9, 2.0, 10.0), "b": (50.0, 0.0, 2.0, 10.0)},
                 DecisionSettings(max_params_m=10.0, max_latency_ms=10.0, min_top1=0.5),
                 mass_nan=(("a", "cluttered"),))[0]]
    from reportgen.results.schema import Interval, SlimmingScore
    from test_rules import _metrics, _rows, _spread_values, _index
    from reportgen.scoring.rules import conclude

    rows = _rows({"deeper": _spread_values(3.0, 0.2), "wider": _spread_values(1.5, 0.6),
                  "attention": _spread_values(2.0, 0.4)})
    ckas = {"deeper": 0.95, "wider": 0.3, "attention": 0.9}
    slim = SlimmingScore(status="done", unit="u", reason="", params_removed=1, macs_removed=1.0,
                         agreement=Interval(0.97, 0.93, 0.99, 40), top1_full=None, top1_slim=None, top1_change=None,
                         kl=None, deep_cam_spearman=None)
    made.append(conclude(_index(rows, families=tuple(ckas)), _metrics(rows, ckas, slimming={"deeper-net": slim})))
    return made


def changed_records(found: dict, recorded: dict) -> list:
    return sorted(set(found) ^ set(recorded) | {k for k in found.keys() & recorded.keys() if found[k] != recorded[k]})


def test_the_records_behind_metrics_json_match_the_contract_of_this_schema_version():
    recorded = json.loads(RECORDED.read_text())
    assert recorded["schema_version"] == SCHEMA_VERSION, (
        f"{RECORDED.name} records schema {recorded['schema_version']}, the code is at {SCHEMA_VERSION}: rewrite it "
        "with `python tests/test_metrics_contract.py --write`")
    changed = changed_records(contract(_sample_decisions()), recorded["records"])
    assert not changed, (
        f"the records written to metrics.json changed ({', '.join(changed)}) at schema {SCHEMA_VERSION}: bump "
        "SCHEMA_VERSION in reportgen/results/schema.py (with a line in its log), then rewrite the contract with "
        "`python tests/test_metrics_contract.py --write`")


def test_a_field_added_to_the_decision_breaks_the_contract(monkeypatch):
    recorded = json.loads(RECORDED.read_text())["records"]
    extended = dataclasses.make_dataclass("Decision", [("extra", int, dataclasses.field(default=0))],
                                          bases=(Decision,), frozen=True)
    monkeypatch.setattr(sys.modules[__name__], "ROOTS", (extended, *ROOTS[1:]))
    found = contract(_sample_decisions())
    assert found["Decision"]["fields"][-1] == "extra"
    assert changed_records(found, recorded) == ["Decision"]


if __name__ == "__main__" and sys.argv[1:] == ["--write"]:
    sys.path.insert(0, str(Path(__file__).parent))
    RECORDED.parent.mkdir(exist_ok=True)
    RECORDED.write_text(json.dumps({"schema_version": SCHEMA_VERSION, "records": contract(_sample_decisions())},
                                   indent=1) + "\n")
    print(f"wrote {RECORDED} (schema {SCHEMA_VERSION})")
