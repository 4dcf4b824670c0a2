"""Library versions that go into the results and the cache keys; the run's device (imports torch)."""
from __future__ import annotations

import contextlib
import ctypes
import gc
import platform
import signal
import threading

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
        raise UsageError("--device cuda: no CUDA device is visible; use --device cpu (or auto).")
    return device


def device_note(requested: str, device: str) -> str:
    """What the run runs on, and why, for the progress line: "device: cuda (NVIDIA H200; auto)"."""
    what = torch.cuda.get_device_name() if device == "cuda" else f"{torch.get_num_threads()} CPU threads"
    why = "; auto: no CUDA device visible" if requested == "auto" and device == "cpu" else \
        "; auto" if requested == "auto" else ""
    return f"device: {device} ({what}{why})"


def release_memory() -> None:
    """Give freed memory back between stages: collect reference cycles (timm models have some), empty the CUDA
    cache, and ask glibc to return free heap pages to the system. Without the last step, each backbone's
    forward/backward buffers stay in the process's heap and the peak grows from one backbone to the next."""
    # Ctrl-C during the collection would raise KeyboardInterrupt inside a finalizer, where Python swallows it
    # ("Exception ignored in ...") and the run goes on: hold SIGINT until the collection is over.
    blocked = _block_sigint()
    try:
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        try:
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except (OSError, AttributeError):  # not glibc (macOS, musl): nothing to trim
            pass
    finally:
        if blocked:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGINT])


@contextlib.contextmanager
def long_lived_objects_frozen():
    """Move every object alive now (torch, timm and the other imports: about half a million) out of the
    collector's reach for the duration, so each full collection scans only what the run made. Without it,
    each ``release_memory`` spent about 0.4 s re-scanning the imports (10 s of a paper-preset run)."""
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def _block_sigint() -> bool:
    if not hasattr(signal, "pthread_sigmask") or threading.current_thread() is not threading.main_thread():
        return False
    return signal.SIGINT not in signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGINT])


def use_threads(count: int) -> None:
    """torch's intra-op threads for this process (a Ray task gets the cores it asked for)."""
    torch.set_num_threads(max(1, int(count)))


def thread_count() -> int:
    return torch.get_num_threads()
