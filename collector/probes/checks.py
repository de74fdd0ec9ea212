"""What `surgewatch doctor` asks each probe (Probe.checks): one Check per line it prints."""
from dataclasses import dataclass


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""
    blocking: bool = True     # a failing non-blocking check is information only


@dataclass(frozen=True)
class DoctorHost:
    """What doctor found before asking the probes: the kernel's BTF (None: unreadable),
    the tracefs root (None: not mounted or not readable), whether tiny programs may be
    loaded (root), and, then, why fentry is refused (None: every probe's functions load)."""
    btf: object
    tracefs_root: str | None
    privileged: bool
    fentry_refused: str | None = None
