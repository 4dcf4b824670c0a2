"""Two saved runs side by side (e.g. two backbone candidates, two image sets): the differences in the
numbers behind the report. Torch-free; returns data, the template phrases it."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from ..inputs.registry import FAMILIES
from ..results.schema import AggregateLookup
from ..results.store import SavedResults
from ..scoring.criteria import criterion
from ..scoring.decision import decide
from ..scoring.differ import aligned_runs
from .differ_section import PicksBlock, picks_block
from ..scoring.rules import Verdict, conclude

GROUPS = ("all", "size=small", "size=medium", "size=large", "background=clean", "background=cluttered")


@dataclass(frozen=True)
class Pair:
    label: str  # what is compared
    a: Optional[float]
    b: Optional[float]
    n_a: int = 0
    n_b: int = 0

    @property
    def difference(self) -> Optional[float]:
        return None if self.a is None or self.b is None else self.b - self.a


@dataclass(frozen=True, kw_only=True)
class RunSummary:
    label: str
    image_set: object  # ImageSetInfo
    weights_mode: str
    backbones: tuple
    seed: int
    reportgen: str
    cam_method: str
    classes: str = "ImageNet-1k"  # the run's label space: ImageNet-1k or "your 3 classes (…), from …"


@dataclass(frozen=True)
class BackbonePairs:
    name: str
    display_name: str
    in_a: bool
    in_b: bool
    pairs: tuple  # Pair


@dataclass(frozen=True)
class FamilyPair:
    family: str
    group: str
    pair: Pair


@dataclass(frozen=True)
class ClaimPair:
    key: str
    sentence: str
    verdict_a: Verdict
    verdict_b: Verdict


@dataclass(frozen=True, kw_only=True)
class Comparison:
    runs: tuple  # (label A, label B)
    summaries: tuple  # RunSummary per run
    backbones: tuple  # BackbonePairs
    families: tuple  # FamilyPair
    claims: tuple  # ClaimPair
    decisions: tuple  # Decision per run
    picks: Optional[PicksBlock] = None  # the two runs' picks image by image (issue 33)

    @property
    def any_untrained(self) -> bool:
        return any(s.weights_mode == "random" for s in self.summaries)


def _value(lookup: AggregateLookup, *key):
    row = lookup(*key)
    return (row.mean, row.n) if row and row.mean is not None else (None, 0)


def _summary(label: str, results: SavedResults) -> RunSummary:
    index = results.index
    space = index.label_space
    classes = space.described() + ("" if space.is_imagenet else f", from {space.source}")
    return RunSummary(label=label, image_set=index.image_set, weights_mode=index.weights_mode,
                      backbones=tuple(b.display_name for b in index.backbones), seed=index.seed,
                      reportgen=index.versions["reportgen"], cam_method=index.config.cam_method, classes=classes)


def _task(results: SavedResults, name: str, what: str) -> Optional[float]:
    """A backbone's number on the user's classes (None on ImageNet's, or when not measured)."""
    task = results.metrics.task
    score = task.scores.get(name) if task is not None else None
    if score is None:
        return None
    if what == "logme":
        return score.logme
    found = getattr(score, what)
    return found.mean if found is not None else None


def _top1(results: SavedResults, name: str) -> Optional[float]:
    entry = next((b for b in results.index.backbones if b.name == name), None)
    labelled = entry.labelled_predictions if entry else ()
    return sum(p.correct_top1 for p in labelled) / len(labelled) if labelled else None


def _cka(results: SavedResults, name: str) -> Optional[float]:
    summary = results.metrics.last_three.get(name)
    return summary.cka[0][1] if summary else None


def _beyond(results: SavedResults, name: str, topic: str) -> Optional[float]:
    """Section 3.4's headline number of a backbone: ECE, corruption retention or the CAM's ROAD gap."""
    found = getattr(results.metrics, topic).get(name)
    if found is None or found.status != "done":
        return None
    if topic == "calibration":
        return found.ece.mean if found.ece else None
    if topic == "corruption":
        return found.retention.mean if found.retention else None
    gap = next((m.gap for m in found.maps if m.map == "cam"), None)
    return gap.mean if gap else None


def compare_runs(a: SavedResults, b: SavedResults, labels=("A", "B")) -> Comparison:
    rows_a, rows_b = AggregateLookup(a.metrics.aggregates), AggregateLookup(b.metrics.aggregates)
    names_a = [e.name for e in a.index.backbones]
    names_b = [e.name for e in b.index.backbones]
    display = {e.name: e.display_name for e in b.index.backbones + a.index.backbones}
    backbones = []
    for name in names_a + [n for n in names_b if n not in names_a]:
        pairs = []
        for metric in ("mass_ratio", "spread", "pointing_hit"):
            key = ("backbone", name, "deep", "all", metric)
            (va, na), (vb, nb) = _value(rows_a, *key), _value(rows_b, *key)
            pairs.append(Pair(f"deep {metric}", va, vb, na, nb))
        accuracy = criterion("accuracy")  # the criteria's words, from the decision's table
        pairs.append(Pair(f"{accuracy.label} (labelled images)", _top1(a, name), _top1(b, name)))
        if a.metrics.task is not None or b.metrics.task is not None:  # the user's classes in either run
            estimands = {r.metrics.task.scores[name].estimand for r in (a, b)
                         if r.metrics.task is not None and name in r.metrics.task.scores}
            pairs.append(Pair(f"{accuracy.label_for(True)} ({' / '.join(sorted(map(str, estimands)))})",
                              _task(a, name, "accuracy"), _task(b, name, "accuracy")))
            pairs.append(Pair("task macro-F1", _task(a, name, "macro_f1"), _task(b, name, "macro_f1")))
            pairs.append(Pair("k-NN accuracy (frozen features)", _task(a, name, "knn_accuracy"),
                              _task(b, name, "knn_accuracy")))
            pairs.append(Pair("LogME", _task(a, name, "logme"), _task(b, name, "logme")))
        pairs.append(Pair("CKA(layer before penultimate, penultimate)", _cka(a, name), _cka(b, name)))
        pairs.append(Pair(f"ECE ({criterion('calibration').label})",
                          *(_beyond(r, name, "calibration") for r in (a, b))))
        pairs.append(Pair(f"share of top-1 kept under {criterion('corruption').label}",
                          *(_beyond(r, name, "corruption") for r in (a, b))))
        pairs.append(Pair("ROAD gap of the deep-layer CAM", *(_beyond(r, name, "faithfulness") for r in (a, b))))
        backbones.append(BackbonePairs(name, display[name], name in names_a, name in names_b, tuple(pairs)))
    families = []
    for family in FAMILIES:
        for group in GROUPS:
            key = ("family", family, "deep", group, "mass_ratio")
            (va, na), (vb, nb) = _value(rows_a, *key), _value(rows_b, *key)
            if va is not None or vb is not None:
                families.append(FamilyPair(family, group, Pair("deep mass_ratio", va, vb, na, nb)))
    verdicts_a = {c.key: c for c in conclude(a.index, a.metrics).claims}
    verdicts_b = {c.key: c for c in conclude(b.index, b.metrics).claims}
    claims = tuple(ClaimPair(key, verdicts_a[key].sentence, verdicts_a[key].verdict, verdicts_b[key].verdict)
                   for key in verdicts_a)
    decisions = (decide(a.index, a.metrics, a.cost, arrays_of=a.arrays),
                 decide(b.index, b.metrics, b.cost, arrays_of=b.arrays))
    return Comparison(runs=tuple(labels), summaries=(_summary(labels[0], a), _summary(labels[1], b)),
                      backbones=tuple(backbones), families=tuple(families), claims=claims, decisions=decisions,
                      picks=_picks(a, b, decisions, labels))


def _pick(decision) -> Optional[str]:
    """A run's pick: the recommended candidate, else the leader, else the least violating."""
    return decision.recommended or decision.leader or decision.least_violating


def _picks(a: SavedResults, b: SavedResults, decisions: tuple, labels) -> PicksBlock:
    """Run A's pick against run B's on the images both runs hold (matched by content)."""
    config = a.index.config
    picks = [_pick(d) for d in decisions]
    pair = aligned_runs(a.index, b.index, *picks, errors_shown=0) if all(picks) else None
    why = ("" if pair is not None else "The two runs' picks are not compared image by image: "
           + ("a run has no candidate to pick." if not all(picks) else "the runs share no image (by content)."))
    return picks_block(pair, tuple(labels), config.differ_pdf_images, config.differ_html_images, why)
