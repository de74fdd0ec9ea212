"""`surgewatch record` on the live host: a writer at a known rate shows up in the profile,
and `compare` of the profile against itself and against a flood gives exit 0 and 1."""
import copy
import json
import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.privileged
SURGEWATCH = os.path.join(os.path.dirname(sys.executable), "surgewatch")

WRITER = textwrap.dedent("""
    import os, sys, time
    path, rate = sys.argv[1], float(sys.argv[2])
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    start = time.monotonic()
    n = 0
    while True:                      # until killed
        due = start + n / rate
        now = time.monotonic()
        if now < due:
            time.sleep(due - now)
        os.write(fd, b"profile test line\\n")
        n += 1
""")


def test_record_live_profile_and_compare(tmp_path):
    log = tmp_path / "steady.log"
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(log), "200"])
    try:
        profile = tmp_path / "p.json"
        res = subprocess.run([SURGEWATCH, "record", "--duration", "3", "--interval", "0.5",
                              "--log-glob", "steady.log", "-o", str(profile)],
                             capture_output=True, text=True, timeout=120)
    finally:
        writer.kill()
        writer.wait()
    assert res.returncode == 0, res.stderr
    doc = json.loads(profile.read_text())
    # version 2 when it measured load (any TCP traffic on the host in those 3 s)
    assert doc["format"] == "surgewatch-profile"
    assert doc["version"] == (2 if "conns_per_s" in doc["signals"] else 1), doc["signals"]
    assert doc["source"] == "live" and 2.9 < doc["duration_s"] < 3.6
    assert doc["intervals"] >= 5
    mine = [(name, body) for name, body in doc["services"].items()
            for p in body["paths"] if p["path"] == str(log)]
    assert len(mine) == 1, doc["services"].keys()
    name, body = mine[0]
    path = next(p for p in body["paths"] if p["path"] == str(log))
    assert 150 < path["writes_per_s"] < 250, path
    assert path["bytes_per_s"] == pytest.approx(path["writes_per_s"] * 18)
    w = body["log_writes_per_s"]
    assert w["mean"] >= path["writes_per_s"] and w["max"] >= w["median"] >= w["p10"]

    same = subprocess.run([SURGEWATCH, "compare", str(profile), str(profile)],
                          capture_output=True, text=True)
    assert same.returncode == 0, same.stdout + same.stderr
    flood = copy.deepcopy(doc)
    for sig in ("log_writes_per_s", "log_bytes_per_s"):
        for k in ("mean", "median", "p10", "p90", "max"):
            flood["services"][name][sig][k] = body[sig][k] * 25
    (tmp_path / "flood.json").write_text(json.dumps(flood))
    bad = subprocess.run([SURGEWATCH, "compare", str(profile), str(tmp_path / "flood.json")],
                         capture_output=True, text=True)
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert f"over the limits: {name}" in bad.stdout
