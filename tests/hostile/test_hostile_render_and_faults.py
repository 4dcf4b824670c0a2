"""User strings cannot inject markup, links or attachments; the renderer fetches nothing outside the output
folder; faults (disk full, Ctrl-C mid-PDF, out of GPU memory, unusable --out) end in one line and leave the
previous report intact."""
import errno
import json
import shutil

import pytest
import torch
from pypdf import PdfReader

from conftest import copy_run, message_lines, run_cli
from helpers import copy_good, good_rows, manifest
from reportgen.report.render import render_report, template_environment, write_pdf

PAYLOADS = ('<link rel="attachment" href="file:///etc/passwd">', '<a href="javascript:alert(1)">click</a>',
            '<img src="http://127.0.0.1:9/beacon.png">', '<style>@import url("http://127.0.0.1:9/x.css");</style>')


def _pdf_has_no_attachment_or_passwd(path):
    reader = PdfReader(str(path))
    assert not reader.attachments
    text = "\n".join(page.extract_text() for page in reader.pages)
    assert "root:x:0:0" not in text


def test_user_strings_are_inert(lite0_small, tmp_path):
    results = tmp_path / "results"
    shutil.copytree(lite0_small / "results", results)
    index = json.loads((results / "results.json").read_text())
    for image, payload in zip(index["images"], PAYLOADS * 10):
        image["file"] = payload + image["file"]
        image["notes"], image["licence"], image["source"] = payload, payload, payload
    for backbone in index["backbones"]:
        backbone["display_name"] = PAYLOADS[1] + backbone["display_name"]
    index["skipped_images"] = [{"file": p, "reason": p} for p in PAYLOADS]
    (results / "results.json").write_text(json.dumps(index))
    written = render_report(results, tmp_path / "out", ("html", "pdf", "md"))
    md = written["md"].read_text()
    assert "<link" not in md and "<img" not in md and "<style" not in md and "](javascript:" not in md
    assert "&lt;a href=&quot;javascript:alert\\(1\\)&quot;&gt;click&lt;/a&gt;" in md
    html = written["html"].read_text()
    for payload in PAYLOADS:
        assert payload not in html
    assert 'rel="attachment"' not in html and 'href="javascript:' not in html and 'src="http' not in html
    assert "&lt;link rel=&#34;attachment&#34;" in html
    _pdf_has_no_attachment_or_passwd(written["pdf"])


def test_autoescape_covers_any_template_name():
    env = template_environment()
    for name in ("x.html", "x.j2", "x.md", "x"):
        assert env.autoescape is True or env.autoescape(name)
    assert env.from_string("{{ v }}").render(v="<b>") == "&lt;b&gt;"


def test_renderer_fetches_nothing_outside_the_output_folder(tmp_path):
    (tmp_path / "escape").symlink_to("/etc/passwd")
    html = ('<html><body><p>x</p><img src="file:///etc/passwd"><img src="http://127.0.0.1:9/x.png">'
            '<img src="escape"><link rel="attachment" href="file:///etc/passwd">'
            '<link rel="attachment" href="escape"><link rel="stylesheet" href="http://127.0.0.1:9/s.css">'
            '</body></html>')
    target = tmp_path / "t.pdf"
    write_pdf(html, tmp_path, target)
    reader = PdfReader(str(target))
    assert not reader.attachments and sum(len(p.images) for p in reader.pages) == 0
    _pdf_has_no_attachment_or_passwd(target)


@pytest.fixture(scope="module")
def small_base(tmp_path_factory, fast_battery):
    """One small report for the module; each test gets a copy to damage."""
    folder = tmp_path_factory.mktemp("imgs")
    copy_good(folder)
    manifest(folder, good_rows())
    out = tmp_path_factory.mktemp("small-base") / "out"
    args = ["run", "--preset", "lite", "--backbone", "efficientnet_lite0", "--images", str(folder), "--quiet",
            "--config", str(fast_battery)]
    first = run_cli(*args, "--out", str(out))
    assert first.exit_code == 0, first.output
    return out, args


@pytest.fixture
def small_report(small_base, tmp_path):
    base, args = small_base
    out = copy_run(base, tmp_path / "out")
    return out, args + ["--out", str(out)]


def _snapshot(out):
    """Every file's bytes (the folder's lock file aside: a run holds it, and it is empty)."""
    return {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file() and p.name != ".reportgen.lock"}


def test_disk_full_keeps_the_previous_report(small_report, monkeypatch):
    out, args = small_report
    before = _snapshot(out)

    def full(_fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("reportgen.results.store.os.fsync", full)
    result = run_cli(*args, "--fresh")
    assert result.exit_code == 5 and "No space left on device" in result.output
    assert len(message_lines(result.output)) == 1
    assert _snapshot(out) == before  # nothing changed, no temp files left behind


def test_ctrl_c_mid_pdf_keeps_the_previous_pdf(small_report, monkeypatch):
    out, args = small_report
    before = (out / "report.pdf").read_bytes()

    def interrupted(self, target=None, **kwargs):
        with open(target, "wb") as handle:
            handle.write(b"%PDF-1.7 half a file")
        raise KeyboardInterrupt

    monkeypatch.setattr("weasyprint.HTML.write_pdf", interrupted)
    result = run_cli(*args)
    assert result.exit_code == 130 and "interrupted" in result.output
    assert (out / "report.pdf").read_bytes() == before
    assert not [p for p in out.rglob("*") if ".tmp-" in p.name]


def test_gpu_out_of_memory_retries_at_half_batch_then_advises(small_report, monkeypatch):
    out, args = small_report
    import reportgen.analysis.backbone as runner

    real = runner.analyse_backbone
    sizes = []

    def flaky(model, batches, *a, **k):
        sizes.append(batches.batch_size)
        if batches.batch_size > 4:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return real(model, batches, *a, **k)

    monkeypatch.setattr(runner, "analyse_backbone", flaky)
    result = run_cli(*args, "--fresh", "--batch-size", "8", "--json")
    assert result.exit_code == 0, result.output
    assert sizes[:2] == [8, 4] and set(sizes[2:]) <= {4}  # later passes (slimming) keep the size that worked
    entry = json.loads((out / "results" / "results.json").read_text())["backbones"][0]
    assert entry["batch_size"] == 4

    def always(*a, **k):
        raise torch.OutOfMemoryError("CUDA out of memory (simulated)")

    monkeypatch.setattr(runner, "analyse_backbone", always)
    result = run_cli(*args, "--fresh", "--batch-size", "8")
    assert result.exit_code == 6 and "--batch-size 2" in result.output


def test_unusable_output_folder(tmp_path, small_image_dir):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    for out in (blocker, blocker / "sub"):
        result = run_cli("run", "--preset", "lite", "--images", str(small_image_dir), "--out", str(out), "--quiet")
        assert result.exit_code == 5 and len(message_lines(result.output)) == 1, result.output
