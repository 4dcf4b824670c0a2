"""One image file -> RGB pixels, or the reason it cannot be analysed. Untrusted input: every failure is an
:class:`ImageSkipped` with a readable reason, never a traceback."""
from __future__ import annotations

import hashlib
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

# Images outside these limits are skipped (and listed in the report), not analysed.
MIN_SIDE_PX = 16
MAX_ASPECT_RATIO = 20.0
# Transparent pixels are composited onto this neutral grey, never revealed as their stored colour.
NEUTRAL_BACKGROUND = (128, 128, 128)


class ImageSkipped(ValueError):
    """One image cannot be analysed; the message says why. The run goes on without it."""


def decode_rgb(path: Path) -> tuple[Image.Image, str]:
    """RGB pixels of an image file and a note on how they were obtained ("" when plain).

    Raises ImageSkipped for anything that should not be analysed: unreadable, truncated, a
    decompression bomb, degenerate size or aspect ratio."""
    notes = []
    # Strict whatever the process imported before: WeasyPrint sets LOAD_TRUNCATED_IMAGES at import, which would
    # let a truncated file through in a process that rendered a report earlier, and not in a fresh one.
    lenient, ImageFile.LOAD_TRUNCATED_IMAGES = ImageFile.LOAD_TRUNCATED_IMAGES, False
    try:
        if path.stat().st_size == 0:
            raise ImageSkipped("empty file (0 bytes)")
        with warnings.catch_warnings():
            # Pillow only warns between 1x and 2x its pixel limit; treat that as fatal for this file.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                if getattr(img, "n_frames", 1) > 1:
                    notes.append(f"animated ({img.n_frames} frames): first frame used")
                    img.seek(0)
                img.load()
                orientation = img.getexif().get(0x0112, 1)
                if orientation not in (None, 1):
                    image = ImageOps.exif_transpose(img)
                    notes.append(f"EXIF orientation {orientation} applied")
                else:
                    image = img.copy()
    except ImageSkipped:
        raise
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
        raise ImageSkipped(f"decompression bomb refused ({exc})") from None
    except UnidentifiedImageError:
        raise ImageSkipped("not an image Pillow can read (unknown or unsupported format)") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageSkipped(f"unreadable or truncated image data ({exc})") from None
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = lenient
    width, height = image.size
    if min(width, height) < MIN_SIDE_PX:
        raise ImageSkipped(f"{width}x{height} pixels is below the {MIN_SIDE_PX}-pixel minimum side")
    if max(width, height) / min(width, height) > MAX_ASPECT_RATIO:
        raise ImageSkipped(f"aspect ratio {max(width, height) / min(width, height):.0f}:1 exceeds "
                           f"{MAX_ASPECT_RATIO:.0f}:1")
    rgb, how = _to_rgb(image)
    if how:
        notes.append(how)
    return rgb, "; ".join(notes)


def _to_rgb(image: Image.Image) -> tuple[Image.Image, str]:
    mode = image.mode
    if mode == "RGB":
        return image, ""
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        values = np.asarray(image, dtype=np.float64)
        if mode.startswith("I;16") or (mode == "I" and values.min() >= 0 and values.max() <= 65535):
            scaled, how = values / 257.0, "16-bit values rescaled to 8 bits"  # 65535 -> 255, no clipping
        else:
            low, high = float(values.min()), float(values.max())
            scaled = (values - low) / (high - low) * 255.0 if high > low else values * 0
            how = f"{mode} values rescaled from [{low:g}, {high:g}] to 8 bits"
        grey = Image.fromarray(np.round(scaled).astype(np.uint8), mode="L")
        return grey.convert("RGB"), how
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in image.info) \
        or (mode in ("L", "RGB") and "transparency" in image.info)
    if has_alpha:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, NEUTRAL_BACKGROUND + (255,))
        return Image.alpha_composite(background, rgba).convert("RGB"), "transparency composited on neutral grey"
    if mode == "CMYK":
        return image.convert("RGB"), "CMYK converted to RGB"
    return image.convert("RGB"), "" if mode in ("L", "P", "1") else f"{mode} converted to RGB"


def load_rgb(path: Path) -> Image.Image:
    return decode_rgb(Path(path))[0]


def file_sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
