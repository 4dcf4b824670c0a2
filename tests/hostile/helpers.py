"""Builders for hostile inputs: each writes a file into a folder and returns its name."""
import struct
import zlib
from pathlib import Path

from PIL import Image

from conftest import IMAGES

GOOD = ("chelsea.png", "controlled_cat_small_clean.png")


def png_header_only(path: Path, width: int, height: int) -> None:
    """A PNG that claims huge dimensions (the decompression-bomb check fires on open), no pixel data."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b""))


def copy_good(folder: Path) -> list[str]:
    for name in GOOD:
        (folder / name).write_bytes((IMAGES / name).read_bytes())
    return list(GOOD)


def manifest(folder: Path, rows: list[str]) -> None:
    header = "file,class,x0,y0,x1,y1,size,background,source,licence,notes"
    (folder / "annotations.csv").write_text("\n".join([header] + rows) + "\n", encoding="utf-8")


def good_rows() -> list[str]:
    lines = (IMAGES / "annotations.csv").read_text().splitlines()
    return [line for line in lines[1:] if line.split(",")[0] in GOOD]


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def save(image: Image.Image, folder: Path, name: str, **kwargs) -> str:
    image.save(folder / name, **kwargs)
    return name
