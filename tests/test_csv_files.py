"""The one CSV writer: text that a spreadsheet would run as a formula is quoted out; numbers stay numbers."""
import csv
import io

import numpy as np

from reportgen.results.csv_files import csv_text, spreadsheet_cell, write_csv

FORMULAS = ('=HYPERLINK("x","y").png', "@SUM(1+1).png", "+1+1", "-1+1 cmd", "\tTAB", "\rCR", "a\nb")


def _read(text):
    return list(csv.reader(io.StringIO(text, newline="")))


def test_formula_cells_are_neutralised_and_numbers_are_not():
    rows = [(name, -0.25, -3, 0.5, None, True, np.float32(-1.5), np.int64(-7)) for name in FORMULAS]
    back = _read(csv_text(("file", "a", "b", "c", "d", "e", "f", "g"), rows))
    assert back[0] == ["file", "a", "b", "c", "d", "e", "f", "g"]
    for name, row in zip(FORMULAS, back[1:]):
        assert row[0] == ("'" + name if name[0] in "=+-@\t\r" else name)  # visible, inert, one cell
        assert not row[0].startswith(("=", "+", "-", "@", "\t", "\r"))
        assert float(row[1]) == -0.25 and row[1] == "-0.25"  # a negative number stays a number
        assert row[2] == "-3" and row[3] == "0.5" and row[4] == "" and row[5] == "True"
        assert float(row[6]) == -1.5 and row[7] == "-7"


def test_plain_text_and_floats_round_trip():
    assert spreadsheet_cell("chelsea.png") == "chelsea.png"
    assert spreadsheet_cell("a=b") == "a=b"  # only the first character matters
    assert float(spreadsheet_cell(0.1 + 0.2)) == 0.1 + 0.2
    assert spreadsheet_cell(float("nan")) == "" and spreadsheet_cell(float("inf")) == ""


def test_write_csv_is_atomic_utf8(tmp_path):
    target = tmp_path / "x.csv"
    write_csv(target, ("file",), [("猫.png",), ("=1+1",)])
    assert _read(target.read_bytes().decode("utf-8")) == [["file"], ["猫.png"], ["'=1+1"]]
    assert [p.name for p in tmp_path.iterdir()] == ["x.csv"]
