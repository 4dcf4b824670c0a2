"""Every manifest mistake is one message naming file, line and field, given before any model loads."""
import pytest

from conftest import message_lines, run_cli
from helpers import copy_good, good_rows, manifest

CHELSEA = "chelsea.png,n02123045,20,10,400,300,large,clean,skimage,BSD-3-Clause,"


@pytest.mark.parametrize("row, text", [
    ("missing.png,,,,,,,,,,", "file 'missing.png' not found"),
    ("chelsea.png,n02123045,20,10,4000,300,large,clean,,,", "outside the 451x300 image"),
    ("chelsea.png,n02123045,400,10,20,300,large,clean,,,", "inverted"),
    ("chelsea.png,n02123045,-5,10,20,300,large,clean,,,", "field 'x0' must be a finite number >= 0"),
    ("chelsea.png,n02123045,abc,10,20,300,large,clean,,,", "field 'x0' must be a number"),
    ("chelsea.png,n02123045,20,10,,300,large,clean,,,", "box needs all of x0,y0,x1,y1"),
    ("chelsea.png,5000,,,,,,,,,", "class index 5000 is out of range"),
    ("chelsea.png,n99999999,,,,,,,,,", "unknown ImageNet class 'n99999999'"),
    ("chelsea.png,tabby,,,,,huge,,,,", "field 'size' must be one of small, medium, large"),
    ("chelsea.png,tabby,,,,,,messy,,,", "field 'background' must be one of clean, cluttered"),
    ("chelsea.png,tabby,,,,,,,,,,extra", "more fields than the header"),
])
def test_bad_row_is_one_line_with_file_line_field(tmp_path, row, text):
    folder = tmp_path / "imgs"
    folder.mkdir()
    copy_good(folder)
    rows = [r for r in good_rows() if not r.startswith("chelsea.png")] + [row]
    manifest(folder, rows)
    result = run_cli("run", "--preset", "lite", "--images", str(folder), "--out", str(tmp_path / "o"))
    assert result.exit_code == 3, result.output
    assert text in result.output, result.output
    assert f"{folder / 'annotations.csv'}:3" in result.output
    assert len(message_lines(result.output)) == 1 and "Traceback" not in result.output
    assert not (tmp_path / "o").exists()  # nothing written, no model loaded


def test_duplicate_rows_and_unknown_columns(tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    copy_good(folder)
    manifest(folder, good_rows() + [good_rows()[0]])
    result = run_cli("run", "--preset", "lite", "--images", str(folder), "--out", str(tmp_path / "o"))
    assert result.exit_code == 3 and "duplicate row" in result.output and "annotations.csv:4" in result.output
    (folder / "annotations.csv").write_text("file,clas\nchelsea.png,tabby\n")
    result = run_cli("run", "--preset", "lite", "--images", str(folder), "--out", str(tmp_path / "o"))
    assert result.exit_code == 3 and "unknown column 'clas'" in result.output and "did you mean 'class'" in result.output
    (folder / "annotations.csv").write_bytes("file,class\nchelsea.png,caf\xe9\n".encode("latin-1"))
    result = run_cli("run", "--preset", "lite", "--images", str(folder), "--out", str(tmp_path / "o"))
    assert result.exit_code == 3 and "not a UTF-8 CSV" in result.output


@pytest.mark.parametrize("args, text", [
    (["--backbone", "resnet5"], "Did you mean: resnet50"),
    (["--preset", "lit"], "Did you mean: lite"),
    (["--format", "html,docx"], "--format 'html,docx': choose from"),
    (["--checkpoint", "resnet50"], "must look like NAME=PATH"),
])
def test_unknown_names_suggest_close_matches(tmp_path, args, text):
    result = run_cli("run", *args, "--out", str(tmp_path / "o"))
    assert result.exit_code == 2 and text in result.output and len(message_lines(result.output)) == 1
