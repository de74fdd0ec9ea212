"""The kernel/user ABI, decoded from collector/bpf/common.h: the one place layouts are declared.

Parses the header's #define constants and its fixed-width structs into ctypes classes,
so Python never re-declares a layout by hand.
"""
import ctypes
import re
import struct
from functools import lru_cache
from pathlib import Path

BPF_DIR = Path(__file__).resolve().parents[1] / "bpf"
COMMON_H = BPF_DIR / "common.h"

_CTYPES = {
    "__u8": ctypes.c_uint8, "__s8": ctypes.c_int8,
    "__u16": ctypes.c_uint16, "__s16": ctypes.c_int16,
    "__u32": ctypes.c_uint32, "__s32": ctypes.c_int32,
    "__u64": ctypes.c_uint64, "__s64": ctypes.c_int64,
    "char": ctypes.c_char,
}
_DEFINE_RE = re.compile(r"^#define\s+(SW_\w+)\s+(\d+)\b", re.M)
_STRUCT_RE = re.compile(r"struct\s+(\w+)\s*\{(.*?)\};", re.S)
_MEMBER_RE = re.compile(r"^\s*(\w+)\s+(\w+)(?:\[(\w+)\])?\s*;")


class ABI:
    def __init__(self, text):
        text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
        self.constants = {k: int(v) for k, v in _DEFINE_RE.findall(text)}
        self.structs = {}
        for name, body in _STRUCT_RE.findall(text):
            fields = []
            for decl in body.split(";"):
                if not decl.strip():
                    continue
                m = _MEMBER_RE.match(decl.strip() + ";")
                if not m:
                    raise ValueError(f"collector/bpf/common.h: struct {name}: cannot read member "
                                     f"{decl.strip()!r}; use one fixed-width field per line")
                ctype, member, dim = m.groups()
                t = _CTYPES[ctype]
                if dim:
                    t = t * (int(dim) if dim.isdigit() else self.constants[dim])
                fields.append((member, t))
            self.structs[name] = type(name, (ctypes.Structure,), {"_fields_": fields})

    def enum(self, prefix):
        """{value: name} of the constants named prefix + NAME, as lower-case names
        (SW_RST_KIND_ABORT -> "abort"): the C side's enums, typed once, in the header."""
        return {v: k[len(prefix):].lower() for k, v in self.constants.items()
                if k.startswith(prefix)}

    def layout(self, struct_name, upto=None):
        """(struct.Struct, field names) of the header's struct (of its fields before
        `upto`), packed as the kernel writes it: for reading many records at once without
        a ctypes object each. A struct with implicit padding is refused (check_layout)."""
        ctype = self.structs[struct_name]
        fields = [(n, t) for n, t in ctype._fields_]
        if upto is not None:
            fields = fields[:[n for n, _ in fields].index(upto)]
        fmt = "".join(_code(t) for _, t in fields)
        layout, names = struct.Struct("=" + fmt), tuple(n for n, _ in fields)
        if upto is None:
            self.check_layout(struct_name, layout, names)
        return layout, names

    def check_layout(self, struct_name, layout, names):
        """A struct.Struct `layout` (fields in `names` order, "pad"/"_" for padding)
        against the header's struct, field by field: offset and size of each."""
        ctype = self.structs[struct_name]
        fields = [f for f, _ in ctype._fields_]
        if fields != list(names):
            raise ValueError(f"{struct_name}: fields {fields} != {list(names)}")
        codes = re.findall(r"(\d*)([a-zA-Z])", layout.format.lstrip("=<>!@"))
        offset = 0
        for (count, code), name in zip(codes, names):
            size = struct.calcsize("=" + (count or "") + code)
            member = getattr(ctype, name)
            if (member.offset, member.size) != (offset, size):
                raise ValueError(f"{struct_name}.{name}: header has offset {member.offset} "
                                 f"size {member.size}, the layout {offset} {size}")
            offset += size
        if offset != ctypes.sizeof(ctype):
            raise ValueError(f"{struct_name}: {ctypes.sizeof(ctype)} bytes, layout {offset}")

    def __getattr__(self, name):
        try:
            return self.structs[name] if name in self.structs else self.constants[name]
        except KeyError:
            raise AttributeError(name) from None


def _code(ctype):
    """The struct module's standard-size code of a header member's ctypes type."""
    if issubclass(ctype, ctypes.Array):
        return f"{ctypes.sizeof(ctype)}s"
    code = {1: "b", 2: "h", 4: "i", 8: "q"}[ctypes.sizeof(ctype)]
    return code if ctype(-1).value < 0 else code.upper()


# include/net/tcp_states.h: the states the probes report and sock_diag dumps
TCP_STATES = {
    1: "ESTABLISHED", 2: "SYN_SENT", 3: "SYN_RECV", 4: "FIN_WAIT1", 5: "FIN_WAIT2",
    6: "TIME_WAIT", 7: "CLOSE", 8: "CLOSE_WAIT", 9: "LAST_ACK", 10: "LISTEN",
    11: "CLOSING", 12: "NEW_SYN_RECV",
}


@lru_cache(maxsize=1)
def abi():
    return ABI(COMMON_H.read_text())
