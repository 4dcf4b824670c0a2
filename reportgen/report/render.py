"""Saved results -> HTML (Jinja2, autoescaped, images embedded) and PDF (WeasyPrint with a fetcher that
reads only files under the output folder). No torch import anywhere on this path."""
from __future__ import annotations

import html
import json
import os
import re
import time
from dataclasses import asdict
from functools import lru_cache
from importlib import resources
from pathlib import Path
from urllib.parse import unquote, urlparse

import jinja2

from ..errors import OutputError
from ..results.csv_files import FLAGGED_CSV, write_csv, write_flagged_csv
from ..results.store import SavedResults, atomic_write_bytes, load_results, plain, remove_stale_temp_files
from . import formatting
from .context import build_context
from .differ_section import DIFFERENCES_COLUMNS, DIFFERENCES_CSV, differences_table
from .formats import REPORT_FORMATS, parse_formats  # noqa: F401 (both re-exported: older imports)
from .scale import PER_IMAGE_COLUMNS, beyond_columns, beyond_values, per_image_table


# One environment per process: Jinja keeps each template compiled in its environment (and recompiles one whose file
# changed), and compiling the report's templates takes longer than rendering them.
@lru_cache(maxsize=None)
def template_environment() -> jinja2.Environment:
    folder = resources.files("reportgen.templates")
    # autoescape=True escapes every template whatever its file extension.
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(folder)), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["num"] = formatting.num
    env.filters["pct"] = formatting.pct
    env.filters["whole_pct"] = formatting.whole_pct
    env.filters["ci"] = formatting.ci
    env.filters["points"] = formatting.points
    env.filters["pct_ci"] = lambda value, low=None, high=None: formatting.pct_interval(value, low, high)
    return env


class Raw(str):
    """A string the Markdown environment emits as is (only for names we generated and checked)."""


_MD_SPECIALS = re.compile(r"([\\`*_{}\[\]()#!|~])")
_SAFE_PATH = re.compile(r"^[A-Za-z0-9_./-]+$")


def _md_escape(value):
    """Every value a Markdown template prints: HTML-escaped (GitHub renders inline HTML) and with Markdown
    punctuation backslash-escaped, on one line, so a file or model name cannot make links or markup."""
    if isinstance(value, Raw) or value is None or isinstance(value, (int, float)):
        return "" if value is None else value
    # The apostrophe stays as it is: its entity "&#x27;" would have its "#" escaped below and show as text.
    text = html.escape(str(value), quote=False).replace('"', "&quot;").replace("\r", " ").replace("\n", " ")
    return _MD_SPECIALS.sub(r"\\\1", text)


def _md_sentence(parts) -> Raw:
    """A sentence of the report context in Markdown: each part escaped, emphasis as **bold** (links dropped: the
    Markdown report has no anchors)."""
    out = []
    for part in parts:
        escaped = _md_escape(part.text)
        out.append(f"**{escaped}**" if (part.strong or part.flag) and escaped.strip() else escaped)
    return Raw("".join(out))


@lru_cache(maxsize=None)
def markdown_environment() -> jinja2.Environment:
    env = template_environment()
    env = env.overlay(autoescape=False, finalize=_md_escape)
    env.filters["sentence"] = _md_sentence
    env.filters["ours"] = Raw  # text from reportgen's own tables (page 1's column headers), never from an input
    env.filters["path"] = lambda value: Raw(value) if _SAFE_PATH.match(value) and ".." not in value else Raw("invalid")
    return env


def figure_file(anchor: str, mime: str = "image/png") -> str:
    return "figures/" + re.sub(r"[^A-Za-z0-9_.-]", "_", anchor) + (".jpg" if mime == "image/jpeg" else ".png")


PER_IMAGE_CSV = "per_image.csv"


def write_per_image_csv(results: SavedResults, target: Path) -> None:
    """Every per-image number (image x backbone x layer, with the prediction), beside the report."""
    extra = beyond_values(results.index, results.arrays)
    write_csv(target, PER_IMAGE_COLUMNS + beyond_columns(results.index),
              per_image_table(results.index, results.metrics, extra))


def output_fetcher(root: Path):
    """A WeasyPrint fetcher for ``data:`` URLs and ``file:`` URLs that resolve under ``root`` only."""
    from weasyprint.urls import URLFetcher

    allowed_root = Path(root).resolve()

    class OutputFolderFetcher(URLFetcher):
        def fetch(self, url, headers=None):
            scheme = urlparse(url).scheme.lower()
            if scheme == "file":
                target = Path(unquote(urlparse(url).path)).resolve()
                if target != allowed_root and allowed_root not in target.parents:
                    raise ValueError(f"refusing to read {url}: outside the output folder")
            elif scheme != "data":
                raise ValueError(f"refusing to fetch {url}: only data: and output-folder file: URLs are allowed")
            return super().fetch(url, headers)

    return OutputFolderFetcher(allowed_protocols={"file", "data"}, allow_redirects=False, timeout=2)


def write_pdf(html: str, out_dir: Path, target: Path) -> None:
    from weasyprint import HTML

    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    try:
        HTML(string=html, base_url=str(out_dir.resolve()) + "/", url_fetcher=output_fetcher(out_dir)).write_pdf(tmp)
        os.replace(tmp, target)
    except OSError as exc:
        raise OutputError(f"cannot write {target}: {exc.strerror or exc}; check free space and permissions.") from None
    finally:
        tmp.unlink(missing_ok=True)


def render_report(results_dir: Path, out_dir: Path, formats=("html", "pdf"), timings: dict | None = None) -> dict:
    """Render HTML and PDF into ``out_dir`` from saved results; returns the paths written and, when
    ``timings`` is given, fills it with seconds per stage (figures, html, pdf)."""
    timings = {} if timings is None else timings
    results = load_results(results_dir)
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create {out_dir}: {exc.strerror}; choose another --out.") from None
    remove_stale_temp_files(out_dir)
    mark = time.perf_counter()
    context = build_context(results)
    variables = context.template_variables()
    timings["figures_s"] = time.perf_counter() - mark
    mark = time.perf_counter()
    html_text = template_environment().get_template("report.html.j2").render(**variables)
    written = {}
    if "html" in formats:
        atomic_write_bytes(out_dir / "report.html", html_text.encode("utf-8"))
        written["html"] = out_dir / "report.html"
    timings["html_s"] = time.perf_counter() - mark
    write_per_image_csv(results, out_dir / PER_IMAGE_CSV)
    written["csv"] = out_dir / PER_IMAGE_CSV
    if context.differences is not None:  # every image where two candidates differ (issue 33)
        write_csv(out_dir / DIFFERENCES_CSV, DIFFERENCES_COLUMNS, differences_table(context.differences))
        written["differences"] = out_dir / DIFFERENCES_CSV
    if results.metrics.data is not None:  # "Your data": every flagged image with its reason
        write_flagged_csv(out_dir / FLAGGED_CSV, results.metrics.data)
        written["flagged_csv"] = out_dir / FLAGGED_CSV
    if "md" in formats:
        mark = time.perf_counter()
        (out_dir / "figures").mkdir(exist_ok=True)
        for fig in context.figures:
            atomic_write_bytes(out_dir / figure_file(fig.anchor, fig.mime), fig.png)
        text = markdown_environment().get_template("report.md.j2").render(figure_file=figure_file, **variables)
        atomic_write_bytes(out_dir / "report.md", text.encode("utf-8"))
        written["md"] = out_dir / "report.md"
        timings["md_s"] = time.perf_counter() - mark
    if "json" in formats:
        atomic_write_bytes(out_dir / "metrics.json", json.dumps(numbers_document(results, context.conclusions,
                                                                                                context.decision,
                                                                                                context.gate,
                                                                                                context.survival,
                                                                                                context.differences),
                                                               indent=1, sort_keys=True).encode("utf-8"))
        written["json"] = out_dir / "metrics.json"
    if "pdf" in formats:
        mark = time.perf_counter()
        write_pdf(html_text, out_dir, out_dir / "report.pdf")
        written["pdf"] = out_dir / "report.pdf"
        timings["pdf_s"] = time.perf_counter() - mark
    return written


def numbers_document(results: SavedResults, conclusions, decision, gate=None, survival=None,
                     differences=None) -> dict:
    """metrics.json beside the report: every number behind its tables, the verdicts and what produced them."""
    index = results.index
    images = [{k: v for k, v in image.to_json().items()
               if k in ("file", "sha256", "class_index", "class_name", "box", "size", "background")}
              for image in index.images]
    backbones = [{k: v for k, v in b.to_json().items()
                  if k in ("name", "timm_id", "family", "depth_layers", "last_three", "params", "macs", "weights",
                           "feature_stats", "weight_stats", "feature_cka")}
                 for b in index.backbones]
    return plain({
        "schema_version": index.schema_version,
        "versions": index.versions,
        "config": index.config.to_dict(),
        "image_set": index.image_set.to_json(),
        "images": images,
        "skipped_images": [asdict(s) for s in index.skipped_images],
        "backbones": backbones,
        "metrics": results.metrics.to_json(),
        "conclusions": asdict(conclusions),
        "decision": asdict(decision),
        **({"gate": gate_document(gate)} if gate is not None else {}),
        # the pick recomputed without the flagged images (status "nothing left out" when none was flagged)
        **({"survival": asdict(survival)} if survival is not None else {}),
        **({"differences": asdict(differences)} if differences is not None else {}),
        "cost": results.cost.to_json(),
    })


def gate_document(gate) -> dict:
    """metrics.json's ``gate``: the conditions, the verdict, and per challenger and condition the outcome with its
    numbers and interval."""
    return {"champion": gate.champion, "verdict": gate.verdict, "conditions": asdict(gate.settings),
            "draws": gate.draws, "level": gate.level, "rows": [asdict(row) for row in gate.rows],
            "regressions": [asdict(r) for r in gate.regressions]}


def render_comparison(run_a: Path, run_b: Path, out_dir: Path, formats=("html", "pdf")) -> dict:
    """compare.html / compare.pdf of two saved runs into ``out_dir``."""
    from .compare import compare_runs

    a, b = load_results(run_a), load_results(run_b)
    labels = (Path(run_a).resolve().parent.name or "A", Path(run_b).resolve().parent.name or "B")
    if labels[0] == labels[1]:
        labels = (f"A: {labels[0]}", f"B: {labels[1]}")
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create {out_dir}: {exc.strerror}; choose another --out.") from None
    text = template_environment().get_template("compare.html.j2").render(c=compare_runs(a, b, labels), untrained=False, banner="")
    written = {}
    if "html" in formats:
        atomic_write_bytes(out_dir / "compare.html", text.encode("utf-8"))
        written["html"] = out_dir / "compare.html"
    if "pdf" in formats:
        write_pdf(text, out_dir, out_dir / "compare.pdf")
        written["pdf"] = out_dir / "compare.pdf"
    return written
