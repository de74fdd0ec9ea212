"""`surgewatch snapshot`'s live view on a terminal (rich): per service the log-write rate
now beside the window average, bytes now, resets sent and received now, the idle bucket
of the recent resets, alerting rows marked, and the keys of live_state.

render() turns rows and the key state into a rich renderable (no terminal needed);
LiveView runs it full-screen and puts the terminal back on every way out (q, the end,
Ctrl-C, SIGTERM, an error) and while stopped by Ctrl-Z. Host-supplied names are shown as plain, escaped text:
never as rich markup.
"""
import math
import os
import signal
import threading

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from collector.views.live_state import KEYS_HELP, ViewState
from collector.views.text import escape, format_bytes, format_duration, format_rate

ALERT_MARK = "!"            # the no-colour marker of an alerting row
ALERT_STYLE = "bold red"
COLUMNS = (("", "left"), ("SERVICE", "left"), ("WRITES/S NOW", "right"),
           ("AVG", "right"), ("BYTES/S NOW", "right"), ("RST SENT/S", "right"),
           ("RST RECV/S", "right"), ("IDLE (RECENT)", "left"), ("ALERT", "left"))
_CHROME_LINES = 5           # header, column titles, footer and spacing around the table


def colour_wanted(environ=None):
    """False when NO_COLOR is set to anything non-empty (https://no-color.org)."""
    environ = os.environ if environ is None else environ
    return not environ.get("NO_COLOR")


def row_cells(row):
    """The text of one LiveRow's cells, in COLUMNS order."""
    idle = f"{row.idle} {row.idle_share:.0%}" if row.idle else "-"
    return (ALERT_MARK if row.alerts else " ", escape(row.service),
            format_rate(row.writes_now), format_rate(row.writes_avg),
            format_bytes(row.bytes_now), format_rate(row.sent_now),
            format_rate(row.received_now), idle, ",".join(row.alerts) or "-")


def header_text(title, state, elapsed_s, countdown_s, shown, total):
    parts = [escape(title), f"window {format_duration(elapsed_s)}"]
    if countdown_s is not None:
        parts.append(f"ends in {max(0, math.ceil(countdown_s))}s")
    parts.append(f"sort {state.sort}")
    if state.pattern:
        parts.append(f"filter {escape(state.pattern)}")
    parts.append(f"{shown} of {total} service{'' if total == 1 else 's'}")
    if state.paused:
        parts.append("PAUSED")
    return "  ".join(parts)


def footer_text(state):
    if state.editing is not None:
        return f"filter: {escape(state.editing)}_   (Enter keep, Esc cancel; * ? [ glob)"
    return KEYS_HELP


def render(rows, state, header, detail=None, colour=True):
    """rows: [LiveRow]; state: ViewState; header: header_text(); detail: the resets
    detail text (shown when state.detail), or None."""
    table = Table(box=None, pad_edge=False, padding=(0, 1), show_edge=False,
                  header_style="bold" if colour else "")
    for name, justify in COLUMNS:
        table.add_column(name, justify=justify, no_wrap=True,
                         overflow="ellipsis", max_width=40 if name == "SERVICE" else None)
    for row in rows:
        style = ALERT_STYLE if (row.alerts and colour) else ""
        table.add_row(*(Text(c) for c in row_cells(row)), style=style)
    parts = [Text(header, style="bold" if colour else ""), table]
    if not rows:
        parts.append(Text("(no log writes or resets seen)"))
    if state.detail and detail:
        parts += [Text(""), Text(detail)]
    parts += [Text(""), Text(footer_text(state), style="dim" if colour else "")]
    return Group(*parts)


class LiveView:
    """The full-screen view. show() is called on the loop's ticks; it reads the keys,
    redraws when something changed, and `quit` tells the loop to end the window."""

    def __init__(self, title, top, keys=None, console=None):
        self.title, self.top, self.keys = title, top, keys
        self.colour = colour_wanted()
        self.console = console or Console(no_color=not self.colour, highlight=False)
        self.state = ViewState()
        self._live = None
        self._old_signals = {}
        self._drawn = None
        self._force = False       # redraw at the next show(), paused or not

    @property
    def quit(self):
        return self.state.quit

    def __enter__(self):
        try:
            if self.keys is not None:
                self.keys.__enter__()
            if threading.current_thread() is threading.main_thread():
                self._old_signals = {signal.SIGTERM: signal.signal(signal.SIGTERM, _terminate),
                                     signal.SIGTSTP: signal.signal(signal.SIGTSTP, self._stop)}
            self._live = Live(console=self.console, screen=True, auto_refresh=False,
                              redirect_stdout=False, redirect_stderr=False)
            self._live.start()
        except BaseException:
            self.close()
            raise
        return self

    def rows_room(self, detail_lines=0):
        return max(1, self.console.size.height - _CHROME_LINES - detail_lines)

    def show(self, model, elapsed_s, countdown_s, detail=None):
        """Redraw from `model` (live_rows.LiveModel) when keys, data (a new interval) or
        the countdown's second changed, unless paused; detail: a callable returning the
        resets detail text (called only when it is shown)."""
        changed = self.state.feed(self.keys.read()) if self.keys is not None else False
        tick = (math.ceil(countdown_s) if countdown_s is not None else None, model.intervals)
        if not changed and not self._force and (self.state.paused or tick == self._drawn):
            return
        self._drawn, self._force = tick, False
        detail = detail() if (detail is not None and self.state.detail) else None
        detail_lines = detail.count("\n") + 2 if detail else 0
        top = min(self.top, self.rows_room(detail_lines))
        rows = model.rows(self.state.sort, self.state.pattern, top=top)
        header = header_text(self.title, self.state, elapsed_s, countdown_s, len(rows),
                             model.count())
        self._live.update(render(rows, self.state, header, detail, self.colour),
                          refresh=True)

    def close(self):
        if self._live is not None:
            try:
                self._live.stop()
            finally:
                self._live = None
        for signum, old in self._old_signals.items():
            signal.signal(signum, old)
        self._old_signals = {}
        if self.keys is not None:
            self.keys.close()

    def __exit__(self, *exc):
        self.close()

    def _stop(self, signum, frame):
        """Ctrl-Z: the shell gets its terminal back (mode, screen, cursor) while we are
        stopped; on `fg` the view takes it again and redraws."""
        if self.keys is not None:
            self.keys.suspend()
        self.console.set_alt_screen(False)
        self.console.show_cursor(True)
        signal.signal(signal.SIGTSTP, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTSTP)          # stops here until SIGCONT
        signal.signal(signal.SIGTSTP, self._stop)
        if self.keys is not None:
            self.keys.resume()
        self.console.set_alt_screen(True)
        self.console.show_cursor(False)
        self._force = True                            # redraw at the next tick


def _terminate(signum, frame):
    # SIGTERM unwinds like an error, so the `with` puts the terminal back
    raise SystemExit(128 + signum)
