"""One progress display for every long step, on both sides (download, pull, compression, stub build, install
extraction, copies): one stderr line, `label  [######........]  45%  12.3/27.0 MB  4.1 MB/s`, redrawn at most
ten times a second, and only on a terminal. A log or a CI job gets nothing from it."""

import sys
import time

WIDTH = 30
REDRAW = 0.1  # seconds between redraws


def on_terminal(stream=None):
    """Whether `stream` (default stderr) is a terminal a bar may be drawn on."""
    stream = sys.stderr if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no stream, or a closed one
        return False


class Bar:
    """One step's bar. `total` None draws bytes and rate only; `unit=None` draws the elapsed time only."""

    def __init__(self, label, total=None, stream=None, done=0, unit="MB"):
        self.label, self.total, self.unit = label, total, unit
        self.stream = sys.stderr if stream is None else stream
        self.done = self._first = done
        self._started = self._drawn_at = time.monotonic()
        self._draw()

    def update(self, done, total=None, force=False):
        self.done = done
        if total is not None:
            self.total = total
        now = time.monotonic()
        if force or now - self._drawn_at >= REDRAW:
            self._drawn_at = now
            self._draw()

    def close(self):
        self._draw()
        self.stream.write("\n")
        self.stream.flush()

    def line(self):
        elapsed = time.monotonic() - self._started
        if self.unit is None:
            return f"{self.label}  {int(elapsed)} s"
        parts = [self.label]
        if self.total:
            filled = min(WIDTH, WIDTH * self.done // self.total)
            percent = min(100, 100 * self.done // self.total)
            parts.append(f"[{'#' * filled}{'.' * (WIDTH - filled)}] {int(percent):3d}%")
            parts.append(f"{self.done / 1e6:.1f}/{self.total / 1e6:.1f} MB")
        else:
            parts.append("%.1f MB" % (self.done / 1e6))
        if elapsed >= 0.5:
            parts.append("%.1f MB/s" % ((self.done - self._first) / 1e6 / elapsed))
        return "  ".join(parts)

    def _draw(self):
        self.stream.write("\r" + self.line() + "\033[K")  # erase what a longer earlier line left
        self.stream.flush()


class Display:
    """A progress callback `(label, done, total)`: one bar per label; a new label ends the bar before it."""

    def __init__(self, stream=None):
        self.stream = stream
        self.bar = None

    def __call__(self, label, done, total=None):
        if self.bar is not None and self.bar.label != label:
            self.close()
        if self.bar is None:
            self.bar = Bar(label, total, self.stream, done=done)
        finished = total is not None and done >= total
        self.bar.update(done, total, force=finished)
        if finished:
            self.close()

    def close(self):
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _quiet(label, done, total=None):
    pass


def callback(progress=None, stream=None):
    """The progress callback for a `progress` argument: None draws on a terminal only, True always, False never;
    a callable is used as it is."""
    if callable(progress):
        return progress
    if progress or (progress is None and on_terminal(stream)):
        return Display(stream)
    return _quiet


def finish(display):
    """End the bar a callback from `callback()` may have open."""
    close = getattr(display, "close", None)
    if close is not None:
        close()
