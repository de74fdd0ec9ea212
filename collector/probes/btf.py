"""Minimal reader of the kernel's BTF (/sys/kernel/btf/vmlinux): struct member offsets.

bcc compiles against whatever headers are installed, which on some hosts describe another
kernel. Offsets read here from the running kernel's own BTF are passed to the BPF C code as
macros, so reads of kernel structs are right on every kernel that has BTF.

Loading is lazy (start-up, issue 26): BTF() walks the type section once to find where each
type starts (an array of 32-bit words, one step per type) and decodes nothing else. A type
becomes a BTFType, its names decoded, when it is first asked for; a name is looked up by
finding it in the string table (every offset whose string it is) and then the types whose
name offset is one of those, so only the names asked for are ever compared.
"""
import os
import struct
import sys
from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from operator import itemgetter

BTF_MAGIC = 0xEB9F
VMLINUX_BTF = "/sys/kernel/btf/vmlinux"

# BTF_KIND_* from include/uapi/linux/btf.h
KIND_INT, KIND_PTR, KIND_ARRAY, KIND_STRUCT, KIND_UNION, KIND_ENUM = 1, 2, 3, 4, 5, 6
KIND_FWD, KIND_TYPEDEF, KIND_VOLATILE, KIND_CONST, KIND_RESTRICT = 7, 8, 9, 10, 11
KIND_FUNC, KIND_FUNC_PROTO, KIND_VAR, KIND_DATASEC, KIND_FLOAT = 12, 13, 14, 15, 16
KIND_DECL_TAG, KIND_TYPE_TAG, KIND_ENUM64 = 17, 18, 19
_MODIFIERS = (KIND_TYPEDEF, KIND_VOLATILE, KIND_CONST, KIND_RESTRICT, KIND_TYPE_TAG)

# 32-bit words after a type's 3-word header: fixed, and per vlen entry (other kinds: none)
_FIXED_WORDS = {KIND_INT: 1, KIND_ARRAY: 3, KIND_VAR: 1, KIND_DECL_TAG: 1}
_VLEN_WORDS = {KIND_STRUCT: 3, KIND_UNION: 3, KIND_ENUM: 2, KIND_ENUM64: 3,
               KIND_FUNC_PROTO: 2, KIND_DATASEC: 3}


class BTFError(Exception):
    pass


@dataclass(frozen=True)
class Member:
    name: str
    type_id: int
    bit_offset: int
    bitfield_size: int


@dataclass
class BTFType:
    kind: int
    name: str
    size_or_type: int
    members: tuple = ()
    array: tuple = ()            # (elem_type, nelems) for arrays
    enumerators: tuple = ()      # ((name, value), ...) for enums
    params: int = 0              # parameters of a function prototype


class _Steps(dict):
    """info word -> words from this type's info word to the next one's (built per distinct
    info: a few hundred in vmlinux)."""

    def __missing__(self, info):
        kind, vlen = (info >> 24) & 0x1F, info & 0xFFFF
        step = self[info] = 3 + _FIXED_WORDS.get(kind, 0) + _VLEN_WORDS.get(kind, 0) * vlen
        return step


class _Types(Sequence):
    """btf.types: type id -> BTFType (id 0, void, is None), each built on first use."""

    def __init__(self, btf):
        self._btf = btf
        self._built = [None] * (len(btf._info_at) + 1)

    def __len__(self):
        return len(self._built)

    def __getitem__(self, type_id):
        if isinstance(type_id, slice):
            return [self[i] for i in range(*type_id.indices(len(self._built)))]
        t = self._built[type_id]                 # IndexError as a list's
        if t is None:
            if type_id < 0:
                type_id += len(self._built)
            if type_id:
                t = self._built[type_id] = self._btf._build(type_id)
        return t


class BTF:
    def __init__(self, data: bytes):
        if len(data) < 24:
            raise BTFError("BTF blob too short")
        magic, _version, _flags, hdr_len = struct.unpack_from("<HBBI", data, 0)
        if magic != BTF_MAGIC:
            raise BTFError(f"bad BTF magic {magic:#x}")
        type_off, type_len, str_off, str_len = struct.unpack_from("<IIII", data, 8)
        self._strings = data[hdr_len + str_off: hdr_len + str_off + str_len]
        self._words = self._walk(data[hdr_len + type_off: hdr_len + type_off + type_len])
        self.types = _Types(self)
        self._first_with_name_off = None   # name offset -> first type id (see _name_index)
        self._found = {}               # (kinds, name) -> type id or 0

    @classmethod
    def load(cls, path=VMLINUX_BTF):
        """The BTF at path. The running kernel's (VMLINUX_BTF, fixed while it runs) is
        parsed once per process: a loader child whose fentry plan fails falls back to the
        tracepoints' plan and asks again."""
        with open(path, "rb") as f:
            if path != VMLINUX_BTF:
                return cls(f.read())
            st = os.fstat(f.fileno())
            key = (cls, path, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
            btf = _loaded.get(key)
            if btf is None:
                _loaded.clear()
                btf = _loaded[key] = cls(f.read())
            return btf

    def _walk(self, buf):
        """The type section as 32-bit words; self._info_at[type_id - 1] = index of that
        type's info word (its name offset is the word before, size_or_type the one after)."""
        if len(buf) % 4:
            raise BTFError("BTF type section is not a whole number of 32-bit words")
        words = array("I")                          # 4 bytes wherever CPython runs
        words.frombytes(buf)
        if sys.byteorder == "big":
            words.byteswap()
        info_at, steps, w = [], _Steps(), 1
        append = info_at.append
        try:
            while True:
                append(w)
                w += steps[words[w]]
        except IndexError:
            pass
        if info_at.pop() != len(words) + 1:        # where the type after the last would be
            raise BTFError("BTF type section ends inside a type")
        self._info_at = info_at
        return words

    def _str(self, off):
        end = self._strings.index(b"\0", off)
        return self._strings[off:end].decode()

    def _kind(self, type_id):
        return (self._words[self._info_at[type_id - 1]] >> 24) & 0x1F

    def _build(self, type_id):
        u = self._words
        w = self._info_at[type_id - 1]
        name_off, info, size_or_type = u[w - 1], u[w], u[w + 1]
        vlen, kind, kflag = info & 0xFFFF, (info >> 24) & 0x1F, info >> 31
        t = BTFType(kind, self._str(name_off), size_or_type)
        p = w + 2                                   # the kind's trailer
        if kind == KIND_ARRAY:
            t.array = (u[p], u[p + 2])
        elif kind in (KIND_STRUCT, KIND_UNION):
            members = []
            for q in range(p, p + 3 * vlen, 3):
                m_off = u[q + 2]
                bits, bsize = (m_off & 0xFFFFFF, m_off >> 24) if kflag else (m_off, 0)
                members.append(Member(self._str(u[q]), u[q + 1], bits, bsize))
            t.members = tuple(members)
        elif kind == KIND_ENUM:                     # kind_flag: signed values
            t.enumerators = tuple(
                (self._str(u[q]), u[q + 1] - (1 << 32) if kflag and u[q + 1] >> 31 else u[q + 1])
                for q in range(p, p + 2 * vlen, 2))
        elif kind == KIND_ENUM64:
            values = []
            for q in range(p, p + 3 * vlen, 3):
                v = (u[q + 2] << 32) | u[q + 1]
                if kflag and v >= 1 << 63:
                    v -= 1 << 64
                values.append((self._str(u[q]), v))
            t.enumerators = tuple(values)
        elif kind == KIND_FUNC_PROTO:
            t.params = vlen
        return t

    def _name_index(self):
        """Each type's name offset (by type id - 1) and the first type id with each offset,
        made on the first lookup by name: C-level passes, no name decoded."""
        if self._first_with_name_off is None:
            after = array(self._words.typecode, [0])    # after[w] == words[w - 1]
            after.extend(self._words)
            offs = itemgetter(*self._info_at)(after) if self._info_at else ()
            self._name_offs = offs if isinstance(offs, tuple) else (offs,)
            n = len(self._name_offs)
            self._first_with_name_off = dict(zip(reversed(self._name_offs), range(n, 0, -1)))
        return self._name_offs, self._first_with_name_off

    def _named(self, kinds, name):
        """The first type id (0: none) of one of kinds whose name is name. Candidates are
        every offset in the string table where name's string sits (inside a longer string
        too, where a name offset may point, and every copy), so the answer is the one a
        decode of every type's name would give."""
        key = (kinds, name)
        found = self._found.get(key)
        if found is not None:
            return found
        found = 0
        try:
            want = name.encode() if isinstance(name, str) else b""
        except UnicodeEncodeError:             # no decoded name has a lone surrogate
            want = b""
        if want and b"\0" not in want:
            offs, first = self._name_index()
            pattern, strings = want + b"\0", self._strings
            at = strings.find(pattern)
            while at >= 0:
                tid = first.get(at)
                while tid and (not found or tid < found):
                    if self._kind(tid) in kinds:
                        found = tid
                        break
                    try:                        # the next type with this name offset
                        tid = offs.index(at, tid) + 1
                    except ValueError:
                        tid = 0
                at = strings.find(pattern, at + 1)
        self._found[key] = found
        return found

    def _resolve(self, type_id):
        t = self.types[type_id]
        while t is not None and t.kind in _MODIFIERS:
            type_id = t.size_or_type
            t = self.types[type_id]
        return type_id, t

    def struct(self, name):
        for kind in (KIND_STRUCT, KIND_UNION):
            tid = self._named((kind,), name)
            if tid:
                return tid
        raise BTFError(f"struct {name} not in kernel BTF")

    def _find_member(self, type_id, name, base_bits=0):
        """Search members, descending into anonymous structs/unions (as C does)."""
        _, t = self._resolve(type_id)
        for m in t.members:
            if m.name == name:
                return m, base_bits + m.bit_offset
            if not m.name:
                _, inner = self._resolve(m.type_id)
                if inner is not None and inner.kind in (KIND_STRUCT, KIND_UNION):
                    found = self._find_member(m.type_id, name, base_bits + m.bit_offset)
                    if found:
                        return found
        return None

    def member(self, struct_name, path):
        """Byte offset and size of struct_name.path ("a.b.c" follows embedded structs)."""
        tid, offset_bits = self.struct(struct_name), 0
        member = None
        for part in path.split("."):
            found = self._find_member(tid, part)
            if not found:
                raise BTFError(f"struct {struct_name} has no member {path}")
            member, bits = found
            offset_bits += bits
            tid = member.type_id
        if member.bitfield_size or offset_bits % 8:
            raise BTFError(f"{struct_name}.{path} is a bitfield")
        return offset_bits // 8, self.size_of(member.type_id)

    def size_of(self, type_id):
        tid, t = self._resolve(type_id)
        if t is None:
            return 0
        if t.kind == KIND_PTR:
            return 8
        if t.kind == KIND_ARRAY:
            elem, nelems = t.array
            return self.size_of(elem) * nelems
        return t.size_or_type

    def func_id(self, name):
        """Type id of the kernel function `name` (what an fentry program attaches to)."""
        tid = self._named((KIND_FUNC,), name)
        if not tid:
            raise BTFError(f"function {name} not in kernel BTF")
        return tid

    def func_params(self, name):
        """How many parameters kernel function `name` takes (an fexit program finds the
        return value after them)."""
        proto = self.types[self.types[self.func_id(name)].size_or_type]
        return proto.params

    def raw_tracepoint_params(self, name):
        """How many arguments raw tracepoint `name` passes a BPF program (its TP_PROTO), from
        the kernel's `btf_trace_<name>` typedef: a pointer to a prototype whose first
        parameter is the probe's private data, which a program does not get."""
        tid = self._named((KIND_TYPEDEF,), f"btf_trace_{name}")
        if not tid:
            raise BTFError(f"raw tracepoint {name} not in kernel BTF")
        ptr = self.types[self.types[tid].size_or_type]
        proto = self.types[ptr.size_or_type] if ptr is not None and ptr.kind == KIND_PTR else None
        if proto is None or proto.kind != KIND_FUNC_PROTO or proto.params < 1:
            raise BTFError(f"btf_trace_{name} is not a pointer to a prototype")
        return proto.params - 1

    def enum(self, name):
        tid = self._named((KIND_ENUM, KIND_ENUM64), name)
        if not tid:
            raise BTFError(f"enum {name} not in kernel BTF")
        return dict(self.types[tid].enumerators)


_loaded = {}        # BTF.load's parse of VMLINUX_BTF: (class, path, file identity) -> BTF
