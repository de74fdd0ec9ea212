"""doctor's headers lines (collector/commands/doctor.py headers_checks): an `ok` line never
says something is wrong; headers of another kernel are a `note`, which does not fail. Its
privileges and tracefs lines as an unprivileged user sees them."""
from collector.commands.doctor import exit_code, headers_checks
from collector.probes.kernel import HeadersInfo


def test_matching_headers_are_one_ok_line(tmp_path):
    hdr = HeadersInfo(str(tmp_path), True, "6.1.0-57-amd64", True)
    [c] = headers_checks(hdr, "6.1.0-57-amd64")
    assert (c.name, c.ok) == ("headers", True)
    assert c.detail == f"{tmp_path} -> {tmp_path}, version 6.1.0-57-amd64, the running kernel's"


def test_other_kernels_headers_are_ok_plus_a_note_and_do_not_fail(tmp_path):
    hdr = HeadersInfo(str(tmp_path), True, "6.1.0-57-amd64", False)
    checks = headers_checks(hdr, "6.18.44")
    assert [(c.name, c.ok, c.blocking) for c in checks] == [
        ("headers", True, True), ("headers version", False, False)]
    assert checks[0].detail == f"{tmp_path} -> {tmp_path}, version 6.1.0-57-amd64"
    assert checks[1].detail == ("6.1.0-57-amd64 is not the running kernel 6.18.44; "
                                "fine: struct offsets come from BTF")
    assert not any("NOT" in c.detail for c in checks)
    assert exit_code(checks) == 0


def test_missing_headers_fail_with_the_fix():
    [c] = headers_checks(HeadersInfo("/lib/modules/x/build", False, None, False), "x")
    assert (c.ok, c.blocking, c.detail) == (False, True, "none at /lib/modules/x/build")
    assert "apt-get install linux-headers-$(uname -r)" in c.fix
    assert exit_code([c]) == 1


# -- privileges and tracefs lines (as an unprivileged user sees them) ----------------------

def test_privileges_line_names_each_problem_and_the_fix_once():
    from collector.commands.doctor import privileges_check
    from collector.probes import kernel

    c = privileges_check(kernel.privilege_problems(caps=0, paranoid=2))
    assert (c.ok, c.detail, c.fix) == (
        False, ("needs root or CAP_BPF+CAP_PERFMON to load BPF programs; needs CAP_SYS_PTRACE "
                "to read other processes' /proc/PID/fd"), "run as root (sudo surgewatch ...)")
    c = privileges_check(["a is missing; fix: run as root", "b; fix: run as root (sudo x)",
                          "c; fix: sysctl y=2"])
    assert (c.detail, c.fix) == ("a is missing; b; c", "run as root (sudo x); sysctl y=2")
    assert privileges_check([]).ok


MOUNTS = ("proc /proc proc rw 0 0\n"
          "nodev /sys/kernel/tracing tracefs rw,relatime 0 0\n")


def test_tracefs_mounted_but_unreadable_is_not_called_unmounted():
    from collector.commands.doctor import tracefs_check

    c = tracefs_check(None, MOUNTS, euid=65534)
    assert (c.ok, c.detail, c.fix) == (False, ("mounted at /sys/kernel/tracing, not readable "
                                               "by this user"), "run as root (sudo surgewatch ...)")
    c = tracefs_check(None, "proc /proc proc rw 0 0\n", euid=65534)
    assert (c.ok, c.detail) == (False, "not mounted") and c.fix.startswith("mount -t tracefs")
    assert tracefs_check(None, MOUNTS, euid=0).detail == "not mounted"
    assert tracefs_check("/sys/kernel/tracing", MOUNTS, euid=0).detail == \
        "mounted at /sys/kernel/tracing"
