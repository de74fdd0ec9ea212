"""Terminal table for `surgewatch snapshot`.

render_table() is pure (rows in, text out); LiveTable writes the final one (the live view
is views/live_view.py).
Names from the host are untrusted: control, format and separator characters are shown
escaped (\\n, \\x1b, \\u202e) so a process cannot break or spoof the layout.
"""
import os
import sys

from collector.aggregate.logrates import OTHERS
from collector.views.text import (display_width, escape, format_bytes, format_duration,
                                  format_pids, format_rate, take, truncate_end, truncate_middle)

SEP = "  "
# (header, width) of the fixed numeric columns, right-aligned.
_NUM_COLS = (("WRITES/S", 9), ("BYTES/S", 10), ("SHARE", 6))
_COUNT_COL = (("WRITES", 7),)      # the window's total, in the final table
_LOSS_COL = (("LOSS", 4),)         # the limit a row went over (docs/detection.md)
_SERVICE_MIN, _SERVICE_MAX = 8, 28
_PIDS_MIN, _PIDS_MAX = 4, 18
_PATH_MIN = 12
_PATH_WANT, _SERVICE_SHARE = 32, 16


def _pad(text, cells, right=False):
    gap = " " * max(0, cells - display_width(text))
    return gap + text if right else text + gap


def _clip(line, width):
    return line if display_width(line) <= width else take(line, width)


def risk_marks(risks):
    """{(service, path): LOSS column text} from {(service, path): {limit kinds}}
    (collector.aggregate.lossrisk.LossRisk.marks): "journald", "capacity" or both."""
    return {k: "+".join(sorted(v)) for k, v in risks.items() if v}


def render_table(rows, width, title, elapsed_s=None, counts=False, risks=None):
    """The table as text (lines joined by "\\n", no trailing newline).

    rows: [PathTotal] from Window.rows(); width: terminal columns (no line is longer);
    title: first part of the header line; elapsed_s: the window's length;
    counts: a WRITES column with each row's writes in the window (left out when the
    terminal is too narrow for it beside the rates); risks: {(service, path): kinds}
    of the rows at loss risk during the window (LossRisk.marks): a LOSS column naming
    the limit, shown only when there is one.
    """
    marks = risk_marks(risks or {})
    num_cols = (_COUNT_COL if counts else ()) + _NUM_COLS + (_LOSS_COL if marks else ())
    header = escape(title)
    if elapsed_s is not None:
        header += f"  window {format_duration(elapsed_s)}"
    lines = [_clip(header, width).rstrip()]

    cells = []
    for r in rows:
        if r.folded:
            service, path = OTHERS, f"({r.folded} more)"
        else:
            service, path = escape(r.service), escape(r.path)
        nums = (format_rate(r.writes_per_s), format_bytes(r.bytes_per_s),
                f"{r.share * 100:.1f}%")
        if marks:
            nums += ("" if r.folded else marks.get((r.service, r.path), "-"),)
        cells.append((service, r.pids, path) + ((str(r.writes),) if counts else ()) + nums)

    w_service = min(_SERVICE_MAX, max([_SERVICE_MIN] + [display_width(c[0]) for c in cells]))
    w_pids = min(_PIDS_MAX, max([_PIDS_MIN] + [len(",".join(map(str, c[1]))) for c in cells]))
    w_nums = [max([w] + [len(c[3 + i]) for c in cells]) for i, (_, w) in enumerate(num_cols)]
    w_path_needed = max([len("LOG PATH")] + [display_width(c[2]) for c in cells])
    # Numbers always show; when space is short, narrow SERVICE and PIDS (down to their
    # minimum) before LOG PATH goes below its own minimum; clip only as a last resort.
    avail = width - sum(w_nums) - len(SEP) * (2 + len(num_cols))
    w_path_min = min(w_path_needed, _PATH_MIN)
    if counts and _SERVICE_MIN + _PIDS_MIN + w_path_min > avail:
        # a narrow terminal: the window's count goes before any rate would be clipped
        return render_table(rows, width, title, elapsed_s, risks=risks)
    while w_service + w_pids + w_path_min > avail and (w_service > _SERVICE_MIN or w_pids > _PIDS_MIN):
        if w_service - _SERVICE_MIN >= w_pids - _PIDS_MIN:
            w_service -= 1
        else:
            w_pids -= 1
    w_path = max(w_path_min, min(w_path_needed, avail - w_service - w_pids))
    # A long service name gives way to the path first, down to _SERVICE_SHARE cells.
    while w_path < min(w_path_needed, _PATH_WANT) and w_service > _SERVICE_SHARE:
        w_service -= 1
        w_path += 1

    def line(service, pids, path, nums):
        parts = [_pad(service, w_service), _pad(pids, w_pids), _pad(path, w_path)]
        parts += [_pad(n, w, right=True) for n, w in zip(nums, w_nums)]
        return _clip(SEP.join(parts), width).rstrip()

    lines.append(line("SERVICE", "PIDS", "LOG PATH", [h for h, _ in num_cols]))
    if not cells:
        lines.append("(no log writes seen)")
    for service, pids, path, *nums in cells:
        lines.append(line(truncate_end(service, w_service), format_pids(pids, w_pids),
                          truncate_middle(path, w_path), nums))
    return "\n".join(lines)


class LiveTable:
    """Writes the final render_table() on `stream`, as wide as its terminal (or
    DEFAULT_WIDTH); `live` says whether the stream is a terminal (snapshot's live view)."""

    DEFAULT_WIDTH = 160     # when the stream is not a terminal

    def __init__(self, stream=None, width=None):
        self.stream = stream if stream is not None else sys.stdout
        try:
            self.live = self.stream.isatty()
        except (AttributeError, ValueError):
            self.live = False
        self._width = width
        self._note = 0          # width of a progress note standing on the current line

    def progress(self, text):
        """A note on the terminal's current line (nothing when not a terminal) until
        clear_progress() wipes it: what comes next on that line may be shorter."""
        if self.live:
            self._write(text + "\r")
            self._note = max(self._note, len(text))

    def clear_progress(self):
        if self._note:
            self._write(" " * self._note + "\r")
            self._note = 0

    def width(self):
        if self.live:
            try:
                return self._width or os.get_terminal_size(self.stream.fileno()).columns
            except (AttributeError, OSError, ValueError):
                pass
        return self._width or self.DEFAULT_WIDTH

    def _write(self, text):
        try:
            self.stream.write(text)
        except UnicodeEncodeError:
            enc = getattr(self.stream, "encoding", None) or "ascii"
            self.stream.write(text.encode(enc, "backslashreplace").decode(enc))
        self.stream.flush()

    def final(self, rows, title, elapsed_s=None, counts=False, risks=None):
        self._write(render_table(rows, self.width(), title, elapsed_s, counts, risks) + "\n")
