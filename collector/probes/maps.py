"""Reading bcc maps the same way in every probe: strings, drains, health counters."""
import ctypes
import errno
import os


def cstr(raw):
    """A fixed-size C char array as text (up to the first NUL, bad bytes replaced)."""
    return bytes(raw).split(b"\0", 1)[0].decode("utf-8", "replace")


class RawDrain:
    """Lookup-and-delete a whole hash map in batches into reused buffers; returns the raw
    key and value bytes, for struct.iter_unpack (no Python object per field).
    None when the kernel lacks batch operations (then use drain_table)."""

    def __init__(self, table):
        self.table = table
        n = table.max_entries
        self.key_size, self.val_size = ctypes.sizeof(table.Key), ctypes.sizeof(table.Leaf)
        self.keys = ctypes.create_string_buffer(n * self.key_size)
        self.vals = ctypes.create_string_buffer(n * self.val_size)
        self.max = n

    def drain(self):
        from bcc import lib

        batch, count, total = ctypes.c_uint32(0), ctypes.c_uint32(0), 0
        while total < self.max:
            count.value = self.max - total
            res = lib.bpf_lookup_and_delete_batch(
                self.table.map_fd, ctypes.byref(batch) if total else None, ctypes.byref(batch),
                ctypes.byref(self.keys, self.key_size * total),
                ctypes.byref(self.vals, self.val_size * total), ctypes.byref(count))
            err = ctypes.get_errno()
            total += count.value
            if res != 0:
                if err == errno.ENOENT:        # the whole map was walked
                    break
                if total == 0:
                    return None                 # no batch support: caller falls back
                raise OSError(err, f"BPF_MAP_LOOKUP_AND_DELETE_BATCH: {os.strerror(err)}")
            if count.value == 0:
                break
        return (memoryview(self.keys)[:total * self.key_size],
                memoryview(self.vals)[:total * self.val_size])


def drain_table(table):
    """Lookup-and-delete every entry: in batches when the kernel has it, else one by one."""
    try:
        return list(table.items_lookup_and_delete_batch())
    except Exception:  # bcc raises bare Exception where the kernel lacks batch ops
        items = list(table.items())
        for k, _ in items:
            try:
                del table[k]
            except KeyError:
                pass
        return items


class HealthCounters:
    """Deltas of a per-CPU array of event counters (lost events, full maps...)."""

    def __init__(self, size):
        self._seen = [0] * size

    def delta(self, table):
        now = [sum(table[ctypes.c_int(i)]) for i in range(len(self._seen))]
        out = [n - s for n, s in zip(now, self._seen)]
        self._seen = now
        return out
