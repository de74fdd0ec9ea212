"""What /proc says about one process: memory, CPU time, open fds."""
import os

CLK_TCK = os.sysconf("SC_CLK_TCK")


def _field_kb(path, name):
    with open(path) as f:
        for line in f:
            if line.startswith(name):
                return int(line.split()[1])
    return 0


def rss_kb(pid):
    return _field_kb(f"/proc/{pid}/status", "VmRSS:")


def pss_kb(pid):
    """Proportional set size: RSS with shared library pages split among their users."""
    return _field_kb(f"/proc/{pid}/smaps_rollup", "Pss:")


def cpu_seconds(pid):
    """utime + stime (clock ticks, 10 ms here)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def open_fds(pid, but=None):
    """The number of open fds; but: a link target not to count ("anon_inode:[pidfd]")."""
    if but is None:
        return len(os.listdir(f"/proc/{pid}/fd"))
    n = 0
    for name in os.listdir(f"/proc/{pid}/fd"):
        try:
            n += os.readlink(f"/proc/{pid}/fd/{name}") != but
        except OSError:
            pass                # closed while we looked
    return n


def pidfds(pid):
    """{fd: (inode, pid it refers to)} for each pidfd `pid` holds; the pid is -1 once that
    process was reaped (fdinfo's Pid:)."""
    out = {}
    for name in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{name}") != "anon_inode:[pidfd]":
                continue
            ino = os.stat(f"/proc/{pid}/fd/{name}").st_ino
            with open(f"/proc/{pid}/fdinfo/{name}") as f:
                target = [int(line.split()[1]) for line in f if line.startswith("Pid:")]
        except OSError:
            continue            # closed while we looked
        if target:
            out[int(name)] = (ino, target[0])
    return out
