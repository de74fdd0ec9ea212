"""The live view: cells, the no-colour marker, NO_COLOR, and the terminal put back on
every way out (q, an error, SIGTERM) - on a pseudo-terminal, no real screen needed."""
import io
import os
import select
import signal
import termios

import pytest
from rich.console import Console

from collector.aggregate.live_rows import LiveModel, LiveRow
from collector.views.live_state import ViewState
from collector.views.live_view import (
    ALERT_MARK,
    LiveView,
    colour_wanted,
    header_text,
    render,
    row_cells,
)
from collector.views.terminal_keys import TerminalKeys


@pytest.fixture(autouse=True)
def capable_terminal(monkeypatch):
    """What these tests draw on is a capable terminal whatever runs them: rich sends no
    control codes at all to TERM=dumb / unknown (ssh without a tty, sudo: the VM's CI)."""
    monkeypatch.setenv("TERM", "xterm-256color")
    monkeypatch.delenv("NO_COLOR", raising=False)


FLOOD = LiveRow("app.service", 2000.0, 662.5, 80_000.0, 0.0, 0.0, 0, 0, alerts=("writes",))
CLIENT = LiveRow("client\x1b[2J", 0.0, 0.0, 0.0, 0.0, 20.0, 0, 140, idle="32.8s-1.09m",
                 idle_share=0.85)


def text(renderable, colour, width=120):
    c = Console(file=io.StringIO(), width=width, force_terminal=colour, no_color=not colour,
                highlight=False)
    c.print(renderable)
    return c.file.getvalue()


def test_row_cells_exact():
    assert row_cells(FLOOD) == ("!", "app.service", "2000", "662.5", "78.1 KiB", "0", "0",
                                "-", "writes")
    assert row_cells(CLIENT) == (" ", "client\\x1b[2J", "0", "0", "0 B", "0", "20.0",
                                 "32.8s-1.09m 85%", "-")


def test_header_and_plural():
    st = ViewState()
    st.feed("s/app\rp")
    assert header_text("surgewatch snapshot web1", st, 12.0, 3.2, 1, 1) == (
        "surgewatch snapshot web1  window 12.0s  ends in 4s  sort avg  filter app  "
        "1 of 1 service  PAUSED")
    assert header_text("t", ViewState(), 1.0, None, 2, 5).endswith("sort now  2 of 5 services")


def test_no_colour_keeps_the_marker_and_has_no_escapes():
    out = text(render([FLOOD, CLIENT], ViewState(), "h"), colour=False)
    lines = [l.rstrip() for l in out.splitlines()]
    assert "\x1b" not in out
    assert lines[2].startswith(ALERT_MARK) and "app.service" in lines[2]
    assert lines[3].startswith(" ") and "client\\x1b[2J" in lines[3]
    assert lines[-1] == "q quit  s sort  / filter  r resets  p pause"


def test_colour_marks_alerting_rows_red():
    out = text(render([FLOOD, CLIENT], ViewState(), "h"), colour=True)
    flood = next(l for l in out.splitlines() if "app.service" in l)
    client = next(l for l in out.splitlines() if "client" in l)
    assert "\x1b[1;31m" in flood and "\x1b[1;31m" not in client


def test_no_color_environment():
    assert colour_wanted({}) and colour_wanted({"NO_COLOR": ""})
    assert not colour_wanted({"NO_COLOR": "1"})


def test_detail_and_filter_prompt_shown():
    st = ViewState()
    st.feed("r/ng")
    out = text(render([], st, "h", detail="TCP resets: 0 sent, 0 received in 1.0s"), False)
    lines = [l.rstrip() for l in out.splitlines()]
    assert "(no log writes or resets seen)" in lines
    assert "TCP resets: 0 sent, 0 received in 1.0s" in lines
    assert lines[-1].startswith("filter: ng_")


class FakeKeys:
    def __init__(self, *typed):
        self.typed, self.entered, self.closed = list(typed), False, 0

    def __enter__(self):
        self.entered = True

    def read(self):
        return self.typed.pop(0) if self.typed else ""

    def close(self):
        self.closed += 1


def model():
    m = LiveModel()
    m.add_interval([{"service": "a", "log_writes": 10, "log_bytes": 100}], {}, 1.0)
    return m


def console():
    return Console(file=io.StringIO(), width=100, height=30, force_terminal=True)


def test_q_quits_and_everything_is_put_back():
    keys = FakeKeys("", "q")
    before = signal.getsignal(signal.SIGTERM)
    with LiveView("t", 10, keys=keys, console=console()) as view:
        assert signal.getsignal(signal.SIGTERM) is not before
        view.show(model(), 1.0, 9.0)
        assert not view.quit
        view.show(model(), 1.0, 9.0)
        assert view.quit
    assert keys.closed == 1 and signal.getsignal(signal.SIGTERM) is before
    out = view.console.file.getvalue()
    assert out.index("\x1b[?1049h") < out.rindex("\x1b[?1049l")   # alternate screen left


def test_an_error_and_sigterm_put_the_terminal_back():
    keys = FakeKeys()
    with pytest.raises(RuntimeError), LiveView("t", 10, keys=keys, console=console()):
        raise RuntimeError("boom")
    assert keys.closed == 1
    keys = FakeKeys()
    with pytest.raises(SystemExit) as e, LiveView("t", 10, keys=keys, console=console()):
        os.kill(os.getpid(), signal.SIGTERM)
    assert e.value.code == 128 + signal.SIGTERM and keys.closed == 1


def test_terminal_keys_cbreak_and_restore_on_a_pty():
    master, slave = os.openpty()
    try:
        saved = termios.tcgetattr(slave)
        with pytest.raises(KeyboardInterrupt), TerminalKeys(slave) as keys:
            lflag = termios.tcgetattr(slave)[3]
            assert not lflag & termios.ICANON and not lflag & termios.ECHO
            assert lflag & termios.ISIG                # Ctrl-C still interrupts
            assert keys.read() == ""
            os.write(master, b"s/ng")
            select.select([slave], [], [], 5)        # the pty hands it over
            assert keys.read() == "s/ng"
            raise KeyboardInterrupt
        assert termios.tcgetattr(slave) == saved
    finally:
        os.close(master)
        os.close(slave)


class SuspendableKeys(FakeKeys):
    def __init__(self, *typed):
        super().__init__(*typed)
        self.log = []

    def suspend(self):
        self.log.append("suspend")

    def resume(self):
        self.log.append("resume")


def test_ctrl_z_gives_the_terminal_back_while_stopped_and_redraws_after(monkeypatch):
    keys = SuspendableKeys()
    stopped = []

    def kill(pid, signum):          # the stop itself: what the terminal is like meanwhile
        assert signal.getsignal(signal.SIGTSTP) == signal.SIG_DFL
        stopped.append((signum, list(keys.log), view.console.file.getvalue()[-20:]))

    with LiveView("t", 10, keys=keys, console=console()) as view:
        view.show(model(), 1.0, 9.0)
        view.show(model(), 1.0, 9.0)                 # nothing changed: no redraw
        frames = view.console.file.getvalue().count("\x1b[H")
        monkeypatch.setattr(os, "kill", kill)
        signal.getsignal(signal.SIGTSTP)(signal.SIGTSTP, None)
        monkeypatch.undo()
        assert keys.log == ["suspend", "resume"]
        assert signal.getsignal(signal.SIGTSTP) == view._stop
        view.state.paused = True                     # even paused, the screen comes back
        view.show(model(), 1.0, 9.0)
        assert view.console.file.getvalue().count("\x1b[H") > frames
    (signum, log, screen), = stopped
    assert signum == signal.SIGTSTP and log == ["suspend"]
    assert screen.endswith("\x1b[?1049l\x1b[?25h")   # normal screen, cursor shown
