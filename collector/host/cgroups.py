"""cgroup id -> cgroup path, for processes that exited before we could read /proc.

A cgroup id (what bpf_get_current_cgroup_id() returns) is the inode number of the
cgroup's directory in the cgroup2 filesystem, and on 64-bit kernels it is never reused.
So a walk of the cgroup2 tree maps ids to paths, and entries for removed cgroups stay
correct for as long as we keep them.
"""
import os
import time
from collections import OrderedDict

from collector.errors import HostResourceError
from collector.host.cgroupid import relative_path
from collector.host.procfs import translate
from collector.mountinfo import unescape

CGROUP2_FSTYPE = "cgroup2"


def cgroup2_mount(mountinfo="/proc/self/mountinfo"):
    """(mount point, root of the mount inside the hierarchy) of the cgroup2 mount, or None.

    The mount point is /sys/fs/cgroup on unified hosts and /sys/fs/cgroup/unified on
    hybrid ones; a mount showing the whole hierarchy (root "/") is preferred over a bind
    mount of a subtree.
    """
    found = []
    with open(mountinfo, "rb") as f:
        for raw in f:
            fields = raw.decode("utf-8", errors="surrogateescape").split()
            # proc(5): id parent dev root mountpoint opts [optional...] - fstype source super
            if "-" not in fields[6:]:
                continue
            sep = fields.index("-", 6)
            if len(fields) > sep + 1 and fields[sep + 1] == CGROUP2_FSTYPE:
                found.append((unescape(fields[4]), unescape(fields[3])))
    for mount_point, root in found:
        if root == "/":
            return mount_point, root
    return found[0] if found else None


class CgroupIndex:
    """Maps cgroup ids to paths as a "0::<path>" line of /proc/<pid>/cgroup shows them.

    The tree is walked lazily: on the first lookup and again on a miss, but at most once
    per `min_rescan_interval` seconds, so a burst of unknown ids costs one walk; a miss
    between walks opens that one id (`look_up`: open_by_handle_at), so a process that
    logged and exited in a cgroup made within the second is still named by it.
    At most `max_entries` ids are kept; the ones not seen in the latest walk go first.
    `mounts`: where the mount points `mountinfo` lists are for us ("/proc/1/root" with
    "/proc/1/mountinfo": the host's cgroup2 mount, from a container whose own cgroup2
    mount shows only its cgroup namespace's subtree; collector/host/hostroot.py).
    """

    def __init__(self, mountinfo="/proc/self/mountinfo", root_override=None,
                 max_entries=65536, min_rescan_interval=1.0, clock=time.monotonic,
                 look_up=relative_path, mounts="/"):
        self.mountinfo = mountinfo
        self.mounts = mounts
        self.root_override = root_override
        self.max_entries = max_entries
        self.min_rescan_interval = min_rescan_interval
        self.clock = clock
        self.look_up = look_up
        self.scans = 0
        self.lookups = 0        # ids found by look_up between walks
        self.truncated = False  # the last walk stopped at max_entries
        self._paths = OrderedDict()  # cgroup id -> path
        self._last_scan = None
        self._mount = None  # (directory to walk, prefix for the paths)

    def path(self, cgroup_id):
        """The cgroup path ("/system.slice/nginx.service"), or None when unknown."""
        if cgroup_id not in self._paths:
            if self._may_rescan():
                self.rescan()
            else:
                self._look_up(cgroup_id)
        return self._paths.get(cgroup_id)

    def _look_up(self, cgroup_id):
        """One id between walks (a cgroup made since the last): open_by_handle_at, where
        the file system allows it (cgroup2; collector/host/cgroupid.py)."""
        mount = self._find_mount()
        if mount is None:
            return
        top, prefix = mount
        rel = self.look_up(top, cgroup_id)
        if rel is None:
            return
        self.lookups += 1
        self._paths[cgroup_id] = _join(prefix, rel)
        while len(self._paths) > self.max_entries:
            self._paths.popitem(last=False)

    def rescan(self):
        self._last_scan = self.clock()
        self.scans += 1
        mount = self._find_mount()
        if mount is None:
            return
        top, prefix = mount
        walked = 0
        self.truncated = False
        try:
            for dirpath, _dirs, _files, dirfd in os.fwalk(top):
                if walked >= self.max_entries:
                    self.truncated = True
                    break
                cgroup_id = os.fstat(dirfd).st_ino
                self._paths[cgroup_id] = _join(prefix, dirpath[len(top):].lstrip("/"))
                self._paths.move_to_end(cgroup_id)
                walked += 1
        except OSError as e:
            err = translate(e, None, f"walking {top}")
            if isinstance(err, HostResourceError):
                self._last_scan = None          # out of fds: walk again when asked next
                raise err from e
            # the hierarchy changed under the walk: what was read stays, the rest unknown
        while len(self._paths) > self.max_entries:
            self._paths.popitem(last=False)

    def _may_rescan(self):
        return (self._last_scan is None
                or self.clock() - self._last_scan >= self.min_rescan_interval)

    def _find_mount(self):
        if self._mount is None:
            if self.root_override is not None:
                self._mount = (self.root_override.rstrip("/") or "/", "/")
            else:
                try:
                    found = cgroup2_mount(self.mountinfo)
                except OSError:
                    found = None            # that process's mounts are gone or hidden
                if found is None:
                    return None  # no cgroup2 (pure v1 host): every id stays unknown
                top, prefix = found
                self._mount = (os.path.join(self.mounts, top.lstrip("/")), prefix)
        return self._mount


def _join(prefix, rel):
    if not rel:
        return prefix
    return prefix.rstrip("/") + "/" + rel
