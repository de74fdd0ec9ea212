"""The floor for the syscall benchmarks: empty programs on exactly the syscall
tracepoints `surgewatch run` attaches (both probes, tracepoint write hook). What surgewatch adds above this is its own
work; this much any syscall-tracepoint tool pays on this kernel.
Run as a process: prints "ready" once attached, detaches when stdin closes.

`--detach`: the floor of stopping instead: empty programs on every hook `surgewatch run`
attaches (the tcp/sock tracepoints too), detached as the daemon detaches (all attachment
fds closed in parallel threads); prints "detach_s SECONDS".

`--serve [probes|floor]`: the paired benchmark's tracer (tests/bench/syscalls.py). Compiles
once, then attaches and detaches on request (stdin "attach" / "detach" / "ids", one reply
line each) on exactly the hooks of the probes' own plans: `probes` runs surgewatch's
programs (the cflags plan() makes, so SURGEWATCH_FD_WALK applies), `floor` an empty
program on the same hooks."""
import ctypes
import json
import os
import sys
import time

from collector.probes.logwrite_kernel import WRITE_SYSCALLS
from collector.probes.reset_kernel import ACCEPT_SYSCALLS, IO_SYSCALLS
from collector.probes.kernel import import_bcc, mount_tracefs, tracepoint_exists
from collector.probes.detach import close_fds_parallel

TCP_HOOKS = ("sock:inet_sock_set_state", "tcp:tcp_destroy_sock", "tcp:tcp_send_reset",
             "tcp:tcp_receive_reset")

EMPTY = "int empty(void *ctx) { return 0; }"


def _prog_id(fd):
    from collector.probes.libbpf import lib

    info = (ctypes.c_uint32 * 2)()            # struct bpf_prog_info starts: type, id
    size = ctypes.c_uint32(ctypes.sizeof(info))
    if lib().bpf_obj_get_info_by_fd(fd, info, ctypes.byref(size)) < 0:
        return None
    return info[1]


def _plans():
    from collector.probes.logwrites import LogWriteProbe
    from collector.probes.resets import ResetProbe

    probes = [LogWriteProbe(hook="tracepoints"), ResetProbe()]
    return probes, [p.plan() for p in probes]


def serve(kind):
    """Attach/detach on request; one reply line per request."""
    mount_tracefs()
    BPF = import_bcc()
    probes, plans = _plans()
    loaded = []                      # (bpf, [(tp, fn)])
    if kind == "floor":
        # one empty program per probe, as each probe is one BPF object: both attach to
        # sys_enter_sendto/sendmsg, and one object cannot attach a tracepoint twice
        for p in plans:
            loaded.append((BPF(text=EMPTY), [(st["tp"], "empty") for st in p.steps]))
    else:
        for p in plans:
            extra = os.environ.get("BENCH_EXTRA_CFLAGS", "").split()
            src = os.environ.get("BENCH_SRC_DIR")        # experiment: other sources
            src = os.path.join(src, os.path.basename(p.source)) if src else p.source
            loaded.append((BPF(src_file=src, cflags=p.cflags + extra),
                           [(st["tp"], st["fn"]) for st in p.steps]))
    if os.environ.get("BENCH_NO_EXIT") == "1":     # experiment: no sys_exit_* hooks
        loaded = [(b, [(tp, fn) for tp, fn in steps if ":sys_exit_" not in tp])
                  for b, steps in loaded]
    ids = {}
    for b, steps in loaded:
        for _tp, fn in steps:
            f = b.load_func(fn, BPF.TRACEPOINT)
            ids[_prog_id(f.fd)] = fn
    state = {p.name: getattr(p, "fd_walk", "probe_read") for p in probes}
    print("ready " + json.dumps({"fd_walk": state}), flush=True)
    for line in sys.stdin:
        cmd = line.strip()
        if cmd == "attach":
            for b, steps in loaded:
                for tp, fn in steps:
                    b.attach_tracepoint(tp=tp, fn_name=fn)
        elif cmd == "detach":
            fds = [fd for b, _ in loaded for fd in b.tracepoint_fds.values()]
            for b, _ in loaded:
                b.tracepoint_fds.clear()
            close_fds_parallel(fds)
        elif cmd == "ids":
            print(json.dumps(ids), flush=True)
            continue
        print("ok", flush=True)
    os._exit(0)            # bcc's clean-up would close the fds again


def main():
    if "--serve" in sys.argv[1:]:
        args = sys.argv[sys.argv.index("--serve") + 1:]
        return serve(args[0] if args else "floor")
    mount_tracefs()
    b = import_bcc()(text=EMPTY)
    hooks = [f"sys_enter_{sc}" for sc in WRITE_SYSCALLS]
    hooks += [f"sys_exit_{sc}" for sc in ACCEPT_SYSCALLS]
    if not (tracepoint_exists("sock", "sock_send_length")
            and tracepoint_exists("sock", "sock_recv_length")):
        hooks += [f"sys_enter_{sc}" for sc in IO_SYSCALLS]     # else the resets probe
    for tp in hooks:                                            # uses those (6.4+)
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
