import io
import unicodedata

from collector.aggregate.logrates import Window
from collector.records.model import LogWrite
from collector.views.table import LiveTable, render_table
from collector.views.text import (display_width, escape, format_bytes, format_duration,
                                  format_pids, truncate_middle)


def window():
    w = Window()
    w.add_writes([
        LogWrite(101, "app", "app.service", "/var/log/app/app.log", 300, 30000),
        LogWrite(102, "app", "app.service", "/var/log/app/app.log", 200, 2000000),
        LogWrite(103, "app-worker", "app.service", "/var/log/app/worker.log", 10, 500),
        LogWrite(7, "nginx", "nginx.service", "/var/log/nginx/access.log", 40, 8000),
    ], 0, 10.0)
    return w


GOLDEN_80 = """\
surgewatch snapshot web1  window 10.0s
SERVICE        PIDS     LOG PATH                    WRITES/S     BYTES/S   SHARE
app.service    101,102  /var/log/app/app.log            50.0   198.2 KiB   90.9%
nginx.service  7        /var/log/nginx/access.log       4.00       800 B    7.3%
app.service    103      /var/log/app/worker.log         1.00        50 B    1.8%"""

GOLDEN_FINAL_60 = """\
surgewatch snapshot web1  window 1m15s
SERVICE   PIDS   LOG PATH       WRITES/S     BYTES/S   SHARE
app.s...  +2     /var...p.log       50.0   198.2 KiB   90.9%
nginx...  7      /var...s.log       4.00       800 B    7.3%
app.s...  103    /var...r.log       1.00        50 B    1.8%"""

GOLDEN_TOP1 = """\
t
SERVICE      PIDS     LOG PATH               WRITES/S     BYTES/S   SHARE
app.service  101,102  /var/log/app/app.log       50.0   198.2 KiB   90.9%
(others)     7,103    (2 more)                   5.00       850 B    9.1%"""


def test_golden_80():
    out = render_table(window().rows(), 80, "surgewatch snapshot web1", elapsed_s=10.0)
    assert out == GOLDEN_80


def test_golden_narrow_final():
    out = render_table(window().rows(), 60, "surgewatch snapshot web1", elapsed_s=75.0)
    assert out == GOLDEN_FINAL_60
    assert all(len(line) <= 60 for line in out.split("\n"))



def test_narrow_final_leaves_out_the_count_before_clipping_a_rate():
    out = render_table(window().rows(), 60, "surgewatch snapshot web1", elapsed_s=75.0,
                       counts=True)
    assert out == GOLDEN_FINAL_60                        # SHARE kept, WRITES left out
    wide = render_table(window().rows(), 80, "t", elapsed_s=1.0, counts=True)
    assert wide.split("\n")[1].split() == ["SERVICE", "PIDS", "LOG", "PATH", "WRITES",
                                            "WRITES/S", "BYTES/S", "SHARE"]

def test_golden_top_with_others():
    assert render_table(window().rows(top=1), 80, "t") == GOLDEN_TOP1


def test_empty():
    assert render_table([], 80, "t", elapsed_s=0) == (
        "t  window 0.0s\n"
        "SERVICE   PIDS  LOG PATH   WRITES/S     BYTES/S   SHARE\n"
        "(no log writes seen)")


def test_formatters():
    assert [format_bytes(x) for x in (0, 512, 1023, 1024, 1258, 5 * 1024 ** 2, 3 * 1024 ** 3)] == [
        "0 B", "512 B", "1023 B", "1.0 KiB", "1.2 KiB", "5.0 MiB", "3.0 GiB"]
    assert [format_duration(s) for s in (0, 12.34, 65, 3725)] == ["0.0s", "12.3s", "1m05s", "1h02m"]
    assert format_pids([1, 2, 3], 20) == "1,2,3"
    assert format_pids([1001, 1002, 1003, 1004], 12) == "1001,1002 +2"
    assert format_pids([1001, 1002], 3) == "+2"
    assert truncate_middle("/var/log/very/long/path/app.log", 15) == "/var/l...pp.log"
    assert truncate_middle("short", 15) == "short"


HOSTILE = [
    LogWrite(66, "evil\nname", "evil\x1b[2J.service", "/tmp/a\nb\r\tc\x7f\x9b.log", 9, 90),
    LogWrite(67, "rtl", "spoof\u202egol.service", "/tmp/\u2028line\u0000.log", 8, 80),
    LogWrite(68, "wide", "日本語サービス名前がとても長いサービス", "/var/log/日本語/ログ.log", 7, 70),
    LogWrite(69, "bytes", "bad\udcffname", "/tmp/e\u0301\u200d.log", 6, 60),
]


def _assert_safe(text, width):
    for line in text.split("\n"):
        for ch in line:
            assert unicodedata.category(ch) not in ("Cc", "Cf", "Cs", "Zl", "Zp"), repr(line)
        assert display_width(line) <= width, repr(line)


def test_hostile_names_escaped_and_layout_kept():
    w = Window()
    w.add_writes(HOSTILE, 0, 1.0)
    for width in (200, 80, 60, 40):
        out = render_table(w.rows(), width, "host\nname", elapsed_s=1.0)
        assert len(out.split("\n")) == 2 + len(HOSTILE)
        assert out.startswith("host\\nname  window 1.0s")
        _assert_safe(out, width)
    wide = render_table(w.rows(), 200, "t")
    assert "evil\\x1b[2J.service" in wide
    assert "/tmp/a\\nb\\r\\tc\\x7f\\x9b.log" in wide
    assert "spoof\\u202egol.service" in wide and "/tmp/\\u2028line\\x00.log" in wide
    assert "bad\\xffname" in wide


def test_escape():
    assert escape("a\nb\x1b\u202e\udcfe\U000e0001") == "a\\nb\\x1b\\u202e\\xfe\\U000e0001"
    assert escape("nginx.service café 日本") == "nginx.service café 日本"


class FakeTTY(io.StringIO):
    def isatty(self):
        return True


def test_final_table_not_a_tty_is_plain_text_at_default_width():
    out = io.StringIO()
    LiveTable(out).final(window().rows(), "t", elapsed_s=10.0)
    text = out.getvalue()
    assert "\x1b" not in text and "ends in" not in text
    assert text == render_table(window().rows(), LiveTable.DEFAULT_WIDTH, "t", 10.0) + "\n"
    assert text.startswith("t  window 10.0s\nSERVICE")


def test_final_table_on_a_tty_is_the_same_text_at_its_width():
    out = FakeTTY()
    LiveTable(out, width=80).final(window().rows(), "surgewatch snapshot web1", elapsed_s=10.0)
    assert out.getvalue() == GOLDEN_80 + "\n"
