"""Every channel a systemd service logs through, for real (the Vagrant VM: systemd and
journald as PID 1): one `systemd-run` unit writes N lines to stdout (journald's stream),
sends N entries through journald's native protocol (python3-systemd's journal.send:
sd_journal_sendv's sendmsg to /run/systemd/journal/socket) and N through syslog(3)
(Python's syslog module: glibc's connected datagram to /dev/log, which journald
serves) -> `surgewatch run` (default channels) reports exactly N on each, all under the
unit's name. Skipped where systemd is not PID 1."""
import json
import os
import shutil
import subprocess
import time
import uuid

import pytest

from tests.owncgroup import TIME_SCALE
from tests.support.daemon import Daemon

pytestmark = [
    pytest.mark.skipif(not os.path.isdir("/run/systemd/system"),
                       reason="systemd is not PID 1 here (no /run/systemd/system): this test "
                              "runs in the Vagrant VM (make vm-test)"),
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: run `make test` as root"),
]
N = 200
STREAM = "journald:/run/systemd/journal/stdout"
NATIVE = "journald:/run/systemd/journal/socket"
SYSLOG = "syslog:/dev/log"

CONFIG = """
interval = 0.5
[log_rules]
dirs = [{logdir}]
globs = []
[outputs.stdout]
format = "json"
[outputs.segments]
enabled = false
[outputs.socket]
enabled = false
[outputs.prometheus]
enabled = false
"""

# the unit stays a few intervals after its last message, so that the drain that holds
# them still finds the process in the unit's cgroup
SCRIPT = f"""
import os, syslog, time
from systemd import journal
for i in range({N}):
    os.write(1, b"swchan stdout %d\\n" % i)
for i in range({N}):
    journal.send("swchan native %d" % i, SWCHAN="1")
syslog.openlog("swchan")
for i in range({N}):
    syslog.syslog("swchan syslog %d" % i)
time.sleep({3 * TIME_SCALE})
"""


def test_stdout_native_and_syslog_each_exact_under_the_unit(tmp_path):
    for tool in ("systemd-run", "systemctl"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} missing on a systemd host")
    logdir = tmp_path / "logs"
    logdir.mkdir()
    d = Daemon(tmp_path, config_text=CONFIG.format(logdir=json.dumps(str(logdir))))
    unit = f"swchan-{uuid.uuid4().hex[:8]}.service"
    try:
        meta = d.wait_meta(timeout=180 * TIME_SCALE)
        assert "channels_off" not in meta["probes"]["logwrites"], meta["probes"]["logwrites"]
        d.wait_stats(1, timeout=30 * TIME_SCALE)
        # (no --wait: it needs D-Bus, which the VM does not run; PID 1's private socket
        # serves the rest)
        subprocess.run(["systemd-run", "--quiet", "--collect", f"--unit={unit}",
                        "/usr/bin/python3", "-c", SCRIPT], check=True, timeout=60 * TIME_SCALE,
                       capture_output=True)
        deadline = time.monotonic() + 120 * TIME_SCALE
        while time.monotonic() < deadline and subprocess.run(
                ["systemctl", "is-active", "--quiet", unit], check=False).returncode == 0:
            time.sleep(0.5)
        d.wait_stats(3, timeout=30 * TIME_SCALE)
    finally:
        subprocess.run(["systemctl", "stop", unit], capture_output=True, check=False)
        d.stop()
    got = {}
    for r in d.records:
        if r.get("type") == "rate" and r.get("service") == unit:
            for p in r["paths"]:
                got[p["path"]] = got.get(p["path"], 0) + p["writes"]
    assert got == {STREAM: N, NATIVE: N, SYSLOG: N}, got
