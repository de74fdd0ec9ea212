"""Security (docs/reliability.md): capabilities dropped after the probes load, restrictive
file modes, Prometheus on loopback, and the privacy property: nothing a process writes
ever reaches any output."""
import os
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request

import pytest

from tests.privileged.relhelp import (SURGEWATCH, RunDaemon, bpf_programs, programs_of,
                                      record_figure, writes_by_path)

pytestmark = pytest.mark.privileged

DROP_AND_COUNT = textwrap.dedent("""
    import json, os, sys, time
    from collector.host.logdest import LogRules
    from collector.snapshot import build_collector
    from collector import privileges
    from collector.daemon import apply_rules
    logdir = sys.argv[1]
    rules = LogRules(dirs=(logdir + "/",), globs=(), journald_sockets=())
    c = build_collector(rules, resets=True)
    before = privileges.current()
    privileges.drop_to()
    after = privileges.current()
    c.begin()
    out = {"before": before, "after": after, "pid": os.getpid()}
    def write(name, n):
        fd = os.open(os.path.join(logdir, name), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        for _ in range(n):
            os.write(fd, b"cap line\\n")
        os.close(fd)
    def count(name):
        total = 0
        for _ in range(2):
            time.sleep(0.05)
            c.probe.poll(0)
            c.interval()
            total += sum(w.writes for w in c.last_writes if w.path.endswith("/" + name))
        return total
    write("a.log", 500)
    out["a"] = count("a.log")
    apply_rules(c, LogRules(dirs=(logdir + "/",), globs=(), journald_sockets=()))  # SIGHUP path
    write("b.log", 250)
    out["b"] = count("b.log")
    # a reset on loopback, counted by the resets probe after the drop
    import socket, struct
    srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen(1)
    cli = socket.create_connection(srv.getsockname()); conn, _ = srv.accept()
    cli.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)); cli.close()
    time.sleep(0.1)
    c.resets.poll(0)
    rates, stats = c.interval()
    out["resets_sent"] = sum(r.get("resets_sent", 0) for r in rates)
    print(json.dumps(out), flush=True)
    sys.stdin.readline()
    from collector.daemon import _detach_all
    _detach_all(c)
    print("detached", flush=True)
""")


def test_capabilities_dropped_after_load_counting_still_exact(tmp_path):
    import json

    from collector import privileges

    logdir = tmp_path / "logs"
    logdir.mkdir()
    p = subprocess.Popen([sys.executable, "-c", DROP_AND_COUNT, str(logdir)],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    try:
        line = p.stdout.readline()
        assert line, p.stderr.read()
        out = json.loads(line)
        held = programs_of(p.pid)
        p.stdin.write("\n")
        p.stdin.flush()
        assert p.stdout.readline() == "detached\n", p.stderr.read()
        p.stdin.close()
        assert p.wait(timeout=30) == 0
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    eff, prm, bnd = out["after"]
    keep = (1 << privileges.CAP_SYS_PTRACE) | (1 << privileges.CAP_DAC_READ_SEARCH)
    assert eff == keep and prm == keep and bnd == keep, privileges.names(eff)
    assert out["a"] == 500 and out["b"] == 250
    assert out["resets_sent"] >= 1
    assert held and not held & {x["id"] for x in bpf_programs()}
    record_figure("caps", before=privileges.names(out["before"][0]),
                  after=privileges.names(eff))
