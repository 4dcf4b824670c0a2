"""``metrics.json``'s ``data``: the user's images checked before any candidate is judged on them (issue 34).

- **Exact duplicates**: the content sha256 the run index keeps for every image.
- **Near-duplicates**: cosine similarity of the pooled pre-logit features every candidate's CAM pass already keeps
  (``prelogits``; no pass of its own). A pair counts when its similarity, averaged over the candidates (those whose
  outputs are not degenerate: a broken checkpoint's features call every image alike), is at least
  ``near_duplicate_cosine``: the flags then depend on no one candidate (the recomputed decision leaves the flagged
  images out, so flags drawn from one candidate's view would favour it). The search is a blocked matrix product
  (:data:`BLOCK_ROWS` rows at a time, each row's ``near_duplicate_neighbours`` most similar images kept), never a
  loop over pairs: 10,000 images x 1,280 features take about a second (docs/performance.md).
- **Training and evaluation overlap** (leakage): byte copies (``RunIndex.train_copies``) and near-copies, the same
  search between the evaluation images and the ``--train-images`` features a probe candidate computed to fit on.
- **Likely label errors**: cleanlab's confident learning (Northcutt, Jiang & Chuang, JAIR 2021) on held-out
  probabilities only (:data:`HELD_OUT`): a linear probe's out-of-fold ones (or fit on --train-images), averaged over
  the probe candidates; an ImageNet head's on ImageNet's classes (held out for images outside ImageNet-1k's training
  set, as for the ImageNet validation labels Northcutt et al. checked); never an own head's, which may have been
  trained on these very images.
- **Class balance**: the labelled images per class and the widest interval an accuracy on that many images can have.

Pure: the index and the saved arrays in, a :class:`~reportgen.results.schema.DataCheck` out; nothing of the user's is
read or changed. cleanlab (with pandas and scikit-learn) is imported only when there are probabilities to check.
"""
from __future__ import annotations

import warnings
from typing import Callable, Optional

import numpy as np

from ..inputs.config import AnalysisConfig
from ..results import arrays as keys
from ..results.schema import (CheckName, ClassCount, DataCheck, DataCheckRun, Estimand, Flag, FlagReason,
                              RunIndex, RunStatus)
from .calibration import softmax
from .proportion import exact_interval

ArraysOf = Callable[[str], dict]
# Rows of the similarity matrix computed at a time: 1,024 x 10,000 float32 is 40 MB.
BLOCK_ROWS = 1024
# cleanlab's min_examples_per_class (its default): it never flags a class's last this many images, so a class of
# this many or fewer held-out labelled images is not checked at all (ImageNet-labelled runs with one image a class).
MIN_PER_CLASS = 1
# The classes named as the smallest in the balance table.
SMALLEST_SHOWN = 3
# Whose probabilities confident learning may read, by how the candidate is scored: (usable, why). One table.
HELD_OUT = {
    Estimand.LINEAR_PROBE: (True, "out-of-fold probabilities of the linear probe"),
    Estimand.IMAGENET_HEAD: (True, "the ImageNet head's probabilities, held out for images outside ImageNet-1k's "
                                   "training set"),
    Estimand.OWN_HEAD: (False, "an own head may have been trained on these images: its probabilities are not held "
                               "out"),
}


# --- the similarity search ----------------------------------------------------------------------------------------

def unit_rows(features: np.ndarray) -> np.ndarray:
    """L2-normalised rows (float32); an all-zero row stays zero (similar to nothing)."""
    x = np.asarray(features, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)


def similar_pairs(query: np.ndarray, threshold: float, neighbours: int,
                  reference: Optional[np.ndarray] = None) -> tuple[np.ndarray, np.ndarray]:
    """(query row, reference row) pairs whose cosine similarity is at least ``threshold``, among each query row's
    ``neighbours`` most similar reference rows (``reference`` None: the query rows themselves, an image never its own
    neighbour, each pair once with the lower row first). Rows must be unit length (:func:`unit_rows`). A blocked
    matrix product: memory grows with BLOCK_ROWS x reference rows, never with the pairs."""
    own = reference is None
    reference = query if own else reference
    n, m = query.shape[0], reference.shape[0]
    k = min(neighbours, m - 1 if own else m)
    if n == 0 or k <= 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    rows, cols = [], []
    for start in range(0, n, BLOCK_ROWS):
        sims = query[start:start + BLOCK_ROWS] @ reference.T
        if own:
            block = np.arange(sims.shape[0])
            sims[block, start + block] = -np.inf
        nearest = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        values = np.take_along_axis(sims, nearest, axis=1)
        hit_row, hit_col = np.nonzero(values >= threshold)
        rows.append(start + hit_row)
        cols.append(nearest[hit_row, hit_col])
    rows, cols = np.concatenate(rows).astype(np.int64), np.concatenate(cols).astype(np.int64)
    if own:
        rows, cols = np.minimum(rows, cols), np.maximum(rows, cols)
    pairs = np.unique(np.stack([rows, cols], axis=1), axis=0) if rows.size else np.zeros((0, 2), np.int64)
    return pairs[:, 0], pairs[:, 1]


def agreed_pairs(queries: list, threshold: float, neighbours: int,
                 references: Optional[list] = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The pairs whose similarity averaged over the feature spaces (one per candidate, unit rows) is at least
    ``threshold``: the union of each space's neighbour pairs (a pair whose mean reaches the threshold reaches it in
    at least one space), each pair's similarity then computed in every space and averaged. Returns (rows, cols,
    similarity), sorted by row then column."""
    found = [similar_pairs(q, threshold, neighbours, None if references is None else r)
             for q, r in zip(queries, references or [None] * len(queries))]
    rows = np.concatenate([f[0] for f in found]) if found else np.zeros(0, np.int64)
    cols = np.concatenate([f[1] for f in found]) if found else np.zeros(0, np.int64)
    if rows.size == 0:
        return rows, cols, np.zeros(0)
    pairs = np.unique(np.stack([rows, cols], axis=1), axis=0)
    rows, cols = pairs[:, 0], pairs[:, 1]
    sims = np.mean([np.einsum("ij,ij->i", q[rows].astype(np.float64),
                             (q if references is None else r)[cols].astype(np.float64))
                   for q, r in zip(queries, references or queries)], axis=0)
    keep = sims >= threshold
    return rows[keep], cols[keep], sims[keep]


def _groups(n: int, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """(n,) each item's group: the lowest member of its connected component over the pairs (scipy's graph
    components, not a union-find of our own)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    if n == 0:
        return np.zeros(0, dtype=int)
    graph = coo_matrix((np.ones(len(rows)), (np.asarray(rows), np.asarray(cols))), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    lowest = np.full(labels.max() + 1, n)
    np.minimum.at(lowest, labels, np.arange(n))
    return lowest[labels]


# --- the checks ---------------------------------------------------------------------------------------------------

def class_names(index: RunIndex) -> dict:
    """Class index -> name, for every class an image is labelled with (and, on the user's classes, every class): read
    from the index, since an ImageNet label space read back from saved results carries no names (scoring reruns on
    saved results without timm)."""
    names = {} if index.label_space.is_imagenet else dict(enumerate(index.label_space.names))
    for image in index.images:
        if image.class_index is not None:
            names.setdefault(image.class_index, image.class_name or str(image.class_index))
    return names


def _features(index: RunIndex, arrays_of: ArraysOf, key: str, rows: int, leave_out=frozenset()) -> dict:
    """Candidate name -> its unit feature rows under ``key`` (only candidates whose array has ``rows`` finite rows,
    none of ``leave_out``)."""
    out = {}
    for entry in index.backbones:
        if entry.name in leave_out:
            continue
        found = arrays_of(entry.name).get(key)
        if found is not None and found.ndim == 2 and found.shape[0] == rows and found.shape[0] and \
                np.all(np.isfinite(found)):
            out[entry.name] = unit_rows(found)
    return out


def exact_duplicates(index: RunIndex) -> list[Flag]:
    """Every image whose content sha256 an earlier image of the run has: flagged with that first one."""
    first: dict = {}
    flags = []
    for position, image in enumerate(index.images):
        if image.sha256 in first:
            other = first[image.sha256]
            flags.append(Flag(image=image.file, position=position, reason=FlagReason.EXACT_DUPLICATE,
                              other=index.images[other].file, other_position=other, similarity=1.0))
        else:
            first[image.sha256] = position
    return flags


def near_duplicates(index: RunIndex, features: dict, config: AnalysisConfig) -> list[Flag]:
    """Near-duplicate groups among the images (exact copies stand for their first copy): every member but the first
    by position flagged (so leaving out every flagged image keeps one of each group), each with the link that joined
    it: the member it is most similar to (the mean over the candidates, at least ``near_duplicate_cosine``; ties:
    the earlier one). Why not the first member: a group is joined through chains (a~b, b~c, a not ~ c), and c's
    similarity to a lies below the threshold, so it would show a number that does not say why c was flagged."""
    images = index.images
    first = {}
    for position, image in enumerate(images):
        first.setdefault(image.sha256, position)
    distinct = np.array(sorted(first.values()), dtype=np.int64)  # one row per content
    spaces = [x[distinct] for x in features.values()]
    rows, cols, sims = agreed_pairs(spaces, config.near_duplicate_cosine, config.near_duplicate_neighbours)
    group = distinct[_groups(distinct.size, rows, cols)]
    closest: dict = {}  # row -> (similarity, the other row): pairs come sorted, so the first of a tie stays
    for a, b, sim in zip(rows.tolist(), cols.tolist(), sims.tolist()):
        for mine, other in ((a, b), (b, a)):
            if mine not in closest or sim > closest[mine][0] or (sim == closest[mine][0] and other < closest[mine][1]):
                closest[mine] = (sim, other)
    flags = []
    for row, position in enumerate(distinct.tolist()):
        if int(group[row]) == position:  # the first of its group (or alone): kept
            continue
        similarity, other = closest[row]
        linked = int(distinct[other])
        flags.append(Flag(image=images[position].file, position=position, reason=FlagReason.NEAR_DUPLICATE,
                          other=images[linked].file, other_position=linked, similarity=round(similarity, 4)))
    return flags


def train_overlap(index: RunIndex, features: dict, train_features: dict, config: AnalysisConfig) -> list[Flag]:
    """Evaluation images that copy a --train-images image: byte for byte (the index's ``train_copies``), or nearly
    (the most similar training image at least ``near_duplicate_cosine`` similar, averaged over the candidates that
    kept the training features)."""
    copies = set(index.train_copies)
    flags = [Flag(image=image.file, position=position, reason=FlagReason.TRAIN_EVAL_COPY, similarity=1.0)
             for position, image in enumerate(index.images) if image.file in copies]
    names = [n for n in train_features if n in features]
    if not names:
        return flags
    rows, cols, sims = agreed_pairs([features[n] for n in names], config.near_duplicate_cosine,
                                    config.near_duplicate_neighbours, [train_features[n] for n in names])
    best: dict = {}
    for row, col, sim in zip(rows.tolist(), cols.tolist(), sims.tolist()):
        if index.images[row].file not in copies and (row not in best or sim > best[row][1]):
            best[row] = (col, sim)
    for row in sorted(best):
        col, sim = best[row]
        other = index.train_files[col] if col < len(index.train_files) else f"training image {col + 1}"
        flags.append(Flag(image=index.images[row].file, position=row, reason=FlagReason.TRAIN_EVAL_NEAR_COPY,
                          other=other, similarity=round(sim, 4)))
    return flags


def _degenerate(index: RunIndex, config: AnalysisConfig) -> set:
    """Candidates whose outputs collapse onto one class or whose heatmaps are broken (scoring/degenerate.py): their
    probabilities say nothing about the labels."""
    from .degenerate import assess

    out = set()
    for entry in index.backbones:
        deep = entry.depth_layers.get("deep")
        statuses = entry.cam_status.get(deep, ()) if deep else ()
        found = assess(entry.name, entry.display_name, entry.predictions, statuses, None, None, config.decision,
                       index.class_count())
        if found.flagged:
            out.add(entry.name)
    return out


def _not_out_of_fold(entry) -> str:
    """Why a probe candidate's saved probabilities are not out-of-fold ("" when they are): a probe that was not
    cross-validated (too few labelled images per class or distinct images for the folds, under two classes) keeps a
    note, and its scored outputs are then the explaining head's, fit on these very images. Its saved log-probabilities
    (log of at least 1e-30, analysis/probe.py) are finite either way, so only the note tells."""
    return entry.task.note if entry.estimand == Estimand.LINEAR_PROBE else ""  # a probe always has its task


def held_out_probabilities(index: RunIndex, arrays_of: ArraysOf, config: AnalysisConfig,
                           leaked: set) -> tuple[Optional[np.ndarray], np.ndarray, tuple, str, str]:
    """(probabilities (N, classes) averaged over the usable candidates, rows that are held out for all of them,
    the candidates, why none when there are none, the probes left out for want of out-of-fold probabilities and
    why). A probe's rows: its labelled images of the classes it was fit on (elsewhere its scored outputs are the
    explaining head's, which saw half of them); never a leaked image."""
    if index.untrained:
        return None, np.zeros(0, bool), (), "untrained weights: their probabilities say nothing about the labels", ""
    truth = np.array([i.class_index if i.class_index is not None else -1 for i in index.images])
    if not (truth >= 0).any():
        return None, np.zeros(0, bool), (), "the images have no labels: only the duplicate checks run", ""
    broken = _degenerate(index, config)
    usable = [e for e in index.backbones if HELD_OUT[e.estimand][0] and e.name not in broken]
    if index.own_task:  # the user's classes: only a probe's probabilities are its own out-of-fold ones
        usable = [e for e in usable if e.estimand == Estimand.LINEAR_PROBE]
    not_held = {e.name: _not_out_of_fold(e) for e in usable if _not_out_of_fold(e)}
    usable = [e for e in usable if e.name not in not_held]
    left_out = "; ".join(f"{name}: no out-of-fold probabilities ({why})" for name, why in sorted(not_held.items()))
    if not usable:
        reasons = sorted({HELD_OUT[e.estimand][1] for e in index.backbones if not HELD_OUT[e.estimand][0]})
        why = "; ".join(reasons + ([left_out] if left_out else [])) or \
            "no candidate scores the images through a held-out probe or the ImageNet head"
        if broken:
            why += f"; {', '.join(sorted(broken))}: degenerate outputs"
        return None, np.zeros(0, bool), (), f"no held-out probabilities ({why})", left_out
    rows = (truth >= 0) & np.array([image.file not in leaked for image in index.images])
    probs = []
    for entry in usable:
        logits = arrays_of(entry.name).get(keys.LOGITS)
        if logits is None or logits.shape[0] != len(index.images):
            return None, np.zeros(0, bool), (), f"{entry.name}: no saved probabilities", left_out
        probs.append(softmax(np.nan_to_num(logits.astype(np.float64), nan=-np.inf, neginf=-1e30)))
        if entry.estimand == Estimand.LINEAR_PROBE:
            rows &= np.isin(truth, entry.task.classes_used)
    return np.mean(probs, axis=0), rows, tuple(e.name for e in usable), "", left_out


def label_issues(index: RunIndex, arrays_of: ArraysOf, config: AnalysisConfig,
                 leaked: set) -> tuple[list[Flag], DataCheckRun, tuple, int]:
    """cleanlab's ``find_label_issues`` (prune by noise rate, ranked by self-confidence) on the held-out
    probabilities, over the classes the scored images are labelled with (each row renormalised over them): the flags
    ranked likeliest first, with the given and the suggested class; and how many of the checked images sit in
    classes too small for cleanlab to flag (at most :data:`MIN_PER_CLASS` images: it never flags a class's last
    ones), which the basis says, so that "0 flagged" is never claimed over images that could not be flagged."""
    probs, rows, used, why, left_out = held_out_probabilities(index, arrays_of, config, leaked)
    if probs is None:
        return [], DataCheckRun(CheckName.LABEL_ISSUES, RunStatus.SKIPPED, why), (), 0
    truth = np.array([i.class_index if i.class_index is not None else -1 for i in index.images])
    positions = np.flatnonzero(rows)
    classes, counts = np.unique(truth[positions], return_counts=True)
    if classes.size < 2:
        return [], DataCheckRun(CheckName.LABEL_ISSUES, RunStatus.SKIPPED,
                                "fewer than two classes among the held-out labelled images"), used, 0
    small = counts <= MIN_PER_CLASS
    alone = int(counts[small].sum())
    if small.all():
        return [], DataCheckRun(CheckName.LABEL_ISSUES, RunStatus.SKIPPED,
                                f"each of the {classes.size} classes has one held-out labelled image: confident "
                                "learning never flags the only image of a class"), used, alone
    sub = probs[np.ix_(positions, classes)]
    sums = sub.sum(axis=1, keepdims=True)
    sub = np.divide(sub, sums, out=np.full_like(sub, 1.0 / classes.size), where=sums > 0)
    given = np.searchsorted(classes, truth[positions])
    from cleanlab.filter import find_label_issues  # pandas and scikit-learn: only here
    from cleanlab.rank import get_label_quality_scores

    with warnings.catch_warnings():  # "May not flag all label issues in class k": counted and said below
        warnings.simplefilter("ignore", UserWarning)
        ranked = find_label_issues(given, sub, filter_by="prune_by_noise_rate",
                                   return_indices_ranked_by="self_confidence", min_examples_per_class=MIN_PER_CLASS,
                                   n_jobs=1)
    quality = get_label_quality_scores(given, sub, method="self_confidence")
    name = class_names(index).__getitem__
    flags = [Flag(image=index.images[int(positions[r])].file, position=int(positions[r]), reason=FlagReason.LABEL_ISSUE,
                  given=name(int(classes[given[r]])), suggested=name(int(classes[int(np.argmax(sub[r]))])),
                  score=round(float(quality[r]), 4), rank=rank)
             for rank, r in enumerate(ranked.tolist(), start=1)]
    held = ", ".join(used)
    kinds = sorted({HELD_OUT[index.backbone(n).estimand][1] for n in used})
    basis = (f"{'; '.join(kinds)} ({held}{', averaged' if len(used) > 1 else ''}) on {positions.size} labelled images "
             f"of {classes.size} classes")
    if alone:
        one = alone == 1
        basis += (f"; {alone} of them {'is' if one else 'are'} the only image of {'its' if one else 'their'} class "
                  f"({int(small.sum())} class{'' if one else 'es'}) and {'was' if one else 'were'} not checked "
                  "(confident learning never flags a class's only image)")
    if left_out:
        basis += f"; left out: {left_out}"
    return flags, DataCheckRun(CheckName.LABEL_ISSUES, RunStatus.DONE, basis, len(flags)), used, alone


def widest_half_width(images: int, level: float) -> Optional[float]:
    """Half the width of the exact binomial interval of a share measured on ``images`` images at half right: the
    widest any accuracy on that many images can have."""
    low, high = exact_interval(images // 2, images, level)
    return None if low is None else round((high - low) / 2, 4)


def class_balance(index: RunIndex, config: AnalysisConfig) -> tuple[tuple[ClassCount, ...], Optional[float]]:
    """Labelled images per class (the user's classes: every class, an empty one too; ImageNet's: those present),
    the smallest marked, and the largest count over the smallest."""
    truth = [i.class_index for i in index.images if i.class_index is not None]
    if not truth:
        return (), None
    counts = np.bincount(truth, minlength=index.class_count())
    present = range(index.class_count()) if index.own_task else np.flatnonzero(counts).tolist()
    ordered = sorted(present, key=lambda c: (counts[c], c))
    smallest = set(ordered[:SMALLEST_SHOWN]) if len(ordered) > SMALLEST_SHOWN else set()
    names = class_names(index)
    rows = tuple(ClassCount(index=int(c), name=names[int(c)], images=int(counts[c]),
                            share=round(float(counts[c]) / len(truth), 4),
                            half_width=widest_half_width(int(counts[c]), config.decision.confidence),
                            smallest=c in smallest) for c in present)
    filled = [r.images for r in rows if r.images]
    return rows, (round(max(filled) / min(filled), 3) if len(filled) >= 2 else None)


def check_data(index: RunIndex, arrays_of: ArraysOf, config: AnalysisConfig) -> DataCheck:
    """Every check of the data: the flagged images (one flag per image and reason), each check's basis or the reason
    it did not run, and the class counts."""
    n = len(index.images)
    broken = _degenerate(index, config)
    features = _features(index, arrays_of, keys.PRELOGITS, n, broken)
    flags = exact_duplicates(index)
    checks = [DataCheckRun(CheckName.EXACT_DUPLICATES, RunStatus.DONE, f"content sha256 of {n} images", len(flags))]
    if index.untrained:
        skipped = "untrained weights: their features do not say which images look alike"
    elif not features:
        skipped = "no candidate's pooled features are saved (results of an older reportgen: run again)"
    else:
        skipped = ""
    if skipped:
        checks.append(DataCheckRun(CheckName.NEAR_DUPLICATES, RunStatus.SKIPPED, skipped))
    else:
        near = near_duplicates(index, features, config)
        flags += near
        checks.append(DataCheckRun(CheckName.NEAR_DUPLICATES, RunStatus.DONE,
                                   f"cosine similarity of the pooled features, averaged over {', '.join(features)}: "
                                   f"at least {config.near_duplicate_cosine:g}", len(near)))
    if index.train_files or index.train_copies:
        train = {} if skipped else _features(index, arrays_of, keys.TRAIN_PRELOGITS, len(index.train_files), broken)
        overlap = train_overlap(index, features if not skipped else {}, train, config)
        flags += overlap
        basis = (f"content sha256 and the pooled features of {len(index.train_files)} training images "
                 f"({', '.join(n for n in train if n in features)})" if train else
                 "content sha256 (no candidate kept the training images' features: near-copies not searched)")
        checks.append(DataCheckRun(CheckName.TRAIN_EVAL, RunStatus.DONE, basis, len(overlap)))
    else:
        checks.append(DataCheckRun(CheckName.TRAIN_EVAL, RunStatus.SKIPPED, "no --train-images"))
    leaked = {f.image for f in flags if f.reason in (FlagReason.TRAIN_EVAL_COPY, FlagReason.TRAIN_EVAL_NEAR_COPY)}
    issues, run, used, alone = label_issues(index, arrays_of, config, leaked)
    flags += issues
    checks.append(run)
    classes, imbalance = class_balance(index, config)
    checks.append(DataCheckRun(CheckName.CLASS_BALANCE, RunStatus.DONE if classes else RunStatus.SKIPPED,
                               f"{len(classes)} classes" if classes else "the images have no labels",
                               sum(c.smallest for c in classes)))
    order = list(FlagReason)
    flags.sort(key=lambda f: (order.index(f.reason), f.rank, f.position))
    return DataCheck(images=n, labelled=sum(i.class_index is not None for i in index.images), checks=tuple(checks),
                     flags=tuple(flags), classes=classes, near_threshold=config.near_duplicate_cosine,
                     features_from=tuple(features) if not skipped else (), probabilities_from=used,
                     imbalance=imbalance, alone_in_class=alone)
