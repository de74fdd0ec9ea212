"""The chatty service: logs a steady few tens of lines/s, then, at a given moment (as a newly
deployed component did), ~100x more.

    chatty.py LOG_FILE SECONDS:LINES_PER_S [SECONDS:LINES_PER_S ...]

One write(2) per line; each line starts with its own wall-clock time, the tests' ground
truth. The phases are paced against a monotonic clock, so the rates hold on a busy host.
"""
import os
import sys
import time


def main():
    path = sys.argv[1]
    phases = [(float(d), float(r)) for d, r in (p.split(":") for p in sys.argv[2:])]
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    for phase, (duration, rate) in enumerate(phases):
        start = time.monotonic()
        n = 0
        while True:
            due = start + n / rate
            if due - start >= duration:
                break
            now = time.monotonic()
            if now < due:
                time.sleep(due - now)
            os.write(fd, b"%.6f phase=%d chatty: request handled, cache state dumped\n"
                     % (time.time(), phase))
            n += 1
    os.close(fd)


if __name__ == "__main__":
    main()
