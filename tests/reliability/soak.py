"""`make soak`: a long mixed-load run of `surgewatch run` (docs/reliability.md).

Load: process churn (short-lived writers), a steady writer with a known line count,
TCP resets on loopback, a stream-socket subscriber, /metrics scrapes, a SIGHUP every few
minutes. Sampled every 10 s: the daemon's RSS and open fds. At the end: RSS and fds flat
after warm-up, the stream complete (interval seq numbers without a gap in stdout, the
segment store and the subscriber's stream), the steady writer counted exactly.

    python -m tests.reliability.soak --minutes 30 [--churn-rate 200] [--out FILE]
Exit 0 when every check holds; the summary (JSON) goes to stdout and --out.
"""
import argparse
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from tests.support.daemon import Daemon
from tests.support.loopback import free_port
from tests.support.procfs import open_fds, rss_kb
from tests.support.records import losses, writes_by_path
from tests.workloads.build import HERE


def steady_writer(path, stop, count):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    while not stop.is_set():
        for _ in range(50):
            os.write(fd, b"steady soak line\n")
        count[0] += 50
        time.sleep(0.05)
    os.close(fd)


def resetter(stop, count):
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    while not stop.is_set():
        cli = socket.create_connection(srv.getsockname())
        conn, _ = srv.accept()
        cli.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        cli.close()
        conn.close()
        count[0] += 1
        time.sleep(0.2)
    srv.close()


def subscriber(path, stop, got):
    from collector.sinks.unixsock import subscribe
    from collector.records.stream import read_records

    sock = subscribe(path)
    try:
        for rec in read_records(sock.makefile("rb", buffering=0), "stream.sock"):
            got.append((rec.get("type"), rec.get("seq"), rec.get("count")))
    except Exception as e:           # the daemon stopping ends the stream
        got.append(("end", None, str(e)))


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--churn-rate", type=float, default=200.0)
    ap.add_argument("--interval", type=float, default=1.0)
    ap.add_argument("--hup-every-s", type=float, default=300.0)
    ap.add_argument("--out")
    a = ap.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="surgewatch-soak-"))
    churn = tmp / "swsoakchurn"
    subprocess.run(["gcc", "-O2", "-o", str(churn), str(HERE / "churn.c")], check=True)
    port = free_port()
    d = Daemon(tmp, interval=a.interval, segments=True, socket=True, prometheus=port)
    stop = threading.Event()
    steady_n, resets_n, sub_got, samples = [0], [0], [], []
    t0 = time.monotonic()
    try:
        d.wait_meta(timeout=300)
        d.wait_stats(2)
        threads = [threading.Thread(target=steady_writer, daemon=True,
                                    args=(str(d.logdir / "steady.log"), stop, steady_n)),
                   threading.Thread(target=resetter, args=(stop, resets_n), daemon=True),
                   threading.Thread(target=subscriber, args=(str(d.sock), stop, sub_got),
                                    daemon=True)]
        for t in threads:
            t.start()
        churn_proc = subprocess.Popen([str(churn), str(d.logdir / "churn.log"),
                                       str(a.churn_rate), str(a.minutes * 60), "3"],
                                      stdout=subprocess.PIPE, text=True)
        end = time.monotonic() + a.minutes * 60
        next_hup = time.monotonic() + a.hup_every_s
        scrapes = 0
        while time.monotonic() < end:
            time.sleep(min(10.0, max(0.0, end - time.monotonic())))
            d.drain_pending()
            samples.append({"t": round(time.monotonic() - t0), "rss_kb": rss_kb(d.pid),
                            "fds": open_fds(d.pid)})
            urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read()
            scrapes += 1
            if time.monotonic() >= next_hup:
                d.proc.send_signal(signal.SIGHUP)
                next_hup += a.hup_every_s
            if d.proc.poll() is not None:
                break
        churn_out = churn_proc.communicate(timeout=120)[0].split()
        stop.set()
        for t in threads[:2]:
            t.join(timeout=10)
        d.wait_stats(3)
        alive = d.proc.poll() is None
    finally:
        stop.set()
        rc = d.stop()
    from collector.records.segments import read_segments

    problems = []
    seg = list(read_segments(str(d.segdir), lambda e, kind: problems.append(f"{kind}: {e}")))

    def gaps(seqs):
        return [(x, y) for x, y in zip(seqs, seqs[1:]) if y != x + 1]

    out_seqs = [r["seq"] for r in d.records if r["type"] == "stats"]
    seg_seqs = [r["seq"] for r in seg if r["type"] == "stats"]
    sub_seqs = [s for kind, s, _ in sub_got if kind == "stats"]
    sub_dropped = sum(c or 0 for kind, _, c in sub_got if kind == "dropped")
    warm = [s for s in samples if s["t"] >= 60] or samples
    spawned = int(churn_out[1]) if len(churn_out) > 1 else -1
    loss = losses(d.records)
    summary = {
        "minutes": a.minutes, "interval_s": a.interval, "churn_rate": a.churn_rate,
        "processes_spawned": spawned, "steady_lines": steady_n[0],
        "steady_counted": writes_by_path(d.records, str(d.logdir / "steady.log"))[0],
        "churn_lines": spawned * 3,
        "churn_counted": writes_by_path(d.records, str(d.logdir / "churn.log"))[0],
        "resets_made": resets_n[0], "scrapes": scrapes, "losses": loss,
        "intervals": len(out_seqs), "stdout_seq_gaps": gaps(out_seqs),
        "segment_seq_gaps": gaps(seg_seqs), "segment_problems": problems,
        "subscriber_intervals": len(sub_seqs), "subscriber_seq_gaps": gaps(sub_seqs),
        "subscriber_dropped": sub_dropped,
        "rss_kb_first_last_max_after_warmup": [warm[0]["rss_kb"], warm[-1]["rss_kb"],
                                               max(s["rss_kb"] for s in warm)] if warm else None,
        "fds_first_last_max_after_warmup": [warm[0]["fds"], warm[-1]["fds"],
                                            max(s["fds"] for s in warm)] if warm else None,
        "daemon_alive_at_end": alive, "exit_code": rc, "samples": samples,
    }
    checks = {
        "daemon ran to the end and stopped with 0": alive and rc == 0,
        "steady writer counted exactly": summary["steady_counted"] == steady_n[0],
        "churn counted exactly or shortfall reported":
            0 <= summary["churn_lines"] - summary["churn_counted"]
            <= loss["unresolved_writes"] + loss["lost_writes"],
        "no seq gap in stdout, segments, subscriber":
            not (summary["stdout_seq_gaps"] or summary["segment_seq_gaps"]
                 or (summary["subscriber_seq_gaps"] and not sub_dropped)),
        "RSS flat after warm-up (last - first <= 5 MB)":
            bool(warm) and warm[-1]["rss_kb"] - warm[0]["rss_kb"] <= 5 * 1024,
        "fds flat after warm-up": bool(warm) and warm[-1]["fds"] <= warm[0]["fds"] + 2,
    }
    summary["checks"] = checks
    text = json.dumps(summary, indent=1)
    print(text)
    if a.out:
        Path(a.out).write_text(text + "\n")
    failed = [k for k, ok in checks.items() if not ok]
    if failed:
        print("soak: FAILED: " + "; ".join(failed), file=sys.stderr)
        return 1
    print("soak: all checks hold", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
