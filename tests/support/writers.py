"""Workloads that write a known number of log lines."""
import os
import shutil
import textwrap


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


# python -c PHASED_WRITER PATH LINE SECONDS:RATE...: appends LINE (and a newline) to PATH at
# RATE lines/s for SECONDS, phase after phase (one write each, paced on time.monotonic);
# prints how many lines it wrote
PHASED_WRITER = textwrap.dedent("""
    import os, sys, time
    path, line = sys.argv[1], sys.argv[2].encode() + b"\\n"
    phases = [(float(d), float(r)) for d, r in (p.split(":") for p in sys.argv[3:])]
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    total = 0
    for duration, rate in phases:
        start, n = time.monotonic(), 0
        while True:
            due = start + n / rate
            if due - start >= duration:
                break
            now = time.monotonic()
            if now < due:
                time.sleep(due - now)
            os.write(fd, line)
            n += 1
        total += n
    os.close(fd)
    print(total)
""")
