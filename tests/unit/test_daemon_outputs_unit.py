"""collector.commands.run with the socket and Prometheus outputs, without kernel (fake collector)."""
import json
import os
import signal
import stat

from collector.records import model
from tests.unit.test_daemon_parts import run_fake


def test_socket_reload_reopens_on_the_same_path_and_reset_records_are_ordered(tmp_path):
    sock = tmp_path / "run" / "s.sock"
    base = (f'[outputs.stdout]\nformat = "json"\n[outputs.segments]\nenabled = false\n'
            f'[outputs.prometheus]\nenabled = false\n[outputs.socket]\npath = "{sock}"\n')
    seen = {}

    def script(d, tick):
        c = d.collector
        c.last_reset_records = [{"v": model.SCHEMA_VERSION, "type": "reset", "ts": 1.0,
                                 "host": "h", "seq": c.seq}]
        if tick == 0:
            seen["mode0"] = stat.S_IMODE(os.stat(sock).st_mode)
            # the same path, another mode: the old socket must go before the new one binds
            (tmp_path / "c.toml").write_text(base + "mode = 0o600\n")
            os.kill(os.getpid(), signal.SIGHUP)
        if tick == 1:
            seen["mode1"] = stat.S_IMODE(os.stat(sock).st_mode)
            os.kill(os.getpid(), signal.SIGTERM)

    # run_fake appends its own "socket/prometheus disabled" tables; the socket is on here
    code, out, err, c, _ = run_fake_with_socket(tmp_path, base, script)
    assert code == 0, err
    assert seen == {"mode0": 0o660, "mode1": 0o600}
    assert "reloaded" in err and "error" not in err
    assert not sock.exists()
    recs = [json.loads(line) for line in out.getvalue().decode().splitlines()]
    types = [r["type"] for r in recs]
    # each interval: its reset records, then its stats (the fake has no rate records)
    assert types[0] == "meta" and "reset" in types
    for r, nxt in zip(recs[1:], recs[2:]):
        if r["type"] == "reset":
            assert nxt["type"] == "stats" and nxt["seq"] == r["seq"]


def run_fake_with_socket(tmp_path, cfg_text, script):
    import tests.unit.test_daemon_parts as parts

    saved = parts.NO_LISTENERS
    parts.NO_LISTENERS = ""
    try:
        return run_fake(tmp_path, cfg_text, script)
    finally:
        parts.NO_LISTENERS = saved
