"""doctor's headers lines (collector/commands/doctor.py headers_checks): an `ok` line never
says something is wrong; headers of another kernel are a `note`, which does not fail."""
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
