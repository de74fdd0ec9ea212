"""A probe's compiled programs and maps as a value (ProbeObject): taken from bcc after it
compiled and loaded them (extract), then created, loaded and attached again without bcc
(load). So a probe compiled once for a kernel and a source starts again without the
compiler (collector/probes/progcache.py keeps the objects; docs/architecture.md).

The object holds each program's instructions exactly as bcc gave them to the kernel, with
every map reference (a 64-bit immediate load of a map fd) turned into an index into its
map list. extract() checks that claim against the kernel: the program's tag (a hash of
its instructions, map fds zeroed) must equal the hash of what was taken, else the object
is not made. Tracepoint, raw tracepoint and fentry/fexit programs (the kernel function's
BTF id is looked up again at load). bpf(2) and perf_event_open(2) directly, as bcc does."""
import ctypes
import fcntl
import hashlib
import os
import platform
import struct
import threading
from dataclasses import dataclass

from collector.probes import kernel
from collector.probes.btf import BTF, BTFError
from collector.probes.libbpf import map_info, prog_info

FORMAT = 2       # of a stored object (progcache.py keys on it)
# step kind -> (BPF_PROG_TYPE_*, expected attach type): TRACEPOINT, RAW_TRACEPOINT, TRACING
PROG_TYPES = {"tracepoint": (5, 0), "raw": (17, 0), "fentry": (26, 24), "fexit": (26, 25)}
BPF_MAP_CREATE, BPF_PROG_LOAD, BPF_RAW_TRACEPOINT_OPEN = 0, 5, 17
LD_IMM64, PSEUDO_MAP_FD = 0x18, 1
PERF_EVENT_OPEN = {"x86_64": 298, "aarch64": 241, "riscv64": 241, "ppc64le": 319,
                   "s390x": 331}
PERF_TYPE_TRACEPOINT, PERF_SAMPLE_RAW, PERF_FLAG_FD_CLOEXEC = 2, 1 << 10, 8
PERF_EVENT_IOC_ENABLE, PERF_EVENT_IOC_SET_BPF = 0x2400, 0x40042408


class NotStorable(Exception):
    """What bcc loaded cannot be kept as an object (said why)."""


class LoadError(Exception):
    """A stored object did not create, load or attach here (said why, errno's words)."""


@dataclass
class ProbeObject:
    maps: list          # {"name", "type", "key_size", "value_size", "max_entries", "flags"}
    progs: list         # {"fn", "name", "type", "attach", "func", "license", "kern_version",
                        #  "insns", "refs"}
    steps: list         # the attachments as made: {"kind", "tp" or "func", "fn", "prog"}
    handed: dict        # map name the daemon gets -> index into maps
    fallbacks: list     # the steps that fell back to their "else" when bcc attached them
    reasons: list       # the plan fallbacks taken (Plan.fallback(reason)), in order


# -- instructions ------------------------------------------------------------------------
def _map_loads(insns):
    """(instruction index, src_reg, imm) of every 64-bit immediate load."""
    out = []
    for i in range(0, len(insns) - 8, 8):
        if insns[i] == LD_IMM64:
            out.append((i // 8, insns[i + 1] >> 4, struct.unpack_from("<i", insns, i + 4)[0]))
    return out


def tags(insns):
    """The kernel's program tag of these instructions, both ways kernels compute it: the
    first 8 bytes of SHA-1 (through 6.17) and of SHA-256 (6.18: the program digest) over
    the instructions with map fds zeroed (kernel/bpf/core.c bpf_prog_calc_tag)."""
    raw, was_ld_map = bytearray(insns), False
    for i in range(0, len(raw), 8):
        src, off = raw[i + 1] >> 4, struct.unpack_from("<h", raw, i + 2)[0]
        if not was_ld_map and raw[i] == LD_IMM64 and src in (1, 2):
            was_ld_map = True
            raw[i + 4:i + 8] = bytes(4)
        elif was_ld_map and raw[i] == 0 and raw[i + 1] == 0 and off == 0:
            was_ld_map = False
            raw[i + 4:i + 8] = bytes(4)
        else:
            was_ld_map = False
    return {hashlib.sha1(raw).digest()[:8], hashlib.sha256(raw).digest()[:8]}


def patch(insns, refs, fds):
    """The instructions with each map reference (instruction index, map index) set to fds."""
    out = bytearray(insns)
    for at, index in refs:
        struct.pack_into("<i", out, at * 8 + 4, fds[index])
    return bytes(out)


# -- the kernel calls ----------------------------------------------------------------------
def _bpf(cmd, attr):
    try:
        return kernel.bpf_call(cmd, attr)
    except kernel.NoSyscall as e:
        raise LoadError(str(e)) from None


def _create_map(m):
    attr = ctypes.create_string_buffer(48)
    struct.pack_into("<IIIII", attr, 0, m["type"], m["key_size"], m["value_size"],
                     m["max_entries"], m["flags"])
    attr[28:28 + len(m["name"])] = m["name"].encode()[:15]
    fd = _bpf(BPF_MAP_CREATE, attr)
    if fd < 0:
        raise LoadError(f"map {m['name']}: {os.strerror(-fd)}")
    return fd


def _load_prog(p, fds):
    code = patch(p["insns"], p["refs"], fds)
    buf = ctypes.create_string_buffer(code, len(code))
    lic = ctypes.create_string_buffer(p["license"].encode())
    attr = ctypes.create_string_buffer(128)
    struct.pack_into("<IIQQ", attr, 0, p["type"], len(code) // 8, ctypes.addressof(buf),
                     ctypes.addressof(lic))
    struct.pack_into("<I", attr, 40, p["kern_version"])
    attr[48:48 + len(p["name"])] = p["name"].encode()[:15]
    struct.pack_into("<I", attr, 68, p["attach"])
    if p["func"]:                    # fentry/fexit: the kernel function's BTF id, today's
        try:
            struct.pack_into("<I", attr, 108, BTF.load().func_id(p["func"]))
        except (BTFError, OSError) as e:
            raise LoadError(f"program {p['fn']}: {e}") from None
    for _ in range(5):               # EAGAIN: the verifier was interrupted; libbpf retries too
        fd = _bpf(BPF_PROG_LOAD, attr)
        if fd != -11:
            break
    if fd < 0:
        raise LoadError(f"program {p['fn']}: {os.strerror(-fd)}")
    return fd


def _attach_tracepoint(tp, prog_fd):
    root = kernel.tracefs_root()
    category, event = tp.split(":", 1)
    try:
        with open(os.path.join(root or "", "events", category, event, "id")) as f:
            tp_id = int(f.read())
    except (OSError, ValueError, TypeError) as e:
        raise LoadError(f"{tp}: no tracepoint id ({e})") from None
    nr = PERF_EVENT_OPEN.get(platform.machine())
    if nr is None:
        raise LoadError(f"no perf_event_open() syscall number known for {platform.machine()}")
    attr = ctypes.create_string_buffer(112)          # struct perf_event_attr, VER5
    struct.pack_into("<IIQQQ", attr, 0, PERF_TYPE_TRACEPOINT, 112, tp_id, 1, PERF_SAMPLE_RAW)
    struct.pack_into("<I", attr, 48, 1)              # wakeup_events
    fd = kernel.libc().syscall(nr, attr, -1, 0, -1, PERF_FLAG_FD_CLOEXEC)
    if fd < 0:
        raise LoadError(f"{tp}: perf_event_open: {os.strerror(ctypes.get_errno())}")
    try:
        fcntl.ioctl(fd, PERF_EVENT_IOC_SET_BPF, prog_fd)
        fcntl.ioctl(fd, PERF_EVENT_IOC_ENABLE, 0)
    except OSError as e:
        os.close(fd)
        raise LoadError(f"{tp}: {e.strerror}") from None
    return fd


def _attach_raw(tp, prog_fd):
    """A raw tracepoint by name; with tp None, an fentry/fexit program on its function."""
    name = ctypes.create_string_buffer(tp.encode()) if tp else None
    attr = ctypes.create_string_buffer(16)
    struct.pack_into("<QI", attr, 0, ctypes.addressof(name) if name else 0, prog_fd)
    fd = _bpf(BPF_RAW_TRACEPOINT_OPEN, attr)
    if fd < 0:
        raise LoadError(f"{'raw:' + tp if tp else 'fentry'}: {os.strerror(-fd)}")
    return fd


# -- from bcc, and back --------------------------------------------------------------------
def _bcc_name(bpf, step):
    """The name bcc loaded a step's program under: fentry programs are named
    <prefix>__vmlinux__<func> by a bcc with module support (collector/bpf/fentry.h)."""
    fn = step["fn"]
    if step["kind"] in ("fentry", "fexit") and fn.encode() not in bpf.funcs:
        prefix, func = fn.split("__", 1)
        return f"{prefix}__vmlinux__{func}"
    return fn


def _func_of(name):
    """The kernel function of an fentry program's name: kfunc__[vmlinux__]<func>."""
    rest = name.split("__", 1)[1]
    return rest.removeprefix("vmlinux__")


def extract(bpf, lib, steps, handed_fds, fallbacks, reasons):
    """The object of what bcc compiled and loaded: `bpf` a bcc BPF, `lib` bcc's libbcc,
    `steps` the attachments made, `handed_fds` {map name: fd} the daemon gets."""
    odd = [s["kind"] for s in steps if s["kind"] not in PROG_TYPES]
    if odd:
        raise NotStorable(f"a step of kind {odd[0]}")
    maps, index = [], {}

    def map_index(fd):
        if fd not in index:
            info = map_info(fd)
            index[fd] = len(maps)
            maps.append({"name": info.name.decode("ascii", "replace"), "type": info.type,
                         "key_size": info.key_size, "value_size": info.value_size,
                         "max_entries": info.max_entries, "flags": info.map_flags})
        return index[fd]

    handed = {name: map_index(fd) for name, fd in handed_fds.items()}
    lic = (lib.bpf_module_license(bpf.module) or b"GPL").decode()
    kver = int(lib.bpf_module_kern_version(bpf.module))
    out_steps, kinds = [], {}
    for s in steps:
        prog = _bcc_name(bpf, s)
        kinds[prog] = s["kind"]
        step = {"kind": s["kind"], "fn": s["fn"], "prog": prog}
        if "tp" in s:
            step["tp"] = s["tp"]
        out_steps.append(step)
    progs = []
    for fn, f in sorted(bpf.funcs.items()):
        fn = fn.decode() if isinstance(fn, bytes) else fn
        insns = bytes(bpf.dump_func(fn))
        ptype, tag, name = prog_info(f.fd)
        if tag not in tags(insns):
            raise NotStorable(f"program {fn}: the kernel holds other instructions than bcc's")
        refs = []
        for at, src, imm in _map_loads(insns):
            if src == PSEUDO_MAP_FD:
                refs.append((at, map_index(imm)))
            elif src != 0:
                raise NotStorable(f"program {fn}: a 64-bit load of kind {src}")
        kind = kinds.get(fn, "tracepoint" if ptype == 5 else "raw")
        if PROG_TYPES[kind][0] != ptype:
            raise NotStorable(f"program {fn}: of type {ptype}, its step says {kind}")
        func = _func_of(fn) if kind in ("fentry", "fexit") else None
        progs.append({"fn": fn, "name": name, "type": ptype, "attach": PROG_TYPES[kind][1],
                      "func": func, "license": lic, "kern_version": kver,
                      "insns": patch(insns, refs, range(len(maps))), "refs": refs})
    return ProbeObject(maps, progs, out_steps, handed, list(fallbacks), list(reasons))


def load(obj):
    """Create the object's maps, load its programs (verified in parallel, a thread per CPU)
    and attach its steps. Returns ({map name: fd} handed over, [(link name, fd)],
    [(program name, fd)]); on any failure closes what it made and raises LoadError."""
    made = []
    try:
        fds = []
        for m in obj.maps:
            fds.append(_create_map(m))
            made.append(fds[-1])
        progs = _load_progs(obj.progs, fds, made)
        links = []
        for s in obj.steps:
            prog = progs[s["prog"]]
            if s["kind"] == "tracepoint":
                fd, link = _attach_tracepoint(s["tp"], prog), s["tp"]
            elif s["kind"] == "raw":
                fd, link = _attach_raw(s["tp"], prog), f"raw:{s['tp']}"
            else:
                fd, link = _attach_raw(None, prog), f"{s['kind']}:{_func_of(s['prog'])}"
            made.append(fd)
            links.append((link, fd))
    except BaseException:
        for fd in made:
            os.close(fd)
        raise
    return ({name: fds[i] for name, i in obj.handed.items()}, links, sorted(progs.items()))


def _load_progs(progs, fds, made):
    todo, loaded, failed = list(progs), {}, []
    try:
        cpus = len(os.sched_getaffinity(0))
    except OSError:
        cpus = 1

    def work():
        while todo:
            try:
                p = todo.pop()
            except IndexError:
                return
            try:
                loaded[p["fn"]] = _load_prog(p, fds)
            except LoadError as e:
                failed.append(e)
            except Exception as e:       # a thread's exception would be a traceback
                failed.append(LoadError(f"program {p.get('fn')}: {e!r}"))

    threads = [threading.Thread(target=work, daemon=True)
               for _ in range(max(1, min(len(todo), cpus)))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    made.extend(loaded.values())
    if failed:
        raise failed[0]
    return loaded
