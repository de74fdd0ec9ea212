"""Faults (docs/reliability.md): SIGKILL leaves no BPF program behind and a restart works;
one daemon per lock; tracefs or headers missing at start; a tracepoint missing disables
one probe only. The host's real tracefs is never unmounted: the detection is pointed at
fake paths inside a child process."""
import os
import subprocess
import sys
import textwrap
import time

import pytest

from tests.privileged.relhelp import bpf_programs, programs_of
from tests.support.daemon import Daemon
from tests.support.records import writes_by_path

pytestmark = pytest.mark.privileged
LINE = b"fault test line\n"


def test_sigkill_leaves_no_program_second_daemon_refused_restart_counts(tmp_path):
    lock = tmp_path / "run.lock"
    before = {p["id"] for p in bpf_programs()}
    (tmp_path / "a").mkdir()
    a = Daemon(tmp_path / "a", lock=lock)
    try:
        a.wait_meta()
        held = programs_of(a.pid)
        assert len(held) >= 5, f"daemon holds {held}"

        # a second daemon on the same lock: one line, exit 2, before compiling anything
        (tmp_path / "b").mkdir()
        b = Daemon(tmp_path / "b", lock=lock)
        t0 = time.monotonic()
        b.proc.wait(timeout=30)
        b.kill()
        assert b.proc.returncode == 2, b.err
        lines = b.err.strip().splitlines()
        assert len(lines) == 1, b.err
        assert lines[0].startswith("surgewatch: error: another surgewatch run is running "
                                   f"(pid {a.pid}"), lines[0]
        assert time.monotonic() - t0 < 10

        a.proc.kill()                       # SIGKILL: no cleanup code runs
        a.kill()
        assert a.proc.returncode == -9
    finally:
        a.kill()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        left = {p["id"] for p in bpf_programs()} & held
        if not left:
            break
        time.sleep(0.2)
    assert not left, f"programs {left} still loaded after SIGKILL"
    assert not ({p["id"] for p in bpf_programs()} - before) & held

    # restart on the same lock file (left on disk by the killed daemon): exact counts
    (tmp_path / "c").mkdir()
    c = Daemon(tmp_path / "c", lock=lock)
    try:
        c.wait_meta()
        log = c.write_between_intervals("restart.log", 777, LINE)
    finally:
        rc = c.stop()
    assert rc == 0, c.err
    assert writes_by_path(c.records, log) == (777, 777 * len(LINE))


RUN_PATCHED = textwrap.dedent("""
    import sys
    from collector.probes import kernel
    what = sys.argv[1]
    if what == "tracefs":
        kernel.TRACEFS_CANDIDATES = ("/nonexistent-surgewatch/tracing",)
    elif what == "headers":
        orig = kernel.headers_info
        kernel.headers_info = lambda release=None: orig("0.0.0-surgewatch-none")
    from collector.cli import main
    sys.argv = ["surgewatch"] + sys.argv[2:]
    main()
""")


@pytest.mark.parametrize("what,message", [
    ("tracefs", "surgewatch: error: tracefs is not mounted; fix: mount -t tracefs"),
    ("headers", "surgewatch: error: no kernel headers at /lib/modules/0.0.0-surgewatch-none/build"),
])
@pytest.mark.parametrize("cmd", ["run", "snapshot"])
def test_tracefs_or_headers_missing_exit_2_one_line(tmp_path, what, message, cmd):
    cfg = tmp_path / "sw.toml"
    cfg.write_text('[outputs.segments]\nenabled = false\n[outputs.socket]\nenabled = false\n'
                   '[outputs.prometheus]\nenabled = false\n')
    argv = ["run", "--config", str(cfg), "--format", "json"] if cmd == "run" \
        else ["snapshot", "--duration", "1", "--json"]
    env = dict(os.environ, SURGEWATCH_LOCK_FILE=str(tmp_path / "lock"))
    res = subprocess.run([sys.executable, "-c", RUN_PATCHED, what, *argv],
                         capture_output=True, text=True, timeout=60, env=env)
    assert res.returncode == 2, res
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message), res.stderr
    assert "Traceback" not in res.stderr and res.stdout == ""


def test_missing_tracepoint_disables_resets_probe_only(tmp_path):
    env = {"SURGEWATCH_DISABLE_TRACEPOINTS": "tcp:tcp_send_reset"}
    doc = subprocess.run([os.path.join(os.path.dirname(sys.executable), "surgewatch"),
                          "doctor"], capture_output=True, text=True, timeout=60,
                         env=dict(os.environ, **env))
    assert doc.returncode == 0, doc.stdout      # log writes can still run
    tp = [l for l in doc.stdout.splitlines() if "tracepoint tcp:tcp_send_reset" in l]
    assert len(tp) == 1 and tp[0].startswith("note") and "missing" in tp[0], doc.stdout
    rp = [l for l in doc.stdout.splitlines() if " resets probe " in l]
    assert len(rp) == 1 and rp[0].startswith("note") and "tcp_send_reset" in rp[0], doc.stdout

    d = Daemon(tmp_path, env=env)
    try:
        meta = d.wait_meta()
        log = d.write_between_intervals("still.log", 321, LINE)
    finally:
        rc = d.stop()
    assert rc == 0, d.err
    assert meta["probes"]["logwrites"]["enabled"] is True
    assert meta["probes"]["resets"]["enabled"] is False
    assert "tcp_send_reset" in meta["probes"]["resets"]["reason"]
    assert "TCP resets not watched" in d.err
    assert writes_by_path(d.records, log)[0] == 321
