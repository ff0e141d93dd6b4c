"""The agent's output while it works, for ``loopwright run`` and ``resume`` (issue 9, point 3).

:class:`AgentTail` is the engine's ``output_observer``. On a terminal it keeps the last
:data:`TAIL_LINES` lines for the live display (shown under the progress panel); when the output is
piped (a file, CI) it prints each complete line as it comes, prefixed ``agent| ``. ``--quiet``
(and ``--json``) passes no observer at all, so nothing of the agent is printed.

Lines are cleaned for a terminal (:func:`clean_line`): ANSI escape sequences (colours, cursor
moves, window titles) and other control characters are removed, and a carriage return keeps only
what follows it (a progress bar shows its last state).
"""

from __future__ import annotations

import re
import threading
from collections import deque

from rich.console import Console, RenderableType
from rich.text import Text

#: Lines of the agent's output shown under the live display.
TAIL_LINES = 8
#: Prefix of each agent line when the output is not a terminal.
PIPE_PREFIX = "agent| "
#: Characters kept of a line without an end (a partial line longer than this is shown cut).
MAX_LINE_CHARS = 4_096

_ESCAPES = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"  # CSI: colours, cursor moves
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?"  # OSC: window title, hyperlinks
    r"|\x1b[PX^_][^\x1b]*(?:\x1b\\)?"  # DCS, SOS, PM, APC strings
    r"|\x1b[ -/]*[0-~]?"  # other escapes
)
_CONTROLS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\x80-\x9f]")


def clean_line(line: str) -> str:
    """``line`` without escape sequences and control characters (tab kept); after a carriage
    return, only what follows the last one (outside a trailing ``\\r``)."""
    line = _ESCAPES.sub("", line).rstrip("\r")
    if "\r" in line:
        line = line.rsplit("\r", 1)[1]
    return _CONTROLS.sub("", line)


def clean_text(text: str) -> str:
    """Multi-line ``text`` cleaned line by line (:func:`clean_line`), newlines kept."""
    return "\n".join(clean_line(line) for line in text.split("\n"))


class AgentTail:
    """The engine's output observer for the CLI (thread-safe: the agent's stdout and stderr
    are read on two threads).

    Args:
        console: where piped lines are printed.
        live: True on a terminal (keep the last lines for :meth:`renderable`), False to print
            each line with :data:`PIPE_PREFIX`.
        lines: how many lines :meth:`renderable` shows.
    """

    def __init__(self, console: Console, *, live: bool, lines: int = TAIL_LINES) -> None:
        self.console = console
        self.live = live
        self._lines: deque[str] = deque(maxlen=lines)
        self._partial: dict[str, str] = {}
        self._lock = threading.Lock()

    def __call__(self, stream: str, text: str) -> None:
        """Take a chunk of the agent's ``stream`` (``"stdout"`` or ``"stderr"``)."""
        with self._lock:
            pending = self._partial.get(stream, "") + text
            *complete, rest = pending.split("\n")
            self._partial[stream] = rest[-MAX_LINE_CHARS:]
            cleaned = [clean_line(line) for line in complete]
            if self.live:
                self._lines.extend(cleaned)
        if not self.live:
            for line in cleaned:
                self.console.print(PIPE_PREFIX + line, markup=False, highlight=False, soft_wrap=True)

    def finish(self) -> None:
        """The agent ended: its unfinished lines count as lines (printed when piped)."""
        with self._lock:
            rest = [clean_line(text) for text in self._partial.values() if text]
            self._partial.clear()
            if self.live:
                self._lines.extend(rest)
        if not self.live:
            for line in rest:
                self.console.print(PIPE_PREFIX + line, markup=False, highlight=False, soft_wrap=True)

    def reset(self) -> None:
        """A new iteration starts: forget the last one's lines."""
        with self._lock:
            self._lines.clear()
            self._partial.clear()

    def lines(self) -> list[str]:
        """The last lines, oldest first, with the current unfinished line of each stream."""
        with self._lock:
            shown = list(self._lines) + [clean_line(t) for t in self._partial.values() if t]
        return shown[-(self._lines.maxlen or TAIL_LINES) :]

    def renderable(self) -> RenderableType | None:
        """The last lines for the live display (each cut to one screen line), or None."""
        shown = self.lines()
        if not shown:
            return None
        text = Text(no_wrap=True, overflow="ellipsis", style="dim")
        for number, line in enumerate(shown):
            text.append(("\n" if number else "") + "agent│ " + line)
        return text
