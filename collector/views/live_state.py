"""What the live view's keys do (pure: characters in, state out).

q quit, s cycle the sort (live_rows.SORTS), / edit the filter (typed text applies at
once; Enter keeps it, Esc restores the previous one, an empty filter shows every
service), r the resets detail on/off, p pause (collection goes on; the screen is held).
"""
from collector.aggregate.live_rows import SORTS

KEYS_HELP = "q quit  s sort  / filter  r resets  p pause"
_ENTER, _ESC, _BACKSPACE = ("\r", "\n"), "\x1b", ("\x7f", "\b")


class ViewState:
    def __init__(self, sort="now"):
        self.sort_i = SORTS.index(sort)
        self.filter = ""
        self.editing = None        # the filter being typed, or None
        self.paused = False
        self.detail = False
        self.quit = False

    @property
    def sort(self):
        return SORTS[self.sort_i]

    @property
    def pattern(self):
        """The filter in effect (while typing: what has been typed)."""
        return self.editing if self.editing is not None else self.filter

    def feed(self, text):
        """Apply every key in `text`; returns whether anything changed."""
        changed = False
        for ch in text:
            changed = self._key(ch) or changed
        return changed

    def _key(self, ch):
        if self.editing is not None:
            if ch in _ENTER:
                self.filter, self.editing = self.editing, None
            elif ch == _ESC:
                self.editing = None
            elif ch in _BACKSPACE:
                self.editing = self.editing[:-1]
            elif ch.isprintable():
                self.editing += ch
            else:
                return False
            return True
        if ch == "q":
            self.quit = True
        elif ch == "s":
            self.sort_i = (self.sort_i + 1) % len(SORTS)
        elif ch == "/":
            self.editing = ""
        elif ch == "r":
            self.detail = not self.detail
        elif ch == "p":
            self.paused = not self.paused
        else:
            return False
        return True
