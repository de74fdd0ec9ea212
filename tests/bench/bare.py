"""The floor for the syscall benchmarks: empty programs on exactly the syscall
tracepoints `surgewatch run` attaches (both probes, tracepoint write hook). What surgewatch adds above this is its own
work; this much any syscall-tracepoint tool pays on this kernel.
Run as a process: prints "ready" once attached, detaches when stdin closes.

`--detach`: the floor of stopping instead: empty programs on every hook `surgewatch run`
attaches (the tcp/sock tracepoints too), detached as the daemon detaches (all attachment
fds closed in parallel threads); prints "detach_s SECONDS"."""
import os
import sys
import time

from collector.probes.logwrites import OPEN_SYSCALLS, WRITE_SYSCALLS
from collector.probes.resets import ACCEPT_SYSCALLS, IO_SYSCALLS
from collector.probes.kernel import import_bcc, mount_tracefs, tracepoint_exists
from collector.probes.loader import close_fds_parallel

TCP_HOOKS = ("sock:inet_sock_set_state", "tcp:tcp_destroy_sock", "tcp:tcp_send_reset",
             "tcp:tcp_receive_reset")

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
    detach = "--detach" in sys.argv[1:]
    if detach:
        for tp in TCP_HOOKS:
            if tracepoint_exists(*tp.split(":")):
                b.attach_tracepoint(tp=tp, fn_name="empty")
    print("ready", flush=True)
    sys.stdin.read()
    if not detach:
        b.cleanup()
        return
    t0 = time.monotonic()
    close_fds_parallel(list(b.tracepoint_fds.values()))
    print(f"detach_s {time.monotonic() - t0:.4f} {len(b.tracepoint_fds)}", flush=True)
    os._exit(0)             # bcc's clean-up would close the fds again


if __name__ == "__main__":
    main()
