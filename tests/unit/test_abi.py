"""The ABI guard between collector/bpf/common.h (compiled into the BPF programs) and its ctypes
decoding (collector/probes/abi.py): sizes and offsets must be the C compiler's."""
import ctypes
import re
import shutil
import subprocess

import pytest

from collector.probes.abi import ABI, COMMON_H, abi

HEADER = COMMON_H.read_text()
STRUCT_NAMES = re.findall(r"^struct\s+(\w+)\s*\{", re.sub(r"/\*.*?\*/", "", HEADER, flags=re.S),
                          re.M)


def c_members(struct_name):
    """Member names of a struct in common.h, read independently of abi.py: every
    declaration ending in ';' inside the braces, its last identifier (before any [N])."""
    text = re.sub(r"/\*.*?\*/", "", HEADER, flags=re.S)
    body = re.search(r"struct\s+%s\s*\{(.*?)\};" % struct_name, text, re.S).group(1)
    names = []
    for decl in body.split(";"):
        decl = re.sub(r"\[[^\]]*\]", "", decl).strip()
        if decl:
            names.append(re.findall(r"\w+", decl)[-1])
    return names


# -- the header parses --------------------------------------------------------------------

def test_common_h_parses():
    a = abi()
    for name in ("sw_write_key", "sw_write_val", "sw_inode", "sw_open_event"):
        assert issubclass(getattr(a, name), ctypes.Structure)
    assert set(STRUCT_NAMES) == set(a.structs)
    assert a.SW_COMM_LEN == 16 and a.SW_PATH_LEN == 512 and a.SW_NAME_MAX == 256
    assert (a.SW_VERDICT_LOG, a.SW_VERDICT_NOT_LOG) == (1, 2)
    assert (a.SW_FILE_REGULAR, a.SW_FILE_UNIX_SOCKET) == (1, 2)
    assert a.SW_HEALTH_MAX == 4
    with pytest.raises(AttributeError):
        a.SW_NO_SUCH_CONSTANT


def test_abi_is_cached():
    assert abi() is abi()


@pytest.mark.parametrize("name", STRUCT_NAMES)
def test_no_member_is_dropped(name):
    cls = getattr(abi(), name)
    assert [f[0] for f in cls._fields_] == c_members(name)


def test_kind_constants_match_the_resolver():
    from collector.host import destinations

    a = abi()
    assert destinations.KIND_REGULAR == a.SW_FILE_REGULAR
    assert destinations.KIND_UNIX_SOCKET == a.SW_FILE_UNIX_SOCKET


# -- layouts the log-write probe relies on --------------------------------------------------

def layout(cls):
    return [(name, getattr(cls, name).offset, getattr(cls, name).size) for name, _ in cls._fields_]


def test_sw_write_key_layout():
    cls = abi().sw_write_key
    assert ctypes.sizeof(cls) == 32
    assert layout(cls) == [("tgid", 0, 4), ("fd", 4, 4), ("dev", 8, 4), ("kind", 12, 4),
                           ("ino", 16, 8), ("gen", 24, 4), ("pad", 28, 4)]
    assert dict(cls._fields_)["fd"] is ctypes.c_int32          # __s32: fds are signed


def test_sw_write_val_layout():
    cls = abi().sw_write_val
    assert ctypes.sizeof(cls) == 40
    assert layout(cls) == [("writes", 0, 8), ("bytes", 8, 8), ("cgroup_id", 16, 8),
                           ("comm", 24, 16)]


def test_sw_inode_layout():
    cls = abi().sw_inode
    assert ctypes.sizeof(cls) == 16
    assert layout(cls) == [("dev", 0, 4), ("gen", 4, 4), ("ino", 8, 8)]


def test_sw_open_event_layout():
    cls = abi().sw_open_event
    assert ctypes.sizeof(cls) == 568
    assert layout(cls) == [("tgid", 0, 4), ("fd", 4, 4), ("dev", 8, 4), ("kind", 12, 4),
                           ("ino", 16, 8), ("cgroup_id", 24, 8), ("gen", 32, 4),
                           ("path_form", 36, 4), ("comm", 40, 16), ("path", 56, 512)]


def test_open_event_decodes_from_raw_bytes():
    cls = abi().sw_open_event
    ev = cls()
    ev.tgid, ev.fd, ev.dev, ev.kind, ev.ino, ev.cgroup_id, ev.gen = 4242, -1, (8 << 20) | 1, 1, \
        2 ** 40 + 5, 77, 0xDEADBEEF
    ev.comm = b"nginx"
    ev.path = b"/var/log/nginx/access.log"
    raw = bytes(ev)
    back = cls.from_buffer_copy(raw)
    assert (back.tgid, back.fd, back.ino, back.gen) == (4242, -1, 2 ** 40 + 5, 0xDEADBEEF)
    assert back.comm == b"nginx" and back.path == b"/var/log/nginx/access.log"
    assert raw[4:8] == b"\xff\xff\xff\xff" and raw[16:24] == (2 ** 40 + 5).to_bytes(8, "little")


# -- the C compiler's view ----------------------------------------------------------------

GCC = shutil.which("gcc")


@pytest.fixture(scope="module")
def c_layout(tmp_path_factory):
    """{struct: (sizeof, alignof, {member: (offsetof, sizeof)})} as gcc lays out common.h."""
    if GCC is None:
        pytest.skip("gcc not installed")
    a = abi()
    lines = ["#include <stdio.h>", "#include <stddef.h>",
             "typedef unsigned char __u8; typedef signed char __s8;",
             "typedef unsigned short __u16; typedef signed short __s16;",
             "typedef unsigned int __u32; typedef signed int __s32;",
             "typedef unsigned long long __u64; typedef signed long long __s64;",
             f'#include "{COMMON_H}"',
             "int main(void) {"]
    for name in STRUCT_NAMES:
        lines.append(f'printf("S {name} %zu %zu\\n", sizeof(struct {name}), '
                     f'_Alignof(struct {name}));')
        for member in c_members(name):
            lines.append(f'printf("M {name} {member} %zu %zu\\n", '
                         f'offsetof(struct {name}, {member}), '
                         f'sizeof(((struct {name} *)0)->{member}));')
    lines += ["return 0;", "}"]
    d = tmp_path_factory.mktemp("abi")
    src, exe = d / "layout.c", d / "layout"
    src.write_text("\n".join(lines) + "\n")
    subprocess.run([GCC, "-std=c11", "-Wall", "-Werror", "-o", str(exe), str(src)], check=True,
                   capture_output=True, text=True)
    out = subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout
    result = {}
    for line in out.splitlines():
        parts = line.split()
        if parts[0] == "S":
            result[parts[1]] = (int(parts[2]), int(parts[3]), {})
        else:
            result[parts[1]][2][parts[2]] = (int(parts[3]), int(parts[4]))
    assert set(result) == set(a.structs)
    return result


@pytest.mark.parametrize("name", STRUCT_NAMES)
def test_ctypes_layout_equals_c_layout(c_layout, name):
    cls = getattr(abi(), name)
    size, align, members = c_layout[name]
    assert ctypes.sizeof(cls) == size
    assert ctypes.alignment(cls) == align
    assert {m: (o, s) for m, o, s in layout(cls)} == members


def test_c_layout_of_the_log_write_structs(c_layout):
    assert c_layout["sw_write_key"][0] == 32
    assert c_layout["sw_inode"][0] == 16
    assert c_layout["sw_write_val"][0] == ctypes.sizeof(abi().sw_write_val)
    assert c_layout["sw_open_event"][0] == ctypes.sizeof(abi().sw_open_event)


# -- the parser on synthetic headers --------------------------------------------------------

def test_parser_constants_arrays_and_comments():
    a = ABI("#define SW_N 3\n"
            "/* struct ignored { __u64 x; }; */\n"
            "struct t {\n"
            "    __u8 tag;      /* one byte */\n"
            "    __u64 vals[SW_N];\n"
            "    char name[5];\n"
            "    __s16 delta;\n"
            "};\n")
    assert a.SW_N == 3 and set(a.structs) == {"t"}
    assert layout(a.t) == [("tag", 0, 1), ("vals", 8, 24), ("name", 32, 5), ("delta", 38, 2)]
    assert ctypes.sizeof(a.t) == 40


def test_parser_unknown_type_is_an_error():
    with pytest.raises(KeyError):
        ABI("struct t {\n    __u32 a;\n    size_t b;\n};\n")


@pytest.mark.parametrize("text", [
    "struct t {\n    __u32 a;\n    unsigned int b;\n};\n",
    "struct t {\n    __u32 a; __u32 b;\n};\n",
], ids=["two-word-type", "two-per-line"])
def test_parser_does_not_silently_drop_members(text):
    try:
        a = ABI(text)
    except Exception:
        return            # refusing the header is fine
    assert ctypes.sizeof(a.t) == 8


def test_layouts_are_checked_field_by_field():
    import struct

    import pytest

    from collector.probes.abi import abi
    from collector.probes.logwrite_counts import KEY_FIELDS, KEY_LAYOUT, VAL_FIELDS, VAL_LAYOUT

    abi().check_layout("sw_write_key", KEY_LAYOUT, KEY_FIELDS)
    abi().check_layout("sw_write_val", VAL_LAYOUT, VAL_FIELDS)
    # the same total size (32 bytes), dev widened and ino narrowed: a size check
    # passes, the field check names the first field that moved
    wrong = struct.Struct("=IiQIIII")
    assert wrong.size == KEY_LAYOUT.size
    with pytest.raises(ValueError, match=r"sw_write_key\.dev: header has offset 8 size 4, "
                                         r"the layout 8 8"):
        abi().check_layout("sw_write_key", wrong, KEY_FIELDS)


def test_constant_tables_come_from_the_header():
    from collector.probes import reset_counts as resets
    from collector.probes.abi import abi

    a = abi()
    assert resets.KINDS[a.SW_RST_KIND_NO_SOCKET] == "no_socket"
    assert resets.OWNER_SOURCES[a.SW_OWNER_LISTENER] == "listener"
    assert resets.OWNER_SOURCES[a.SW_OWNER_NONE] is None
    assert resets.DIRECTIONS == {a.SW_RST_SENT: "sent", a.SW_RST_RECEIVED: "received"}


def test_open_event_path_forms():
    from collector.probes.logwrite_counts import event_path
    a = abi()
    names = b"access.log\0nginx\0log\0var\0\0" + b"\xff" * 20   # the rest: not zeroed
    assert event_path(a.SW_PATH_NAMES, names) == "/var/log/nginx/access.log"
    assert event_path(a.SW_PATH_NAMES, b"\0junk") == "/"
    assert event_path(a.SW_PATH_NAMES, b"no end") == ""        # no empty name: not trusted
    assert event_path(a.SW_PATH_AS_PASSED, b"app.out\0junk") == "app.out"
    assert event_path(a.SW_PATH_UNKNOWN, names) == ""
