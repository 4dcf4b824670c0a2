"""Two saved runs side by side (e.g. two backbone candidates, two image sets): the differences in the
numbers behind the report. Torch-free; returns data, the template phrases it."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from .rules import conclude
from .scoring import aggregate_lookup
from .store import SavedResults

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


@dataclass(frozen=True)
class Comparison:
    runs: tuple  # (label A, label B)
    summaries: tuple  # per run: dict of facts
    backbones: tuple  # (name, display, in_a, in_b, pairs)
    families: tuple  # (family, group, pairs)
    claims: tuple  # (key, sentence, verdict A, verdict B)


def _value(lookup, *key):
    row = lookup(*key)
    return (row["mean"], row["n"]) if row and row["mean"] is not None else (None, 0)


def _summary(label: str, results: SavedResults) -> dict:
    index = results.index
    return {"label": label, "image_set": index["image_set"], "weights_mode": index["weights_mode"],
            "backbones": [b["display_name"] for b in index["backbones"]], "seed": index["seed"],
            "reportgen": index["versions"]["reportgen"], "cam_method": index["config"]["cam_method"]}


def compare_runs(a: SavedResults, b: SavedResults, labels=("A", "B")) -> Comparison:
    rows_a, rows_b = aggregate_lookup(a.metrics["aggregates"]), aggregate_lookup(b.metrics["aggregates"])
    entries_a = {e["name"]: e for e in a.index["backbones"]}
    entries_b = {e["name"]: e for e in b.index["backbones"]}
    names = list(entries_a) + [n for n in entries_b if n not in entries_a]
    backbones = []
    for name in names:
        pairs = []
        for metric in ("mass_ratio", "spread", "pointing_hit"):
            key = ("backbone", name, "deep", "all", metric)
            (va, na), (vb, nb) = _value(rows_a, *key), _value(rows_b, *key)
            pairs.append(Pair(f"deep {metric}", va, vb, na, nb))
        top1 = []
        for entries in (entries_a, entries_b):
            entry = entries.get(name)
            labelled = [p for p in entry["predictions"] if p["correct_top1"] is not None] if entry else []
            top1.append(sum(p["correct_top1"] for p in labelled) / len(labelled) if labelled else None)
        pairs.append(Pair("top-1 accuracy (labelled images)", top1[0], top1[1]))
        cka = []
        for results, entries in ((a, entries_a), (b, entries_b)):
            summary = results.metrics["last_three"].get(name) if name in entries else None
            cka.append(summary["cka"][0][1] if summary else None)
        pairs.append(Pair("CKA(layer before penultimate, penultimate)", cka[0], cka[1]))
        display = (entries_a.get(name) or entries_b.get(name))["display_name"]
        backbones.append((name, display, name in entries_a, name in entries_b, tuple(pairs)))
    families = []
    for family in ("deeper", "wider", "attention"):
        for group in GROUPS:
            key = ("family", family, "deep", group, "mass_ratio")
            (va, na), (vb, nb) = _value(rows_a, *key), _value(rows_b, *key)
            if va is None and vb is None:
                continue
            families.append((family, group, Pair("deep mass_ratio", va, vb, na, nb)))
    verdicts_a = {c.key: c for c in conclude(a.index, a.metrics).claims}
    verdicts_b = {c.key: c for c in conclude(b.index, b.metrics).claims}
    claims = tuple((key, verdicts_a[key].sentence, verdicts_a[key].verdict, verdicts_b[key].verdict)
                   for key in verdicts_a)
    return Comparison(tuple(labels), (_summary(labels[0], a), _summary(labels[1], b)), tuple(backbones),
                      tuple(families), claims)
