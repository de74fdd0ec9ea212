"""What the log-write probe drains and sends, decoded: write counts in the kernel's layout
(struct sw_write_key/sw_write_val, from collector/bpf/common.h through abi.py), open
events, and the writes lost to a full counts map, by uid."""
import ctypes
import struct
from dataclasses import dataclass
from typing import NamedTuple

from collector.probes.abi import abi
from collector.probes.maps import cstr

LOST_OTHER = "other"        # lost_writes_by_uid's catch-all: uids the kernel had no slot for


def event_path(form, raw):
    """An open event's path: as the process passed it (fentry), or joined from the dentry
    names the kernel wrote leaf first (tracepoints); "" when the kernel could not tell."""
    if form == abi().SW_PATH_AS_PASSED:
        return cstr(raw)
    names = raw.split(b"\0")
    if form != abi().SW_PATH_NAMES or b"" not in names:
        return ""
    leaf_first = names[:names.index(b"")]
    return "/" + "/".join(n.decode("utf-8", "replace") for n in reversed(leaf_first))


def path_bytes(ev):
    """An open event's whole path buffer (a char array field reads only to its first NUL)."""
    field = type(ev).path
    return ctypes.string_at(ctypes.addressof(ev) + field.offset, field.size)


@dataclass(frozen=True)
class OpenEvent:
    tgid: int
    fd: int
    dev: int
    ino: int
    gen: int
    kind: int
    cgroup_id: int
    comm: str
    path: str


# struct sw_write_key / sw_write_val (collector/bpf/common.h) as struct layouts for the raw
# drain, decoded from the header; VAL_COUNTS: the value's head (writes, bytes), then from
# VAL_IDENT_OFFSET the writer's identity (cgroup id, comm), compared whole by the key cache
KEY_LAYOUT, KEY_FIELDS = abi().layout("sw_write_key")
VAL_LAYOUT, VAL_FIELDS = abi().layout("sw_write_val")
VAL_COUNTS = abi().layout("sw_write_val", upto="cgroup_id")[0]
VAL_IDENT_OFFSET = abi().sw_write_val.cgroup_id.offset


class LogWriteDrain(NamedTuple):
    """What one collect() drained: the interval's counts and its writes lost to a full
    counts map, by writer uid (lost_by_uid(): the same epoch, so the sum is exact)."""
    counts: "RawCounts"
    lost_by_uid: dict


class WriteCount(NamedTuple):     # a tuple: one is built per drained key
    tgid: int
    fd: int
    dev: int
    ino: int
    gen: int
    kind: int
    writes: int
    bytes: int
    cgroup_id: int
    comm: str



class RawCounts:
    """One drain's keys and values as the kernel wrote them (KEY_LAYOUT/VAL_LAYOUT records
    back to back). The interval path reads them without building a tuple per field
    (collector/host/keycache.py); iterating yields WriteCount tuples for everyone else."""

    __slots__ = ("keys", "vals", "n")

    def __init__(self, keys, vals):
        self.keys, self.vals = keys, vals
        self.n = len(keys) // KEY_LAYOUT.size

    @classmethod
    def of(cls, counts):
        """WriteCount tuples (test doubles) in the kernel's layout."""
        def val(c, name):
            return c.comm.encode("utf-8", "replace")[:15] if name == "comm" else getattr(c, name)
        return cls(b"".join(KEY_LAYOUT.pack(*(getattr(c, f, 0) for f in KEY_FIELDS))
                            for c in counts),
                   b"".join(VAL_LAYOUT.pack(*(val(c, f) for f in VAL_FIELDS)) for c in counts))

    def __len__(self):
        return self.n

    def __iter__(self):
        return iter([_write_count(k, v) for k, v in zip(KEY_LAYOUT.iter_unpack(self.keys),
                                                        VAL_LAYOUT.iter_unpack(self.vals))])

    def count(self, i):
        """The i-th key as a WriteCount."""
        return _write_count(KEY_LAYOUT.unpack_from(self.keys, i * KEY_LAYOUT.size),
                            VAL_LAYOUT.unpack_from(self.vals, i * VAL_LAYOUT.size))


def _write_count(key, val):
    """A WriteCount of one key's and value's unpacked fields, by the header's names."""
    fields = dict(zip(KEY_FIELDS, key))
    fields.update(zip(VAL_FIELDS, val))
    fields["comm"] = fields["comm"].split(b"\0", 1)[0].decode("utf-8", "replace")
    return WriteCount(*(fields[f] for f in WriteCount._fields))


def lost_by_uid(keys, vals, other, limit):
    """{uid as text: writes lost} of one drain of `lost0`/`lost1` (u32 uid keys, u64
    counts, back to back) plus `lost_other`'s slot, under "other": at most `limit` uids
    (the map's size; a key-by-key drain could see more if the map churned), the rest
    added to "other". Zero entries are left out; the values sum to the writes lost."""
    pairs = sorted((uid, n) for (uid,), (n,) in zip(struct.iter_unpack("=I", keys),
                                                    struct.iter_unpack("=Q", vals)) if n)
    out = {str(uid): n for uid, n in pairs[:limit]}
    other += sum(n for _, n in pairs[limit:])
    if other:
        out[LOST_OTHER] = other
    return out
