"""Text for a person's terminal, shared by the table, the resets view and tail: control
characters escaped, widths in terminal cells (wide and combining characters), truncation,
and rates, bytes, durations and pid lists formatted."""
import unicodedata

ELLIPSIS = "..."
_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}

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


def take(text, cells, from_end=False):
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
        return take(text, cells)
    return take(text, cells - len(ELLIPSIS)) + ELLIPSIS


def truncate_middle(text, cells):
    """text cut to `cells` with "..." in the middle (keeps a path's start and file name)."""
    if display_width(text) <= cells:
        return text
    if cells <= len(ELLIPSIS):
        return take(text, cells)
    room = cells - len(ELLIPSIS)
    tail = take(text, room - room // 2, from_end=True)
    head = take(text, room - display_width(tail))
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


def plural(n, word, words=None):
    """ "1 service", "2 services" ("1 process", "3 processes" with words given)."""
    return f"{n} {word if n == 1 else (words or word + 's')}"
