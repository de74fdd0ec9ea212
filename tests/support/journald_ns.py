"""A real systemd-journald of the test's own, in a private mount namespace, with a low
rate limit: run as `unshare -m --propagation private python3 -m tests.support.journald_ns
TAG N` (tests/privileged/test_journald_drops.py). Nothing of the host's journal is
touched: /run/systemd, /run/log and /etc/systemd are tmpfs mounts of this namespace.

It follows the journal with collector.host.journald_drops.JournaldDrops, has a user
(uid 65534, setpriv) forge a drop notice, has a writer in <cgroup2>/sw<TAG>.service send
N messages at once, wait out the window and send one more (journald writes its notice
then), and prints one JSON line: what the reader counted, journald's own notices and the
writer's lines journald kept."""
import json
import os
import subprocess
import sys
import time

from collector.host.journald_drops import DROPPED_ID, JournaldDrops
from tests.owncgroup import unit_cgroup

JOURNALD = "/lib/systemd/systemd-journald"
INTERVAL_S, BURST = 2, 20
WRITER = """import sys, time
from systemd import journal
tag, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    journal.send(f"sw {tag} line {i}")
time.sleep(float(sys.argv[3]))
journal.send(f"sw {tag} after")
"""
FORGER = f"""from systemd import journal
journal.send("Suppressed 999 messages from victim.service", MESSAGE_ID={DROPPED_ID!r},
             N_DROPPED="999")
"""


def private_journald():
    for path in ("/run/systemd", "/run/log", "/etc/systemd"):
        os.makedirs(path, exist_ok=True)
        subprocess.run(["mount", "-t", "tmpfs", "tmpfs", path], check=True)
    os.makedirs("/run/systemd/journal")
    with open("/etc/systemd/journald.conf", "w") as f:
        f.write(f"[Journal]\nStorage=volatile\nRateLimitIntervalSec={INTERVAL_S}s\n"
                f"RateLimitBurst={BURST}\n")
    proc = subprocess.Popen([JOURNALD], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(200):
        if os.path.exists("/run/systemd/journal/socket"):
            return proc
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError("systemd-journald did not create its socket")


def journal_lines(*match):
    out = subprocess.run(["journalctl", "-D", "/run/log/journal", "-o", "json", "--no-pager",
                          *match], capture_output=True, text=True, check=True).stdout
    return [json.loads(line) for line in out.splitlines()]


def main(tag, n):
    journald = private_journald()
    try:
        reader = JournaldDrops()
        subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                        sys.executable, "-c", FORGER], check=True, timeout=60)
        with unit_cgroup(f"sw{tag}") as cg:
            subprocess.run([sys.executable, "-c", WRITER, tag, str(n), str(INTERVAL_S + 1.5)],
                           check=True, timeout=120, preexec_fn=cg.enter)
            unit = cg.service
        counted = {}
        quiet_since = time.monotonic()
        while time.monotonic() - quiet_since < 3:       # until 3 s bring nothing new
            got = reader.take()
            for k, v in got.items():
                counted[k] = counted.get(k, 0) + v
            if got:
                quiet_since = time.monotonic()
            time.sleep(0.2)
        reader.close()
        notices = sum(int(e["N_DROPPED"]) for e in journal_lines(
            f"MESSAGE_ID={DROPPED_ID}", "_TRANSPORT=driver")
            if e["MESSAGE"].endswith(f" messages from {unit}"))
        kept = sum(1 for e in journal_lines(f"_SYSTEMD_UNIT={unit}")
                   if e.get("MESSAGE", "").startswith(f"sw {tag} line "))
        forged = len(journal_lines(f"MESSAGE_ID={DROPPED_ID}", "_UID=65534"))
        print(json.dumps({"unit": unit, "counted": counted, "notices": notices,
                          "kept": kept, "forged": forged}))
    finally:
        journald.kill()
        journald.wait()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
