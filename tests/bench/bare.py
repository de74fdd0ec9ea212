"""The floor for the syscall benchmarks: empty programs on exactly the syscall
tracepoints `surgewatch run` attaches (both probes, tracepoint write hook). What surgewatch adds above this is its own
work; this much any syscall-tracepoint tool pays on this kernel.
Run as a process: prints "ready" once attached, detaches when stdin closes."""
import sys

from collector.probes.logwrites import OPEN_SYSCALLS, WRITE_SYSCALLS
from collector.probes.resets import ACCEPT_SYSCALLS, IO_SYSCALLS
from collector.probes.kernel import import_bcc, mount_tracefs, tracepoint_exists

EMPTY = "int empty(void *ctx) { return 0; }"


def main():
    mount_tracefs()
    b = import_bcc()(text=EMPTY)
    hooks = [f"sys_enter_{sc}" for sc in WRITE_SYSCALLS]
    hooks += [f"sys_{side}_{sc}" for sc in OPEN_SYSCALLS for side in ("enter", "exit")]
    hooks += [f"sys_exit_{sc}" for sc in ACCEPT_SYSCALLS]
    hooks += [f"sys_enter_{sc}" for sc in IO_SYSCALLS]
    for tp in hooks:
        if tracepoint_exists("syscalls", tp):
            b.attach_tracepoint(tp=f"syscalls:{tp}", fn_name="empty")
    print("ready", flush=True)
    sys.stdin.read()
    b.cleanup()


if __name__ == "__main__":
    main()
