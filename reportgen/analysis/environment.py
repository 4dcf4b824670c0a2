"""Library versions that go into the results and the cache keys; the run's device (imports torch)."""
from __future__ import annotations

import platform

import numpy as np
import timm
import torch

from .. import __version__
from ..errors import UsageError


def library_versions() -> dict:
    import jinja2
    import matplotlib
    from importlib.metadata import version

    return {"reportgen": __version__, "python": platform.python_version(), "torch": torch.__version__,
            "timm": timm.__version__, "grad-cam": version("grad-cam"), "numpy": np.__version__,
            "jinja2": jinja2.__version__, "matplotlib": matplotlib.__version__}


def resolve_device(device: str) -> str:
    """cpu | cuda | auto -> the device to run on; cuda without a visible GPU is a usage error."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA device is visible; use --device cpu.")
    return device
