"""Rendering never crashes on a value a measurement can leave empty (issue 27).

Systematic, not case by case: the interval-bearing fields are found by walking the metrics schema's types (a field
added later is covered without touching this file); each is blanked for one candidate of a real run, and every
format is rendered from the changed results. Every variant must render and say "not measured" where the value was.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import re
import shutil
import typing
from pathlib import Path

import pytest

from reportgen.results import schema
from reportgen.results.schema import Aggregate, Interval, Metrics, TaskReport

FORMATS = ("html", "pdf", "md", "json")
# Per blanked field: the PDF is WeasyPrint's layout of the very HTML string checked here, so it is rendered (and
# checked) where every field is blank at once and for the broken checkpoint (tests/test_degenerate.py), not 19 times.
EACH_FORMATS = ("html", "md", "json")
MISSING = "not measured"
# Per blanked field the text is checked, not the pictures: the figures are built (every plotting call runs on the
# blanked value) but not drawn into pixels, which is most of a render's time. Every figure is drawn where every field
# is blank at once (test_every_kind_blank_at_once_still_renders) and in every other rendering test.
# The heatmap grids and the last-three-layers figures are not even built per field: they are drawn from the saved
# arrays and the image index alone (their arguments hold no metrics field), so a blanked metrics.json cannot reach them.
ONE_PIXEL_PNG = (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x02\x00\x00\x00\x90wS"
                 b"\xde\x00\x00\x00\x0cIDATx\x9cc\xf8\xff\xff?\x00\x05\xfe\x02\xfe\xa75\x81\x84\x00\x00\x00\x00IEND"
                 b"\xaeB`\x82")
FROM_ARRAYS_ONLY = {"object_grid": [ONE_PIXEL_PNG], "depth_grid": [ONE_PIXEL_PNG], "last_three_figure": ONE_PIXEL_PNG}


def _record_types(kind, found: set) -> set:
    """Every JsonRecord type reachable from ``kind`` through field types (containers and Optional unwrapped)."""
    origin = typing.get_origin(kind)
    if origin is not None:
        for arg in typing.get_args(kind):
            if arg is not Ellipsis:
                _record_types(arg, found)
        return found
    if isinstance(kind, type) and dataclasses.is_dataclass(kind) and kind not in found:
        found.add(kind)
        for name, hint in typing.get_type_hints(kind).items():
            _record_types(hint, found)
    return found


def _holds_interval(hint) -> bool:
    return hint is Interval or Interval in typing.get_args(hint)


def interval_fields() -> list[tuple[type, str]]:
    """(record type, field) for every interval-bearing field of the metrics schema; an Aggregate row is an interval
    itself (its mean and bounds)."""
    fields = []
    for kind in sorted(_record_types(Metrics, set()), key=lambda k: k.__name__):
        if kind is Interval:
            continue
        if kind is Aggregate:
            fields.append((Aggregate, "mean"))
            continue
        for name, hint in typing.get_type_hints(kind).items():
            if _holds_interval(hint):
                fields.append((kind, name))
    return fields


def _blank_interval(value, how: str):
    if value is None:
        return None
    if isinstance(value, tuple):  # per class
        return tuple(_blank_interval(v, how) for v in value)
    gone = None if how == "none" else math.nan
    return dataclasses.replace(value, mean=gone, ci_low=gone, ci_high=gone)


def blank(node, kind: type, name: str, candidate: str, how: str, owner=None):
    """``node`` with ``kind.name`` blanked wherever it belongs to ``candidate`` (the dict key or the row's
    backbone names the owner)."""
    if isinstance(node, dict):
        return {key: blank(value, kind, name, candidate, how, key if key == candidate else owner)
                for key, value in node.items()}
    if isinstance(node, (list, tuple)):
        return type(node)(blank(value, kind, name, candidate, how, owner) for value in node)
    if not dataclasses.is_dataclass(node):
        return node
    row_owner = getattr(node, "backbone", None) or (node.name if isinstance(node, Aggregate) and node.scope == "backbone"
                                                    else None)
    owner = row_owner or owner
    changes = {f.name: blank(getattr(node, f.name), kind, name, candidate, how, owner)
               for f in dataclasses.fields(node) if f.name != name or not isinstance(node, kind)}
    if isinstance(node, kind) and owner == candidate:
        if kind is Aggregate:
            changes.update(mean=None if how == "none" else math.nan, ci_low=None, ci_high=None)
        else:
            changes[name] = _blank_interval(getattr(node, name), how)
    return dataclasses.replace(node, **changes)


def test_the_schema_walk_finds_every_kind_of_interval():
    """The walk is what makes the render test systematic: it must see the fields the report shows."""
    found = {(kind.__name__, name) for kind, name in interval_fields()}
    assert {("Aggregate", "mean"), ("SanityStepScore", "spearman"), ("SlimmingScore", "agreement"),
            ("CalibrationScore", "ece"), ("CorruptionScore", "retention"), ("CorruptionCell", "value"),
            ("RoadScore", "gap"), ("FaithfulnessScore", "over_random"), ("TaskScore", "accuracy"),
            ("TaskScore", "per_class_recall"), ("TaskScore", "knn_accuracy"), ("LabelOrder", "gain")} <= found


def _metrics_of(results: Path) -> Metrics:
    return Metrics.from_json(json.loads((results / "metrics.json").read_text(encoding="utf-8")))


EMBEDDED = re.compile(r"data:[^\"')]+")

# Stored for metrics.json and per_image.csv, shown nowhere in the report itself: their difference (the ROAD gap) is.
NOT_SHOWN = {("RoadScore", "morf"), ("RoadScore", "lerf")}


def _render(results: Path, out: Path, formats=FORMATS, rasterise: bool = True) -> dict:
    """The formats rendered from ``results``; the text of the HTML (embedded figures left out) and Markdown.
    ``rasterise=False``: every figure is built but saved as one pixel, never drawn (see ONE_PIXEL_PNG)."""
    from unittest import mock

    import matplotlib.pyplot as plt
    from matplotlib.figure import Figure

    from reportgen.report import figures
    from reportgen.report.render import render_report

    def built_not_drawn(fig, tight: bool = True) -> bytes:
        plt.close(fig)
        return ONE_PIXEL_PNG

    with contextlib.ExitStack() as patches:
        if not rasterise:  # nothing is drawn, so nothing needs laying out
            patches.enter_context(mock.patch.object(figures, "_png", built_not_drawn))
            patches.enter_context(mock.patch.object(Figure, "tight_layout", lambda self, *args, **kwargs: None))
            for name, stub in FROM_ARRAYS_ONLY.items():
                patches.enter_context(mock.patch.object(figures, name, lambda *args, stub=stub, **kwargs: stub))
        written = render_report(results, out, formats=formats)
    assert set(formats) <= set(written)
    if "pdf" in formats:
        assert (out / "report.pdf").read_bytes().startswith(b"%PDF")
    json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    return {fmt: EMBEDDED.sub("", (out / f"report.{fmt}").read_text(encoding="utf-8")) for fmt in ("html", "md")}


@pytest.fixture(scope="module")
def baseline_render(lite_report, tmp_path_factory):
    out = tmp_path_factory.mktemp("baseline")
    shutil.copytree(lite_report / "results", out / "results")
    return _render(out / "results", out / "report", EACH_FORMATS, rasterise=False)


KINDS = interval_fields()
# Fields only a run on the user's own classes holds (issue 25): blanked in that run.
TASK_KINDS = _record_types(TaskReport, set())


def _run_for(kind, request) -> Path:
    return request.getfixturevalue("own_task_run" if kind in TASK_KINDS else "lite_report")


@pytest.fixture(scope="module")
def own_task_baseline_render(own_task_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("own-baseline")
    shutil.copytree(own_task_run / "results", out / "results")
    return _render(out / "results", out / "report", EACH_FORMATS, rasterise=False)


# Every other field here, the rest in test_missing_values_rest.py: pytest-xdist (--dist loadfile) gives each file to
# one worker, and these renders are the heaviest file of the suite.
HALF = range(0, len(KINDS), 2)


@pytest.mark.parametrize("position", HALF, ids=[f"{KINDS[p][0].__name__}.{KINDS[p][1]}" for p in HALF])
def test_a_blank_interval_renders_every_format_and_says_not_measured(position, request, tmp_path):
    check_a_blank_interval(position, _run_for(KINDS[position][0], request), request, tmp_path)


def check_a_blank_interval(position, run: Path, request, tmp_path):
    """Blank field ``position`` of KINDS for one candidate of ``run`` and render every format."""
    kind, name = KINDS[position]
    results = tmp_path / "results"
    shutil.copytree(run / "results", results)
    baseline_render = request.getfixturevalue("own_task_baseline_render" if kind in TASK_KINDS else "baseline_render")
    metrics = _metrics_of(results)
    names = sorted(metrics.calibration or {r.backbone for r in metrics.per_image})
    how = "none" if position % 2 == 0 else "nan"
    # Alternate candidates; a field only some candidates hold (a probe's k-NN, a head's label order) takes the first
    # that holds it.
    order = names[position % 2:] + names[:position % 2]
    if kind is schema.LabelOrder:
        # Only a flagged head's label order is shown (as a warning): blank the flagged one's.
        flagged = {name for name, score in (metrics.task.scores if metrics.task else {}).items()
                   if score.label_order is not None and score.label_order.flagged}
        order = [c for c in order if c in flagged] + [c for c in order if c not in flagged]
    candidate = next((c for c in order if blank(metrics, kind, name, c, how) != metrics), order[0])
    changed = blank(metrics, kind, name, candidate, how)
    assert changed != metrics, f"{kind.__name__}.{name} of {candidate} is not in this run"
    (results / "metrics.json").write_text(json.dumps(changed.to_json()), encoding="utf-8")
    texts = _render(results, tmp_path / "report", EACH_FORMATS, rasterise=False)
    assert "n/a" not in texts["html"] and "n/a" not in texts["md"]  # the old placeholder said nothing of why
    if (kind.__name__, name) in NOT_SHOWN:
        assert texts["html"] == baseline_render["html"]
        return
    assert texts["html"].count(MISSING) > baseline_render["html"].count(MISSING), (
        f"html: blanking {kind.__name__}.{name} of {candidate} left no '{MISSING}' behind")


@pytest.mark.parametrize("run", ["lite_report", "own_task_run"])
def test_every_kind_blank_at_once_still_renders(run, request, tmp_path):
    results = tmp_path / "results"
    shutil.copytree(request.getfixturevalue(run) / "results", results)
    metrics = _metrics_of(results)
    for candidate in sorted(metrics.calibration):
        for kind, name in KINDS:
            metrics = blank(metrics, kind, name, candidate, "nan")
    (results / "metrics.json").write_text(json.dumps(metrics.to_json()), encoding="utf-8")
    texts = _render(results, tmp_path / "report")
    assert MISSING in texts["html"] and MISSING in texts["md"]
