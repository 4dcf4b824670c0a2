"""Bad image files are skipped with a reason (results.json + appendix); odd modes are decoded correctly;
odd file names are escaped; the good images still make it into the report."""
import json

import numpy as np
import pytest
from PIL import Image

from conftest import message_lines, run_cli
from helpers import copy_good, good_rows, manifest, png_header_only, quote, save

SKIPS = {
    "empty.png": "empty file",
    "truncated.png": "truncated",
    "text.jpg": "not an image",
    "movie.mp4": "not an image",
    "bomb.png": "decompression bomb",
    "huge_bomb.png": "decompression bomb",
    "sliver.png": "aspect ratio",
    "dot.png": "minimum side",
}
ODD_NAMES = ("with space.png", "ünïcödé 猫.png", "quote'\"s.png", "<script>alert(1)<\\script>.png",
             "<img src=x onerror=alert(1)>.png")
# Names a spreadsheet would run as formulas if a CSV cell began with them (OWASP "CSV Injection").
FORMULA_NAMES = ('=HYPERLINK("x","y").png', "@SUM(1+1).png", "+cmd.png", "-2+3.png")


def _build(folder):
    copy_good(folder)
    (folder / "empty.png").write_bytes(b"")
    whole = (folder / "chelsea.png").read_bytes()
    (folder / "truncated.png").write_bytes(whole[: len(whole) // 3])
    (folder / "text.jpg").write_text("this is not a JPEG\n" * 50)
    (folder / "movie.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 500)
    png_header_only(folder / "bomb.png", 14_000, 14_000)  # between 1x and 2x Pillow's limit: a warning
    png_header_only(folder / "huge_bomb.png", 40_000, 40_000)  # above 2x: Pillow's own error
    save(Image.new("RGB", (2000, 20), "white"), folder, "sliver.png")
    save(Image.new("RGB", (1, 1), "white"), folder, "dot.png")

    rng = np.random.default_rng(0)
    base = (rng.random((96, 128, 3)) * 255).astype(np.uint8)
    save(Image.fromarray(base).convert("L"), folder, "grey_L.png")
    save(Image.fromarray(base).convert("LA"), folder, "grey_LA.png")
    palette = Image.fromarray(base).convert("P")
    save(palette, folder, "palette_transparent.png", transparency=0)
    hidden = np.zeros((96, 128, 4), dtype=np.uint8)
    hidden[..., 0] = 255  # bright red stored under fully transparent pixels
    hidden[:, 64:, :3], hidden[:, 64:, 3] = 40, 255  # right half opaque dark grey
    save(Image.fromarray(hidden), folder, "rgba_hidden_red.png")
    save(Image.fromarray(base).convert("CMYK"), folder, "cmyk.jpg", quality=95)
    ramp = np.tile(np.linspace(0, 65535, 128), (96, 1)).astype(np.uint16)
    sixteen = Image.fromarray(ramp)
    assert sixteen.mode.startswith("I;16")
    save(sixteen, folder, "depth16.png")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    save(Image.fromarray(base), folder, "exif_rotated.jpg", exif=exif.tobytes())
    frames = [Image.fromarray(base), Image.fromarray(255 - base)]
    frames[0].save(folder / "animated.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)
    for name in ODD_NAMES + FORMULA_NAMES:
        save(Image.fromarray(base), folder, name)

    names = list(SKIPS) + ["grey_L.png", "grey_LA.png", "palette_transparent.png", "rgba_hidden_red.png",
                           "cmyk.jpg", "depth16.png", "exif_rotated.jpg", "animated.gif"] + list(ODD_NAMES) + list(FORMULA_NAMES)
    manifest(folder, good_rows() + [f"{quote(n)},,,,,,,,test,CC0," for n in names])


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hostile-images")
    _build(folder)
    out = tmp_path_factory.mktemp("hostile-out") / "out"
    result = run_cli("run", "--preset", "lite", "--backbone", "efficientnet_lite0", "--images", str(folder),
                     "--out", str(out), "--quiet", "--no-sanity-check", "--format", "html,pdf")
    return folder, out, result


def test_bad_files_are_skipped_with_reasons(hostile_run):
    _, out, result = hostile_run
    assert result.exit_code == 0, result.output
    index = json.loads((out / "results" / "results.json").read_text())
    skipped = {s["file"]: s["reason"] for s in index["skipped_images"]}
    assert set(skipped) == set(SKIPS)
    for name, reason in SKIPS.items():
        assert reason in skipped[name], (name, skipped[name])
    analysed = {img["file"] for img in index["images"]}
    assert {"chelsea.png", "controlled_cat_small_clean.png"} <= analysed
    assert len(analysed) == 2 + 8 + len(ODD_NAMES) + len(FORMULA_NAMES)
    html = (out / "report.html").read_text()
    assert "decompression bomb refused" in html and "tab-skipped" in html


def test_modes_are_decoded_not_clipped_or_revealed(hostile_run):
    _, out, _ = hostile_run
    index = json.loads((out / "results" / "results.json").read_text())
    by_name = {img["file"]: img for img in index["images"]}

    def pixels(name):
        return np.asarray(Image.open(out / "results" / by_name[name]["display_copy"]).convert("RGB"), dtype=int)

    hidden = pixels("rgba_hidden_red.png")
    assert np.abs(hidden[:, :60] - 128).max() <= 1  # transparent half: neutral grey, never the stored red
    assert np.abs(hidden[:, 70:] - 40).max() <= 1
    assert "transparency composited" in by_name["rgba_hidden_red.png"]["decoding"]
    ramp = pixels("depth16.png")[0, :, 0]
    assert ramp[0] == 0 and ramp[-1] == 255 and 100 < ramp[len(ramp) // 2] < 156  # rescaled, not clipped
    assert "16-bit" in by_name["depth16.png"]["decoding"]
    assert (by_name["exif_rotated.jpg"]["width"], by_name["exif_rotated.jpg"]["height"]) == (96, 128)
    assert "EXIF orientation 6" in by_name["exif_rotated.jpg"]["decoding"]
    assert "first frame" in by_name["animated.gif"]["decoding"]
    assert "CMYK" in by_name["cmyk.jpg"]["decoding"]


def test_odd_names_are_escaped_and_never_become_paths(hostile_run):
    _, out, _ = hostile_run
    html = (out / "report.html").read_text()
    assert "<script>alert(1)" not in html and "<img src=x onerror" not in html
    assert "&lt;script&gt;alert(1)" in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "ünïcödé 猫.png" in html
    written = [p.name for p in out.rglob("*")]
    assert not any("<" in name or "script" in name for name in written)
    assert (out / "report.pdf").read_bytes().startswith(b"%PDF")


def test_csv_cells_never_start_a_formula(hostile_run):
    """per_image.csv read back as a spreadsheet would: no text cell starts with = + - @ tab or CR; the formula
    names survive behind a quote; numbers stay numbers."""
    import csv

    _, out, _ = hostile_run
    with (out / "per_image.csv").open(newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    header, body = rows[0], rows[1:]
    cells = [cell for row in body for cell in row]
    files = {row[header.index("image")] for row in body}
    for name in FORMULA_NAMES:
        assert "'" + name in files, name
    numeric = 0
    for cell in cells:
        try:
            float(cell)
            numeric += 1
            continue
        except ValueError:
            pass
        assert not cell.startswith(("=", "+", "-", "@", "\t", "\r")), cell
    assert numeric > len(body)  # probabilities, ratios, entropies are written as numbers


def test_every_image_skipped_is_one_message(tmp_path):
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "a.png").write_bytes(b"")
    (folder / "b.jpg").write_text("nope")
    result = run_cli("run", "--preset", "lite", "--images", str(folder), "--out", str(tmp_path / "o"))
    assert result.exit_code == 3
    assert "every image in" in result.output and "a.png: empty file" in result.output
    assert len(message_lines(result.output)) == 1 and "Traceback" not in result.output
    assert not (tmp_path / "o").exists()


def test_manifest_path_escaping_the_folder_is_refused(tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    copy_good(folder)
    (tmp_path / "outside.png").write_bytes((folder / "chelsea.png").read_bytes())
    manifest(folder, good_rows() + ["../outside.png,,,,,,,,,,"])
    result = run_cli("run", "--preset", "lite", "--images", str(folder), "--out", str(tmp_path / "o"))
    assert result.exit_code == 3 and "points outside the image folder" in result.output
    assert "annotations.csv:4" in result.output
