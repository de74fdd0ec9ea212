"""Fields of /proc/PID/mountinfo (proc(5)). Beside errors.py: host/cgroups.py and the
loader's memory-cgroup reading (probes/memcg.py) both read mount points from it."""
import os
import re

_OCTAL_ESCAPE = re.compile(rb"\\([0-7]{3})")


def unescape(field):
    """A path field as the kernel wrote it: space, tab, newline and backslash come as \\ooo
    (octal)."""
    raw = _OCTAL_ESCAPE.sub(lambda m: bytes([int(m.group(1), 8) & 0xFF]), os.fsencode(field))
    return os.fsdecode(raw)
