"""`surgewatch run` start-up without a kernel: the lines saying where each output is
(also after a reload), and the privilege check that comes before the run lock."""
import io
import os
import signal

import pytest

from tests.support.cli import cli_runner
from collector import config
from collector.cli import main
from collector.commands import process
from collector.commands import run as daemon
from collector.errors import EnvironmentProblem
from collector.probes import kernel
from tests.support.loopback import free_port
from tests.unit.test_daemon_parts import FakeCollector

NO_ROOT = [("needs root or CAP_BPF+CAP_PERFMON to load BPF programs; "
            "fix: run as root (sudo surgewatch ...)")]


def start(tmp_path, text, script):
    cfg = tmp_path / "c.toml"
    cfg.write_text(text)
    err = io.StringIO()
    d = daemon.Daemon(str(cfg), config.Overrides(), log=process.StderrLog(err, journald=False),
                      stdout=io.BytesIO(), build=lambda rules: FakeCollector(rules, script, d))
    return d.run(), err.getvalue().splitlines(), cfg


def outputs_text(tmp_path, port, seg="seg"):
    return (f'[outputs.stdout]\nformat = "json"\n'
            f'[outputs.segments]\ndir = "{tmp_path}/{seg}"\nmax_total_bytes = 33554432\n'
            f'[outputs.socket]\npath = "{tmp_path}/s.sock"\nmode = 0o640\n'
            f'[outputs.prometheus]\nlisten = "127.0.0.1:{port}"\n')


def test_start_lines_say_where_each_output_is(tmp_path):
    port = free_port()

    def script(d, tick):
        os.kill(os.getpid(), signal.SIGTERM)

    code, lines, cfg = start(tmp_path, outputs_text(tmp_path, port), script)
    assert code == 0, lines
    p = "surgewatch: info: "
    assert lines[:5] == [
        (f"{p}collecting every 1s to stdout, segments, socket, prometheus (config {cfg}, "
         f"lock {os.environ['SURGEWATCH_LOCK_FILE']})"),   # tests/conftest.py's own lock
        f"{p}output stdout: JSON lines",
        f"{p}output segments: {tmp_path}/seg (seg-*.msgpack, at most 32 MiB)",
        f"{p}output socket: unix socket {tmp_path}/s.sock (mode 0640)",
        f"{p}output prometheus: http://127.0.0.1:{port}/metrics"]


def test_reload_names_only_the_outputs_it_reopened(tmp_path):
    port = free_port()

    def script(d, tick):
        if tick == 0:
            (tmp_path / "c.toml").write_text(outputs_text(tmp_path, port, seg="seg2"))
            os.kill(os.getpid(), signal.SIGHUP)
        else:
            os.kill(os.getpid(), signal.SIGTERM)

    code, lines, cfg = start(tmp_path, outputs_text(tmp_path, port), script)
    assert code == 0, lines
    after = lines[lines.index(f"surgewatch: notice: reloaded {cfg}") + 1:]
    assert after[0] == f"surgewatch: info: output segments: {tmp_path}/seg2 " \
                       "(seg-*.msgpack, at most 32 MiB)"
    assert not any("output socket" in line or "output prometheus" in line for line in after)


def test_default_settings_are_named_as_such(tmp_path):
    cfg = config.Config(path=str(tmp_path / "absent.toml"))
    assert daemon._source(cfg) == f"default settings: no {tmp_path}/absent.toml"


def test_missing_privileges_are_named_before_the_lock(tmp_path, monkeypatch):
    monkeypatch.setattr(kernel, "privilege_problems", lambda: list(NO_ROOT))
    lock = tmp_path / "sub" / "run.lock"
    monkeypatch.setenv("SURGEWATCH_LOCK_FILE", str(lock))
    cfg = tmp_path / "c.toml"
    cfg.write_text('[outputs.socket]\nenabled = false\n'
                   '[outputs.prometheus]\nenabled = false\n')
    with pytest.raises(EnvironmentProblem) as e:
        daemon.Daemon(str(cfg), config.Overrides(), log=lambda *a, **k: None).run()
    assert str(e.value) == NO_ROOT[0]
    assert not lock.parent.exists()                    # the lock was never tried


def test_cli_run_without_privileges_is_one_line_exit_2(tmp_path, monkeypatch):
    monkeypatch.setattr(kernel, "privilege_problems", lambda: list(NO_ROOT))
    monkeypatch.setenv("SURGEWATCH_LOCK_FILE", f"{tmp_path}/x/run.lock")
    cfg = tmp_path / "c.toml"
    cfg.write_text("")
    res = cli_runner().invoke(main, ["run", "--config", str(cfg)], prog_name="surgewatch")
    assert res.exit_code == 2
    assert res.stderr.splitlines() == [f"surgewatch: error: {NO_ROOT[0]}"]
