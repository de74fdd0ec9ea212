"""`surgewatch run` started by hand has the outputs it has under its unit (segments,
socket, Prometheus): records go to stdout only when asked for (--format msgpack|json,
outputs.stdout.format) or when stdout is a pipe or a file (format "auto", the default),
and one line at start says which (collector/sinks/stdout.auto_format)."""
import io
import os
import signal
import socket

import msgpack
import pytest

from collector import config
from collector.commands import process
from collector.commands import run as daemon
from collector.errors import BadInput
from collector.sinks.stdout import auto_format
from tests.support.loopback import free_port
from tests.unit.test_daemon_parts import FakeCollector


@pytest.fixture
def ends():
    opened = []

    def end(kind):
        if kind == "pipe":
            r, w = os.pipe()
            opened.append(os.fdopen(r, "rb"))
            f = os.fdopen(w, "wb")
        elif kind == "terminal":
            master, slave = os.openpty()
            opened.append(os.fdopen(master, "rb"))
            f = os.fdopen(slave, "wb")
        elif kind == "socket":
            a, b = socket.socketpair()
            opened.append(b)
            f = a.makefile("wb")
            opened.append(a)
        else:
            f = open(kind, "wb")
        opened.append(f)
        return f

    yield end
    for f in opened:
        f.close()


@pytest.mark.parametrize(("kind", "want"), [
    ("pipe", ("msgpack", "a pipe")),
    ("terminal", ("none", "a terminal")),
    ("socket", ("none", "a socket")),                       # journald's stream, a unit's
    (os.devnull, ("none", "not a pipe or a file")),          # StandardOutput=null
])
def test_auto_writes_to_a_pipe_or_file_only(ends, kind, want):
    assert auto_format(ends(kind)) == want


def test_auto_to_a_regular_file_and_to_a_stream_without_a_descriptor(tmp_path, ends):
    assert auto_format(ends(str(tmp_path / "out.msgpack"))) == ("msgpack", "a file")
    assert auto_format(io.BytesIO())[0] == "msgpack"          # a caller's own stream


def test_the_default_is_auto_and_the_config_and_flag_take_it():
    assert config.Config().stdout_format == "auto"
    assert config.parse({"outputs": {"stdout": {"format": "auto"}}}, path="t").stdout_format \
        == "auto"
    with pytest.raises(BadInput, match="auto, msgpack, json, none"):
        config.parse({"outputs": {"stdout": {"format": "yaml"}}}, path="t")


def start(tmp_path, stdout, extra=""):
    cfg = tmp_path / "c.toml"
    port = free_port()
    cfg.write_text(f'[outputs.segments]\ndir = "{tmp_path}/seg"\n'
                   f'[outputs.socket]\npath = "{tmp_path}/s.sock"\n'
                   f'[outputs.prometheus]\nlisten = "127.0.0.1:{port}"\n{extra}')
    err = io.StringIO()

    def script(d, tick):
        os.kill(os.getpid(), signal.SIGTERM)

    d = daemon.Daemon(str(cfg), config.Overrides(), log=process.StderrLog(err, journald=False),
                      stdout=stdout, build=lambda rules: FakeCollector(rules, script, d))
    return d.run(), err.getvalue().splitlines()


def test_by_hand_on_a_terminal_no_records_on_it_and_one_line_says_so(tmp_path, ends):
    out = ends("terminal")
    code, lines = start(tmp_path, out)
    assert code == 0, lines
    assert lines[0] == ("surgewatch: info: stdout is a terminal: no records on it (they go "
                        "to the outputs below; --format json or msgpack to write them there)")
    assert lines[1].startswith("surgewatch: info: collecting every 1s to segments, socket, "
                               "prometheus (")
    assert not any("output stdout" in line for line in lines)


def test_by_hand_into_a_pipe_the_msgpack_stream_and_one_line_says_so(tmp_path, ends):
    r, w = os.pipe()
    with os.fdopen(r, "rb") as reader, os.fdopen(w, "wb") as out:
        code, lines = start(tmp_path, out)
        out.close()
        first = next(msgpack.Unpacker(reader, raw=False))
    assert code == 0 and first["type"] == "meta"
    assert lines[0] == ("surgewatch: info: stdout is a pipe: the msgpack stream goes there "
                        "(--format none: not)")
    assert "output stdout: msgpack stream" in lines[2]


def test_asked_for_explicitly_no_auto_line(tmp_path, ends):
    code, lines = start(tmp_path, ends("terminal"), '[outputs.stdout]\nformat = "json"\n')
    assert code == 0 and not any("stdout is" in line for line in lines)
    assert "output stdout: JSON lines" in lines[1]


def test_nothing_to_write_to_on_a_terminal_is_refused(tmp_path, ends):
    cfg = tmp_path / "c.toml"
    cfg.write_text("[outputs.segments]\nenabled = false\n[outputs.socket]\nenabled = false\n"
                   "[outputs.prometheus]\nenabled = false\n")
    with pytest.raises(BadInput, match="nothing to write to"):
        daemon.load_config(str(cfg), config.Overrides(), stdout=ends("terminal"))
    assert daemon.load_config(str(cfg), config.Overrides(), stdout=ends("pipe"))
