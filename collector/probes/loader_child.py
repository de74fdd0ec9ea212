"""The loader child's side (`python -m collector.probes.loader_child SOCK_FD PARENT_PID`):
make the probe's plan, compile it with bcc, load its programs (verified in parallel),
attach its steps, and hand the daemon one SCM_RIGHTS message with the fds of its maps,
attachments and programs. With a cache directory, a plan compiled before is loaded from
there without bcc (collector/probes/progcache.py), and a new compile is stored after the
hand-over. The daemon's side, and why a child: collector/probes/loader.py."""
import ctypes
import json
import os
import signal
import socket
import sys
import threading
import time

from collector.errors import ProbeUnavailable
from collector.probes import bpfobj, kernel, progcache, registry
from collector.probes.loader import FAULT_ENV, MAX_MESSAGE


def _fault(probe, point):
    """SURGEWATCH_LOADER_FAULT="logwrites:compile:hang,resets:attached:die": a test seam
    (docs/reliability.md) that makes the child hang or die at a point of its work."""
    for item in os.environ.get(FAULT_ENV, "").split(","):
        parts = item.strip().split(":")
        if len(parts) == 3 and parts[0] in (probe, "*") and parts[1] == point:
            if parts[2] == "hang":
                while True:
                    time.sleep(3600)
            os.kill(os.getpid(), signal.SIGKILL)


def _attach(bpf, step):
    fn = step["fn"]
    if step["kind"] in ("fentry", "fexit"):      # attached by bcc at load (its autoload)
        fds = bpf.kfunc_entry_fds if step["kind"] == "fentry" else bpf.kfunc_exit_fds
        prefix, func = fn.split("__", 1)
        # collector/bpf/fentry.h: bcc with module support named it <prefix>__vmlinux__<func>
        fd = fds.get(fn.encode()) or fds[f"{prefix}__vmlinux__{func}".encode()]
        return [(f"{step['kind']}:{func}", fd)]
    tp = step["tp"]
    if step["kind"] == "raw":
        bpf.attach_raw_tracepoint(tp=tp, fn_name=fn)
        return [(f"raw:{tp}", bpf.raw_tracepoint_fds[tp.encode()])]
    bpf.attach_tracepoint(tp=tp, fn_name=fn)
    return [(tp, bpf.tracepoint_fds[tp.encode()])]


def _preload(bpf, steps):
    """Have the kernel verify the steps' programs at once, one thread each up to our CPUs
    (a privileged load verifies without a global lock; bcc's load_func is a ctypes call,
    which lets go of the GIL). Loading is most of attaching here: the log-write probe's
    programs take ~120 ms each to verify, one after another ~0.85 s of its start-up
    (docs/performance.md). bcc keeps each loaded program by name, so its step finds it
    loaded; returns {fn: exception} of those that failed, which their steps raise as
    their own load would have (the step's "else" or the report is as without this, and
    bcc prints the verifier's log once). A step's "else" programs are not loaded ahead
    (they may not be needed)."""
    load = getattr(bpf, "load_func", None)
    types = {"tracepoint": getattr(bpf, "TRACEPOINT", None),
             "raw": getattr(bpf, "RAW_TRACEPOINT", None)}
    todo = list({s["fn"]: types[s["kind"]] for s in steps
                 if types.get(s["kind"]) is not None}.items())
    try:
        cpus = len(os.sched_getaffinity(0))
    except OSError:
        cpus = 1
    workers = min(len(todo), cpus)
    failed = {}
    if load is None or workers < 2:
        return failed

    def work():
        while todo:
            try:
                fn, prog_type = todo.pop()
            except IndexError:
                return
            try:
                load(fn, prog_type)
            except Exception as e:     # bcc raises bare Exception; its step reports it
                failed[fn] = e

    threads = [threading.Thread(target=work, daemon=True) for _ in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return failed


def _run(request):
    """(description, fds, store): store() keeps what bcc compiled, after the hand-over."""
    name = request["probe"]
    probe = registry.probe_class(name)(**request["kwargs"])
    try:
        plan = probe.plan()
    except ProbeUnavailable as e:        # this kernel lacks what the probe needs
        return {"ok": False, "stage": "plan", "detail": str(e)}, [], None
    cache = progcache.Cache(request["cache"], name) if request.get("cache") else None
    key = progcache.key(plan) if cache else None
    _fault(name, "compile")
    if cache:
        obj = cache.get(key)
        stored = _from_cache(probe, plan, obj, cache) if obj is not None else None
        if stored:
            return stored + (None,)
        if cache.problem:
            _say(name, f"{cache.problem}; compiling with bcc")
        if obj is not None:        # its replayed plan fallbacks changed the probe's state
            plan = probe.plan()
    return _compile(name, probe, plan, cache, key)


def _from_cache(probe, plan, obj, cache):
    """Load and attach a stored object for this plan; None when it does not fit or load."""
    t0 = time.monotonic()
    try:
        for why in obj.reasons:          # the plan fallbacks the compile took, replayed
            if plan.fallback is None:
                raise bpfobj.LoadError("its plan fallbacks differ")
            plan = plan.fallback(why)
        known = {(s["kind"], s.get("tp"), s["fn"]) for s in plan.steps + [
            e for s in plan.steps for e in s.get("else", ())]}
        if any((s["kind"], s.get("tp"), s["fn"]) not in known for s in obj.steps) \
                or set(plan.maps) - set(obj.handed):
            raise bpfobj.LoadError("its steps or maps differ from the plan's")
        maps, links, progs = bpfobj.load(obj)
    except Exception as e:       # whatever it was, compiling is the way that works
        cache.problem = f"stored programs not used: {_one_line(e)}"
        return None
    _fault(probe.name, "attached")
    desc = {"ok": True, "maps": list(plan.maps), "links": [t for t, _ in links],
            "progs": [n for n, _ in progs], "fallbacks": list(obj.fallbacks),
            "compile_s": time.monotonic() - t0, "programs": "stored", "pid": os.getpid(),
            "state": probe.plan_state()}
    unused = [fd for m, fd in maps.items() if m not in plan.maps]
    for fd in unused:
        os.close(fd)
    return desc, [maps[m] for m in plan.maps] + [fd for _, fd in links] + \
        [fd for _, fd in progs]


def _compile(name, probe, plan, cache, key):
    BPF = kernel.import_bcc()
    t0 = time.monotonic()
    links, fallbacks, reasons = [], [], []
    while True:
        try:
            bpf = BPF(src_file=plan.source, cflags=plan.cflags)
            break
        except Exception as e:     # bcc raises bare Exception on compile/load failure
            if plan.fallback is None:
                return {"ok": False, "stage": "compile/load", "detail": _one_line(e)}, [], None
            fallbacks.append(plan.steps[0]["kind"])
            reasons.append(_one_line(e))
            plan = plan.fallback(reasons[-1])
    compile_s = time.monotonic() - t0
    failed = _preload(bpf, plan.steps)
    todo, made = list(plan.steps), []
    while todo:
        step = todo.pop(0)
        try:
            if step["fn"] in failed:
                raise failed[step["fn"]]
            links += _attach(bpf, step)
            made.append(step)
        except Exception as e:     # bcc raises bare Exception; libbcc printed the errno
            if "else" in step:
                fallbacks.append(step["tp"])
                todo[:0] = step["else"]
                continue
            return {"ok": False, "stage": "attach", "tp": step.get("tp", step["fn"]),
                    "detail": _one_line(e)}, [], None
    _fault(name, "attached")
    maps = [(m, bpf[m].map_fd) for m in plan.maps]
    progs = sorted((n.decode() if isinstance(n, bytes) else n, f.fd)
                   for n, f in bpf.funcs.items())       # every program it loaded
    desc = {"ok": True, "maps": [m for m, _ in maps], "links": [t for t, _ in links],
            "progs": [n for n, _ in progs], "fallbacks": fallbacks,
            "compile_s": compile_s, "programs": "compiled", "pid": os.getpid(),
            "state": probe.plan_state()}

    def store():
        from bcc import lib
        try:
            obj = bpfobj.extract(bpf, lib, made, dict(maps), fallbacks, reasons)
        except (bpfobj.NotStorable, OSError) as e:
            _say(name, f"compiled programs not stored: {e}")
            return
        before = cache.problem          # said already, when get() met it
        cache.put(key, obj)
        if cache.problem and cache.problem != before:
            _say(name, cache.problem)

    return desc, [fd for _, fd in maps] + [fd for _, fd in links] + \
        [fd for _, fd in progs], store if cache else None


def _say(name, text):
    print(f"surgewatch: {registry.label(name)}: {text}", file=sys.stderr, flush=True)


def _one_line(e):
    return " ".join(str(e).split()) or type(e).__name__


def child_main(argv):
    sock_fd, parent = int(argv[0]), int(argv[1])
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGKILL, 0, 0, 0)        # PR_SET_PDEATHSIG: die with the daemon
    if os.getppid() != parent:
        os._exit(1)
    sock = socket.socket(fileno=sock_fd)
    request = json.loads(sock.recv(MAX_MESSAGE))
    store = None
    try:
        desc, fds, store = _run(request)
    except Exception as e:          # anything else: reported, never a traceback
        desc, fds = {"ok": False, "stage": "load", "detail": _one_line(e)}, []
    socket.send_fds(sock, [json.dumps(desc).encode()], fds)
    if store is not None:           # after the hand-over: the daemon does not wait for it
        try:
            store()
        except Exception as e:      # a cache is never worth a failed start
            _say(request["probe"], f"compiled programs not stored: {_one_line(e)}")
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)          # no bcc clean-up: it would disable the events we handed over


if __name__ == "__main__":
    child_main(sys.argv[1:])
