"""What this kernel offers the probes: tracefs, tracepoints and their live formats,
headers for bcc's compiler, BTF, privileges. Detect, never assume."""
import ctypes
import os
import platform
import re
import struct
import subprocess
from dataclasses import dataclass

from collector.errors import EnvironmentProblem

TRACEFS_CANDIDATES = ("/sys/kernel/tracing", "/sys/kernel/debug/tracing")
BTF_PATH = "/sys/kernel/btf/vmlinux"

# capability numbers from include/uapi/linux/capability.h
CAP_DAC_READ_SEARCH, CAP_SYS_PTRACE, CAP_SYS_ADMIN = 2, 19, 21
CAP_PERFMON, CAP_BPF = 38, 39


@dataclass(frozen=True)
class Field:
    name: str
    ctype: str
    offset: int
    size: int
    signed: bool


def tracefs_root():
    """The mounted tracefs directory, or None."""
    for path in TRACEFS_CANDIDATES:
        if os.path.isdir(os.path.join(path, "events")):
            return path
    return None


def mount_tracefs():
    """Mount tracefs when we may; return its path. Raise with the fix when we cannot."""
    root = tracefs_root()
    if root:
        return root
    target = TRACEFS_CANDIDATES[0]
    if os.geteuid() == 0 and os.path.isdir(target):
        res = subprocess.run(["mount", "-t", "tracefs", "nodev", target],
                             capture_output=True, text=True)
        if res.returncode == 0 and tracefs_root():
            return tracefs_root()
    raise EnvironmentProblem(
        "tracefs is not mounted; fix: mount -t tracefs nodev /sys/kernel/tracing (as root)")


_FIELD_RE = re.compile(
    r"field:(?P<decl>[^;]+);\s*offset:(?P<off>\d+);\s*size:(?P<size>\d+);\s*signed:(?P<signed>\d)")


def parse_format(text):
    """Parse a tracepoint `format` file into {name: Field}, common_* fields dropped."""
    fields = {}
    for m in _FIELD_RE.finditer(text):
        decl = m.group("decl").strip()
        decl = re.sub(r"\[[^\]]*\]$", "", decl).strip()          # saddr[28] -> saddr
        name = re.split(r"[\s*]+", decl)[-1]
        if name.startswith("common_"):
            continue
        ctype = decl[: len(decl) - len(name)].strip()
        fields[name] = Field(name, ctype, int(m.group("off")), int(m.group("size")),
                             m.group("signed") == "1")
    return fields


def disabled_tracepoints():
    """Tracepoints to treat as missing: SURGEWATCH_DISABLE_TRACEPOINTS="cat:event,...".

    A test seam (docs/reliability.md): it makes a kernel without those tracepoints
    reproducible on any host, so a probe's "missing tracepoint" path can be exercised.
    """
    raw = os.environ.get("SURGEWATCH_DISABLE_TRACEPOINTS", "")
    return {t.strip() for t in raw.split(",") if t.strip()}


def tracepoint_format(category, event, root=None):
    """{field: Field} of a tracepoint as the running kernel defines it, or None if absent."""
    root = root or tracefs_root()
    if not root or f"{category}:{event}" in disabled_tracepoints():
        return None
    try:
        with open(os.path.join(root, "events", category, event, "format")) as f:
            return parse_format(f.read())
    except FileNotFoundError:
        return None


def tracepoint_exists(category, event, root=None):
    root = root or tracefs_root()
    if f"{category}:{event}" in disabled_tracepoints():
        return False
    return bool(root) and os.path.isdir(os.path.join(root, "events", category, event))


def kprobes_available(root=None):
    root = root or tracefs_root()
    return bool(root) and os.path.exists(os.path.join(root, "kprobe_events"))


def btf_available():
    return os.path.exists(BTF_PATH)


# -- loading a tiny program to ask the verifier (feature probes) ----------------------------
BPF_PROG_LOAD = 5
BPF_PROG_TYPE_TRACING, BPF_TRACE_FENTRY = 26, 24
BPF_SYSCALL = {"x86_64": 321, "aarch64": 280, "riscv64": 280, "ppc64le": 361, "s390x": 351}


def insn(code, dst=0, src=0, off=0, imm=0):
    """One BPF instruction (struct bpf_insn) as bytes."""
    return struct.pack("<BBhi", code, (src << 4) | dst, off, imm)


RETURN_0 = insn(0xB7, 0, imm=0) + insn(0x95)          # r0 = 0; exit


def libc():
    so = ctypes.CDLL(None, use_errno=True)
    so.syscall.restype = ctypes.c_long
    return so


class NoSyscall(OSError):
    """No bpf() syscall number is known for this machine."""


def bpf_call(cmd, attr):
    """bpf(cmd, attr) (attr: a ctypes buffer): the result, or -errno."""
    nr = BPF_SYSCALL.get(platform.machine())
    if nr is None:
        raise NoSyscall(f"no bpf() syscall number known for {platform.machine()}")
    so = libc()
    res = so.syscall(nr, cmd, attr, ctypes.c_uint(len(attr)))
    return res if res >= 0 else -ctypes.get_errno()


def try_load(insns, prog_type, expected_attach_type=0, attach_btf_id=0):
    """Load a program through bpf(BPF_PROG_LOAD) and close it at once: None when the kernel
    accepts it, else the reason (errno, and the verifier's last line when it logged one)."""
    code = ctypes.create_string_buffer(insns, len(insns))
    lic = ctypes.create_string_buffer(b"GPL")
    log = ctypes.create_string_buffer(1 << 16)
    attr = ctypes.create_string_buffer(128)       # union bpf_attr, BPF_PROG_LOAD part
    struct.pack_into("<IIQQIIQ", attr, 0, prog_type, len(insns) // 8, ctypes.addressof(code),
                     ctypes.addressof(lic), 1, len(log), ctypes.addressof(log))
    struct.pack_into("<I", attr, 68, expected_attach_type)
    struct.pack_into("<I", attr, 108, attach_btf_id)
    try:
        fd = bpf_call(BPF_PROG_LOAD, attr)
    except NoSyscall as e:
        return str(e)
    if fd >= 0:
        os.close(fd)
        return None
    err = -fd
    lines = [ln.strip() for ln in log.value.decode(errors="replace").splitlines() if ln.strip()]
    last = next((ln for ln in reversed(lines)
                 if not ln.startswith(("processed", "verification"))), "")
    return f"{os.strerror(err)}{': ' + last if last else ''}"


def fentry_refusal(btf, func="vfs_write"):
    """None when this kernel loads an fentry program on func, else why not (this project's
    6.18 machines refuse function tracing with EPERM on purpose; Debian's 6.1 should
    allow it). Only loads, never attaches."""
    try:
        fid = btf.func_id(func)
    except Exception as e:                       # BTFError: no such function
        return str(e)
    return try_load(RETURN_0, BPF_PROG_TYPE_TRACING, BPF_TRACE_FENTRY, fid)


@dataclass(frozen=True)
class HeadersInfo:
    build_dir: str
    present: bool
    version: str | None       # the version the headers describe (utsrelease.h / dir name)
    matches_kernel: bool


def headers_info(release=None):
    release = release or platform.release()
    build = f"/lib/modules/{release}/build"
    if not os.path.isdir(os.path.join(build, "include")):
        return HeadersInfo(build, False, None, False)
    version = None
    try:
        with open(os.path.join(build, "include/generated/utsrelease.h")) as f:
            m = re.search(r'"([^"]+)"', f.read())
            version = m.group(1) if m else None
    except OSError:
        version = os.path.basename(os.path.realpath(build)).removeprefix("linux-headers-")
    return HeadersInfo(build, True, version, version == release)


def effective_caps(status_path="/proc/self/status"):
    with open(status_path) as f:
        for line in f:
            if line.startswith("CapEff:"):
                return int(line.split()[1], 16)
    return 0


def has_cap(caps, cap):
    return bool(caps & (1 << cap))


def perf_event_paranoid(path="/proc/sys/kernel/perf_event_paranoid"):
    try:
        with open(path) as f:
            return int(f.read())
    except (OSError, ValueError):
        return None


def privilege_problems(caps=None, paranoid=None):
    """Lines naming what is missing to load the probes, empty when all is there."""
    caps = effective_caps() if caps is None else caps
    paranoid = perf_event_paranoid() if paranoid is None else paranoid
    problems = []
    if not (has_cap(caps, CAP_SYS_ADMIN) or (has_cap(caps, CAP_BPF) and has_cap(caps, CAP_PERFMON))):
        problems.append("needs root or CAP_BPF+CAP_PERFMON to load BPF programs; "
                        "fix: run as root (sudo surgewatch ...)")
    elif paranoid is not None and paranoid > 2 and not has_cap(caps, CAP_SYS_ADMIN):
        # Debian's kernels add level 3, where perf_event_open (how tracepoints are
        # attached) wants CAP_SYS_ADMIN whatever CAP_PERFMON says
        problems.append(f"kernel.perf_event_paranoid={paranoid} lets only CAP_SYS_ADMIN attach "
                        "tracepoints; fix: grant CAP_SYS_ADMIN (docs/surgewatch.service does; "
                        "it is dropped after loading) or sysctl kernel.perf_event_paranoid=2")
    if not (has_cap(caps, CAP_SYS_PTRACE) or has_cap(caps, CAP_DAC_READ_SEARCH)
            or has_cap(caps, CAP_SYS_ADMIN)):
        problems.append("needs CAP_SYS_PTRACE to read other processes' /proc/PID/fd; "
                        "fix: run as root")
    return problems


def require_environment():
    """Raise the first blocker as one actionable line: privileges, tracefs, headers, BTF."""
    problems = privilege_problems()
    if problems:
        raise EnvironmentProblem(problems[0])
    mount_tracefs()
    hdr = headers_info()
    if not hdr.present:
        raise EnvironmentProblem(
            f"no kernel headers at {hdr.build_dir} (bcc compiles probes against them); "
            "fix: make setup, or apt-get install linux-headers-$(uname -r)")
    if not btf_available():
        raise EnvironmentProblem(
            f"{BTF_PATH} missing: this kernel lacks BTF (CONFIG_DEBUG_INFO_BTF); "
            "surgewatch reads kernel struct offsets from it")


def import_bcc():
    """bcc's BPF class, imported late (unit tests and `doctor` run without it)."""
    try:
        from bcc import BPF
    except ImportError as e:
        raise EnvironmentProblem(
            f"python module bcc is not importable ({e}); fix: make setup "
            "(Debian's python3-bpfcc in a venv made with --system-site-packages)") from e
    return BPF

