"""What `surgewatch run` needs as a long-running privileged process: its own log (rate
limited, journald priorities), the one-per-host run lock, and dropping the capabilities it
no longer needs once its probes are loaded.

Capabilities: loading and attaching BPF programs needs CAP_BPF + CAP_PERFMON (or
CAP_SYS_ADMIN); the loader child does that before the drop. After it every kernel object
the daemon uses is an open file descriptor: reading, updating and deleting map entries,
polling the ring buffers and detaching (closing perf-event and raw-tracepoint fds) are
checked against the fd, not against capabilities. What stays needed for the whole run is
reading other processes' /proc/PID/fd (to judge which files are logs and who owns a
socket): CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH. Everything else is dropped from the
effective, permitted, inheritable, ambient and bounding sets, so it cannot come back (not
even through an execve as uid 0).

tests/privileged/test_rel_security.py checks that draining, reloading rules and detaching
still work after the drop, with exact counts.
"""
import ctypes
import fcntl
import os
import sys
import time

from collector.config import LOCK_FILE
from collector.errors import BadInput, EnvironmentProblem
from collector.views.text import escape

CAP_DAC_READ_SEARCH, CAP_SETPCAP, CAP_SYS_PTRACE = 2, 8, 19
CAP_NAMES = {0: "CAP_CHOWN", 1: "CAP_DAC_OVERRIDE", 2: "CAP_DAC_READ_SEARCH",
             8: "CAP_SETPCAP", 12: "CAP_NET_ADMIN", 19: "CAP_SYS_PTRACE", 21: "CAP_SYS_ADMIN",
             38: "CAP_PERFMON", 39: "CAP_BPF"}
KEEP_AFTER_LOAD = (CAP_SYS_PTRACE, CAP_DAC_READ_SEARCH)

_LINUX_CAPABILITY_VERSION_3 = 0x20080522
PR_CAPBSET_DROP, PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL = 24, 47, 4


class _Header(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _Data(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


def _libc():
    return ctypes.CDLL(None, use_errno=True)


def last_cap():
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            return int(f.read())
    except (OSError, ValueError):
        return 40


def current():
    """(effective, permitted, bounding) capability masks of this process."""
    caps = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("CapEff", "CapPrm", "CapBnd"):
                caps[key] = int(value.split()[0], 16)
    return caps.get("CapEff", 0), caps.get("CapPrm", 0), caps.get("CapBnd", 0)


def names(mask):
    return [CAP_NAMES.get(n, f"cap{n}") for n in range(64) if mask >> n & 1]


def drop_to(keep=KEEP_AFTER_LOAD):
    """Keep only `keep` (those of them we have); raises OSError when the kernel refuses."""
    libc = _libc()
    eff, prm, _ = current()
    want = 0
    for c in keep:
        want |= 1 << c
    want &= prm
    if eff >> CAP_SETPCAP & 1:                   # bounding set first: needs CAP_SETPCAP
        for cap in range(last_cap() + 1):        # (systemd's unit already cut it)
            if not want >> cap & 1 and libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
                err = ctypes.get_errno()
                if err != 22:                      # EINVAL: cap unknown to this kernel
                    raise OSError(err, f"PR_CAPBSET_DROP {cap}: {os.strerror(err)}")
    libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    hdr = _Header(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_Data * 2)()
    for i in range(2):
        part = (want >> (32 * i)) & 0xFFFFFFFF
        data[i].effective = data[i].permitted = part
        data[i].inheritable = 0
    if libc.capset(ctypes.byref(hdr), ctypes.byref(data)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"capset: {os.strerror(err)}")
    return want


# -- own messages ----------------------------------------------------------------------
class StderrLog:
    """One line per message on stderr, at most `burst` per key and `per_minute` overall.

    Under journald (JOURNAL_STREAM names our stderr) each line starts with a syslog
    priority, "<4>...", which journald turns into the entry's level. Messages beyond the
    limits are counted and the count is shown on the next line that gets through.
    """

    PRIORITY = {"error": 3, "warning": 4, "notice": 5, "info": 6}

    def __init__(self, stream=None, clock=time.monotonic, burst=3, refill_s=60.0,
                 per_minute=30, journald=None):
        self.stream = stream if stream is not None else sys.stderr
        self.clock = clock
        self.burst, self.refill_s, self.per_minute = burst, refill_s, per_minute
        self.journald = _stderr_is_journal(self.stream) if journald is None else journald
        self._keys = {}                 # key -> [tokens, last refill time]
        self._recent = []               # times of lines written in the last minute
        self.suppressed = 0

    def _allowed(self, key, now):
        self._recent = [t for t in self._recent if now - t < 60.0]
        tokens, last = self._keys.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) / self.refill_s)
        ok = tokens >= 1 and len(self._recent) < self.per_minute
        self._keys[key] = [tokens - 1 if ok else tokens, now]
        if ok:
            self._recent.append(now)
        return ok

    def __call__(self, level, msg, key=None):
        now = self.clock()
        if not self._allowed(key or msg, now):
            self.suppressed += 1
            return False
        if self.suppressed:
            msg += f" ({self.suppressed} earlier message{'s' if self.suppressed != 1 else ''}" \
                   " suppressed)"
            self.suppressed = 0
        # names and paths come from any local user: control characters (ESC, OSC, CR,
        # newline) are escaped as the table, live view and tail do (collector/views/text.py)
        msg = escape(msg)
        if self.journald:
            line = f"<{self.PRIORITY.get(level, 6)}>{msg}\n"
        else:
            line = f"surgewatch: {level}: {msg}\n"
        try:
            self.stream.write(line)
            self.stream.flush()
        except (OSError, ValueError):
            pass
        return True


def _stderr_is_journal(stream):
    want = os.environ.get("JOURNAL_STREAM", "")
    try:
        st = os.fstat(stream.fileno())
    except (AttributeError, OSError, ValueError):
        return False
    return want == f"{st.st_dev}:{st.st_ino}"


def require_load_privileges(problems=None):
    """Raise EnvironmentProblem (exit 2) naming what the probes lack and the fix; checked
    before anything else needs privileges (the lock under /run, the outputs)."""
    from collector.probes.kernel import privilege_problems

    problems = privilege_problems() if problems is None else problems
    if problems:
        raise EnvironmentProblem(problems[0])


# -- the run lock ----------------------------------------------------------------------
def acquire_run_lock(path=LOCK_FILE):
    """One `surgewatch run` per host: an flock on the config's lock_file (tests give each
    run its own through SURGEWATCH_LOCK_FILE, collector/config/flags.py). The kernel releases it when the process dies, also by SIGKILL, so a
    stale file never blocks a restart. Returns the open file; keep it open."""
    path = path or LOCK_FILE
    try:
        os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as e:
        raise BadInput(f"{path}: cannot open the run lock: {e.strerror or e}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        try:
            other = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        except OSError:
            other = ""
        os.close(fd)
        raise BadInput(f"another surgewatch run is running (pid {other or '?'}, lock {path}); "
                       "stop it first, or give this one another lock_file") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return os.fdopen(fd, "r+b", buffering=0)


def raise_open_files_limit(log=None):
    """Raise this process's RLIMIT_NOFILE soft limit to its hard limit; returns the soft
    limit now in force. The soft default (1024) is what a local user reaches first by
    holding connections and subscribers open; the hard limit is the admin's choice (the
    unit's LimitNOFILE, docs/surgewatch.service). Failing to raise it is not fatal.
    Raising it is routine (systemd gives every service soft 1024 under a higher hard
    limit, for programs to raise), so only a failure is logged: a start that then fails
    stays one line."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (OSError, ValueError) as e:
            if log is not None:
                log("warning", f"could not raise the open-files limit from {soft} to "
                               f"{hard}: {e}", key="nofile")
    return soft


def drop_privileges_after_load(log):
    """Probes are loaded: keep only what reading /proc needs (drop_to above)."""
    try:
        kept = drop_to()
    except OSError as e:
        log("warning", f"could not drop capabilities after loading the probes: {e}",
            key="caps")
        return
    log("info", "capabilities after loading the probes: "
                f"{', '.join(names(kept)) or 'none'}", key="caps")
