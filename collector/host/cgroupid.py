"""One cgroup id -> its path, without walking the tree: open_by_handle_at(2).

cgroup2 is kernfs, which exports its nodes: a file handle of type FILEID_KERNFS whose 8
bytes are the cgroup id opens that cgroup's directory (the lookup systemd makes for cgroup
ids). It needs CAP_DAC_READ_SEARCH, which the daemon keeps after loading. CgroupIndex asks
it for an id its last walk did not see (a cgroup made since), instead of waiting for the
next walk it allows.
"""
import ctypes
import errno
import os
import struct

from collector.host.procfs import translate

FILEID_KERNFS = 0xFE                    # include/linux/exportfs.h


class _Handle(ctypes.Structure):
    _fields_ = [("handle_bytes", ctypes.c_uint), ("handle_type", ctypes.c_int),
                ("f_handle", ctypes.c_ubyte * 8)]


_libc = ctypes.CDLL(None, use_errno=True)
_open_by_handle_at = getattr(_libc, "open_by_handle_at", None)
# gone, never was, not permitted here, or no such lookup on this kernel/file system
_NOT_FOUND = {errno.ESTALE, errno.ENOENT, errno.EPERM, errno.EACCES, errno.EOPNOTSUPP,
              errno.EINVAL, errno.ENOSYS, errno.EBADF, errno.ENOTDIR}


def relative_path(mount_point, cgroup_id):
    """The cgroup's directory below `mount_point` ("system.slice/x.service"; "" for the
    mount's own root), or None when the id opens nothing there. Out of fds or memory:
    HostResourceError (collector/host/procfs.translate)."""
    if _open_by_handle_at is None:
        return None
    handle = _Handle(8, FILEID_KERNFS,
                     (ctypes.c_ubyte * 8).from_buffer_copy(struct.pack("=Q", cgroup_id)))
    try:
        mount_fd = os.open(mount_point, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as e:
        if e.errno in _NOT_FOUND:
            return None
        raise translate(e, None, f"opening {mount_point}") from e
    try:
        fd = _open_by_handle_at(mount_fd, ctypes.byref(handle),
                                os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        if fd < 0:
            err = ctypes.get_errno()
            if err in _NOT_FOUND:
                return None
            raise translate(OSError(err, os.strerror(err)), None, "open_by_handle_at")
        try:
            # both links as our root shows them, so the mount's part cancels out
            top = os.readlink(f"/proc/self/fd/{mount_fd}")
            found = os.readlink(f"/proc/self/fd/{fd}")
        finally:
            os.close(fd)
    except OSError as e:
        if e.errno in _NOT_FOUND:
            return None
        raise translate(e, None, "reading a cgroup's path") from e
    finally:
        os.close(mount_fd)
    if found == top:
        return ""
    if not found.startswith(top.rstrip("/") + "/"):
        return None
    return found[len(top.rstrip("/")) + 1:]
