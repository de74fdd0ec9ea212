"""The segment store on a real full disk (a small tmpfs): drops are counted and reported,
`surgewatch run` keeps running, and writing resumes by itself when space is back."""
import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

pytestmark = pytest.mark.privileged
SURGEWATCH = os.path.join(os.path.dirname(sys.executable), "surgewatch")

CONFIG = """
interval = 0.2
[log_rules]
dirs = ["{logdir}"]
globs = []
journald_sockets = []
[outputs.stdout]
format = "json"
[outputs.segments]
dir = "{seg}"
max_segment_bytes = 8192
max_total_bytes = 4194304
[outputs.socket]
enabled = false
[outputs.prometheus]
enabled = false
[resets]
enabled = false
"""


@pytest.fixture
def small_tmpfs(tmp_path):
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k,mode=0755", "swtest", str(mnt)],
                   check=True)
    try:
        yield mnt
    finally:
        if subprocess.run(["umount", str(mnt)]).returncode != 0:
            subprocess.run(["umount", "-l", str(mnt)])


def fill(path):
    """Write path until the file system is full; returns the bytes written."""
    total = 0
    chunk = b"\0" * 4096
    with open(path, "wb", buffering=0) as f:
        while True:
            try:
                n = f.write(chunk)
            except OSError:
                break
            if not n:
                break
            total += n
    return total


def key(rec):
    return (rec["type"], rec.get("seq"), rec.get("service"))


def test_full_disk_drops_are_counted_and_writing_resumes(tmp_path, small_tmpfs):
    from collector.records.segments import read_segments

    logdir = tmp_path / "logs"
    logdir.mkdir()
    seg = small_tmpfs / "seg"
    cfg = tmp_path / "sw.toml"
    cfg.write_text(CONFIG.format(logdir=logdir, seg=seg))
    proc = subprocess.Popen([SURGEWATCH, "run", "--config", str(cfg)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
    reader.start()                              # never let stdout's pipe fill

    def stats_seen():
        return sum(1 for line in list(lines) if '"type": "stats"' in line
                   or '"type":"stats"' in line)

    def wait_intervals(n, timeout=60):
        target = stats_seen() + n
        end = time.monotonic() + timeout
        while stats_seen() < target:
            assert proc.poll() is None, proc.stderr.read()
            assert time.monotonic() < end, "no intervals"
            time.sleep(0.05)

    log = logdir / "app.log"
    filler = small_tmpfs / "filler"
    try:
        wait_intervals(3)                       # probes attached, segments written
        with open(log, "a") as f:               # some rate records too
            for i in range(50):
                f.write(f"line {i}\n")
                f.flush()
        wait_intervals(2)
        assert fill(filler) > 0
        with open(log, "a") as f:
            f.write("while full\n")
        # the current segment's last page may still take a few intervals; then every
        # interval's write fails
        end = time.monotonic() + 60
        while not any('"segment_dropped_records": 0' not in line and '"type": "stats"' in line
                      for line in list(lines)):
            assert proc.poll() is None, proc.stderr.read()
            assert time.monotonic() < end, "the store never dropped anything"
            time.sleep(0.05)
        wait_intervals(3)
        assert proc.poll() is None              # the daemon keeps running
        os.unlink(filler)                       # space is back
        wait_intervals(5)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        reader.join(timeout=10)
        err = proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "segment store:" in err and "dropped" in err, err

    out = [json.loads(line) for line in lines]
    stats = [r for r in out if r["type"] == "stats"]
    dropped = sum(s["segment_dropped_records"] for s in stats)
    assert dropped > 0
    # the drop shows up as a gap: the store holds every other record, whole and in order
    stored = [r for r in read_segments(seg, lambda e, kind: pytest.fail(f"{kind}: {e}"))
              if r["type"] != "meta"]
    body = [r for r in out if r["type"] != "meta"]
    stored_keys = [key(r) for r in stored]
    missing = [key(r) for r in body if key(r) not in set(stored_keys)]
    assert stored_keys == [key(r) for r in body if key(r) in set(stored_keys)]
    assert len(missing) == dropped
    # the missing records are one contiguous run of intervals, then writing resumed
    missing_seqs = sorted({k[1] for k in missing})
    assert missing_seqs == list(range(missing_seqs[0], missing_seqs[-1] + 1))
    assert max(k[1] for k in stored_keys) == stats[-1]["seq"] > missing_seqs[-1]
    # the drop was reported by the next stats record, in the stream and in the store
    first_report = next(s for s in stats if s["segment_dropped_records"])
    assert first_report["seq"] == missing_seqs[0] + 1 or first_report["seq"] in missing_seqs
    assert any(r["type"] == "stats" and r["segment_dropped_records"] for r in stored)
    assert sum(p["writes"] for r in out if r["type"] == "rate" for p in r["paths"]
               if p["path"] == str(log)) == 51
