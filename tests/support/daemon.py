"""A real `surgewatch run` for a test, a benchmark or the soak: one child process.

`Daemon(workdir, ...)` writes `workdir/sw.toml` (log rules: `logdir` only; each output on
or off), starts `surgewatch run --config` with its own lock file, and reads its stdout
(JSON lines or msgpack) in a thread: `records` holds every record so far, `arrival` the
monotonic time each came. It is stopped by its pid (SIGTERM, SIGKILL after a timeout).

Two ways to wait: as a reader that consumes (`next`, `wait_meta`, `wait_stats`: n more
stats records from now) or by predicate over everything read (`wait_for`, `attached`,
`wait_interval`: the n-th interval closed, with its arrival time).

stderr stays unread on its pipe until `err` is first asked for after the exit, so a
caller may also read `proc.stderr` itself (bytes) once the daemon is gone."""
import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import msgpack

from tests.owncgroup import TIME_SCALE
from tests.support import procfs
from tests.support.loopback import free_port
from tests.support.writers import write_lines

SURGEWATCH = os.path.join(os.path.dirname(sys.executable), "surgewatch")
STDOUT_FORMATS = ("json", "msgpack", "none")


def _toml_bool(on):
    return "true" if on else "false"


def build_config(*, interval, logdir, stdout, segments, segdir, socket, sock, port,
                resets=None, log_rules=""):
    """The daemon's config: only `logdir` is a log destination; `port` None turns
    Prometheus off; `resets` None leaves the [resets] section out (the default);
    `log_rules`: more TOML lines in [log_rules] (syslog_sockets = [...])."""
    text = f"""
interval = {interval}
[log_rules]
dirs = [{json.dumps(str(logdir))}]
globs = []
journald_sockets = []
{log_rules}
[outputs.stdout]
format = "{stdout}"
[outputs.segments]
enabled = {_toml_bool(segments)}
dir = {json.dumps(str(segdir))}
[outputs.socket]
enabled = {_toml_bool(socket)}
path = {json.dumps(str(sock))}
[outputs.prometheus]
enabled = {_toml_bool(port)}
"""
    if port:
        text += f'listen = "127.0.0.1:{port}"\n'
    if resets is not None:
        text += f"[resets]\nenabled = {_toml_bool(resets)}\n"
    return text


class Daemon:
    """`surgewatch run` as a child process.

    workdir: the config, lock, segment dir (`segdir`) and socket (`sock`) go here.
    logdir: the one log directory watched (default workdir/logs, made if missing).
    stdout: "json" or "msgpack" (read into `records`), or "none" (nothing read).
    segments, socket: those outputs on or off. prometheus: False, True (a free port) or
    a port; `port` is the one in use. resets: None (default), True or False.
    config_extra: TOML appended; config_text: the whole config instead; log_rules: TOML
    lines added to [log_rules].
    env: variables over os.environ; lock: the lock file (default workdir/run.lock).
    extra: arguments after `run --config FILE`; wrap: a command in front (setpriv ...);
    cpu: pin the daemon to that CPU (taskset); umask: the child's umask."""

    def __init__(self, workdir, *, interval=0.5, logdir=None, stdout="json", segments=False,
                 socket=False, prometheus=False, resets=None, config_extra="",
                 config_text=None, env=None, lock=None, extra=(), wrap=(), cpu=None,
                 umask=None, log_rules=""):
        if stdout not in STDOUT_FORMATS:
            raise ValueError(f"stdout: {stdout!r} is not one of {STDOUT_FORMATS}")
        self.workdir = Path(workdir)
        self.logdir = Path(logdir) if logdir is not None else self.workdir / "logs"
        self.logdir.mkdir(parents=True, exist_ok=True)
        self.segdir = self.workdir / "seg"
        self.sock = self.workdir / "run" / "stream.sock"
        self.port = free_port() if prometheus is True else (prometheus or None)
        self.lock = Path(lock) if lock is not None else self.workdir / "run.lock"
        self.format = stdout
        self.cfg = self.workdir / "sw.toml"
        if config_text is None:
            config_text = build_config(
                interval=interval, logdir=self.logdir, stdout=stdout, segments=segments,
                segdir=self.segdir, socket=socket, sock=self.sock, port=self.port,
                resets=resets, log_rules=log_rules) + config_extra
        self.cfg.write_text(config_text)
        os.chmod(self.cfg, 0o644)
        e = dict(os.environ, SURGEWATCH_LOCK_FILE=str(self.lock))
        e.update(env or {})
        pin = ("taskset", "-c", str(cpu)) if cpu is not None else ()
        self.argv = [*pin, *wrap, SURGEWATCH, "run", "--config", str(self.cfg), *extra]
        self.records = []
        self.arrival = []            # monotonic time each record arrived
        self.stop_s = None           # SIGTERM to exit, set by stop()
        self._cond = threading.Condition()
        self._eof = False
        self._cursor = 0             # records consumed by next()
        self._scanned = 0            # records wait_for has looked at
        self._err = None
        self._stopped = False
        self.t_start = time.monotonic()
        self.proc = subprocess.Popen(
            self.argv, env=e, stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL if stdout == "none" else subprocess.PIPE,
            preexec_fn=None if umask is None else (lambda: os.umask(umask)))
        self.pid = self.proc.pid
        self._reader = None
        if stdout != "none":
            self._reader = threading.Thread(target=self._read, daemon=True)
            self._reader.start()

    # reading
    def _read(self):
        fd = self.proc.stdout.fileno()
        unpacker = msgpack.Unpacker(raw=False) if self.format == "msgpack" else None
        pending = b""
        try:
            while True:
                chunk = os.read(fd, 1 << 20)     # whatever has arrived: records as they come
                if not chunk:
                    break
                now = time.monotonic()
                if unpacker is not None:
                    unpacker.feed(chunk)
                    recs = list(unpacker)
                else:
                    *lines, pending = (pending + chunk).split(b"\n")
                    recs = [json.loads(line) for line in lines if line.strip()]
                with self._cond:
                    self.records.extend(recs)
                    self.arrival.extend([now] * len(recs))
                    self._cond.notify_all()
        finally:
            with self._cond:
                self._eof = True
                self._cond.notify_all()

    def _exited(self):
        return RuntimeError(f"surgewatch run exited {self.proc.wait()}: {self.err}")

    def next(self, timeout=60):
        """The next record not consumed yet (waiting for it)."""
        end = time.monotonic() + timeout * TIME_SCALE
        with self._cond:
            while self._cursor >= len(self.records):
                left = end - time.monotonic()
                if self._eof or left <= 0:
                    break
                self._cond.wait(left)
            else:
                self._cursor += 1
                return self.records[self._cursor - 1]
            eof = self._eof
        if eof:
            raise self._exited()
        raise TimeoutError(f"surgewatch run: no record within {timeout} s")

    def wait_meta(self, timeout=120):
        """The first record, which must be meta (it follows loading: probes attached)."""
        rec = self.next(timeout)
        assert rec["type"] == "meta", rec
        return rec

    def wait_stats(self, n=1, timeout=30):
        """Read records until n `stats` records written from now on came; returns them
        (records already read are skipped: they stay in self.records)."""
        self.drain_pending()
        got = []
        while len(got) < n:
            rec = self.next(timeout)
            if rec["type"] == "stats":
                got.append(rec)
        return got

    def drain_pending(self):
        """Mark every record read so far as consumed."""
        with self._cond:
            self._cursor = len(self.records)

    def wait_for(self, pred, timeout=120):
        """The first record matching pred of all read (waiting for it), and its arrival."""
        end = time.monotonic() + timeout * TIME_SCALE
        with self._cond:
            while True:
                for i in range(self._scanned, len(self.records)):
                    if pred(self.records[i]):
                        return self.records[i], self.arrival[i]
                self._scanned = len(self.records)
                if self._eof or self._reader is None:
                    break
                left = end - time.monotonic()
                if left <= 0:
                    raise TimeoutError("surgewatch run: no such record in time")
                self._cond.wait(min(left, 0.2))
        raise self._exited()

    def attached(self):
        """Wait until the probes are attached (the meta record follows loading)."""
        return self.wait_for(lambda r: r["type"] == "meta")

    def wait_interval(self, n, timeout=120):
        """Wait for the n-th stats record (seq n - 1): n intervals closed."""
        return self.wait_for(lambda r: r["type"] == "stats" and r["seq"] >= n - 1, timeout)

    def stats_count(self):
        with self._cond:
            return sum(r["type"] == "stats" for r in self.records)

    def write_between_intervals(self, name, n, line):
        """One interval, then `line` appended n times to logdir/name, then three more
        intervals (the writes' interval closed for sure); returns the log's path."""
        self.wait_stats(1)
        log = str(self.logdir / name)
        write_lines(log, n, line)
        self.wait_stats(3)
        return log

    def wait_started(self, check, timeout=60):
        """Poll check() (OSError counts as not yet) until it is true."""
        end = time.monotonic() + timeout * TIME_SCALE
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise AssertionError(f"daemon exited {self.proc.returncode}: {self.err}")
            try:
                if check():
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise AssertionError("daemon did not start")

    # the process
    @property
    def err(self):
        """Its stderr (text), once it has exited; "" before."""
        if self._err is None:
            if self.proc.poll() is None:
                return ""
            self._err = self.proc.stderr.read().decode(errors="replace")
        return self._err

    def rss_bytes(self):
        return procfs.rss_kb(self.pid) * 1024

    def pss_bytes(self):
        return procfs.pss_kb(self.pid) * 1024

    def cpu_seconds(self):
        return procfs.cpu_seconds(self.pid)

    def _reap(self):
        self._stopped = True
        if self._reader is not None:
            self._reader.join(timeout=10)
        self.drain_pending()

    def stop(self, timeout=30):
        """SIGTERM, wait for the exit (SIGKILL after timeout); the exit code. Again after
        a stop: the same code. self.stop_s = signal to exit (seconds)."""
        if self._stopped:
            return self.proc.returncode
        t0 = time.monotonic()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.stop_s = time.monotonic() - t0
        self._reap()
        return self.proc.returncode

    def kill(self):
        """SIGKILL (when still running) and reap."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self._reap()


def stderr_until(d, text, got=b"", timeout=60):
    """Read the running Daemon d's stderr until `text` appears after what was `got`;
    returns got + what was read (bytes; the rest is d.err after the exit)."""
    fd = d.proc.stderr.fileno()
    end = time.monotonic() + timeout * TIME_SCALE
    start = len(got)
    while text.encode() not in got[start:]:
        left = end - time.monotonic()
        assert left > 0, f"no {text!r} on the daemon's stderr in {timeout}s: {got!r}"
        if select.select([fd], [], [], left)[0]:
            chunk = os.read(fd, 65536)
            assert chunk, f"the daemon exited: {got!r}"
            got += chunk
    return got
