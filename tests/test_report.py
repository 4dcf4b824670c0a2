"""The offline report: sections, embedded figures, PDF outline, numbers computed in the run."""
import json
import re
from types import SimpleNamespace

import pytest
from pypdf import PdfReader

from reportgen.report.render import output_fetcher
from conftest import aggregate_row as find

SECTION_IDS = ("introduction", "networks", "experiments", "conclusions", "appendix")
SECTION_TITLES = ("1 Introduction", "2 The chosen networks", "3 Experiments", "4 Conclusions", "5 Appendix")


@pytest.fixture(scope="module")
def html(lite_report):
    return (lite_report / "report.html").read_text()


def test_html_has_sections_and_no_external_urls(html):
    for section in SECTION_IDS:
        assert f'<h1 id="{section}">' in html
    sources = re.findall(r'\bsrc="([^"]*)"', html)
    # charts are PNG, the photo grids JPEG pages
    assert sources and all(s.startswith(("data:image/png;base64,", "data:image/jpeg;base64,")) for s in sources)
    assert any(s.startswith("data:image/jpeg;base64,") for s in sources)
    links = re.findall(r'\bhref="([^"]*)"', html)
    assert links and all(link.startswith("#") for link in links)
    for link in set(links):
        assert f'id="{link[1:]}"' in html, f"dangling anchor {link}"
    assert "UNTRAINED" not in html


def test_pdf_has_outline_and_every_figure(lite_report, html):
    reader = PdfReader(str(lite_report / "report.pdf"))
    titles = [item.title for item in reader.outline if not isinstance(item, list)]
    for title in SECTION_TITLES:
        assert title in titles
    text = "\n".join(page.extract_text() for page in reader.pages)
    captions = re.findall(r"<figcaption>(Figure \d+)\.", html)
    assert len(captions) == len(re.findall(r"<img ", html)) >= 8
    flat = re.sub(r"\s+", " ", text)
    for caption in captions:
        assert caption + "." in flat
    images = sum(len(page.images) for page in reader.pages)
    assert images >= len(captions)
    assert "page 1 of" in flat


def test_deep_cams_localise_objects(lite_report):
    metrics = json.loads((lite_report / "results" / "metrics.json").read_text())
    for name in ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"):
        deep = find(metrics["aggregates"], "backbone", name, "deep", "all", "mass_ratio")
        uniform = find(metrics["aggregates"], "backbone", name, "baseline:uniform", "all", "mass_ratio")
        assert deep["n"] >= 15
        assert deep["mean"] > 1.2 and deep["mean"] > uniform["mean"]


def test_fetcher_reads_only_the_output_folder(tmp_path):
    inside = tmp_path / "inside.txt"
    inside.write_text("ok")
    (tmp_path / "link").symlink_to("/etc/passwd")
    fetcher = output_fetcher(tmp_path)
    assert fetcher.fetch(inside.as_uri()).read() == b"ok"
    for url in ("file:///etc/passwd", "http://127.0.0.1:9/x.png", (tmp_path / "link").as_uri()):
        with pytest.raises(ValueError):
            fetcher.fetch(url)


def test_last_three_taps_give_real_maps_on_real_weights(lite_report):
    """At a conv feeding a BatchNorm, Grad-CAM carries the norm's shift as a constant and was all zero on most
    photos (EfficientNet-Lite's blocks.6.0.conv_pwl); read after the norm, the maps are real."""
    index = json.loads((lite_report / "results" / "results.json").read_text())
    for entry in index["backbones"]:
        spatial = [layer for layer in entry["last_three"] if entry["cam_status"][layer][0] != "not-spatial"]
        assert len(spatial) == 2, entry["name"]
        for layer in spatial:
            statuses = entry["cam_status"][layer]
            assert sum(s != "ok" for s in statuses) <= 0.1 * len(statuses), (entry["name"], layer, statuses)
        assert entry["weight_modules"]["blocks.6.0.bn3"] == "blocks.6.0.conv_pwl"
        assert entry["weight_stats"]["blocks.6.0.bn3"]["count"] > 10_000  # the conv's weights, not the BN's


def test_depth_figure_prefers_real_photos_by_manifest_source():
    from reportgen.inputs.config import AnalysisConfig
    from reportgen.report.context import _depth_images
    from reportgen.results.schema import ImageEntry

    def image(file, size, source):
        return ImageEntry(file=file, sha256="", width=100, height=100, class_index=None, class_name=None,
                          box=(0.0, 0.0, 10.0, 10.0), box_share=0.01, size=size, background="clean", source=source,
                          licence="", notes="", decoding="", size_source="", background_source="", box_source="",
                          display_copy="")
    images = (image("photo_small.png", "small", "controlled: pasted crop"),
              image("controlled_small.png", "small", "a real photo despite its name"),
              image("other_large.png", "large", "a real photo"))
    assert _depth_images(SimpleNamespace(images=images), AnalysisConfig()) == [1, 2]



def test_page_ones_table_never_leaves_its_header_alone_at_the_foot_of_a_page(html, tmp_path):
    """A long page 1 (leakage, busy-machine and survival lines) used to leave the decision table's header row alone at
    its foot, the rows on page 2. The run's own table and stylesheet, pushed down one line at a time across a page
    end: on every page that shows the header, a candidate's row follows it."""
    from reportgen.report.render import write_pdf

    style = re.search(r"<style>(.*?)</style>", html, re.S).group(1)
    table = re.search(r'<table id="tab-decision">.*?</table>', html, re.S).group(0)
    moved = 0
    # 9.5 pt text, 1.35 leading: about 58 lines fill an A4 page's content box (the header was left alone at 50-56)
    for lines in range(46, 60):
        filler = "".join(f"<p style='margin: 0'>line {n}</p>" for n in range(lines))
        target = tmp_path / f"t{lines}.pdf"
        write_pdf(f"<html><head><style>{style}</style></head><body>{filler}{table}</body></html>", tmp_path, target)
        pages = [" ".join(page.extract_text().split()) for page in PdfReader(str(target)).pages]
        for text in pages:
            if "P(best)" in text:
                assert "Lite" in text.split("P(best)", 1)[1], (lines, pages)  # a row: EfficientNet-Lite0 ...
        moved += len(pages) > 1 and "P(best)" not in pages[0]  # the table went to page 2, header and all
    assert moved  # some fillers did push the table across the page end
