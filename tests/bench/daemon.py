"""`surgewatch run` as the benchmarks attach it: a separate process, its msgpack stream on
a pipe (stdout), stopped by its pid. Measuring in the same process as a loaded bcc module would
measure that process's leftovers too (docs/performance.md, "method")."""
import os
import signal
import subprocess
import sys
import threading
import time

import msgpack

SURGEWATCH = os.path.join(os.path.dirname(sys.executable), "surgewatch")
CLK_TCK = os.sysconf("SC_CLK_TCK")

CONFIG = """
interval = {interval}
[log_rules]
dirs = ["{logdir}/"]
globs = []
journald_sockets = []
[outputs.segments]
enabled = false
[outputs.socket]
enabled = false
[outputs.prometheus]
enabled = false
[resets]
enabled = {resets}
"""


class BenchDaemon:
    def __init__(self, workdir, logdir, interval=1.0, resets=False, hook="tracepoints",
                 cpu=None):
        cfg = os.path.join(workdir, "bench.toml")
        with open(cfg, "w") as f:
            f.write(CONFIG.format(interval=interval, logdir=logdir,
                                  resets=str(resets).lower()))
        env = dict(os.environ, SURGEWATCH_WRITE_HOOK=hook)
        cmd = [SURGEWATCH, "run", "--config", cfg, "--format", "msgpack"]
        if cpu is not None:
            cmd = ["taskset", "-c", str(cpu)] + cmd
        self.t_start = time.monotonic()
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     env=env)
        self.records = []
        self.arrival = []            # monotonic time each record arrived
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        unpacker = msgpack.Unpacker(raw=False)
        fd = self.proc.stdout.fileno()
        while True:
            chunk = os.read(fd, 1 << 20)      # whatever has arrived: records as they come
            if not chunk:
                break
            unpacker.feed(chunk)
            now = time.monotonic()
            with self._cond:
                for rec in unpacker:
                    self.records.append(rec)
                    self.arrival.append(now)
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def wait_for(self, pred, timeout=120):
        """The first record matching pred (waiting for it), and when it arrived."""
        end = time.monotonic() + timeout
        with self._cond:
            while True:
                for rec, t in zip(self.records, self.arrival):
                    if pred(rec):
                        return rec, t
                if self.proc.poll() is not None:
                    raise RuntimeError(f"surgewatch run exited {self.proc.returncode}: "
                                       f"{self.proc.stderr.read().decode(errors='replace')}")
                left = end - time.monotonic()
                if left <= 0:
                    raise RuntimeError("surgewatch run: no such record in time")
                self._cond.wait(min(left, 0.2))

    def attached(self):
        """Wait until the probes are attached (the meta record follows loading)."""
        return self.wait_for(lambda r: r["type"] == "meta")

    def stats_count(self):
        with self._cond:
            return sum(r["type"] == "stats" for r in self.records)

    def wait_stats(self, n, timeout=120):
        """Wait for the n-th stats record (seq n - 1): n intervals closed."""
        return self.wait_for(lambda r: r["type"] == "stats" and r["seq"] >= n - 1, timeout)

    def cpu_seconds(self):
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK

    def rss_bytes(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        return 0

    def pss_bytes(self):
        """Proportional set size: RSS with shared library pages split among their users."""
        with open(f"/proc/{self.proc.pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
        return 0

    def stop(self):
        """SIGTERM, wait for the exit; self.stop_s = signal to exit (seconds)."""
        t0 = time.monotonic()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.stop_s = time.monotonic() - t0
        self._reader.join(timeout=10)
        return self.proc.returncode
