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


def open_fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))
