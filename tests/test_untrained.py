"""--weights random: paper backbones run untrained, every page carries the banner, no conclusions."""
from pypdf import PdfReader



def test_untrained_report_is_bannered(untrained_run):
    out = untrained_run
    html = (out / "report.html").read_text()
    assert html.count("UNTRAINED WEIGHTS — not evidence") >= 2
    assert "No conclusion can be drawn" in html
    reader = PdfReader(str(out / "report.pdf"))
    assert len(reader.pages) > 3
    for number, page in enumerate(reader.pages, start=1):
        assert "UNTRAINED WEIGHTS" in page.extract_text(), f"page {number} lacks the banner"
