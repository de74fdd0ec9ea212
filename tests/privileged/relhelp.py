"""Helpers for the reliability tests (docs/reliability.md): a `surgewatch run` child
with JSON lines on stdout read by a thread, BPF program listing, process memory."""
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time

SURGEWATCH = os.path.join(os.path.dirname(sys.executable), "surgewatch")

# every BPF function the two probes load (bpftool shows names cut to 15 characters)
PROG_NAMES = {n[:15] for n in (
    "raw_sys_enter", "enter_write", "enter_writev", "enter_pwrite64", "enter_pwritev",
    "enter_pwritev2", "enter_openat", "enter_open", "enter_creat", "enter_openat2",
    "exit_open_any", "sw_set_state", "sw_destroy", "sw_exit_accept", "sw_enter_io",
    "sw_send_reset", "sw_receive_reset")}

CONFIG = """
interval = {interval}
[log_rules]
dirs = ["{logdir}"]
globs = []
journald_sockets = []
[outputs.stdout]
format = "json"
[outputs.segments]
enabled = {seg_on}
dir = "{segdir}"
[outputs.socket]
enabled = {sock_on}
path = "{sock}"
[outputs.prometheus]
enabled = {prom_on}
listen = "127.0.0.1:{port}"
"""


def bpf_programs():
    """[{id, name, pids...}] of every BPF program loaded on the host (bpftool)."""
    out = subprocess.run(["bpftool", "prog", "show", "-j"], capture_output=True, text=True,
                         check=True).stdout
    return json.loads(out or "[]")


def programs_of(pid):
    """Ids of the BPF programs with our names that the process `pid` holds open (from
    /proc/PID/fdinfo: this bpftool is built without the pids column)."""
    held = set()
    fddir = f"/proc/{pid}/fd"
    for fd in os.listdir(fddir):
        try:
            if os.readlink(os.path.join(fddir, fd)) != "anon_inode:bpf-prog":
                continue
            with open(f"/proc/{pid}/fdinfo/{fd}") as f:
                for line in f:
                    if line.startswith("prog_id:"):
                        held.add(int(line.split()[1]))
        except OSError:
            continue
    # programs the loader child attached and handed over: the process holds their
    # perf-event / raw tracepoint fds, not the program fds (bpftool perf names the holder)
    out = subprocess.run(["bpftool", "-j", "perf"], capture_output=True, text=True,
                         check=True).stdout
    held |= {a["prog_id"] for a in json.loads(out or "[]") if a.get("pid") == pid}
    names = {p["id"]: p.get("name") for p in bpf_programs()}
    return {i for i in held if names.get(i) in PROG_NAMES}


def attachments_of(pid):
    """Tracepoints (bpftool perf names) with a program attached through an fd of `pid`."""
    out = subprocess.run(["bpftool", "-j", "perf"], capture_output=True, text=True,
                         check=True).stdout
    return sorted(a.get("tracepoint", "?") for a in json.loads(out or "[]")
                  if a.get("pid") == pid)


def attached_programs():
    """Ids of our programs attached anywhere on the host (bpftool perf): the oracle for
    'nothing left attached'."""
    out = subprocess.run(["bpftool", "-j", "perf"], capture_output=True, text=True,
                         check=True).stdout
    names = {p["id"]: p.get("name") for p in bpf_programs()}
    return {a["prog_id"] for a in json.loads(out or "[]")
            if names.get(a["prog_id"]) in PROG_NAMES}


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def open_fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


class RunDaemon:
    """`surgewatch run --config` with JSON lines on stdout, collected by a thread."""

    def __init__(self, tmp, interval=0.5, segments=False, socket_on=False, prom_port=None,
                 env=None, extra=(), config_text=None, lock=None, umask=None, wrap=()):
        self.tmp = tmp
        self.logdir = tmp / "logs"
        self.logdir.mkdir(exist_ok=True)
        self.segdir = tmp / "seg"
        self.sock = tmp / "run" / "stream.sock"
        self.port = prom_port or 9
        self.cfg = tmp / "sw.toml"
        if config_text is None:
            config_text = CONFIG.format(
                interval=interval, logdir=self.logdir, segdir=self.segdir,
                seg_on=str(segments).lower(), sock_on=str(socket_on).lower(), sock=self.sock,
                prom_on=str(bool(prom_port)).lower(), port=self.port)
        self.cfg.write_text(config_text)
        os.chmod(self.cfg, 0o644)
        e = dict(os.environ)
        e["SURGEWATCH_LOCK_FILE"] = str(lock or tmp / "run.lock")
        e.update(env or {})
        self.proc = subprocess.Popen([*wrap, SURGEWATCH, "run", "--config", str(self.cfg),
                                      *extra],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     env=e, text=True,
                                     preexec_fn=None if umask is None
                                     else (lambda: os.umask(umask)))
        self.pid = self.proc.pid
        self.lines = queue.Queue()
        self.records = []
        self._t = threading.Thread(target=self._read, daemon=True)
        self._t.start()
        self.err = ""

    def _read(self):
        for line in self.proc.stdout:
            self.lines.put(json.loads(line))
        self.lines.put(None)

    def next(self, timeout=60):
        rec = self.lines.get(timeout=timeout)
        if rec is None:
            raise RuntimeError(f"daemon exited {self.proc.wait()}: {self.proc.stderr.read()}")
        self.records.append(rec)
        return rec

    def wait_meta(self, timeout=120):
        rec = self.next(timeout)
        assert rec["type"] == "meta", rec
        return rec

    def wait_stats(self, n=1, timeout=30):
        """Read records until n `stats` records written from now on came; returns them
        (records already queued are kept in self.records first)."""
        self.drain_pending()
        got = []
        while len(got) < n:
            rec = self.next(timeout)
            if rec["type"] == "stats":
                got.append(rec)
        return got

    def drain_pending(self):
        while True:
            try:
                rec = self.lines.get_nowait()
            except queue.Empty:
                return
            if rec is None:
                self.lines.put(None)         # keep the end mark for next()
                return
            self.records.append(rec)

    def stop(self, timeout=30):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._t.join(timeout=10)
        self.drain_pending()
        self.err = self.proc.stderr.read()
        return self.proc.returncode

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self._t.join(timeout=10)
        self.drain_pending()
        self.err = self.proc.stderr.read()


def writes_by_path(records, path):
    """(writes, bytes) for `path` summed over the rate records."""
    w = b = 0
    for r in records:
        if r.get("type") != "rate":
            continue
        for p in r.get("paths", ()):
            if p.get("path") == path:
                w += p.get("writes", 0)
                b += p.get("bytes", 0)
    return w, b


def losses(records):
    keys = ("unresolved_writes", "lost_writes", "evictions", "lost_events",
            "fd_walk_failed")
    tot = dict.fromkeys(keys, 0)
    for r in records:
        if r.get("type") == "stats":
            for k in keys:
                tot[k] += r.get(k, 0) or 0
    return tot


def record_figure(name, **figures):
    """Append measured figures to $SURGEWATCH_REL_RESULTS (JSON lines) when set, and print
    them (pytest -s shows them); docs/reliability.md quotes them."""
    line = json.dumps({"test": name, **figures}, sort_keys=True)
    print(line)
    path = os.environ.get("SURGEWATCH_REL_RESULTS")
    if path:
        with open(path, "a") as f:
            f.write(line + "\n")
