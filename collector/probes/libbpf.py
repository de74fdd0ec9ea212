"""BPF maps and ring buffers by file descriptor, through Debian's libbpf (libbpf1).

The daemon never imports bcc (its compiler is ~150 MB resident): the loader child
compiles and attaches, hands over fds (collector/probes/loader.py), and every map
operation here goes through libbpf's small, stable C API. libbpf >= 1.0 returns
-errno; errors become OSError with the map's name.
"""
import ctypes
import ctypes.util
import errno
import mmap
import os
import sys
from functools import lru_cache

BPF_MAP_TYPE_PERCPU_HASH, BPF_MAP_TYPE_PERCPU_ARRAY = 5, 6
BPF_MAP_TYPE_LRU_PERCPU_HASH = 10
PERCPU_TYPES = (BPF_MAP_TYPE_PERCPU_HASH, BPF_MAP_TYPE_PERCPU_ARRAY,
                BPF_MAP_TYPE_LRU_PERCPU_HASH)

_vp, _u32, _int = ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int
SAMPLE_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t)


class LibbpfMissing(OSError):
    pass


class _MapInfo(ctypes.Structure):      # the head of struct bpf_map_info (uapi bpf.h)
    _fields_ = [("type", _u32), ("id", _u32), ("key_size", _u32), ("value_size", _u32),
                ("max_entries", _u32), ("map_flags", _u32), ("name", ctypes.c_char * 16)]


# struct bpf_prog_info (uapi bpf.h): its size as 6.18 has it, and where recursion_misses
# (5.12+) sits; an older kernel fills less and leaves the rest 0
PROG_INFO_SIZE, PROG_INFO_RECURSION_MISSES = 240, 208


@lru_cache(maxsize=1)
def lib():
    name = ctypes.util.find_library("bpf") or "libbpf.so.1"
    try:
        so = ctypes.CDLL(name, use_errno=True)
    except OSError as e:
        raise LibbpfMissing(f"{name}: {e}; fix: apt-get install libbpf1 (make setup)") from e
    sigs = {
        "bpf_map_lookup_elem": (_int, [_int, _vp, _vp]),
        "bpf_map_update_elem": (_int, [_int, _vp, _vp, ctypes.c_uint64]),
        "bpf_map_delete_elem": (_int, [_int, _vp]),
        "bpf_map_get_next_key": (_int, [_int, _vp, _vp]),
        "bpf_map_lookup_and_delete_batch": (_int, [_int, _vp, _vp, _vp, _vp,
                                                   ctypes.POINTER(_u32), _vp]),
        "bpf_obj_get_info_by_fd": (_int, [_int, _vp, ctypes.POINTER(_u32)]),
        "libbpf_num_possible_cpus": (_int, []),
        "ring_buffer__new": (_vp, [_int, SAMPLE_FN, _vp, _vp]),
        "ring_buffer__add": (_int, [_vp, _int, SAMPLE_FN, _vp]),
        "ring_buffer__poll": (_int, [_vp, _int]),
        "ring_buffer__consume": (_int, [_vp]),
        "ring_buffer__free": (None, [_vp]),
        "ring_buffer__epoll_fd": (_int, [_vp]),
    }
    for fn, (res, args) in sigs.items():
        f = getattr(so, fn)
        f.restype, f.argtypes = res, args
    return so


def _check(res, what, name):
    if res < 0:
        err = -res if res != -1 else (ctypes.get_errno() or errno.EIO)
        raise OSError(err, f"{what} on map {name}: {os.strerror(err)}")
    return res


def map_info(fd):
    info = _MapInfo()
    size = _u32(ctypes.sizeof(info))
    res = lib().bpf_obj_get_info_by_fd(fd, ctypes.byref(info), ctypes.byref(size))
    _check(res, "BPF_OBJ_GET_INFO_BY_FD", f"fd {fd}")
    return info


class Map:
    """One BPF map, owned through its fd. Keys and values are ctypes objects or bytes."""

    def __init__(self, fd, name=None):
        info = map_info(fd)
        self.fd, self.type = fd, info.type
        self.name = name or info.name.decode("ascii", "replace")
        self.key_size, self.value_size = info.key_size, info.value_size
        self.max_entries = info.max_entries
        self.percpu = info.type in PERCPU_TYPES
        # per-CPU values come back as one 8-byte-aligned slot per possible CPU
        self.ncpus = lib().libbpf_num_possible_cpus() if self.percpu else 1
        self.slot = (self.value_size + 7) // 8 * 8 if self.percpu else self.value_size
        self._value = ctypes.create_string_buffer(self.slot * self.ncpus)

    def lookup(self, key):
        """The value's bytes (for a per-CPU map, the slots of every CPU), or None."""
        res = lib().bpf_map_lookup_elem(self.fd, ctypes.byref(key), self._value)
        if res < 0:
            if -res == errno.ENOENT or ctypes.get_errno() == errno.ENOENT:
                return None
            _check(res, "lookup", self.name)
        return self._value.raw

    def percpu_u64_sum(self, key):
        raw = self.lookup(key)
        if raw is None:
            return 0
        return sum(int.from_bytes(raw[i * self.slot:i * self.slot + 8], "little")
                   for i in range(self.ncpus))

    def update(self, key, value, flags=0):
        _check(lib().bpf_map_update_elem(self.fd, ctypes.byref(key), ctypes.byref(value),
                                         flags), "update", self.name)

    def delete(self, key):
        """Delete key; False when it was not there."""
        res = lib().bpf_map_delete_elem(self.fd, ctypes.byref(key))
        if res < 0:
            if -res == errno.ENOENT:
                return False
            _check(res, "delete", self.name)
        return True

    def keys(self):
        """Every key as bytes (a snapshot: the kernel may change the map meanwhile)."""
        out, cur, nxt = [], None, ctypes.create_string_buffer(self.key_size)
        while True:
            res = lib().bpf_map_get_next_key(self.fd, cur, nxt)
            if res < 0:
                if -res == errno.ENOENT:
                    return out
                _check(res, "get_next_key", self.name)
            out.append(nxt.raw)
            cur = ctypes.create_string_buffer(nxt.raw, self.key_size)
            if len(out) > self.max_entries * 2:     # the map churned under us: enough
                return out

    def close(self):
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class BatchDrain:
    """Lookup-and-delete a whole hash map in batches into buffers made once; returns the
    raw key and value bytes, for struct.iter_unpack (no Python object per field), or
    None when the kernel lacks batch operations (< 5.6)."""

    def __init__(self, bpf_map):
        self.map = bpf_map
        n = self.max = bpf_map.max_entries
        # anonymous mappings: a page costs RSS only once a drain has written into it (a
        # 65,536-key map's buffers are 4.7 MB; 10,000 keys touch 0.7 MB of them)
        self._mem = [mmap.mmap(-1, n * size) for size in (bpf_map.key_size, bpf_map.value_size)]
        self.keys, self.vals = ((ctypes.c_char * len(m)).from_buffer(m) for m in self._mem)

    def drain(self):
        m, so = self.map, lib()
        batch, count, total = _u32(0), _u32(0), 0
        while total < self.max:
            count.value = self.max - total
            res = so.bpf_map_lookup_and_delete_batch(
                m.fd, ctypes.byref(batch) if total else None, ctypes.byref(batch),
                ctypes.byref(self.keys, m.key_size * total),
                ctypes.byref(self.vals, m.value_size * total), ctypes.byref(count), None)
            total += count.value
            if res < 0:
                if -res == errno.ENOENT:            # the whole map was walked
                    break
                if total == 0 and -res in (errno.EINVAL, errno.ENOTSUPP, errno.EOPNOTSUPP):
                    return None
                _check(res, "BPF_MAP_LOOKUP_AND_DELETE_BATCH", m.name)
            if count.value == 0:
                break
        return (memoryview(self.keys)[:total * m.key_size],
                memoryview(self.vals)[:total * m.value_size])

    def drain_slow(self):
        """Key by key (kernels without batch ops): (key bytes, value bytes) pairs."""
        out = []
        for k in self.map.keys():
            key = ctypes.create_string_buffer(k, len(k))
            v = self.map.lookup(key)
            if v is not None and self.map.delete(key):
                out.append((k, v[:self.map.value_size]))
        return out


class RingBuffer:
    """libbpf's ring_buffer over one map fd; callback(data_ptr, size) per record."""

    def __init__(self, bpf_map, callback):
        def sample(_ctx, data, size):
            try:
                callback(data, size)
            except BaseException as e:   # must not unwind through C: raised after the poll
                self._exc = self._exc or e
                return -1
            return 0
        self._exc = None
        self._cb = SAMPLE_FN(sample)         # kept alive as long as the ring buffer
        self._rb = lib().ring_buffer__new(bpf_map.fd, self._cb, None, None)
        if not self._rb:
            err = ctypes.get_errno() or errno.EINVAL
            raise OSError(err, f"ring_buffer__new on map {bpf_map.name}: {os.strerror(err)}")

    def fileno(self):
        """libbpf's epoll fd for this ring buffer: readable when records wait."""
        return lib().ring_buffer__epoll_fd(self._rb)

    def poll(self, timeout_ms):
        self._after(lib().ring_buffer__poll(self._rb, int(timeout_ms)), "ring_buffer__poll")

    def consume(self):
        self._after(lib().ring_buffer__consume(self._rb), "ring_buffer__consume")

    def _after(self, res, what):
        exc, self._exc = self._exc, None
        if exc is not None:
            raise exc
        if res < 0 and -res != errno.EINTR:
            _check(res, what, "ring buffer")

    def close(self):
        if self._rb:
            lib().ring_buffer__free(self._rb)
            self._rb = None


def _prog_info(prog_fd):
    """struct bpf_prog_info's bytes as this kernel fills them."""
    info = ctypes.create_string_buffer(PROG_INFO_SIZE)
    size = _u32(PROG_INFO_SIZE)
    if lib().bpf_obj_get_info_by_fd(prog_fd, info, ctypes.byref(size)) < 0:
        raise OSError(ctypes.get_errno(), f"bpf_obj_get_info_by_fd({prog_fd}) failed")
    return info.raw[:size.value]


def prog_info(prog_fd):
    """(type, tag, name) of a loaded program (the head of struct bpf_prog_info)."""
    raw = _prog_info(prog_fd)
    return (int.from_bytes(raw[0:4], sys.byteorder), raw[8:16],
            raw[64:80].split(b"\0", 1)[0].decode("ascii", "replace"))


def runs_missed(prog_fd):
    """How many times the kernel skipped the program on its hook because a BPF program was
    already running on that CPU (bpf_prog_info.recursion_misses: raw tracepoints and
    fentry from 5.12, perf-event tracepoints from 6.6; 0 where the kernel does not count)."""
    info = _prog_info(prog_fd)
    if len(info) < PROG_INFO_RECURSION_MISSES + 8:
        return 0
    return int.from_bytes(info[PROG_INFO_RECURSION_MISSES:PROG_INFO_RECURSION_MISSES + 8],
                          sys.byteorder)
