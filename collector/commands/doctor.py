"""`surgewatch doctor`: can the probes run on this host, and if not, what to fix."""
import os
import platform
import sys

from collector.probes import fentry, kernel
from collector.probes.btf import BTF, BTFError
from collector.probes.checks import Check, DoctorHost
from collector.probes.registry import probe_classes


def _tracepoint_variant(category, event):
    fmt = kernel.tracepoint_format(category, event)
    if fmt is None:
        return None
    if event in ("tcp_send_reset", "tcp_receive_reset"):
        if "family" in fmt:
            cookie = "+sock_cookie" if "sock_cookie" in fmt else ""
            return f"family+saddr[4]/saddr_v6[16]{cookie}"
        if "reason" in fmt:
            return "sockaddr saddr[28]+reason (6.10+ style)"
        return "sockaddr saddr[28] (no reason)"
    return ", ".join(f"{n}@{f.offset}" for n, f in fmt.items())


def privileges_check(problems):
    """problems: kernel.privilege_problems() lines ("what; fix: how"): what in the
    detail, how once after it (not twice)."""
    if not problems:
        return Check("privileges", True, "root / CAP_BPF+CAP_PERFMON present")
    whats, hows = [], []
    for line in problems:
        what, _, how = line.partition("; fix: ")
        whats.append(what)
        if how and how not in hows:
            hows.append(how)
    hows = [h for h in hows if not any(o != h and o.startswith(h) for o in hows)]  # root once
    return Check("privileges", False, "; ".join(whats),
                 "; ".join(hows) or "run as root (sudo surgewatch ...)")


def tracefs_check(root, mounts_text, euid):
    """root: kernel.tracefs_root(); mounts_text: /proc/self/mounts. An unprivileged user
    cannot see into a mounted tracefs (mode 0700): say that, not "not mounted"."""
    if root:
        return Check("tracefs", True, f"mounted at {root}")
    mounted = [f[1] for f in (line.split() for line in mounts_text.splitlines())
               if len(f) > 2 and f[2] == "tracefs"]
    if mounted and euid != 0:
        return Check("tracefs", False, f"mounted at {mounted[0]}, not readable by this user",
                     "run as root (sudo surgewatch ...)")
    return Check("tracefs", False, "not mounted",
                 "mount -t tracefs nodev /sys/kernel/tracing (or: make setup)")


def _mounts():
    try:
        with open("/proc/self/mounts") as f:
            return f.read()
    except OSError:
        return ""


def run_checks():
    checks = [Check("kernel", True, platform.release(), blocking=False)]

    checks.append(privileges_check(kernel.privilege_problems()))

    btf = None
    if kernel.btf_available():
        try:
            btf = BTF.load()
            checks.append(Check("btf", True, f"{kernel.BTF_PATH} ({len(btf.types)} types)"))
        except (OSError, BTFError) as e:
            checks.append(Check("btf", False, f"{kernel.BTF_PATH} unreadable: {e}",
                                "run as root"))
    else:
        checks.append(Check("btf", False, f"{kernel.BTF_PATH} missing",
                            "use a kernel built with CONFIG_DEBUG_INFO_BTF=y"))

    root = kernel.tracefs_root()
    checks.append(tracefs_check(root, _mounts(), os.geteuid()))

    checks += headers_checks(kernel.headers_info(), platform.release())

    try:
        import bcc
        checks.append(Check("bcc", True, f"python bcc {getattr(bcc, '__version__', '?')}"))
    except ImportError:
        checks.append(Check("bcc", False, "python module bcc not importable",
                            "apt-get install python3-bpfcc and use a venv with "
                            "--system-site-packages (make setup)"))

    if root:
        for cat, ev, needed in (
                ("syscalls", "sys_enter_write", True),
                ("syscalls", "sys_enter_writev", False), ("syscalls", "sys_enter_pwrite64", False),
                ("syscalls", "sys_enter_pwritev", False), ("syscalls", "sys_enter_pwritev2", False),
                ("tcp", "tcp_send_reset", False), ("tcp", "tcp_receive_reset", False),
                ("sock", "inet_sock_set_state", False)):
            variant = _tracepoint_variant(cat, ev)
            checks.append(Check(f"tracepoint {cat}:{ev}", variant is not None,
                                variant or "missing",
                                "needs a kernel with CONFIG_FTRACE_SYSCALLS" if cat == "syscalls"
                                else "this kernel lacks it; that probe is disabled",
                                blocking=needed))
        checks.append(Check("kprobes", kernel.kprobes_available(),
                            "available" if kernel.kprobes_available() else
                            "not available (CONFIG_KPROBES unset); tracepoints are used instead",
                            blocking=False))

    if btf is not None:
        checks += probe_checks(btf, root, privileged=bool(root) and os.geteuid() == 0)
    return checks


def headers_checks(hdr, release):
    """The headers line, and a note when they are another kernel's: that is information,
    never a failure (bcc takes only helper declarations from them; offsets come from BTF)."""
    if not hdr.present:
        return [Check("headers", False, f"none at {hdr.build_dir}",
                      "make setup (links the distro's headers), or "
                      "apt-get install linux-headers-$(uname -r)")]
    src = os.path.realpath(hdr.build_dir)
    out = [Check("headers", True, f"{hdr.build_dir} -> {src}, version {hdr.version}"
                 + (", the running kernel's" if hdr.matches_kernel else ""))]
    if not hdr.matches_kernel:
        out.append(Check("headers version", False, f"{hdr.version} is not the running "
                         f"kernel {release}; fine: struct offsets come from BTF",
                         blocking=False))
    return out


def probe_checks(btf, root, privileged):
    """Each registered probe's own checks. As root, first whether fentry loads for every
    probe's functions (each check loads a tiny program, docs/probe-logwrites.md):
    information only, every answer has a working path."""
    probes = probe_classes()
    out, refused = [], None
    if privileged:
        refused = fentry.refusal(btf, tuple(f for p in probes for f in p.fentry_funcs))
        out.append(Check("fentry", refused is None,
                         "loads: both probes count on fentry (no syscall tracepoint; "
                         'write_hook "auto")' if refused is None else
                         f"refused: {refused} (syscall tracepoints are used)", blocking=False))
    host = DoctorHost(btf, root, privileged, refused)
    for probe in probes:
        out += probe.checks(host)
    return out


def exit_code(checks):
    return 0 if all(c.ok or not c.blocking for c in checks) else 1


def report(checks):
    """doctor's lines: per check its mark (ok, FAIL: blocking, note), name, detail and, when
    not ok, its fix; then whether the probes can run."""
    width = max(len(c.name) for c in checks)
    lines = []
    for c in checks:
        mark = "ok  " if c.ok else ("FAIL" if c.blocking else "note")
        line = f"{mark} {c.name:<{width}}  {c.detail}"
        if not c.ok and c.fix:
            line += f"  -> fix: {c.fix}"
        lines.append(line)
    lines.append("probes can run" if exit_code(checks) == 0
                 else "probes cannot run: fix the FAIL lines above")
    return lines


def run_doctor(stdout=None):
    """Run every check and print the report; the exit code (1: a blocking check failed)."""
    checks = run_checks()
    out = stdout if stdout is not None else sys.stdout
    for line in report(checks):
        out.write(line + "\n")
    return exit_code(checks)
