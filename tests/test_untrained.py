"""--weights random: paper backbones run untrained, every page carries the banner, no conclusions."""
from pypdf import PdfReader

from conftest import run_cli


def test_untrained_report_is_bannered(tmp_path, small_image_dir):
    out = tmp_path / "out"
    result = run_cli("run", "--backbone", "resnet50", "--backbone", "deit_small", "--weights", "random",
                     "--images", str(small_image_dir), "--out", str(out), "--quiet")
    assert result.exit_code == 0, result.output
    html = (out / "report.html").read_text()
    assert html.count("UNTRAINED WEIGHTS — not evidence") >= 2
    assert "No conclusion can be drawn" in html
    reader = PdfReader(str(out / "report.pdf"))
    assert len(reader.pages) > 3
    for number, page in enumerate(reader.pages, start=1):
        assert "UNTRAINED WEIGHTS" in page.extract_text(), f"page {number} lacks the banner"
