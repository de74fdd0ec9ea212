"""Workloads that write a known number of log lines."""
import os
import shutil


def write_lines(path, n, line):
    """Append `line` (bytes) to `path` n times, one write each."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    for _ in range(n):
        os.write(fd, line)
    os.close(fd)


def unique_writer(workload_bin, tmp_path, name):
    """The logwriter workload under a name (its comm, hence its service) of its own."""
    exe = tmp_path / name
    shutil.copy(workload_bin("logwriter"), exe)
    return str(exe)
