"""The fd walk both probes share (collector/bpf/fdwalk.h): its kernel fields, its macros, and which
variant this kernel runs.

Variants (`fd_walk` in each probe's state):
- "btf": bpf_get_current_task_btf() and BTF-typed direct loads down to fdt->fd[fd]
  (offsets from the running kernel's BTF); the struct file * read from the array is a
  scalar to the verifier, so the file's fields are one probe read. Needs 5.11+ and a
  verifier that accepts the loads; on kernels whose verifier does not type fdt->fd's
  target as memory (before ~6.16), the array slot is one more probe read ("fd_slot").
- "probe_read": a bpf_probe_read_kernel chain from bpf_get_current_task() (any kernel
  with BTF for the offsets).
The choice is made by loading a small program that does the BTF walk's loads with the
same offsets (feature probe, in the loader child); a refusal falls back to "probe_read"
and the reason is kept in the probe's state, never silent.
"""
import os

from collector.errors import ProbeUnavailable
from collector.probes import kernel
from collector.probes.btf import BTFError

ENV = "SURGEWATCH_FD_WALK"          # test seam / override: auto (default), btf, probe_read
WALKS = ("btf", "probe_read")
# btf_slot_read: the btf walk with the fd slot as a probe read (what verifiers that do not
# type fdt->fd's target as memory get), so this host's tests can run that variant too
ASKABLE = ("auto",) + WALKS + ("btf_slot_read",)

# (macro, struct, member): the kernel fields the shared walk reads; each probe adds its own
FIELDS = (
    ("TASK_FILES", "task_struct", "files"),
    ("FILES_FDT", "files_struct", "fdt"),
    ("FDT_MAX_FDS", "fdtable", "max_fds"),
    ("FDT_FD", "fdtable", "fd"),
    ("FILE_F_INODE", "file", "f_inode"),
    ("FILE_PRIVATE_DATA", "file", "private_data"),   # a socket file's struct socket *
    ("INODE_I_MODE", "inode", "i_mode"),
    ("SOCKET_SK", "socket", "sk"),
    ("SOCK_FAMILY", "sock_common", "skc_family"),
    ("TASK_GROUP_LEADER", "task_struct", "group_leader"),   # sw_process_comm
    ("TASK_COMM", "task_struct", "comm"),
)
SIZES = {"TASK_FILES": 8, "FILES_FDT": 8, "FDT_FD": 8, "FDT_MAX_FDS": 4, "FILE_F_INODE": 8,
         "FILE_PRIVATE_DATA": 8, "INODE_I_MODE": 2, "SOCKET_SK": 8, "SOCK_FAMILY": 2,
         "TASK_GROUP_LEADER": 8, "TASK_COMM": 16}

# Fields that sit close together are read in one bpf_probe_read_kernel (each read costs
# 7-15 ns here whatever its size up to a cache line or two): name -> (fields, from the
# struct's start?). A chunk further than MAX_CHUNK bytes is read field by field.
CHUNKS = {"SW_FDT_CHUNK": ("FDT_MAX_FDS", "FDT_FD"),
          "SW_INODE_CHUNK": ("INODE_I_MODE", "INODE_I_SB", "INODE_I_INO",
                             "INODE_I_GENERATION")}
MAX_CHUNK = 256


def btf_macros(btf, fields, label):
    """OFF_*/SZ_* for fields, plus the chunk macros; ProbeUnavailable names what is missing."""
    macros = {}
    for macro, struct_name, member in fields:
        try:
            off, size = btf.member(struct_name, member)
        except BTFError as e:
            raise ProbeUnavailable(f"{label}: {e}; this kernel's layout is unsupported") from e
        macros[f"OFF_{macro}"] = off
        macros[f"SZ_{macro}"] = size
    for macro, want in SIZES.items():
        if f"SZ_{macro}" in macros and macros[f"SZ_{macro}"] != want:
            raise ProbeUnavailable(f"{label}: {macro.lower()} has size {macros[f'SZ_{macro}']}, "
                                   f"expected {want}; this kernel's layout is unsupported")
    macros.update(chunk_macros(macros))
    return macros


def chunk_macros(macros):
    """SW_FDT_CHUNK / SW_INODE_CHUNK = bytes from the struct's start covering the fields;
    SW_FILE_LO / SW_FILE_LEN = the span of struct file holding f_inode and private_data
    (one read of the scalar struct file * in either walk)."""
    out = {}
    for name, fields in CHUNKS.items():
        if not all(f"OFF_{f}" in macros for f in fields):
            continue
        end = max(macros[f"OFF_{f}"] + macros[f"SZ_{f}"] for f in fields)
        if end <= MAX_CHUNK:
            out[name] = (end + 7) // 8 * 8
    if "OFF_FILE_F_INODE" not in macros or "OFF_FILE_PRIVATE_DATA" not in macros:
        return out
    lo = min(macros["OFF_FILE_F_INODE"], macros["OFF_FILE_PRIVATE_DATA"])
    hi = max(macros["OFF_FILE_F_INODE"], macros["OFF_FILE_PRIVATE_DATA"]) + 8
    if hi - lo <= MAX_CHUNK:
        out["SW_FILE_LO"], out["SW_FILE_LEN"] = lo, (hi - lo + 7) // 8 * 8
    return out


def requested(label="probes"):
    """The walk asked for: $SURGEWATCH_FD_WALK (auto, btf, probe_read), read here only."""
    want = os.environ.get(ENV, "auto").strip() or "auto"
    if want not in ASKABLE:
        raise ProbeUnavailable(f"{label}: unknown fd walk {want!r} in ${ENV}; "
                               f"fix: {ENV}=auto, btf or probe_read (or unset it)")
    return want


# -- the feature probe: the BTF walk's loads, assembled by hand, loaded once ------------------
BPF_PROG_TYPE_TRACEPOINT = 5
FN_GET_CURRENT_TASK_BTF = 158


_insn = kernel.insn


def probe_program(m, tp_fd_off, slot_direct):
    """A tracepoint program doing the BTF walk's loads at the offsets in m: task->files->fdt
    ->{max_fds, fd}, and (slot_direct) fdt->fd[fd] with fd from the context, as
    collector/bpf/fdwalk.h does. Returns the instructions as bytes."""
    LDX_DW, LDX_W, MOV_REG, MOV_IMM = 0x79, 0x61, 0xBF, 0xB7
    JEQ_IMM, JGE_REG, LSH_IMM, ADD_REG, CALL, EXIT = 0x15, 0x3D, 0x67, 0x0F, 0x85, 0x95
    body = [
        _insn(MOV_REG, 9, 1),                                    # r9 = ctx
        _insn(CALL, imm=FN_GET_CURRENT_TASK_BTF),                # r0 = current (BTF typed)
        _insn(LDX_DW, 1, 0, m["OFF_TASK_FILES"]),                # r1 = task->files
        ("jz", 1),
        _insn(LDX_DW, 2, 1, m["OFF_FILES_FDT"]),                 # r2 = files->fdt
        ("jz", 2),
        _insn(LDX_W, 3, 2, m["OFF_FDT_MAX_FDS"]),                # r3 = fdt->max_fds
        _insn(LDX_DW, 4, 2, m["OFF_FDT_FD"]),                    # r4 = fdt->fd
        ("jz", 4),
    ]
    if slot_direct:
        body += [
            _insn(LDX_W, 5, 9, tp_fd_off),                       # r5 = fd (unknown scalar)
            ("jge", 5, 3),                                       # fd >= max_fds: out
            _insn(LSH_IMM, 5, imm=3),
            _insn(ADD_REG, 4, 5),
            _insn(LDX_DW, 0, 4, 0),                              # r0 = fdt->fd[fd]
        ]
    n = len(body)
    out = []
    for i, ins in enumerate(body):                               # jumps go to the exit
        skip = n - i - 1
        if isinstance(ins, tuple) and ins[0] == "jz":
            ins = _insn(JEQ_IMM, ins[1], 0, skip)
        elif isinstance(ins, tuple):
            ins = _insn(JGE_REG, ins[1], ins[2], skip)
        out.append(ins)
    out += [_insn(MOV_IMM, 0, imm=0), _insn(EXIT)]
    return b"".join(out)


def load_test_program(insns):
    """Load a tracepoint program and close it: None if the kernel accepts it, else why."""
    return kernel.try_load(insns, BPF_PROG_TYPE_TRACEPOINT)


def choose(macros, tp_fd_off, label, want=None, load=load_test_program):
    """Which walk this kernel runs: (walk, extra macros, state). state records the
    decision and, for a fallback, the kernel's reason."""
    want = want or requested(label)
    if want == "probe_read":
        return "probe_read", {}, {"fd_walk": "probe_read", "fd_walk_reason":
                                  f"forced by {ENV}=probe_read"}
    if want == "btf_slot_read":
        part = load(probe_program(macros, tp_fd_off, slot_direct=False))
        if part is not None:
            raise ProbeUnavailable(f"{label}: this kernel refuses the BTF fd walk ({part}); "
                                   f"fix: unset {ENV}")
        return "btf", {"SW_FD_WALK_BTF": 1, "SW_FD_SLOT_READ": 1}, {
            "fd_walk": "btf", "fd_slot": "probe_read",
            "fd_walk_reason": f"fd slot by probe read forced by {ENV}=btf_slot_read"}
    full = load(probe_program(macros, tp_fd_off, slot_direct=True))
    if full is None:
        return "btf", {"SW_FD_WALK_BTF": 1}, {"fd_walk": "btf", "fd_slot": "direct"}
    part = load(probe_program(macros, tp_fd_off, slot_direct=False))
    if part is None:
        return "btf", {"SW_FD_WALK_BTF": 1, "SW_FD_SLOT_READ": 1}, {
            "fd_walk": "btf", "fd_slot": "probe_read",
            "fd_walk_reason": f"fdt->fd[fd] not loadable directly ({full})"}
    if want == "btf":
        raise ProbeUnavailable(f"{label}: this kernel refuses the BTF fd walk ({part}); "
                               f"fix: unset {ENV} (falls back to probe reads)")
    return "probe_read", {}, {"fd_walk": "probe_read",
                              "fd_walk_reason": f"BTF walk refused by the kernel: {part}"}
