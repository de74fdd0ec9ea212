"""Terminal table for `surgewatch snapshot`.

render_table() is pure (rows in, text out); LiveTable redraws it in place on a TTY.
Names from the host are untrusted: control, format and separator characters are shown
escaped (\\n, \\x1b, \\u202e) so a process cannot break or spoof the layout.
"""
import math
import os
import sys
import unicodedata

from collector.aggregate.logrates import OTHERS

SEP = "  "
ELLIPSIS = "..."
_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}

# (header, width) of the fixed numeric columns, right-aligned.
_NUM_COLS = (("WRITES/S", 9), ("BYTES/S", 10), ("SHARE", 6))
_SERVICE_MIN, _SERVICE_MAX = 8, 28
_PIDS_MIN, _PIDS_MAX = 4, 18
_PATH_MIN = 12
_PATH_WANT, _SERVICE_SHARE = 32, 16


def escape(text):
    """text with characters that would break a terminal line shown as escapes."""
    out = []
    for ch in text:
        cat = unicodedata.category(ch)
        if cat in ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"):
            if ch in _ESCAPES:
                out.append(_ESCAPES[ch])
            else:
                cp = ord(ch)
                if 0xDC80 <= cp <= 0xDCFF:      # undecodable byte (os.fsdecode)
                    out.append(f"\\x{cp - 0xDC00:02x}")
                elif cp <= 0xFF:
                    out.append(f"\\x{cp:02x}")
                elif cp <= 0xFFFF:
                    out.append(f"\\u{cp:04x}")
                else:
                    out.append(f"\\U{cp:08x}")
        else:
            out.append(ch)
    return "".join(out)


def _char_width(ch):
    if unicodedata.combining(ch):
        return 0
    return 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1


def display_width(text):
    """Terminal cells `text` takes (after escape(): no control characters left)."""
    return sum(_char_width(ch) for ch in text)


def _take(text, cells, from_end=False):
    """The longest prefix (or suffix) of text that fits in `cells` terminal cells."""
    used, n = 0, 0
    seq = reversed(text) if from_end else text
    for ch in seq:
        w = _char_width(ch)
        if used + w > cells:
            break
        used += w
        n += 1
    if from_end:
        return text[len(text) - n:] if n else ""
    return text[:n]


def truncate_end(text, cells):
    """text cut to `cells`, ending with "..." when cut."""
    if display_width(text) <= cells:
        return text
    if cells <= len(ELLIPSIS):
        return _take(text, cells)
    return _take(text, cells - len(ELLIPSIS)) + ELLIPSIS


def truncate_middle(text, cells):
    """text cut to `cells` with "..." in the middle (keeps a path's start and file name)."""
    if display_width(text) <= cells:
        return text
    if cells <= len(ELLIPSIS):
        return _take(text, cells)
    room = cells - len(ELLIPSIS)
    tail = _take(text, room - room // 2, from_end=True)
    head = _take(text, room - display_width(tail))
    return head + ELLIPSIS + tail


def format_pids(pids, cells):
    """Comma-joined pids; when they do not fit, as many as fit then " +N" more."""
    full = ",".join(str(p) for p in pids)
    if len(full) <= cells:
        return full
    for keep in range(len(pids) - 1, -1, -1):
        text = ",".join(str(p) for p in pids[:keep]) + f" +{len(pids) - keep}"
        if len(text.strip()) <= cells:
            return text.strip()
    return truncate_end(f"+{len(pids)}", cells)


def format_rate(x):
    if x == 0:
        return "0"
    if x < 10:
        return f"{x:.2f}"
    if x < 1000:
        return f"{x:.1f}"
    return f"{x:.0f}"


_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")


def format_bytes(x):
    """Human size with binary units: 0 B, 512 B, 1.2 KiB, 3.4 MiB."""
    if x < 1024:
        return f"{x:.0f} B"
    for unit in _UNITS[1:]:
        x /= 1024.0
        if x < 1024 or unit == _UNITS[-1]:
            return f"{x:.1f} {unit}"


def format_duration(s):
    """12.0s, 3m05s, 1h02m."""
    if s < 60:
        return f"{s:.1f}s"
    s = int(s)
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def _pad(text, cells, right=False):
    gap = " " * max(0, cells - display_width(text))
    return gap + text if right else text + gap


def _clip(line, width):
    return line if display_width(line) <= width else _take(line, width)


def render_table(rows, width, title, countdown_s=None, elapsed_s=None):
    """The table as text (lines joined by "\\n", no trailing newline).

    rows: [PathTotal] from Window.rows(); width: terminal columns (no line is longer);
    title: first part of the header line; elapsed_s: window length so far;
    countdown_s: seconds until the snapshot ends (live mode), None for a final render.
    """
    header = escape(title)
    if elapsed_s is not None:
        header += f"  window {format_duration(elapsed_s)}"
    if countdown_s is not None:
        header += f"  ends in {max(0, math.ceil(countdown_s))}s"
    lines = [_clip(header, width).rstrip()]

    cells = []
    for r in rows:
        if r.folded:
            service, path = OTHERS, f"({r.folded} more)"
        else:
            service, path = escape(r.service), escape(r.path)
        cells.append((service, r.pids, path, format_rate(r.writes_per_s),
                      format_bytes(r.bytes_per_s), f"{r.share * 100:.1f}%"))

    w_service = min(_SERVICE_MAX, max([_SERVICE_MIN] + [display_width(c[0]) for c in cells]))
    w_pids = min(_PIDS_MAX, max([_PIDS_MIN] + [len(",".join(map(str, c[1]))) for c in cells]))
    w_nums = [max([w] + [len(c[3 + i]) for c in cells]) for i, (_, w) in enumerate(_NUM_COLS)]
    w_path_needed = max([len("LOG PATH")] + [display_width(c[2]) for c in cells])
    # Numbers always show; when space is short, narrow SERVICE and PIDS (down to their
    # minimum) before LOG PATH goes below its own minimum; clip only as a last resort.
    avail = width - sum(w_nums) - len(SEP) * 5
    w_path_min = min(w_path_needed, _PATH_MIN)
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

    lines.append(line("SERVICE", "PIDS", "LOG PATH", [h for h, _ in _NUM_COLS]))
    if not cells:
        lines.append("(no log writes seen)")
    for service, pids, path, *nums in cells:
        lines.append(line(truncate_end(service, w_service), format_pids(pids, w_pids),
                          truncate_middle(path, w_path), nums))
    return "\n".join(lines)


class LiveTable:
    """Shows render_table() output on `stream`.

    On a TTY, update() redraws in place (cursor home, clear each line, clear below);
    elsewhere update() writes nothing, so a pipe or file gets only the final table.
    final() always writes the table once more without countdown.
    """

    CURSOR_HOME = "\x1b[H"
    CLEAR_EOL = "\x1b[K"
    CLEAR_BELOW = "\x1b[J"
    DEFAULT_WIDTH = 160     # when the stream is not a terminal

    def __init__(self, stream=None, width=None):
        self.stream = stream if stream is not None else sys.stdout
        try:
            self.live = self.stream.isatty()
        except (AttributeError, ValueError):
            self.live = False
        self._width = width
        self._drawn = False

    def size(self):
        """(columns, lines) to render for."""
        if self.live:
            try:
                cols, lines = os.get_terminal_size(self.stream.fileno())
                return (self._width or cols), lines
            except (AttributeError, OSError, ValueError):
                pass
        return (self._width or self.DEFAULT_WIDTH), 0

    def max_rows(self, default=20):
        """Rows that fit on the terminal below the two header lines (for Window.rows(top=...))."""
        lines = self.size()[1]
        return max(1, lines - 4) if lines else default

    def _write(self, text):
        try:
            self.stream.write(text)
        except UnicodeEncodeError:
            enc = getattr(self.stream, "encoding", None) or "ascii"
            self.stream.write(text.encode(enc, "backslashreplace").decode(enc))
        self.stream.flush()

    def update(self, rows, title, countdown_s=None, elapsed_s=None):
        if not self.live:
            return
        text = render_table(rows, self.size()[0], title, countdown_s, elapsed_s)
        body = "".join(l + self.CLEAR_EOL + "\n" for l in text.split("\n"))
        self._write(self.CURSOR_HOME + (self.CLEAR_BELOW if not self._drawn else "")
                    + body + self.CLEAR_BELOW)
        self._drawn = True

    def final(self, rows, title, elapsed_s=None):
        text = render_table(rows, self.size()[0], title, None, elapsed_s)
        if self.live and self._drawn:
            body = "".join(l + self.CLEAR_EOL + "\n" for l in text.split("\n"))
            self._write(self.CURSOR_HOME + body + self.CLEAR_BELOW)
        else:
            self._write(text + "\n")
