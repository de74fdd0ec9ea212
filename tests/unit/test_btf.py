"""The BTF reader (collector/probes/btf.py) on small blobs encoded here per
include/uapi/linux/btf.h, plus one check against the running kernel's own BTF."""
import os
import struct

import pytest

from collector.probes import btf as B
from collector.probes.btf import BTF, BTFError


class BTFBuilder:
    """Encodes a little-endian .BTF blob: struct btf_header, the type section, strings.

    Each add_* appends one `struct btf_type` (+ its kind-specific trailer) and returns its
    type id (ids start at 1; 0 is void). Types may refer to ids added later.
    """

    def __init__(self):
        self.types = []
        self.strings = bytearray(b"\0")
        self._str_off = {"": 0}

    def s(self, name):
        if name not in self._str_off:
            self._str_off[name] = len(self.strings)
            self.strings += name.encode() + b"\0"
        return self._str_off[name]

    def _add(self, kind, name, size_or_type, vlen=0, kflag=0, trailer=b""):
        info = (vlen & 0xFFFF) | (kind << 24) | ((1 if kflag else 0) << 31)
        self.types.append(struct.pack("<III", self.s(name or ""), info, size_or_type) + trailer)
        return len(self.types)

    def int(self, name, size, signed=False, bits=None):
        encoding = 1 if signed else 0                          # BTF_INT_SIGNED
        return self._add(B.KIND_INT, name, size,
                         trailer=struct.pack("<I", (encoding << 24) | (bits or size * 8)))

    def ptr(self, to):
        return self._add(B.KIND_PTR, "", to)

    def array(self, elem, nelems, index_type=0):
        return self._add(B.KIND_ARRAY, "", 0, trailer=struct.pack("<III", elem, index_type, nelems))

    def struct(self, name, size, members, kflag=False, union=False):
        """members: (name, type_id, bit_offset[, bitfield_size])"""
        trailer = b""
        for m in members:
            m_name, m_type, bit_off = m[:3]
            bsize = m[3] if len(m) > 3 else 0
            off = (bsize << 24 | bit_off) if kflag else bit_off
            trailer += struct.pack("<III", self.s(m_name), m_type, off)
        return self._add(B.KIND_UNION if union else B.KIND_STRUCT, name, size,
                         vlen=len(members), kflag=kflag, trailer=trailer)

    def union(self, name, size, members, kflag=False):
        return self.struct(name, size, members, kflag=kflag, union=True)

    def enum(self, name, values, size=4, signed=False):
        trailer = b"".join(struct.pack("<Ii" if v < 0 else "<II", self.s(n), v)
                           for n, v in values)
        return self._add(B.KIND_ENUM, name, size, vlen=len(values), kflag=signed, trailer=trailer)

    def enum64(self, name, values, size=8, signed=False):
        trailer = b"".join(struct.pack("<III", self.s(n), v & 0xFFFFFFFF, (v >> 32) & 0xFFFFFFFF)
                           for n, v in values)
        return self._add(B.KIND_ENUM64, name, size, vlen=len(values), kflag=signed, trailer=trailer)

    def typedef(self, name, to):
        return self._add(B.KIND_TYPEDEF, name, to)

    def const(self, to):
        return self._add(B.KIND_CONST, "", to)

    def volatile(self, to):
        return self._add(B.KIND_VOLATILE, "", to)

    def fwd(self, name):
        return self._add(B.KIND_FWD, name, 0)

    def func_proto(self, ret, params):
        trailer = b"".join(struct.pack("<II", self.s(n), t) for n, t in params)
        return self._add(B.KIND_FUNC_PROTO, "", ret, vlen=len(params), trailer=trailer)

    def func(self, name, proto):
        return self._add(B.KIND_FUNC, name, proto, vlen=1)      # vlen = linkage (global)

    def var(self, name, type_id):
        return self._add(B.KIND_VAR, name, type_id, trailer=struct.pack("<I", 1))

    def datasec(self, name, vars_):
        trailer = b"".join(struct.pack("<III", t, off, size) for t, off, size in vars_)
        return self._add(B.KIND_DATASEC, name, sum(v[2] for v in vars_), vlen=len(vars_),
                         trailer=trailer)

    def float(self, name, size):
        return self._add(B.KIND_FLOAT, name, size)

    def decl_tag(self, name, type_id, component_idx=-1):
        return self._add(B.KIND_DECL_TAG, name, type_id, trailer=struct.pack("<i", component_idx))

    def type_tag(self, name, to):
        return self._add(B.KIND_TYPE_TAG, name, to)

    def build(self, magic=B.BTF_MAGIC, hdr_len=24, gap=0):
        types = b"".join(self.types)
        hdr = struct.pack("<HBBIIIII", magic, 1, 0, hdr_len, 0, len(types),
                          len(types) + gap, len(self.strings))
        hdr += b"\0" * (hdr_len - len(hdr))
        return hdr + types + b"\xAA" * gap + bytes(self.strings)


@pytest.fixture
def kernelish():
    """A miniature of the structs the log-write probe reads, laid out like x86_64."""
    b = BTFBuilder()
    u16, u32 = b.int("unsigned short", 2), b.int("unsigned int", 4)
    u64 = b.int("long unsigned int", 8)
    s32 = b.int("int", 4, signed=True)
    umode_t = b.typedef("umode_t", u16)
    dev_t = b.typedef("dev_t", b.typedef("__kernel_dev_t", u32))
    sb = b.struct("super_block", 1024, [("s_list", u64, 0), ("s_dev", dev_t, 128)])
    inode = b.struct("inode", 616, [("i_mode", umode_t, 0), ("i_opflags", u16, 16),
                                    ("i_sb", b.ptr(sb), 320), ("i_ino", u64, 512),
                                    ("i_generation", u32, 992)])
    # struct file { union { struct llist_node f_llist; struct rcu_head f_rcuhead; ... };
    #               spinlock_t f_lock; ...; struct { ...; struct inode *f_inode; }; }
    inner = b.struct("", 16, [("f_path_pad", u64, 0), ("f_inode", b.ptr(inode), 64)])
    head = b.union("", 16, [("f_llist", u64, 0), ("f_rcuhead", b.array(u64, 2), 0)])
    file_ = b.struct("file", 232, [("", head, 0), ("f_lock", u32, 128), ("", inner, 128 + 64)])
    fdt = b.struct("fdtable", 56, [("max_fds", u32, 0), ("fd", b.ptr(b.ptr(file_)), 64)])
    files = b.struct("files_struct", 704, [("count", s32, 0), ("fdt", b.ptr(fdt), 256),
                                           ("fd_array", b.array(b.ptr(file_), 64), 1536)])
    sock_common = b.struct("sock_common", 136, [("skc_daddr", u32, 0), ("skc_family", u16, 128)])
    sock = b.struct("sock", 760, [("__sk_common", sock_common, 0)])
    socket = b.struct("socket", 128, [("state", s32, 0), ("sk", b.ptr(sock), 192)])
    b.struct("socket_alloc", 768, [("socket", socket, 0), ("vfs_inode", inode, 1024)])
    b.struct("task_struct", 9792, [("__state", b.volatile(u32), 192),
                                   ("files", b.ptr(files), 14592)])
    return b


def load(builder, **kw):
    return BTF(builder.build(**kw))


# -- struct members -----------------------------------------------------------------------

@pytest.mark.parametrize("struct_name,path,expected", [
    ("task_struct", "files", (1824, 8)),
    ("files_struct", "fdt", (32, 8)),
    ("fdtable", "max_fds", (0, 4)),
    ("fdtable", "fd", (8, 8)),
    ("inode", "i_mode", (0, 2)),
    ("inode", "i_sb", (40, 8)),
    ("inode", "i_ino", (64, 8)),
    ("inode", "i_generation", (124, 4)),
    ("super_block", "s_dev", (16, 4)),
    ("socket", "sk", (24, 8)),
    ("socket_alloc", "socket", (0, 128)),
    ("socket_alloc", "vfs_inode", (128, 616)),
])
def test_member_offset_and_size(kernelish, struct_name, path, expected):
    assert load(kernelish).member(struct_name, path) == expected


def test_member_inside_anonymous_struct_sums_offsets(kernelish):
    # f_inode: 64 bits into an anonymous struct that sits 192 bits into struct file
    assert load(kernelish).member("file", "f_inode") == ((192 + 64) // 8, 8)


def test_member_inside_anonymous_union(kernelish):
    btf = load(kernelish)
    assert btf.member("file", "f_llist") == (0, 8)
    assert btf.member("file", "f_rcuhead") == (0, 16)
    assert btf.member("file", "f_lock") == (16, 4)


def test_deeply_nested_anonymous_members():
    b = BTFBuilder()
    u8, u32 = b.int("unsigned char", 1), b.int("unsigned int", 4)
    level3 = b.struct("", 8, [("pad", u32, 0), ("deep", u8, 32)])
    level2 = b.union("", 8, [("alt", u32, 0), ("", level3, 0)])
    level1 = b.struct("", 16, [("x", u32, 0), ("", level2, 64)])
    b.struct("outer", 32, [("head", u32, 0), ("", level1, 128)])
    assert BTF(b.build()).member("outer", "deep") == ((128 + 64 + 32) // 8, 1)


def test_named_member_is_not_searched_as_anonymous():
    b = BTFBuilder()
    u32 = b.int("unsigned int", 4)
    inner = b.struct("inner", 8, [("a", u32, 0), ("b", u32, 32)])
    b.struct("outer", 16, [("x", u32, 0), ("in", inner, 64)])
    btf = BTF(b.build())
    with pytest.raises(BTFError):
        btf.member("outer", "b")            # only reachable as "in.b"
    assert btf.member("outer", "in.b") == (12, 4)


def test_dotted_path_follows_embedded_structs(kernelish):
    btf = load(kernelish)
    assert btf.member("socket_alloc", "vfs_inode.i_ino") == (128 + 64, 8)
    assert btf.member("socket_alloc", "socket.sk") == (24, 8)
    assert btf.member("sock", "__sk_common.skc_family") == (16, 2)


def test_dotted_path_through_anonymous_member(kernelish):
    b = kernelish
    file_id = next(i for i, t in enumerate(BTF(b.build()).types) if t and t.name == "file")
    b.struct("wrapper", 512, [("pad", 1, 0), ("f", file_id, 64)])
    assert BTF(b.build()).member("wrapper", "f.f_inode") == (8 + 32, 8)


def test_dotted_path_does_not_dereference_pointers(kernelish):
    with pytest.raises(BTFError):
        load(kernelish).member("inode", "i_sb.s_dev")     # i_sb is a pointer


def test_top_level_union_is_found_by_struct():
    b = BTFBuilder()
    u32, u64 = b.int("unsigned int", 4), b.int("long long unsigned int", 8)
    b.union("bpf_attr", 8, [("map_type", u32, 0), ("key", u64, 0)])
    assert BTF(b.build()).member("bpf_attr", "key") == (0, 8)


# -- size_of ------------------------------------------------------------------------------

def test_size_of_resolves_typedef_const_volatile_chain():
    b = BTFBuilder()
    u32 = b.int("unsigned int", 4)
    t = b.const(b.volatile(b.typedef("u32", b.typedef("__u32", u32))))
    b.struct("s", 8, [("a", t, 0), ("b", b.type_tag("user", u32), 32)])
    btf = BTF(b.build())
    assert btf.size_of(t) == 4
    assert btf.member("s", "a") == (0, 4)
    assert btf.member("s", "b") == (4, 4)


def test_size_of_typedef_of_struct():
    b = BTFBuilder()
    u64 = b.int("long unsigned int", 8)
    inner = b.struct("atomic64_t_s", 8, [("counter", u64, 0)])
    atomic = b.typedef("atomic64_t", inner)
    b.struct("s", 16, [("x", u64, 0), ("refs", b.const(atomic), 64)])
    assert BTF(b.build()).member("s", "refs") == (8, 8)


def test_pointer_size_is_8_whatever_it_points_at():
    b = BTFBuilder()
    u8 = b.int("char", 1)
    p_char, p_void, p_fwd = b.ptr(u8), b.ptr(0), b.ptr(b.fwd("opaque"))
    b.struct("s", 24, [("a", p_char, 0), ("b", p_void, 64), ("c", b.const(p_fwd), 128)])
    btf = BTF(b.build())
    assert [btf.member("s", m)[1] for m in "abc"] == [8, 8, 8]
    assert btf.size_of(p_void) == 8


def test_array_sizes():
    b = BTFBuilder()
    u8, u16 = b.int("unsigned char", 1), b.int("unsigned short", 2)
    u32 = b.typedef("__u32", b.int("unsigned int", 4))
    arr_ptrs = b.array(b.ptr(u8), 64)
    arr_td = b.array(u32, 4)
    arr_2d = b.array(b.array(u16, 3), 2)
    arr_0 = b.array(u8, 0)
    b.struct("s", 560, [("comm", b.array(u8, 16), 0), ("fds", arr_ptrs, 128),
                        ("w", arr_td, 128 + 4096), ("m", arr_2d, 128 + 4096 + 128),
                        ("flex", arr_0, 128 + 4096 + 128 + 96)])
    btf = BTF(b.build())
    assert btf.member("s", "comm") == (0, 16)
    assert btf.member("s", "fds") == (16, 512)
    assert btf.member("s", "w") == (528, 16)
    assert btf.member("s", "m") == (544, 12)
    assert btf.member("s", "flex") == (556, 0)


def test_size_of_void_is_zero():
    assert BTF(BTFBuilder().build()).size_of(0) == 0


# -- bitfields ----------------------------------------------------------------------------

def test_bitfield_member_is_rejected_with_kind_flag():
    b = BTFBuilder()
    u8, u32 = b.int("unsigned char", 1), b.int("unsigned int", 4)
    # struct sock { ...; u8 sk_padding:1, sk_kern_sock:1, sk_no_check_tx:1; ...; u32 sk_x; }
    b.struct("sock", 8, [("sk_padding", u8, 0, 1), ("sk_kern_sock", u8, 1, 1),
                         ("sk_no_check_tx", u8, 2, 1), ("aligned_bf", u8, 8, 8),
                         ("sk_x", u32, 32, 0)], kflag=True)
    btf = BTF(b.build())
    for name in ("sk_padding", "sk_kern_sock", "sk_no_check_tx"):
        with pytest.raises(BTFError, match="bitfield"):
            btf.member("sock", name)
    with pytest.raises(BTFError, match="bitfield"):
        btf.member("sock", "aligned_bf")      # byte aligned, but still a bitfield
    assert btf.member("sock", "sk_x") == (4, 4)   # a plain member of a kind_flag struct


def test_member_not_on_a_byte_boundary_is_rejected_without_kind_flag():
    b = BTFBuilder()
    u32 = b.int("unsigned int", 4)
    b.struct("s", 4, [("a", u32, 0), ("odd", u32, 3)])
    with pytest.raises(BTFError, match="bitfield"):
        BTF(b.build()).member("s", "odd")


def test_bitfield_inside_anonymous_kind_flag_struct():
    b = BTFBuilder()
    u32 = b.int("unsigned int", 4)
    inner = b.struct("", 4, [("flag", u32, 4, 1), ("word", u32, 0, 0)], kflag=True)
    b.struct("outer", 8, [("x", u32, 0), ("", inner, 32)])
    btf = BTF(b.build())
    with pytest.raises(BTFError, match="bitfield"):
        btf.member("outer", "flag")
    assert btf.member("outer", "word") == (4, 4)


# -- enums --------------------------------------------------------------------------------

def test_enum_values():
    b = BTFBuilder()
    b.enum("sk_rst_reason", [("SK_RST_REASON_NOT_SPECIFIED", 0), ("SK_RST_REASON_NO_SOCKET", 1),
                             ("SK_RST_REASON_MAX", 25)])
    assert BTF(b.build()).enum("sk_rst_reason") == {
        "SK_RST_REASON_NOT_SPECIFIED": 0, "SK_RST_REASON_NO_SOCKET": 1, "SK_RST_REASON_MAX": 25}


def test_signed_enum_negative_values():
    b = BTFBuilder()
    b.enum("rpm_status", [("RPM_INVALID", -1), ("RPM_ACTIVE", 0)], signed=True)
    assert BTF(b.build()).enum("rpm_status") == {"RPM_INVALID": -1, "RPM_ACTIVE": 0}


def test_missing_enum_raises():
    with pytest.raises(BTFError, match="enum nope"):
        BTF(BTFBuilder().build()).enum("nope")


def test_unsigned_enum_values_at_or_above_2_31():
    b = BTFBuilder()
    b.enum("init_ns_ino", [("PID_NS_INIT_INO", 0xEFFFFFFC), ("X86_PF_RMP", 0x80000000)])
    assert BTF(b.build()).enum("init_ns_ino") == {"PID_NS_INIT_INO": 0xEFFFFFFC,
                                                  "X86_PF_RMP": 0x80000000}


def test_enum64_values():
    b = BTFBuilder()
    b.enum64("big", [("SMALL", 1), ("HUGE", 1 << 40)])
    assert BTF(b.build()).enum("big") == {"SMALL": 1, "HUGE": 1 << 40}


# -- every kind's trailer is skipped correctly --------------------------------------------

def test_types_after_every_other_kind_still_parse():
    b = BTFBuilder()
    u32 = b.int("unsigned int", 4)
    proto = b.func_proto(u32, [("a", u32), ("b", b.ptr(u32)), ("c", u32)])
    b.func("do_thing", proto)
    v = b.var("some_var", u32)
    b.datasec(".data..percpu", [(v, 0, 4), (v, 8, 4)])
    b.float("double", 8)
    b.decl_tag("tag", u32)
    b.enum64("e64", [("A", 1), ("B", 2), ("C", 3)])
    b.enum("e32", [("X", 7), ("Y", 8)])
    b.fwd("fwd_only")
    b.struct("after", 8, [("p", u32, 0), ("q", u32, 32)])
    btf = BTF(b.build())
    assert len(btf.types) == len(b.types) + 1
    assert btf.member("after", "q") == (4, 4)
    assert btf.enum("e32") == {"X": 7, "Y": 8}
    assert btf.types[proto].kind == B.KIND_FUNC_PROTO


# -- errors -------------------------------------------------------------------------------

def test_missing_struct_raises(kernelish):
    with pytest.raises(BTFError, match="struct no_such_struct"):
        load(kernelish).member("no_such_struct", "x")


def test_forward_declaration_is_not_a_struct():
    b = BTFBuilder()
    b.fwd("only_declared")
    with pytest.raises(BTFError):
        BTF(b.build()).struct("only_declared")


def test_missing_member_raises(kernelish):
    with pytest.raises(BTFError, match="no member i_nope"):
        load(kernelish).member("inode", "i_nope")


def test_missing_part_of_dotted_path_raises(kernelish):
    with pytest.raises(BTFError, match="vfs_inode.i_nope"):
        load(kernelish).member("socket_alloc", "vfs_inode.i_nope")


def test_bad_magic(kernelish):
    with pytest.raises(BTFError, match="magic"):
        BTF(kernelish.build(magic=0x9FEB))     # big-endian blob


def test_too_short():
    with pytest.raises(BTFError, match="short"):
        BTF(b"\x9f\xeb\x01\x00")


def test_longer_header_and_gap_before_strings(kernelish):
    btf = BTF(kernelish.build(hdr_len=32, gap=12))
    assert btf.member("inode", "i_ino") == (64, 8)


def test_load_from_file(tmp_path, kernelish):
    path = tmp_path / "vmlinux"
    path.write_bytes(kernelish.build())
    assert BTF.load(str(path)).member("fdtable", "fd") == (8, 8)


# -- the running kernel -------------------------------------------------------------------

def _readable(path):
    try:
        with open(path, "rb") as f:
            f.read(4)
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _readable(B.VMLINUX_BTF), reason=f"{B.VMLINUX_BTF} not readable")
def test_real_vmlinux_btf_has_every_logwrite_field():
    from collector.probes.logwrite_kernel import BTF_FIELDS, btf_macros

    btf = BTF.load()
    macros = btf_macros(btf)
    assert len([m for m in macros if m.startswith(("OFF_", "SZ_"))]) == 2 * len(BTF_FIELDS)
    for macro, _struct, _member in BTF_FIELDS:
        assert macros[f"OFF_{macro}"] >= 0 and macros[f"SZ_{macro}"] > 0, macro
    # pointers are 8 bytes; the scalar fields have their fixed kernel types
    for ptr in ("TASK_FILES", "FILES_FDT", "FDT_FD", "FILE_F_INODE", "FILE_PRIVATE_DATA",
                "INODE_I_SB", "SOCKET_SK"):
        assert macros[f"SZ_{ptr}"] == 8, ptr
    assert macros["SZ_INODE_I_MODE"] == 2          # umode_t
    assert macros["SZ_INODE_I_GENERATION"] == 4    # __u32
    assert macros["SZ_SB_S_DEV"] == 4              # dev_t
    assert macros["SZ_FDT_MAX_FDS"] == 4
    assert macros["SZ_SOCK_FAMILY"] == 2
    assert macros["SZ_INODE_I_INO"] in (4, 8)
    assert macros["SZ_FILE_PRIVATE_DATA"] == 8     # a socket file's struct socket *
    assert os.path.exists(B.VMLINUX_BTF)


def test_chunk_macros_cover_the_fields_rounded_to_8_and_skip_far_ones():
    from collector.probes.fdwalk import chunk_macros

    near = {"OFF_FDT_MAX_FDS": 0, "SZ_FDT_MAX_FDS": 4, "OFF_FDT_FD": 8, "SZ_FDT_FD": 8,
            "OFF_INODE_I_MODE": 0, "SZ_INODE_I_MODE": 2, "OFF_INODE_I_SB": 40,
            "SZ_INODE_I_SB": 8, "OFF_INODE_I_INO": 64, "SZ_INODE_I_INO": 8,
            "OFF_INODE_I_GENERATION": 124, "SZ_INODE_I_GENERATION": 4}
    assert chunk_macros(near) == {"SW_FDT_CHUNK": 16, "SW_INODE_CHUNK": 128}
    far = dict(near, OFF_INODE_I_GENERATION=600)     # a layout where one field is far off
    assert chunk_macros(far) == {"SW_FDT_CHUNK": 16}


def test_file_span_covers_f_inode_and_private_data_in_either_order():
    from collector.probes.fdwalk import chunk_macros

    base = {"OFF_FDT_MAX_FDS": 0, "SZ_FDT_MAX_FDS": 4, "OFF_FDT_FD": 8, "SZ_FDT_FD": 8}
    six18 = dict(base, OFF_FILE_PRIVATE_DATA=24, OFF_FILE_F_INODE=32)
    assert chunk_macros(six18) == {"SW_FDT_CHUNK": 16, "SW_FILE_LO": 24, "SW_FILE_LEN": 16}
    other = dict(base, OFF_FILE_F_INODE=32, OFF_FILE_PRIVATE_DATA=200)
    assert chunk_macros(other)["SW_FILE_LO"] == 32 and chunk_macros(other)["SW_FILE_LEN"] == 176
    far = dict(base, OFF_FILE_F_INODE=32, OFF_FILE_PRIVATE_DATA=400)
    assert "SW_FILE_LEN" not in chunk_macros(far)            # read field by field


@pytest.mark.skipif(not _readable(B.VMLINUX_BTF), reason=f"{B.VMLINUX_BTF} not readable")
def test_both_probes_take_the_fd_walk_fields_from_one_list():
    from collector.probes import fdwalk
    from collector.probes import logwrite_kernel as logwrites, reset_kernel as resets

    btf = BTF.load()
    for probe in (logwrites, resets):
        assert probe.BTF_FIELDS[:len(fdwalk.FIELDS)] == fdwalk.FIELDS
        m = probe.btf_macros(btf)
        for macro, _s, _m in fdwalk.FIELDS:
            assert f"OFF_{macro}" in m, (probe.__name__, macro)
        assert {"SW_FDT_CHUNK", "SW_FILE_LO", "SW_FILE_LEN"} <= set(m), probe.__name__
    # task->files is at 1824 here; the 6.1 headers say 3048 (KERNEL-NOTES): BTF wins
    assert logwrites.btf_macros(btf)["OFF_TASK_FILES"] == btf.member("task_struct", "files")[0]


@pytest.mark.skipif(not _readable(B.VMLINUX_BTF), reason=f"{B.VMLINUX_BTF} not readable")
def test_resets_reads_sk_protocol_and_type_together_when_adjacent():
    from collector.probes import resets

    m = resets.btf_macros(BTF.load())
    lo = min(m["OFF_SOCK_PROTOCOL"], m["OFF_SOCK_TYPE"])
    if abs(m["OFF_SOCK_PROTOCOL"] - m["OFF_SOCK_TYPE"]) == 2:
        assert m["SW_SOCK_PT_LO"] == lo
    else:
        assert "SW_SOCK_PT_LO" not in m


def test_func_id_names_the_function_an_fentry_program_attaches_to():
    b = BTFBuilder()
    u32 = b.int("unsigned int", 4)
    proto = b.func_proto(u32, [("a", u32)])
    fid = b.func("vfs_write", proto)
    b.struct("vfs_write", 4, [("x", u32, 0)])        # a struct of the same name is not it
    btf = BTF(b.build())
    assert btf.func_id("vfs_write") == fid
    with pytest.raises(BTFError, match="function vfs_writev not in kernel BTF"):
        btf.func_id("vfs_writev")


def test_raw_tracepoint_params_from_the_btf_trace_typedef():
    """A raw tracepoint's program gets its TP_PROTO arguments: the prototype behind
    `btf_trace_<name>` less its first parameter (the probe's private data)."""
    b = BTFBuilder()
    u32 = b.int("unsigned int", 4)
    void_p = b.ptr(0)
    proto = b.func_proto(0, [("", void_p), ("", b.ptr(u32)), ("", b.ptr(u32)), ("", u32)])
    b.typedef("btf_trace_tcp_send_reset", b.ptr(proto))
    b.typedef("btf_trace_odd", u32)
    btf = BTF(b.build())
    assert btf.raw_tracepoint_params("tcp_send_reset") == 3
    with pytest.raises(BTFError, match="raw tracepoint tcp_receive_reset not in kernel BTF"):
        btf.raw_tracepoint_params("tcp_receive_reset")
    with pytest.raises(BTFError, match="btf_trace_odd is not a pointer to a prototype"):
        btf.raw_tracepoint_params("odd")


@pytest.mark.skipif(not _readable(B.VMLINUX_BTF), reason=f"{B.VMLINUX_BTF} not readable")
def test_resets_reads_a_resets_socket_addresses_in_one_chunk():
    from collector.probes import reset_kernel

    m = reset_kernel.btf_macros(BTF.load())
    for f in reset_kernel.SKC_CHUNK:
        assert m["SW_SKC_LO"] <= m[f"OFF_{f}"]
        assert m[f"OFF_{f}"] + m[f"SZ_{f}"] <= m["SW_SKC_LO"] + m["SW_SKC_LEN"], f
    assert m["SW_SKC_LEN"] <= reset_kernel.SKC_CHUNK_MAX and m["SW_SKC_LEN"] % 8 == 0


# -- the lazy parser against a straightforward one ------------------------------------------

class ReferenceBTF:
    """The parser as it was before loading became lazy (issue 26): every type decoded up
    front with struct.unpack_from, every name of an indexed kind in a dict. Slow (0.3 s on
    vmlinux) and plain: the answers BTF must give."""

    def __init__(self, data):
        _magic, _v, _f, hdr_len = struct.unpack_from("<HBBI", data, 0)
        type_off, type_len, str_off, str_len = struct.unpack_from("<IIII", data, 8)
        self.strings = data[hdr_len + str_off: hdr_len + str_off + str_len]
        buf = data[hdr_len + type_off: hdr_len + type_off + type_len]
        self.types, self.by_name, pos = [None], {}, 0
        while pos < len(buf):
            name_off, info, size_or_type = struct.unpack_from("<III", buf, pos)
            pos += 12
            vlen, kind, kflag = info & 0xFFFF, (info >> 24) & 0x1F, info >> 31
            t = B.BTFType(kind, self.str(name_off), size_or_type)
            if kind in (B.KIND_INT, B.KIND_VAR, B.KIND_DECL_TAG):
                pos += 4
            elif kind == B.KIND_ARRAY:
                elem, _idx, nelems = struct.unpack_from("<III", buf, pos)
                t.array, pos = (elem, nelems), pos + 12
            elif kind in (B.KIND_STRUCT, B.KIND_UNION):
                members = []
                for _ in range(vlen):
                    m_name, m_type, m_off = struct.unpack_from("<III", buf, pos)
                    pos += 12
                    bits, bsize = (m_off & 0xFFFFFF, m_off >> 24) if kflag else (m_off, 0)
                    members.append(B.Member(self.str(m_name), m_type, bits, bsize))
                t.members = tuple(members)
            elif kind == B.KIND_ENUM:
                t.enumerators = tuple(
                    (self.str(struct.unpack_from("<I", buf, pos + 8 * i)[0]),
                     struct.unpack_from("<i" if kflag else "<I", buf, pos + 8 * i + 4)[0])
                    for i in range(vlen))
                pos += 8 * vlen
            elif kind == B.KIND_ENUM64:
                values = []
                for i in range(vlen):
                    name, lo, hi = struct.unpack_from("<III", buf, pos + 12 * i)
                    v = (hi << 32) | lo
                    values.append((self.str(name), v - (1 << 64) if kflag and v >> 63 else v))
                t.enumerators, pos = tuple(values), pos + 12 * vlen
            elif kind == B.KIND_FUNC_PROTO:
                t.params, pos = vlen, pos + 8 * vlen
            elif kind == B.KIND_DATASEC:
                pos += 12 * vlen
            self.types.append(t)
            if t.name and kind in (B.KIND_STRUCT, B.KIND_UNION, B.KIND_ENUM, B.KIND_ENUM64,
                                   B.KIND_FUNC, B.KIND_TYPEDEF):
                index_kind = B.KIND_ENUM if kind == B.KIND_ENUM64 else kind
                self.by_name.setdefault((index_kind, t.name), len(self.types) - 1)

    def str(self, off):
        return self.strings[off:self.strings.index(b"\0", off)].decode()

    def resolve(self, tid):
        while self.types[tid] is not None and self.types[tid].kind in B._MODIFIERS:
            tid = self.types[tid].size_or_type
        return self.types[tid]

    def struct(self, name):
        tid = self.by_name.get((B.KIND_STRUCT, name)) or self.by_name.get((B.KIND_UNION, name))
        if not tid:
            raise BTFError(f"struct {name} not in kernel BTF")
        return tid

    def find_member(self, tid, name, base):
        for m in self.resolve(tid).members:
            if m.name == name:
                return m, base + m.bit_offset
            inner = None if m.name else self.resolve(m.type_id)
            if inner is not None and inner.kind in (B.KIND_STRUCT, B.KIND_UNION):
                found = self.find_member(m.type_id, name, base + m.bit_offset)
                if found:
                    return found
        return None

    def member(self, struct_name, path):
        tid, bits, m = self.struct(struct_name), 0, None
        for part in path.split("."):
            found = self.find_member(tid, part, 0)
            if not found:
                raise BTFError(f"struct {struct_name} has no member {path}")
            (m, off), tid = found, found[0].type_id
            bits += off
        if m.bitfield_size or bits % 8:
            raise BTFError(f"{struct_name}.{path} is a bitfield")
        return bits // 8, self.size_of(m.type_id)

    def size_of(self, tid):
        t = self.resolve(tid)
        if t is None:
            return 0
        if t.kind == B.KIND_PTR:
            return 8
        if t.kind == B.KIND_ARRAY:
            return self.size_of(t.array[0]) * t.array[1]
        return t.size_or_type

    def func_id(self, name):
        tid = self.by_name.get((B.KIND_FUNC, name))
        if not tid:
            raise BTFError(f"function {name} not in kernel BTF")
        return tid

    def func_params(self, name):
        return self.types[self.types[self.func_id(name)].size_or_type].params

    def raw_tracepoint_params(self, name):
        tid = self.by_name.get((B.KIND_TYPEDEF, f"btf_trace_{name}"))
        if not tid:
            raise BTFError(f"raw tracepoint {name} not in kernel BTF")
        ptr = self.types[self.types[tid].size_or_type]
        proto = self.types[ptr.size_or_type] if ptr is not None and ptr.kind == B.KIND_PTR else None
        if proto is None or proto.kind != B.KIND_FUNC_PROTO or proto.params < 1:
            raise BTFError(f"btf_trace_{name} is not a pointer to a prototype")
        return proto.params - 1

    def enum(self, name):
        tid = self.by_name.get((B.KIND_ENUM, name))
        if not tid:
            raise BTFError(f"enum {name} not in kernel BTF")
        return dict(self.types[tid].enumerators)


def answer(call, *args):
    """What a lookup gives: its value, or its error's class and message."""
    try:
        return call(*args)
    except BTFError as e:
        return ("BTFError", str(e))


def assert_same(btf, ref, method, *args):
    assert answer(getattr(btf, method), *args) == answer(getattr(ref, method), *args), \
        (method, args)


def probe_fields():
    """(struct, member path) of every kernel field the probes read."""
    from collector.probes import fdwalk, logwrite_kernel as lk, reset_kernel as rk

    fields = [(s, m) for table in (fdwalk.FIELDS, lk.BTF_FIELDS, lk.DGRAM_FIELDS,
                                   lk.DGRAM_FENTRY_FIELDS, lk.PATH_FIELDS, lk.FENTRY_FIELDS,
                                   rk.BTF_FIELDS, rk.FENTRY_FIELDS) for _macro, s, m in table]
    for abi in lk.RAW_SYSCALL_ABI.values():
        regs = abi["regs"] + ((abi["cs"][0],) if abi.get("cs") else ())
        fields += [("pt_regs", reg) for reg in regs]
    return sorted(set(fields))


@pytest.fixture(scope="module")
def live():
    """(BTF, ReferenceBTF) of the running kernel."""
    if not _readable(B.VMLINUX_BTF):
        pytest.skip(f"{B.VMLINUX_BTF} not readable")
    with open(B.VMLINUX_BTF, "rb") as f:
        data = f.read()
    return BTF(data), ReferenceBTF(data)


def test_live_every_probe_field_as_the_reference_reads_it(live):
    btf, ref = live
    fields = probe_fields()
    assert len(fields) > 40
    for struct_name, path in fields:
        assert_same(btf, ref, "member", struct_name, path)
    assert btf.member("task_struct", "files") == ref.member("task_struct", "files")
    for struct_name, path in (("task_struct", "no_such_member"), ("no_such_struct", "x"),
                              ("inode", "i_sb.s_dev"), ("sock", "sk_no_check_tx")):
        assert_same(btf, ref, "member", struct_name, path)            # the same errors


def test_live_functions_raw_tracepoints_and_enums_as_the_reference(live):
    from collector.probes import logwrite_kernel as lk, reset_kernel as rk, resets

    btf, ref = live
    funcs = set(lk.FENTRY_FUNCS + resets.FENTRY_FUNCS) | {lk.DGRAM_FENTRY_FUNC, "tcp_sendpage",
                                                           "no_such_function"}
    for func in sorted(funcs):
        assert_same(btf, ref, "func_id", func)
        assert_same(btf, ref, "func_params", func)
    for name in sorted(set(rk.RAW_ARGS) | {"sys_enter", "no_such_tracepoint"}):
        assert_same(btf, ref, "raw_tracepoint_params", name)
    for name in ("sk_rst_reason", "tcp_ca_state", "bpf_prog_type", "no_such_enum"):
        assert_same(btf, ref, "enum", name)


def test_live_a_sample_of_every_indexed_name_as_the_reference(live):
    """Every 50th name of each kind looked up by name (each takes ~1 ms: all, ~70 s)."""
    btf, ref = live
    method = {B.KIND_STRUCT: "struct", B.KIND_UNION: "struct", B.KIND_ENUM: "enum",
              B.KIND_FUNC: "func_params", B.KIND_TYPEDEF: None}
    by_kind = {}
    for (kind, name), _tid in sorted(ref.by_name.items(), key=lambda kv: kv[1]):
        by_kind.setdefault(kind, []).append(name)
    for kind, names in by_kind.items():
        for name in names[::50]:
            if method[kind]:
                assert_same(btf, ref, method[kind], name)
            if kind == B.KIND_FUNC:
                assert_same(btf, ref, "func_id", name)
            if kind == B.KIND_TYPEDEF and name.startswith("btf_trace_"):
                assert_same(btf, ref, "raw_tracepoint_params", name.removeprefix("btf_trace_"))
            if kind == B.KIND_TYPEDEF:
                assert btf._named((B.KIND_TYPEDEF,), name) == ref.by_name[(kind, name)]


def test_live_every_type_built_on_demand_equals_the_reference(live):
    btf, ref = live
    assert len(btf.types) == len(ref.types) > 10000
    assert list(btf.types) == ref.types


def test_kernelish_blob_every_type_equals_the_reference(kernelish):
    data = kernelish.build()
    assert list(BTF(data).types) == ReferenceBTF(data).types


# -- names: where the string table does what vmlinux's does not ------------------------------

class RawBTF(BTFBuilder):
    """A builder whose types may name any string offset (not just a whole string's)."""

    def raw_string(self, text):
        off = len(self.strings)
        self.strings += text.encode() + b"\0"
        return off

    def at(self, kind, name_off, size_or_type, members=()):
        info = (len(members) & 0xFFFF) | (kind << 24)
        trailer = b"".join(struct.pack("<III", self.s(n), t, off) for n, t, off in members)
        self.types.append(struct.pack("<III", name_off, info, size_or_type) + trailer)
        return len(self.types)


def test_a_name_offset_inside_a_longer_string():
    b = RawBTF()
    u32 = b.int("unsigned int", 4)
    whole = b.raw_string("sock_file")
    inner = b.at(B.KIND_STRUCT, whole + 5, 8, [("x", u32, 32)])     # "file"
    b.struct("sock_file", 4, [("y", u32, 0)])
    data = b.build()
    btf, ref = BTF(data), ReferenceBTF(data)
    assert btf.types[inner].name == "file"
    assert btf.struct("file") == ref.struct("file") == inner
    assert btf.member("file", "x") == (4, 4)
    assert btf.member("sock_file", "y") == (0, 4)
    with pytest.raises(BTFError):
        btf.struct("ile")                  # a suffix no type's name offset points at


def test_a_name_in_two_copies_of_the_string_first_type_wins():
    b = RawBTF()
    u32 = b.int("unsigned int", 4)
    copy1, copy2 = b.raw_string("dup"), b.raw_string("dup")
    older = b.at(B.KIND_STRUCT, copy2, 4, [("a", u32, 0)])         # the later copy, lower id
    b.at(B.KIND_STRUCT, copy1, 8, [("b", u32, 32)])
    data = b.build()
    assert BTF(data).struct("dup") == ReferenceBTF(data).struct("dup") == older
    assert BTF(data).member("dup", "a") == (0, 4)


def test_one_name_in_several_kinds():
    b = BTFBuilder()
    u32 = b.int("unsigned int", 4)
    proto = b.func_proto(u32, [("a", u32), ("b", u32)])
    td = b.typedef("thing", u32)
    fn = b.func("thing", proto)
    st = b.struct("thing", 4, [("v", u32, 0)])
    un = b.union("thing", 4, [("w", u32, 0)])
    e64 = b.enum64("thing", [("BIG", 1 << 40)])
    b.enum("thing", [("SMALL", 1)])
    b.union("only_union", 4, [("u", u32, 0)])
    data = b.build()
    btf, ref = BTF(data), ReferenceBTF(data)
    assert btf.struct("thing") == st != un
    assert btf.func_id("thing") == fn and btf.func_params("thing") == 2
    assert btf.enum("thing") == {"BIG": 1 << 40} == ref.enum("thing")    # enum64 came first
    assert btf.types[e64].kind == B.KIND_ENUM64
    assert btf._named((B.KIND_TYPEDEF,), "thing") == td
    assert btf.struct("only_union") == ref.struct("only_union")
    for method in ("struct", "func_id", "enum"):
        for name in ("thin", "hing", "", "thing\0", "th\udcffing"):
            assert_same(btf, ref, method, name)


def test_types_reads_like_the_list_it_was(kernelish):
    btf = load(kernelish)
    n = len(kernelish.types) + 1
    assert len(btf.types) == n and btf.types[0] is None
    assert btf.types[-1] is btf.types[n - 1] and btf.types[-n] is None
    assert btf.types[1] is btf.types[1]                     # built once
    assert btf.types[1:3] == [btf.types[1], btf.types[2]]
    assert [t and t.name for t in btf.types][:3] == [None, "unsigned short", "unsigned int"]
    with pytest.raises(IndexError):
        btf.types[n]


def test_a_type_section_that_ends_inside_a_type():
    b = BTFBuilder()
    b.struct("s", 8, [("a", b.int("int", 4), 0)])
    data = bytearray(b.build())
    type_len = struct.unpack_from("<I", data, 12)[0]
    struct.pack_into("<II", data, 12, type_len - 4, type_len - 4)   # drop a member's last word
    with pytest.raises(BTFError, match="ends inside a type"):
        BTF(bytes(data[:24 + type_len - 4]) + bytes(data[24 + type_len:]))


def test_an_empty_type_section():
    btf = BTF(BTFBuilder().build())
    assert len(btf.types) == 1
    with pytest.raises(BTFError, match="struct x"):
        btf.struct("x")


def test_load_parses_the_running_kernels_btf_once(tmp_path, kernelish, monkeypatch):
    path = tmp_path / "vmlinux"
    path.write_bytes(kernelish.build())
    monkeypatch.setattr(B, "VMLINUX_BTF", str(path))
    monkeypatch.setattr(B, "_loaded", {})
    first = BTF.load(str(path))
    assert BTF.load(str(path)) is first
    kernelish.struct("added_later", 4, [("z", 1, 0)])
    path.write_bytes(kernelish.build())                    # another file: parsed again
    again = BTF.load(str(path))
    assert again is not first and again.member("added_later", "z") == (0, 2)
    other = tmp_path / "other"                              # any other path: every time
    other.write_bytes(kernelish.build())
    assert BTF.load(str(other)) is not BTF.load(str(other))
