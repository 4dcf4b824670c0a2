"""Every output format opens and holds the same numbers; the HTML makes no network request in a real
browser; Markdown links resolve."""
import json
import re
import shutil
import subprocess

import pytest

from reportgen.report.formatting import num as _num
from conftest import aggregate_row as find


def _numbers(lite_report):
    metrics = json.loads((lite_report / "results" / "metrics.json").read_text())
    out = []
    for name in ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"):
        row = find(metrics["aggregates"], "backbone", name, "deep", "all", "mass_ratio")
        out.append((name, row["mean"], row["ci_low"], row["ci_high"]))
    return out


_NUMBER = re.compile(r"(?<![\w.])-?\d[\d,]*(?:\.\d+)?(?:e[+-]\d+)?(?!\w)")


def _html_text(page: str, start_id: str, end_id: str) -> str:
    import html

    fragment = page[page.index(f'<h1 id="{start_id}"'):page.index(f'<h1 id="{end_id}"')]
    fragment = re.sub(r"<style.*?</style>|<img[^>]*>", "", fragment, flags=re.S)
    return html.unescape(re.sub(r"<[^>]+>", " ", fragment))


def _md_text(page: str, start: str, end: str) -> str:
    import html

    return html.unescape(page[page.index(start):page.index(end)].replace("\\", ""))


@pytest.mark.parametrize("html_ids, md_headings", [
    (("decision", "introduction"), ("## Backbone decision", "## 1 Introduction")),
    (("conclusions", "appendix"), ("## 4 Conclusions", "## 5 Appendix")),
], ids=["decision", "conclusions"])
def test_every_number_of_the_decision_and_conclusions_is_in_the_markdown(lite_report, html_ids, md_headings):
    """Both formats lay out the same sentences and rows: each number the HTML shows there, the Markdown shows as
    often (it may say more: the decision's method note sits on page 1 in Markdown, in section 2.1 in HTML)."""
    from collections import Counter

    shown = Counter(_NUMBER.findall(_html_text((lite_report / "report.html").read_text(), *html_ids)))
    written = Counter(_NUMBER.findall(_md_text((lite_report / "report.md").read_text(), *md_headings)))
    assert sum(shown.values()) > 50  # the section is there, with its numbers
    assert {n: c for n, c in shown.items() if written[n] < c} == {}


def test_same_numbers_in_html_md_json(lite_report):
    html = (lite_report / "report.html").read_text()
    md = (lite_report / "report.md").read_text()
    document = json.loads((lite_report / "metrics.json").read_text())
    for name, mean, low, high in _numbers(lite_report):
        text = f"{_num(mean)} [{_num(low)}, {_num(high)}]"
        assert text in html, text
        assert text.replace("[", "\\[").replace("]", "\\]") in md, text
        row = find(document["metrics"]["aggregates"], "backbone", name, "deep", "all", "mass_ratio")
        assert (row["mean"], row["ci_low"], row["ci_high"]) == (mean, low, high)
    from pypdf import PdfReader

    pdf_text = re.sub(r"\s+", " ", " ".join(p.extract_text() for p in PdfReader(str(lite_report / "report.pdf")).pages))
    for name, mean, low, high in _numbers(lite_report):
        assert f"{_num(mean)} [{_num(low)}, {_num(high)}]" in pdf_text
    verdicts = [c["verdict"] for c in document["conclusions"]["claims"]]
    assert len(verdicts) == 7 and all(v in md for v in verdicts)


def test_markdown_links_resolve(lite_report):
    md = (lite_report / "report.md").read_text()
    assert "'s " in md and "&\\#" not in md  # apostrophes as they are, no entity broken by escaping its "#"
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md.replace("\\]", "").replace("\\[", ""))
    assert len(links) >= 8
    for link in links:
        assert not link.startswith(("http", "data:", "/")) and (lite_report / link).is_file(), link
    assert "data:image" not in md


def _page_requests(page, tmp_path):
    """URLs the page itself asked for while Chromium loaded it (the browser's own background requests,
    which carry no file:// isolation key, are left out)."""
    log = tmp_path / f"net-{page.stem}.json"
    done = subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", f"--log-net-log={log}",
                           f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=3000", "--dump-dom",
                           page.as_uri()], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-500:]
    urls = set()
    for event in json.loads(log.read_text())["events"]:
        params = event.get("params")
        if isinstance(params, dict) and str(params.get("network_isolation_key", "")).startswith("file://"):
            urls.add(event["source"]["id"])
    by_source = {}
    for event in json.loads(log.read_text())["events"]:
        params = event.get("params")
        if isinstance(params, dict) and "url" in params:
            by_source.setdefault(event["source"]["id"], params["url"])
    return done.stdout, {by_source[i] for i in urls if i in by_source}


@pytest.mark.skipif(not shutil.which("chromium"), reason="chromium is not installed (.ci/run installs it)")
def test_html_makes_no_network_request_in_chromium(lite_report, tmp_path):
    control = tmp_path / "control.html"
    control.write_text('<html><body><img src="http://127.0.0.1:9/beacon.png"></body></html>')
    _, seen = _page_requests(control, tmp_path)
    assert "http://127.0.0.1:9/beacon.png" in seen  # the harness does see a page's request
    dom, seen = _page_requests(lite_report / "report.html", tmp_path)
    assert "4 Conclusions" in dom
    external = [u for u in seen if not u.startswith(("file:", "data:"))]
    assert not external, external


def test_compare_two_runs(lite_report, lite0_small, tmp_path):
    from conftest import copy_run, run_cli

    other = copy_run(lite0_small, tmp_path / "candidate")  # Lite0 alone, on three of the images
    result = run_cli("compare", str(lite_report), str(other / "results"), "--out", str(tmp_path / "cmp"))
    assert result.exit_code == 0, result.output
    html = (tmp_path / "cmp" / "compare.html").read_text()
    assert "candidate" in html and "EfficientNet-Lite1" in html and "(only in" in html
    assert 'id="tab-compare-decisions"' in html and html.count("no clear winner") + html.count("recommended") >= 2
    a = json.loads((lite_report / "results" / "metrics.json").read_text())
    b = json.loads((other / "results" / "metrics.json").read_text())
    key = ("backbone", "efficientnet_lite0", "deep", "all", "mass_ratio")
    va = next(r["mean"] for r in a["aggregates"] if (r["scope"], r["name"], r["role"], r["group"], r["metric"]) == key)
    vb = next(r["mean"] for r in b["aggregates"] if (r["scope"], r["name"], r["role"], r["group"], r["metric"]) == key)
    assert _num(vb - va) in html
    assert (tmp_path / "cmp" / "compare.pdf").read_bytes().startswith(b"%PDF")
    missing = run_cli("compare", str(lite_report), str(tmp_path / "nope"))
    assert missing.exit_code == 3 and "holds no results.json" in missing.output


def test_progress_bars_only_on_a_terminal(monkeypatch, capsys):
    import sys

    from reportgen.progress import BatchProgress

    monkeypatch.setattr(sys.stderr, "isatty", lambda: False, raising=False)
    with BatchProgress() as bars:
        bars.update("m", "cam", 4, 8)
        bars.message("hello")
    assert capsys.readouterr().err == "reportgen: hello\n"
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    with BatchProgress() as bars:
        bars.update("m", "backbones", 1, 2)
        bars.update("m", "cam", 4, 8)
    err = capsys.readouterr().err
    assert "backbones" in err and "m cam" in err and "4/8" in err


def test_latency_timed_on_a_busy_machine_is_a_warning_on_page_one(lite_report, tmp_path):
    """The saved cost says the machine was busy: the re-rendered page 1 warns, in red in HTML and bold in Markdown,
    right under the headline."""
    from conftest import run_cli

    results = tmp_path / "results"
    shutil.copytree(lite_report / "results", results)
    cost = json.loads((results / "cost.json").read_text())
    for record in cost["backbones"].values():
        record["load_per_core"] = 0.4
    cost["backbones"]["efficientnet_lite1"]["load_per_core"] = 4.0
    (results / "cost.json").write_text(json.dumps(cost))
    assert run_cli("render", str(results), "--format", "html,md").exit_code == 0
    html = (tmp_path / "report.html").read_text()
    warning = re.search(r'<p class="decision">.*?</p>\s*<p><span class="flag">Latency was timed on a busy machine '
                        r'\(load average per core: EfficientNet-Lite1 4\.0; above busy_load_per_core = 1\)', html, re.S)
    assert warning, html[:3000]
    md = (tmp_path / "report.md").read_text()
    assert "**Latency was timed on a busy machine \\(load average per core: EfficientNet-Lite1 4.0; above " in md


@pytest.mark.parametrize("value, shown", [
    (10400.3, "10,400"),  # a latency interval's upper end on a busy machine: was "1.04e+04"
    (999.6, "1,000"), (999.4, "999"), (-45678.9, "-45,700"), (123.456, "123"), (0.0955, "0.0955"),
    (0.000123, "1.23e-04"), (1e300, "1e+300"), (7, "7"), (1234567, "1,234,567"),
])
def test_numbers_read_in_digits_with_thousands_separators_not_exponents(value, shown):
    assert _num(value) == shown
