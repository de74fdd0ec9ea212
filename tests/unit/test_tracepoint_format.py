"""Tracepoint formats and environment detection (collector/probes/kernel.py) on fixture
trees: tests/unit/fixtures/tracefs/6.18 is recorded from a live kernel, 6.1 is
reconstructed from the kernel sources (see that directory's README.md)."""
import os
from pathlib import Path

import pytest

from collector.probes import kernel
from collector.probes.kernel import (
    CAP_BPF,
    CAP_DAC_READ_SEARCH,
    CAP_PERFMON,
    CAP_SYS_ADMIN,
    CAP_SYS_PTRACE,
    Field,
    effective_caps,
    headers_info,
    parse_format,
    privilege_problems,
    tracepoint_exists,
    tracepoint_format,
)

TRACEFS = Path(__file__).parent / "fixtures" / "tracefs"
K618, K61 = str(TRACEFS / "6.18"), str(TRACEFS / "6.1")
KERNELS = pytest.mark.parametrize("root", [K618, K61], ids=["6.18", "6.1"])

# (name, ctype, offset, size, signed) after the common_* header, identical on both kernels
SYS_ENTER_WRITE = [("__syscall_nr", "int", 8, 4, True), ("fd", "unsigned int", 16, 8, False),
                   ("buf", "const char *", 24, 8, False), ("count", "size_t", 32, 8, False)]
SYS_EXIT_WRITE = [("__syscall_nr", "int", 8, 4, True), ("ret", "long", 16, 8, True)]
SYS_ENTER_OPENAT = [("__syscall_nr", "int", 8, 4, True), ("dfd", "int", 16, 8, False),
                    ("filename", "const char *", 24, 8, False), ("flags", "int", 32, 8, False),
                    ("mode", "umode_t", 40, 8, False)]
SYS_ENTER_OPENAT2 = [("__syscall_nr", "int", 8, 4, True), ("dfd", "int", 16, 8, False),
                     ("filename", "const char *", 24, 8, False),
                     ("how", "struct open_how *", 32, 8, False), ("usize", "size_t", 40, 8, False)]
TCP_RECEIVE_RESET = [("skaddr", "const void *", 8, 8, False), ("sport", "__u16", 16, 2, False),
                     ("dport", "__u16", 18, 2, False), ("family", "__u16", 20, 2, False),
                     ("saddr", "__u8", 22, 4, False), ("daddr", "__u8", 26, 4, False),
                     ("saddr_v6", "__u8", 30, 16, False), ("daddr_v6", "__u8", 46, 16, False),
                     ("sock_cookie", "__u64", 64, 8, False)]
INET_SOCK_SET_STATE = [("skaddr", "const void *", 8, 8, False), ("oldstate", "int", 16, 4, True),
                       ("newstate", "int", 20, 4, True), ("sport", "__u16", 24, 2, False),
                       ("dport", "__u16", 26, 2, False), ("family", "__u16", 28, 2, False),
                       ("protocol", "__u16", 30, 2, False), ("saddr", "__u8", 32, 4, False),
                       ("daddr", "__u8", 36, 4, False), ("saddr_v6", "__u8", 40, 16, False),
                       ("daddr_v6", "__u8", 56, 16, False)]
TCP_SEND_RESET = {
    # 6.10+: its own event, struct sockaddr_in6-sized address arrays and a reason
    K618: [("skbaddr", "const void *", 8, 8, False), ("skaddr", "const void *", 16, 8, False),
           ("state", "int", 24, 4, True), ("reason", "enum sk_rst_reason", 28, 4, False),
           ("saddr", "__u8", 32, 28, False), ("daddr", "__u8", 60, 28, False)],
    # 6.1: event class tcp_event_sk_skb
    K61: [("skbaddr", "const void *", 8, 8, False), ("skaddr", "const void *", 16, 8, False),
          ("state", "int", 24, 4, True), ("sport", "__u16", 28, 2, False),
          ("dport", "__u16", 30, 2, False), ("family", "__u16", 32, 2, False),
          ("saddr", "__u8", 34, 4, False), ("daddr", "__u8", 38, 4, False),
          ("saddr_v6", "__u8", 42, 16, False), ("daddr_v6", "__u8", 58, 16, False)],
}


def as_fields(rows):
    return {name: Field(name, ctype, off, size, signed) for name, ctype, off, size, signed in rows}


# -- parse_format ---------------------------------------------------------------------

def test_parse_format_minimal_text():
    text = ("name: x\nID: 1\nformat:\n"
            "\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n"
            "\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;\n\n"
            "\tfield:long ret;\toffset:16;\tsize:8;\tsigned:1;\n\n"
            'print fmt: "0x%lx", REC->ret\n')
    assert parse_format(text) == {"ret": Field("ret", "long", 16, 8, True)}


def test_parse_format_array_field_keeps_bare_name_and_whole_size():
    fields = parse_format("\tfield:__u8 saddr[28];\toffset:32;\tsize:28;\tsigned:0;\n")
    assert list(fields) == ["saddr"]
    assert fields["saddr"] == Field("saddr", "__u8", 32, 28, False)


def test_parse_format_pointer_field_type_keeps_the_star():
    fields = parse_format("\tfield:const char * buf;\toffset:24;\tsize:8;\tsigned:0;\n")
    assert fields["buf"] == Field("buf", "const char *", 24, 8, False)


def test_parse_format_drops_every_common_field():
    fields = parse_format((TRACEFS / "6.18/events/syscalls/sys_enter_write/format").read_text())
    assert not [n for n in fields if n.startswith("common_")]
    assert "__syscall_nr" in fields


def test_parse_format_ignores_print_fmt_and_header_lines():
    text = (TRACEFS / "6.18/events/tcp/tcp_send_reset/format").read_text()
    assert "REC->saddr" in text   # the print fmt names fields too; only field: lines count
    assert list(parse_format(text)) == ["skbaddr", "skaddr", "state", "reason", "saddr", "daddr"]


def test_parse_format_empty_text():
    assert parse_format("") == {}


# -- tracepoint_format on the fixture trees ---------------------------------------------

@KERNELS
@pytest.mark.parametrize("category,event,rows", [
    ("syscalls", "sys_enter_write", SYS_ENTER_WRITE),
    ("syscalls", "sys_exit_write", SYS_EXIT_WRITE),
    ("syscalls", "sys_enter_openat", SYS_ENTER_OPENAT),
    ("syscalls", "sys_enter_openat2", SYS_ENTER_OPENAT2),
    ("tcp", "tcp_receive_reset", TCP_RECEIVE_RESET),
    ("sock", "inet_sock_set_state", INET_SOCK_SET_STATE),
])
def test_tracepoint_format_exact_layout(root, category, event, rows):
    fmt = tracepoint_format(category, event, root=root)
    assert fmt == as_fields(rows)
    assert list(fmt) == [r[0] for r in rows]      # in the kernel's order


@KERNELS
def test_tcp_send_reset_layout_per_kernel(root):
    assert tracepoint_format("tcp", "tcp_send_reset", root=root) == as_fields(TCP_SEND_RESET[root])


def test_tcp_send_reset_variants_differ_as_the_probe_must_detect():
    new = tracepoint_format("tcp", "tcp_send_reset", root=K618)
    old = tracepoint_format("tcp", "tcp_send_reset", root=K61)
    assert "reason" in new and "family" not in new and new["saddr"].size == 28
    assert "reason" not in old and "family" in old and old["saddr"].size == 4
    assert old["saddr_v6"].size == 16


@KERNELS
def test_tracepoint_format_missing_event_is_none(root):
    assert tracepoint_format("syscalls", "sys_enter_no_such_call", root=root) is None
    assert tracepoint_format("no_such_category", "x", root=root) is None


def test_tracepoint_format_missing_root_dir_is_none(tmp_path):
    assert tracepoint_format("syscalls", "sys_enter_write", root=str(tmp_path / "nope")) is None


def test_tracepoint_format_event_dir_without_format_file_is_none(tmp_path):
    (tmp_path / "events" / "syscalls" / "sys_enter_write").mkdir(parents=True)
    assert tracepoint_format("syscalls", "sys_enter_write", root=str(tmp_path)) is None


def test_tracepoint_format_without_any_tracefs_is_none(monkeypatch):
    monkeypatch.setattr(kernel, "tracefs_root", lambda: None)
    assert tracepoint_format("syscalls", "sys_enter_write") is None
    assert tracepoint_exists("syscalls", "sys_enter_write") is False


def test_tracepoint_format_uses_detected_tracefs_by_default(monkeypatch):
    monkeypatch.setattr(kernel, "tracefs_root", lambda: K618)
    assert tracepoint_format("syscalls", "sys_exit_write")["ret"].offset == 16


# -- tracepoint_exists ------------------------------------------------------------------

@KERNELS
def test_tracepoint_exists(root):
    assert tracepoint_exists("syscalls", "sys_enter_write", root=root) is True
    assert tracepoint_exists("tcp", "tcp_send_reset", root=root) is True
    assert tracepoint_exists("sock", "inet_sock_set_state", root=root) is True
    assert tracepoint_exists("syscalls", "sys_enter_writev", root=root) is False   # not recorded
    assert tracepoint_exists("nope", "nope", root=root) is False


def test_tracepoint_exists_needs_a_directory(tmp_path):
    (tmp_path / "events" / "tcp").mkdir(parents=True)
    (tmp_path / "events" / "tcp" / "tcp_send_reset").write_text("not a directory")
    assert tracepoint_exists("tcp", "tcp_send_reset", root=str(tmp_path)) is False


# -- the consumer: the log-write probe's macros from these formats ------------------------

@KERNELS
def test_logwrite_tracepoint_macros_from_fixture_formats(root):
    from collector.probes.logwrite_kernel import tracepoint_macros

    macros, available = tracepoint_macros(root)
    assert macros["TP_FD_OFF"] == 16 and macros["TP_WRITE_COUNT_OFF"] == 32
    # no open and no exit tracepoint is read (the probe has no open hook)
    assert not [k for k in macros if "OPEN" in k or k == "TP_RET_OFF"]
    assert {k for k, v in available.items() if v} == {"write"}
    assert "HAVE_writev" not in macros and macros["HAVE_write"] == 1


def test_logwrite_tracepoint_macros_without_write_tracepoints(tmp_path):
    from collector.errors import ProbeUnavailable
    from collector.probes.logwrite_kernel import tracepoint_macros

    (tmp_path / "events").mkdir()
    with pytest.raises(ProbeUnavailable, match="CONFIG_FTRACE_SYSCALLS"):
        tracepoint_macros(str(tmp_path))


# -- headers_info -----------------------------------------------------------------------

@pytest.fixture
def modules_dir(tmp_path, monkeypatch):
    """Redirect /lib/modules/ into tmp_path for headers_info (its path is not injectable)."""
    fake = tmp_path / "lib" / "modules"
    fake.mkdir(parents=True)
    real_isdir, real_realpath = os.path.isdir, os.path.realpath

    def redirect(p):
        p = os.fspath(p)
        return str(fake) + p[len("/lib/modules"):] if p.startswith("/lib/modules/") else p

    monkeypatch.setattr(kernel.os.path, "isdir", lambda p: real_isdir(redirect(p)))
    monkeypatch.setattr(kernel.os.path, "realpath", lambda p: real_realpath(redirect(p)))
    monkeypatch.setattr(kernel, "open", lambda p, *a, **k: open(redirect(p), *a, **k),
                        raising=False)
    return fake


def make_headers(root, version_dir, utsrelease=None):
    """A headers tree in root/usr/src/<version_dir> with include/; optional utsrelease.h."""
    tree = root / "usr" / "src" / version_dir
    (tree / "include" / "generated").mkdir(parents=True)
    if utsrelease is not None:
        (tree / "include" / "generated" / "utsrelease.h").write_text(
            f'#define UTS_RELEASE "{utsrelease}"\n')
    return tree


def test_headers_info_absent(modules_dir):
    info = headers_info("6.18.44-fc-v657")
    assert info == kernel.HeadersInfo("/lib/modules/6.18.44-fc-v657/build", False, None, False)


def test_headers_info_matching_kernel(modules_dir, tmp_path):
    tree = make_headers(tmp_path, "linux-headers-6.1.0-56-amd64", "6.1.0-56-amd64")
    (modules_dir / "6.1.0-56-amd64").mkdir()
    os.symlink(tree, modules_dir / "6.1.0-56-amd64" / "build")
    info = headers_info("6.1.0-56-amd64")
    assert info.present and info.version == "6.1.0-56-amd64" and info.matches_kernel
    assert info.build_dir == "/lib/modules/6.1.0-56-amd64/build"


def test_headers_info_other_kernels_headers(modules_dir, tmp_path):
    # the CI layout: a 6.18 kernel with Debian's 6.1 headers linked in as its build dir
    tree = make_headers(tmp_path, "linux-headers-6.1.0-56-amd64", "6.1.0-56-amd64")
    (modules_dir / "6.18.44-fc-v657").mkdir()
    os.symlink(tree, modules_dir / "6.18.44-fc-v657" / "build")
    info = headers_info("6.18.44-fc-v657")
    assert info.present and info.version == "6.1.0-56-amd64" and not info.matches_kernel


def test_headers_info_version_from_dir_name_without_utsrelease(modules_dir, tmp_path):
    tree = make_headers(tmp_path, "linux-headers-6.1.0-56-amd64")
    (modules_dir / "6.18.44").mkdir()
    os.symlink(tree, modules_dir / "6.18.44" / "build")
    info = headers_info("6.18.44")
    assert info.present and info.version == "6.1.0-56-amd64" and not info.matches_kernel


def test_headers_info_build_dir_without_include_is_absent(modules_dir):
    (modules_dir / "6.18.44" / "build").mkdir(parents=True)
    assert headers_info("6.18.44").present is False


# -- privileges -------------------------------------------------------------------------

def caps(*numbers):
    return sum(1 << n for n in numbers)


def test_privilege_problems_none_for_full_root_set():
    assert privilege_problems((1 << 41) - 1, paranoid=2) == []


def test_privilege_problems_sys_admin_alone_is_enough():
    assert privilege_problems(caps(CAP_SYS_ADMIN), paranoid=2) == []


def test_privilege_problems_bpf_perfmon_and_ptrace():
    assert privilege_problems(caps(CAP_BPF, CAP_PERFMON, CAP_SYS_PTRACE), paranoid=2) == []
    assert privilege_problems(caps(CAP_BPF, CAP_PERFMON, CAP_DAC_READ_SEARCH), paranoid=2) == []


def test_privilege_problems_no_caps_names_both():
    problems = privilege_problems(0, paranoid=2)
    assert len(problems) == 2
    assert "CAP_BPF+CAP_PERFMON" in problems[0] and "fix:" in problems[0]
    assert "CAP_SYS_PTRACE" in problems[1] and "fix:" in problems[1]
    assert all("\n" not in p for p in problems)


def test_privilege_problems_bpf_without_perfmon_cannot_load():
    problems = privilege_problems(caps(CAP_BPF, CAP_SYS_PTRACE), paranoid=2)
    assert len(problems) == 1 and "CAP_BPF+CAP_PERFMON" in problems[0]


def test_privilege_problems_loading_without_proc_access():
    problems = privilege_problems(caps(CAP_BPF, CAP_PERFMON), paranoid=2)
    assert len(problems) == 1 and "CAP_SYS_PTRACE" in problems[0]


def test_effective_caps_parses_hex(tmp_path):
    status = tmp_path / "status"
    status.write_text("Name:\tpython3\nCapInh:\t0000000000000000\nCapPrm:\t000001ffffffffff\n"
                      "CapEff:\t000001ffffffffff\nCapBnd:\t000001ffffffffff\n")
    assert effective_caps(str(status)) == 0x1FFFFFFFFFF


def test_effective_caps_unprivileged(tmp_path):
    status = tmp_path / "status"
    status.write_text("Name:\tsh\nCapEff:\t0000000000000000\n")
    assert effective_caps(str(status)) == 0
    assert len(privilege_problems(effective_caps(str(status)))) == 2


def test_effective_caps_without_capeff_line_is_zero(tmp_path):
    status = tmp_path / "status"
    status.write_text("Name:\tsh\nState:\tR (running)\n")
    assert effective_caps(str(status)) == 0


def test_effective_caps_of_this_process_is_an_int():
    assert isinstance(effective_caps(), int)


def test_privilege_problems_debian_paranoid_3_wants_sys_admin():
    problems = privilege_problems(caps(CAP_BPF, CAP_PERFMON, CAP_SYS_PTRACE), paranoid=3)
    assert len(problems) == 1
    assert "perf_event_paranoid=3" in problems[0] and "CAP_SYS_ADMIN" in problems[0]
    assert "fix:" in problems[0] and "\n" not in problems[0]
    assert privilege_problems(caps(CAP_SYS_ADMIN), paranoid=3) == []
