"""Minimal reader of the kernel's BTF (/sys/kernel/btf/vmlinux): struct member offsets.

bcc compiles against whatever headers are installed, which on some hosts describe another
kernel. Offsets read here from the running kernel's own BTF are passed to the BPF C code as
macros, so reads of kernel structs are right on every kernel that has BTF.
"""
import struct
from dataclasses import dataclass

BTF_MAGIC = 0xEB9F
VMLINUX_BTF = "/sys/kernel/btf/vmlinux"

# BTF_KIND_* from include/uapi/linux/btf.h
KIND_INT, KIND_PTR, KIND_ARRAY, KIND_STRUCT, KIND_UNION, KIND_ENUM = 1, 2, 3, 4, 5, 6
KIND_FWD, KIND_TYPEDEF, KIND_VOLATILE, KIND_CONST, KIND_RESTRICT = 7, 8, 9, 10, 11
KIND_FUNC, KIND_FUNC_PROTO, KIND_VAR, KIND_DATASEC, KIND_FLOAT = 12, 13, 14, 15, 16
KIND_DECL_TAG, KIND_TYPE_TAG, KIND_ENUM64 = 17, 18, 19
_MODIFIERS = (KIND_TYPEDEF, KIND_VOLATILE, KIND_CONST, KIND_RESTRICT, KIND_TYPE_TAG)


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


class BTF:
    def __init__(self, data: bytes):
        if len(data) < 24:
            raise BTFError("BTF blob too short")
        magic, _version, _flags, hdr_len = struct.unpack_from("<HBBI", data, 0)
        if magic != BTF_MAGIC:
            raise BTFError(f"bad BTF magic {magic:#x}")
        type_off, type_len, str_off, str_len = struct.unpack_from("<IIII", data, 8)
        self._strings = data[hdr_len + str_off: hdr_len + str_off + str_len]
        self.types = [None]  # type id 0 is void
        self._by_name = {}
        self._parse_types(data[hdr_len + type_off: hdr_len + type_off + type_len])

    @classmethod
    def load(cls, path=VMLINUX_BTF):
        with open(path, "rb") as f:
            return cls(f.read())

    def _str(self, off):
        end = self._strings.index(b"\0", off)
        return self._strings[off:end].decode()

    def _parse_types(self, buf):
        pos, n = 0, len(buf)
        while pos < n:
            name_off, info, size_or_type = struct.unpack_from("<III", buf, pos)
            pos += 12
            vlen, kind, kflag = info & 0xFFFF, (info >> 24) & 0x1F, info >> 31
            t = BTFType(kind, self._str(name_off), size_or_type)
            if kind == KIND_INT:
                pos += 4
            elif kind == KIND_ARRAY:
                elem, _idx, nelems = struct.unpack_from("<III", buf, pos)
                t.array = (elem, nelems)
                pos += 12
            elif kind in (KIND_STRUCT, KIND_UNION):
                members = []
                for _ in range(vlen):
                    m_name, m_type, m_off = struct.unpack_from("<III", buf, pos)
                    pos += 12
                    bits, bsize = (m_off & 0xFFFFFF, m_off >> 24) if kflag else (m_off, 0)
                    members.append(Member(self._str(m_name), m_type, bits, bsize))
                t.members = tuple(members)
            elif kind == KIND_ENUM:
                fmt = "<i" if kflag else "<I"       # kind_flag: signed values
                t.enumerators = tuple(
                    (self._str(struct.unpack_from("<I", buf, pos + 8 * i)[0]),
                     struct.unpack_from(fmt, buf, pos + 8 * i + 4)[0]) for i in range(vlen))
                pos += 8 * vlen
            elif kind == KIND_ENUM64:
                values = []
                for i in range(vlen):
                    name, lo, hi = struct.unpack_from("<III", buf, pos + 12 * i)
                    v = (hi << 32) | lo
                    if kflag and v >= 1 << 63:
                        v -= 1 << 64
                    values.append((self._str(name), v))
                t.enumerators = tuple(values)
                pos += 12 * vlen
            elif kind == KIND_FUNC_PROTO:
                t.params = vlen
                pos += 8 * vlen
            elif kind in (KIND_VAR, KIND_DECL_TAG):
                pos += 4
            elif kind == KIND_DATASEC:
                pos += 12 * vlen
            self.types.append(t)
            if t.name and kind in (KIND_STRUCT, KIND_UNION, KIND_ENUM, KIND_ENUM64, KIND_FUNC,
                                   KIND_TYPEDEF):
                index_kind = KIND_ENUM if kind == KIND_ENUM64 else kind
                self._by_name.setdefault((index_kind, t.name), len(self.types) - 1)

    def _resolve(self, type_id):
        t = self.types[type_id]
        while t is not None and t.kind in _MODIFIERS:
            type_id = t.size_or_type
            t = self.types[type_id]
        return type_id, t

    def struct(self, name):
        for kind in (KIND_STRUCT, KIND_UNION):
            tid = self._by_name.get((kind, name))
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
        tid = self._by_name.get((KIND_FUNC, name))
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
        tid = self._by_name.get((KIND_TYPEDEF, f"btf_trace_{name}"))
        if not tid:
            raise BTFError(f"raw tracepoint {name} not in kernel BTF")
        ptr = self.types[self.types[tid].size_or_type]
        proto = self.types[ptr.size_or_type] if ptr is not None and ptr.kind == KIND_PTR else None
        if proto is None or proto.kind != KIND_FUNC_PROTO or proto.params < 1:
            raise BTFError(f"btf_trace_{name} is not a pointer to a prototype")
        return proto.params - 1

    def enum(self, name):
        tid = self._by_name.get((KIND_ENUM, name))
        if not tid:
            raise BTFError(f"enum {name} not in kernel BTF")
        return dict(self.types[tid].enumerators)
