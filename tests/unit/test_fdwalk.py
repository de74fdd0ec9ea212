"""The fd walk's choice (collector/probes/fdwalk.py) without a kernel: the feature-probe
program's encoding, and every fallback recorded, never silent."""
import struct

import pytest

from collector.errors import ProbeUnavailable
from collector.probes import fdwalk

M = {"OFF_TASK_FILES": 1824, "OFF_FILES_FDT": 32, "OFF_FDT_MAX_FDS": 0, "OFF_FDT_FD": 8}


def insns(prog):
    return [struct.unpack_from("<BBhi", prog, i) for i in range(0, len(prog), 8)]


def test_probe_program_does_the_walks_loads_at_the_btf_offsets():
    full = insns(fdwalk.probe_program(M, 16, slot_direct=True))
    loads = [(op, regs >> 4, off) for op, regs, off, _imm in full if op in (0x79, 0x61)]
    # task->files, files->fdt, fdt->max_fds, fdt->fd, the fd from ctx, fdt->fd[fd]
    assert loads == [(0x79, 0, 1824), (0x79, 1, 32), (0x61, 2, 0), (0x79, 2, 8),
                     (0x61, 9, 16), (0x79, 4, 0)]
    assert full[1] == (0x85, 0, 0, fdwalk.FN_GET_CURRENT_TASK_BTF)
    assert full[-1][0] == 0x95 and full[-2] == (0xB7, 0, 0, 0)      # r0 = 0; exit
    part = insns(fdwalk.probe_program(M, 16, slot_direct=False))
    assert len(part) < len(full) and (0x61, 9 << 4, 16, 0) not in part


def test_every_jump_of_the_probe_program_lands_on_the_exit_path():
    prog = insns(fdwalk.probe_program(M, 16, slot_direct=True))
    out = len(prog) - 2
    for i, (op, _regs, off, _imm) in enumerate(prog):
        if op in (0x15, 0x3D):
            assert i + 1 + off == out, i


def fake_loader(refuse_direct, refuse_all):
    def load(prog):
        direct = any(op == 0x61 and regs >> 4 == 9 for op, regs, _o, _i in insns(prog))
        if refuse_all or (direct and refuse_direct):
            return "Permission denied: R1 invalid mem access 'scalar'"
        return None
    return load


def test_btf_walk_when_the_kernel_accepts_it():
    walk, macros, state = fdwalk.choose(M, 16, "p", want="auto", load=fake_loader(False, False))
    assert (walk, macros) == ("btf", {"SW_FD_WALK_BTF": 1})
    assert state == {"fd_walk": "btf", "fd_slot": "direct"}


def test_fd_slot_by_probe_read_when_the_verifier_refuses_the_direct_slot():
    walk, macros, state = fdwalk.choose(M, 16, "p", want="auto", load=fake_loader(True, False))
    assert walk == "btf" and macros == {"SW_FD_WALK_BTF": 1, "SW_FD_SLOT_READ": 1}
    assert state["fd_slot"] == "probe_read" and "invalid mem access" in state["fd_walk_reason"]


def test_fallback_to_probe_reads_is_recorded_with_the_kernels_reason():
    walk, macros, state = fdwalk.choose(M, 16, "p", want="auto", load=fake_loader(True, True))
    assert (walk, macros) == ("probe_read", {})
    assert state["fd_walk"] == "probe_read"
    assert state["fd_walk_reason"].startswith("BTF walk refused by the kernel: Permission")


def test_forced_probe_read_loads_nothing_and_says_so():
    def load(_prog):
        raise AssertionError("no feature probe when the walk is forced")
    walk, macros, state = fdwalk.choose(M, 16, "p", want="probe_read", load=load)
    assert (walk, macros) == ("probe_read", {})
    assert "SURGEWATCH_FD_WALK=probe_read" in state["fd_walk_reason"]


def test_forced_btf_on_a_kernel_that_refuses_it_is_one_line_with_the_fix():
    with pytest.raises(ProbeUnavailable) as e:
        fdwalk.choose(M, 16, "log-write probe", want="btf", load=fake_loader(True, True))
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("log-write probe:") and "fix: unset" in msg


def test_env_seam_is_read_in_one_place(monkeypatch):
    monkeypatch.delenv(fdwalk.ENV, raising=False)
    assert fdwalk.requested() == "auto"
    for v in ("auto", "btf", "probe_read", "btf_slot_read"):
        monkeypatch.setenv(fdwalk.ENV, v)
        assert fdwalk.requested() == v
    monkeypatch.setenv(fdwalk.ENV, "kprobe")
    with pytest.raises(ProbeUnavailable, match=r"unknown fd walk 'kprobe'.*fix: "):
        fdwalk.requested("resets probe")


def test_field_sizes_other_than_the_walks_assume_are_refused():
    class FakeBTF:
        def member(self, struct_name, member):
            return (0, 4) if member == "files" else (8, fdwalk.SIZES.get(
                next(m for m, s, f in fdwalk.FIELDS if f == member), 8))
    with pytest.raises(ProbeUnavailable, match="task_files has size 4"):
        fdwalk.btf_macros(FakeBTF(), fdwalk.FIELDS, "p")


def test_fentry_probe_without_the_function_in_btf_says_so():
    from collector.probes import kernel
    from collector.probes.btf import BTFError

    class NoFunc:
        def func_id(self, name):
            raise BTFError(f"function {name} not in kernel BTF")
    assert kernel.fentry_refusal(NoFunc()) == "function vfs_write not in kernel BTF"


def test_return_0_program_is_two_instructions():
    from collector.probes import kernel

    assert insns(kernel.RETURN_0) == [(0xB7, 0, 0, 0), (0x95, 0, 0, 0)]


def test_forced_slot_read_variant_is_recorded_and_refused_when_the_walk_is():
    walk, macros, state = fdwalk.choose(M, 16, "p", want="btf_slot_read",
                                        load=fake_loader(False, False))
    assert macros == {"SW_FD_WALK_BTF": 1, "SW_FD_SLOT_READ": 1}
    assert (walk, state["fd_slot"]) == ("btf", "probe_read")
    assert "btf_slot_read" in state["fd_walk_reason"]
    with pytest.raises(ProbeUnavailable, match="refuses the BTF fd walk"):
        fdwalk.choose(M, 16, "p", want="btf_slot_read", load=fake_loader(True, True))
