"""Drop the capabilities the daemon no longer needs once its probes are loaded.

Loading and attaching BPF programs needs CAP_BPF + CAP_PERFMON (or CAP_SYS_ADMIN). After
that every kernel object the daemon uses is an open file descriptor: reading, updating
and deleting map entries, polling the ring buffers and detaching (closing perf-event and
raw-tracepoint fds) are checked against the fd, not against capabilities. What stays
needed for the whole run is reading other processes' /proc/PID/fd (to judge which files
are logs and who owns a socket): CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH. Everything else
is dropped from the effective, permitted, inheritable, ambient and bounding sets, so it
cannot come back (not even through an execve as uid 0).

tests/privileged/test_rel_security.py checks that draining, reloading rules and detaching
still work after the drop, with exact counts.
"""
import ctypes
import os

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
