"""The daemon's own memory cgroup: its limit and its OOM-kill count.

A loader child (collector/probes/loader.py) that dies by SIGKILL while bcc compiles was,
most often, killed by the OOM killer of a memory-limited cgroup (a container's limit, a
unit's MemoryMax=): compiling both probes at once peaks at ~250 MB. The child runs in
the daemon's cgroup, so the daemon reads its own: the smallest memory limit on its path
(cgroup v2 `memory.max`, v1 `memory.limit_in_bytes`) and the OOM-kill counter (v2
`memory.events` `oom_kill`, v1 `memory.oom_control` `oom_kill`; both count kills in the
cgroup's subtree), and how often a charge hit the limit (v2 `memory.events` `max`, v1
`memory.failcnt` + `memory.memsw.failcnt`), before the children start and after one died
or failed.

Every path goes through the injectable `root` (unit tests: a fixture tree). Nothing here
raises: what cannot be read is None, and the caller words its message without it.
"""
import os
from dataclasses import dataclass

from collector.mountinfo import unescape

V1_UNLIMITED = 1 << 62       # v1 writes "no limit" as PAGE_COUNTER_MAX pages (~2^63)


@dataclass(frozen=True)
class MemoryState:
    limit: int = None          # bytes: the smallest limit on the cgroup's path; None: none
    limit_cgroup: str = None   # the cgroup that sets it ("/system.slice/x.service")
    oom_kills: int = None      # the cgroup's OOM-kill counter; None: not readable
    version: str = None        # "v2", "v1", or None: no memory cgroup found
    limit_hits: int = None     # times a charge hit the limit (v2 events "max", v1 failcnts)


class MemoryCgroup:
    def __init__(self, root="/", pid="self"):
        self.root, self.pid = root, str(pid)

    def _path(self, absolute):
        return os.path.join(self.root, absolute.lstrip("/"))

    def state(self):
        """The MemoryState now; MemoryState() when nothing can be read."""
        try:
            mounts = self._mounts()
            lines = self._read(f"/proc/{self.pid}/cgroup").split("\n")
        except (OSError, UnicodeError, ValueError):
            return MemoryState()
        v2, v1 = None, None
        for line in lines:
            parts = line.split(":", 2)
            if len(parts) != 3:
                continue
            if parts[0] == "0" and parts[1] == "":
                v2 = parts[2]
            elif "memory" in parts[1].split(","):
                v1 = parts[2]
        # a hybrid host's cgroup2 has no memory controller when v1 holds it
        if v1 is not None and "v1" in mounts:
            return self._state(mounts["v1"], v1, "v1", "memory.limit_in_bytes",
                               "memory.oom_control")
        if v2 is not None and "v2" in mounts:
            return self._state(mounts["v2"], v2, "v2", "memory.max", "memory.events")
        return MemoryState()

    def _mounts(self):
        """{"v2": (mount point, root), "v1": (mount point, root)} of the memory cgroup."""
        found = {}
        for raw in self._read(f"/proc/{self.pid}/mountinfo").split("\n"):
            fields = raw.split()
            if "-" not in fields[6:]:
                continue
            sep = fields.index("-", 6)
            if len(fields) < sep + 4:
                continue
            fstype, opts = fields[sep + 1], fields[sep + 3].split(",")
            mount = (unescape(fields[4]), unescape(fields[3]))
            if fstype == "cgroup2" and ("v2" not in found or mount[1] == "/"):
                found["v2"] = mount
            elif fstype == "cgroup" and "memory" in opts and "v1" not in found:
                found["v1"] = mount
        return found

    def _state(self, mount, cgroup, version, limit_file, events_file):
        point, mroot = mount
        if mroot != "/" and not (cgroup == mroot or cgroup.startswith(mroot.rstrip("/") + "/")):
            return MemoryState(version=version)       # our cgroup is outside this mount
        rel = cgroup[len(mroot.rstrip("/")):] if mroot != "/" else cgroup
        here = "/" + rel.strip("/")
        limit, limit_cgroup = None, None
        walk = here
        while True:
            value = self._limit(point, walk, limit_file)
            if value is not None and (limit is None or value < limit):
                limit, limit_cgroup = value, walk
            if walk == "/":
                break
            walk = os.path.dirname(walk)
        events = self._path(os.path.join(point, here.lstrip("/"), events_file))
        kills = self._counter(events, "oom_kill")
        if version == "v2":
            hits = self._counter(events, "max")
        else:        # v1: the memory counter's, and memory+swap's where that is limited
            counts = [self._number(os.path.join(point, here.lstrip("/"), name))
                      for name in ("memory.failcnt", "memory.memsw.failcnt")]
            hits = None if counts[0] is None else counts[0] + (counts[1] or 0)
        return MemoryState(limit, limit_cgroup, kills, version, hits)

    def _number(self, absolute):
        try:
            text = self._read(absolute).strip()
        except (OSError, UnicodeError):
            return None
        return int(text) if text.isdigit() else None

    def _limit(self, point, cgroup, name):
        try:
            text = self._read(os.path.join(point, cgroup.lstrip("/"), name)).strip()
        except (OSError, UnicodeError):
            return None
        if not text.isdigit():
            return None                    # "max" (v2): no limit here
        value = int(text)
        return value if value < V1_UNLIMITED else None

    def _counter(self, path, key):
        try:
            with open(path, "rb") as f:
                text = f.read().decode("ascii")
        except (OSError, UnicodeError):
            return None
        for line in text.split("\n"):
            parts = line.split()
            if len(parts) == 2 and parts[0] == key and parts[1].isdigit():
                return int(parts[1])
        return None

    def _read(self, absolute):
        with open(self._path(absolute), "rb") as f:
            return f.read().decode("utf-8", errors="surrogateescape")


def size_text(n):
    """100 MiB, 1.5 GiB, 95.4 MiB."""
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{round(n / scale, 1):g} {unit}"
    return f"{n} B"
