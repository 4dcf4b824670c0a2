"""Progress on stderr: bars (per backbone, and per batch with ETA) on a terminal, plain lines otherwise."""
from __future__ import annotations

import sys

import click


class BatchProgress:
    """``message`` for stage lines, ``update(name, stage, done, total)`` for counts. Bars only when stderr
    is a terminal; when it is not (CI, logs, pipes) the bars are silent and only lines are written."""

    def __init__(self, enabled: bool = True):
        self.enabled = enabled
        self.bars = enabled and sys.stderr.isatty()
        self._outer = None
        self._inner = None
        self._inner_key = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for bar in (self._inner, self._outer):
            if bar is not None:
                bar.close()
        return False

    def message(self, text: str) -> None:
        if not self.enabled:
            return
        if self.bars and (self._outer or self._inner):
            from tqdm import tqdm

            tqdm.write(f"reportgen: {text}", file=sys.stderr)
        else:
            click.echo(f"reportgen: {text}", err=True)

    def update(self, name: str, stage: str, done: int, total: int) -> None:
        if not self.bars:
            return
        from tqdm import tqdm

        if stage == "backbones":
            if self._outer is None:
                self._outer = tqdm(total=total, desc="backbones", unit="backbone", position=0, file=sys.stderr)
            self._outer.n = done
            self._outer.refresh()
            return
        key = (name, stage)
        if key != self._inner_key:
            if self._inner is not None:
                self._inner.close()
            self._inner = tqdm(total=total, desc=f"{name} {stage}", unit="img", position=1, leave=False,
                               file=sys.stderr)
            self._inner_key = key
        self._inner.n = done
        self._inner.refresh()
