"""Text from any local user (process names, log paths) reaches the daemon's log lines and
`compare`'s report through one escaping function, collector/views/text.py's escape(), as
it reaches the table, the live view and tail (docs/reliability.md, "Hostile local user")."""
import io

from collector.aggregate.compare import compare
from collector.commands.compare import render_compare
from collector.commands.process import StderrLog
from collector.views.text import display_width, escape
from tests.unit.test_gate import profile_of, stream

# ESC [ 2 J (clear screen), OSC 0 (set the window title) ended by BEL, CR, a newline, DEL
HOSTILE_COMM = "ev\x1b[2Jil\rx"
HOSTILE_PATH = "/var/log/a\x1b]0;pwned\x07b\nc\x7f.log"


def test_escape_names_every_control_character():
    assert escape(HOSTILE_COMM) == "ev\\x1b[2Jil\\rx"
    assert escape(HOSTILE_PATH) == "/var/log/a\\x1b]0;pwned\\x07b\\nc\\x7f.log"
    assert escape("caf\u00e9 \u65e5\u672c") == "caf\u00e9 \u65e5\u672c"      # text stays


def _no_control(text):
    return not any(ord(c) < 0x20 or 0x7f <= ord(c) < 0xa0 for c in text)


def test_stderr_log_escapes_names_and_paths():
    out = io.StringIO()
    log = StderrLog(out, journald=False)
    log("warning", f"alert open: {HOSTILE_COMM} log writes 900 lines/s; top: {HOSTILE_PATH}")
    line = out.getvalue()
    assert line == ("surgewatch: warning: alert open: ev\\x1b[2Jil\\rx log writes 900 "
                    "lines/s; top: /var/log/a\\x1b]0;pwned\\x07b\\nc\\x7f.log\n")
    assert line.count("\n") == 1 and _no_control(line[:-1])


def test_stderr_log_escapes_under_journald_too():
    out = io.StringIO()
    StderrLog(out, journald=True)("error", f"reload refused: {HOSTILE_PATH}")
    assert out.getvalue() == "<3>reload refused: /var/log/a\\x1b]0;pwned\\x07b\\nc\\x7f.log\n"


def test_compare_report_escapes_names_and_keeps_its_columns():
    hostile = "app\x1b[31m\r\u65e5"            # an escape, a CR and a wide character
    base = profile_of(stream(10, {hostile: 10, "db.service": 10}))
    cur = profile_of(stream(10, {hostile: 5000, "db.service": 10}))
    text = render_compare(compare(base, cur), "prod\x1b[0m.json", "test.json")
    assert _no_control(text.replace("\n", ""))
    lines = text.splitlines()
    assert lines[0].startswith("baseline prod\\x1b[0m.json, current test.json")
    table = [ln for ln in lines[1:] if ln.startswith(("SERVICE", "app", "db.service"))]
    assert len(table) == 3
    # every row's SIGNAL column starts in the same terminal cell as the header's
    col = display_width(table[0][:table[0].index("SIGNAL")])
    for ln in table[1:]:
        name = ln.split("  ")[0]
        assert display_width(name) <= col
        assert display_width(ln[:ln.index("log ")]) == col, ln
    assert "app\\x1b[31m\\r\u65e5" in table[1]
    assert lines[-1] == "FAIL: 1 service over the limits: app\\x1b[31m\\r\u65e5"
