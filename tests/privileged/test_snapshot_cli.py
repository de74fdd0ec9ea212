"""`surgewatch snapshot` and `doctor` as users run them: real process, real probes."""
import json
import os
import subprocess
import sys
import textwrap
import time

import pytest

pytestmark = pytest.mark.privileged
SURGEWATCH = os.path.join(os.path.dirname(sys.executable), "surgewatch")

PACED = textwrap.dedent("""
    import os, sys, time
    path, rate, seconds = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    start = time.monotonic()
    n = 0
    while True:
        due = start + n / rate                 # absolute schedule: no drift
        now = time.monotonic()
        if now - start >= seconds:
            break
        if now < due:
            time.sleep(due - now)
        os.write(fd, b"%-39.6f\\n" % time.time())     # 40 bytes: the line's own timestamp
        n += 1
    print(n, time.monotonic() - start, flush=True)
""")


def test_snapshot_rate_within_2_percent(tmp_path):
    log = tmp_path / "paced.log"
    # the writer runs before, during and after the snapshot window, however long the
    # probes take to load (seconds here, much longer under an emulated CPU)
    writer = subprocess.Popen([sys.executable, "-c", PACED, str(log), "400", "600"],
                              stdout=subprocess.PIPE, text=True)
    time.sleep(1.0)
    with open(f"/proc/{writer.pid}/comm") as f:
        comm = f.read().strip()
    try:
        snap = subprocess.run([SURGEWATCH, "snapshot", "--duration", "4", "--interval", "1",
                               "--json"], capture_output=True, text=True, timeout=120)
        time.sleep(0.5)
    finally:
        writer.terminate()
        writer.wait(timeout=30)
    assert snap.returncode == 0, snap.stderr
    doc = json.loads(snap.stdout)
    rows = [(s, p) for s in doc["services"] for p in s["paths"] if p["path"] == str(log)]
    assert len(rows) == 1, doc
    service, path = rows[0]
    assert service["service"] == comm or service["service"].endswith((".service", ".scope"))
    assert writer.pid in path["pids"]
    # ground truth: the lines whose own timestamps fall inside the snapshot's window
    start, end = doc["started"], doc["started"] + doc["duration_s"]
    stamps = [float(line) for line in log.read_text().split()]
    actual_rate = sum(start <= t < end for t in stamps) / doc["duration_s"]
    assert abs(path["writes_per_s"] - actual_rate) <= actual_rate * 0.02, (path, actual_rate)
    assert path["writes"] == pytest.approx(path["writes_per_s"] * doc["duration_s"])
    assert path["bytes"] == path["writes"] * 40
    assert 3.9 < doc["duration_s"] < 4.2


def test_snapshot_msgpack_stream(tmp_path):
    from collector.records.stream import read_records

    out = tmp_path / "snap.msgpack"
    log = tmp_path / "m.log"
    writer = subprocess.Popen([sys.executable, "-c", PACED, str(log), "200", "600"],
                              stdout=subprocess.PIPE, text=True)
    try:
        snap = subprocess.run([SURGEWATCH, "snapshot", "--duration", "2", "--msgpack", str(out)],
                              capture_output=True, text=True, timeout=120)
    finally:
        writer.terminate()
        writer.wait(timeout=30)
    assert snap.returncode == 0, snap.stderr
    with open(out, "rb") as f:
        records = list(read_records(f, str(out)))
    assert records[0]["type"] == "meta"
    stats = [r for r in records if r["type"] == "stats"]
    # contiguous intervals covering the window (a loaded machine may merge two into one)
    assert [s["seq"] for s in stats] == list(range(len(stats))) and 1 <= len(stats) <= 2
    assert 1.95 < sum(s["interval"] for s in stats) < 2.5
    mine = [p for r in records if r["type"] == "rate" for p in r["paths"] if p["path"] == str(log)]
    assert mine and all(writer.pid in p["pids"] for p in mine)


def _meta_written(path):
    from collector.records.stream import StreamError, read_records

    try:
        with open(path, "rb") as f:
            return any(r["type"] == "meta" for r in read_records(f, str(path)))
    except (FileNotFoundError, StreamError):
        return False


def test_piped_snapshot_prints_the_text_table_with_the_exact_count(tmp_path):
    """`surgewatch snapshot 1 3 -p PID | ...`: positional interval and count, the pid
    filter, and the text table (not JSON) a pipe gets, with this process's exact writes."""
    from tests.support.writers import write_lines

    out, log, lines = tmp_path / "snap.msgpack", tmp_path / "exact.log", 1234
    snap = subprocess.Popen([SURGEWATCH, "snapshot", "1", "3", "-p", str(os.getpid()),
                             "--msgpack", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120          # bcc's compile; far longer under QEMU
        while not _meta_written(out):              # meta: the probes count from here on
            assert snap.poll() is None and time.monotonic() < deadline, snap.stderr.read()
            time.sleep(0.05)
        write_lines(log, lines, b"%-39d\n" % 7)    # 1234 writes of 40 bytes, ~10 ms
        stdout, stderr = snap.communicate(timeout=120)
    finally:
        if snap.poll() is None:
            snap.kill()
            snap.wait()
    assert snap.returncode == 0, stderr
    assert not stdout.lstrip().startswith("{"), stdout       # a table, not JSON
    table = stdout.splitlines()
    assert table[0].startswith("surgewatch snapshot ") and "window 3." in table[0]
    assert table[1].split() == ["SERVICE", "PIDS", "LOG", "PATH", "WRITES", "WRITES/S",
                                "BYTES/S", "SHARE"]
    # -p: only this process's writes, so one row, whole
    rows = table[2:table.index("")]
    assert len(rows) == 1, stdout
    cells = rows[0].split()
    assert cells[-6].endswith("exact.log") and cells[-7] == str(os.getpid()), rows
    assert int(cells[-5]) == lines and cells[-1] == "100.0%", rows


def test_unprivileged_user_gets_one_line_and_exit_2():
    res = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                          "--inh-caps=-all", SURGEWATCH, "snapshot", "--duration", "1"],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 2, res
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in res.stderr
    assert "root" in lines[0] and "fix" in lines[0]


def test_doctor_passes_here():
    res = subprocess.run([SURGEWATCH, "doctor"], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout
    assert "probes can run" in res.stdout
    assert "tracepoint syscalls:sys_enter_write" in res.stdout
