"""Which hooks a probe counts on: fentry/fexit on kernel functions where the kernel allows
function tracing, syscall tracepoints elsewhere (config probes.write_hook).

On the fentry path (SW_FENTRY in collector/bpf/logwrites.c and collector/bpf/resets.c) the programs receive
BTF-typed kernel pointers (struct file *, struct sock *), so nothing walks the fd table and
no syscall tracepoint is attached: unrelated syscalls pay nothing. Whether the kernel allows
it is decided in the loader child by loading a tiny fentry program (kernel.fentry_refusal)
and by finding every target function in BTF, never assumed; this project's own machines
refuse function tracing on purpose (EPERM), Debian's 6.1 allows it.
"""
from collector.errors import ProbeUnavailable
from collector.probes import kernel
from collector.probes.btf import BTFError

HOOKS = ("auto", "fentry", "tracepoints", "raw")     # probes.write_hook: the one list
SOCKET_HOOKS = ("auto", "fentry", "tracepoints")     # the resets probe's (no raw hook)
FIX = 'fix: probes.write_hook = "auto" (or "tracepoints"), or unset SURGEWATCH_WRITE_HOOK'


def check_hook(hook, label, hooks=HOOKS):
    if hook not in hooks:
        raise ProbeUnavailable(f"{label}: unknown hook {hook!r}; "
                               f"fix: probes.write_hook = one of {', '.join(hooks)}")


def socket_hook(write_hook):
    """The resets probe's hook for probes.write_hook: fentry with "auto"/"fentry", the
    syscall tracepoints with "tracepoints"/"raw" (the raw hook is the log-write probe's)."""
    return write_hook if write_hook in ("auto", "fentry") else "tracepoints"


def refusal(btf, funcs):
    """None when every function in funcs is in the kernel's BTF and the kernel loads an
    fentry program on the first; else why not, in a few words."""
    for func in funcs:
        try:
            btf.func_id(func)
        except BTFError:
            return f"{func}() is not in the kernel's BTF"
    return kernel.fentry_refusal(btf, funcs[0])


def choose(hook, btf, funcs, label):
    """(use_fentry, reason): reason says why the tracepoints are used when fentry was
    wanted and refused (None otherwise). hook "fentry" insists: a refusal is an error."""
    if hook not in ("auto", "fentry"):
        return False, None
    why = refusal(btf, funcs)
    if why is None:
        return True, None
    if hook == "fentry":
        raise ProbeUnavailable(f"{label}: this kernel refuses the fentry path ({why}); {FIX}")
    return False, f"fentry refused: {why}"
