"""The floor for the syscall benchmarks: empty programs on exactly the syscall
tracepoints `surgewatch run` attaches (both probes, tracepoint write hook). What surgewatch adds above this is its own
work; this much any syscall-tracepoint tool pays on this kernel.
Run as a process: prints "ready" once attached, detaches when stdin closes.

`--detach`: the floor of stopping instead: empty programs on every hook of the probes'
plans (the raw tcp/sock tracepoints too), detached as the daemon detaches (all attachment
fds closed in parallel threads); prints "detach_s SECONDS N".

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

# an empty program per kind of hook: bcc loads a function with one program type
EMPTY = "int empty(void *ctx) { return 0; }\nint empty_raw(void *ctx) { return 0; }"


def empty_fn(kind):
    return "empty_raw" if kind == "raw" else "empty"


def prog_type(BPF, kind):
    return BPF.RAW_TRACEPOINT if kind == "raw" else BPF.TRACEPOINT


def attach_fd(prog_fd, kind, tp):
    """Attach a loaded program to one hook of a plan (a step's kind and tp); the fd that
    holds the attachment."""
    from bcc.libbcc import lib

    if kind == "raw":
        fd = lib.bpf_attach_raw_tracepoint(prog_fd, tp.encode())
    else:
        cat, name = tp.encode().split(b":")
        fd = lib.bpf_attach_tracepoint(prog_fd, cat, name)
    if fd < 0:
        raise RuntimeError(f"cannot attach a program to {tp}")
    return fd


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
    loaded = []                      # (bpf, [(kind, tp, fn)])
    if kind == "floor":
        # one empty program per probe, as each probe is one BPF object: both attach to
        # sys_enter_sendto/sendmsg, and one object cannot attach a tracepoint twice
        for p in plans:
            loaded.append((BPF(text=EMPTY),
                           [(st["kind"], st["tp"], empty_fn(st["kind"])) for st in p.steps]))
    else:
        for p in plans:
            extra = os.environ.get("BENCH_EXTRA_CFLAGS", "").split()
            src = os.environ.get("BENCH_SRC_DIR")        # experiment: other sources
            src = os.path.join(src, os.path.basename(p.source)) if src else p.source
            loaded.append((BPF(src_file=src, cflags=p.cflags + extra),
                           [(st["kind"], st["tp"], st["fn"]) for st in p.steps]))
    if os.environ.get("BENCH_NO_EXIT") == "1":     # experiment: no sys_exit_* hooks
        loaded = [(b, [st for st in steps if ":sys_exit_" not in st[1]])
                  for b, steps in loaded]
    ids, progs = {}, {}
    for b, steps in loaded:
        for k, _tp, fn in steps:
            f = b.load_func(fn, prog_type(BPF, k))
            progs[(id(b), fn)] = f.fd
            ids[_prog_id(f.fd)] = fn
    state = {p.name: getattr(p, "fd_walk", "probe_read") for p in probes}
    print("ready " + json.dumps({"fd_walk": state}), flush=True)
    fds = []
    for line in sys.stdin:
        cmd = line.strip()
        if cmd == "attach":
            fds += [attach_fd(progs[(id(b), fn)], k, tp)
                    for b, steps in loaded for k, tp, fn in steps]
        elif cmd == "detach":
            close_fds_parallel(fds)
            fds = []
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
    fds = []
    if detach:                       # and the probes' other hooks: the tcp/sock ones, raw
        BPF = import_bcc()
        attached = {f"syscalls:{tp}" for tp in hooks}
        for plan in _plans()[1]:
            for st in plan.steps:
                if st["kind"] == "raw" or st["tp"] not in attached:
                    fn = b.load_func(empty_fn(st["kind"]), prog_type(BPF, st["kind"]))
                    fds.append(attach_fd(fn.fd, st["kind"], st["tp"]))
    print("ready", flush=True)
    sys.stdin.read()
    if not detach:
        b.cleanup()
        return
    fds += list(b.tracepoint_fds.values())
    t0 = time.monotonic()
    close_fds_parallel(fds)
    print(f"detach_s {time.monotonic() - t0:.4f} {len(fds)}", flush=True)
    os._exit(0)             # bcc's clean-up would close the fds again


if __name__ == "__main__":
    main()
