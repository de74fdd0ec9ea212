"""Start-up work the loader child saves (docs/performance.md, start-up 2026-12-05): write
syscalls that share a program, and the programs verified at once in threads, with the
same outcome as loading them one by one in their steps (mocked bcc)."""
import sys
import threading
import types

import pytest

from collector.probes import kernel, loader, loader_child, registry
from collector.probes.logwrite_kernel import shared_programs


def _formats(**over):
    """tracepoint_macros()'s macros on a kernel with every write syscall (6.x offsets)."""
    m = {"TP_FD_OFF": 16, "TP_WRITE_COUNT_OFF": 32}
    for sc in ("write", "writev", "pwrite64", "pwritev", "pwritev2"):
        m[f"HAVE_{sc}"] = 1
    m.update(TP_PWRITE64_COUNT_OFF=32, TP_WRITEV_VEC_OFF=24, TP_WRITEV_VLEN_OFF=32,
             TP_PWRITEV_VEC_OFF=24, TP_PWRITEV_VLEN_OFF=32, TP_PWRITEV2_VEC_OFF=24,
             TP_PWRITEV2_VLEN_OFF=32)
    m.update(over)
    return {k: v for k, v in m.items() if v is not None}


def test_write_syscalls_with_the_same_fields_share_a_program():
    shared, flags = shared_programs(_formats())
    assert shared == {"pwrite64": "write", "pwritev": "writev", "pwritev2": "writev"}
    assert flags == {"SW_SHARE_pwrite64": 1, "SW_SHARE_pwritev": 1, "SW_SHARE_pwritev2": 1}


def test_a_field_elsewhere_or_a_missing_tracepoint_keeps_its_own_program():
    shared, flags = shared_programs(_formats(TP_PWRITEV2_VLEN_OFF=40, HAVE_write=None))
    assert shared == {"pwritev": "writev"} and flags == {"SW_SHARE_pwritev": 1}
    # no writev tracepoint: pwritev and pwritev2 keep theirs (enter_writev is not compiled)
    shared, _ = shared_programs(_formats(HAVE_writev=None, TP_PWRITE64_COUNT_OFF=None))
    assert shared == {}


def test_the_plan_attaches_each_tracepoint_with_the_shared_program(monkeypatch):
    from collector.probes import logwrites

    probe = logwrites.LogWriteProbe(hook="tracepoints")
    probe.available = {sc: True for sc in logwrites.WRITE_SYSCALLS}
    probe.shared, probe.channels = shared_programs(_formats())[0], "off"
    steps = probe._tracepoint_plan([]).steps
    assert [(s["tp"].split("_", 2)[2], s["fn"]) for s in steps] == [
        ("write", "enter_write"), ("writev", "enter_writev"), ("pwrite64", "enter_write"),
        ("pwritev", "enter_writev"), ("pwritev2", "enter_writev")]


class FakeBPF:
    """bcc's BPF as the loader uses it: load_func keeps programs by name; `refuse` fail."""
    TRACEPOINT, RAW_TRACEPOINT = 5, 17
    refuse = set()

    def __init__(self, src_file=None, cflags=None):
        self.funcs, self.loads = {}, []
        self.tracepoint_fds, self.raw_tracepoint_fds = {}, {}
        self._lock = threading.Lock()

    def load_func(self, fn, prog_type):
        if fn in self.funcs:
            return self.funcs[fn]
        with self._lock:
            self.loads.append((fn, prog_type))
            if fn in self.refuse:
                raise Exception(f"Failed to load BPF program b'{fn}': Permission denied")
            self.funcs[fn] = types.SimpleNamespace(fd=100 + len(self.funcs))
            return self.funcs[fn]

    def attach_tracepoint(self, tp, fn_name):
        self.tracepoint_fds[tp.encode()] = self.load_func(fn_name, self.TRACEPOINT).fd

    def attach_raw_tracepoint(self, tp, fn_name):
        self.raw_tracepoint_fds[tp.encode()] = self.load_func(fn_name,
                                                              self.RAW_TRACEPOINT).fd

    def __getitem__(self, name):
        return types.SimpleNamespace(map_fd=42)


STEPS = [{"kind": "raw", "tp": "sys_enter", "fn": "raw",
          "else": [{"kind": "tracepoint", "tp": "s:w", "fn": "w"}]},
         {"kind": "tracepoint", "tp": "s:a", "fn": "a"},
         {"kind": "tracepoint", "tp": "s:b", "fn": "a"},
         {"kind": "tracepoint", "tp": "s:c", "fn": "c"}]


@pytest.fixture
def cpus(monkeypatch):
    def set_cpus(n):
        monkeypatch.setattr(loader_child.os, "sched_getaffinity", lambda pid: set(range(n)))
    set_cpus(2)
    FakeBPF.refuse = set()
    return set_cpus


def test_preload_verifies_each_program_once_in_threads_not_the_else(cpus):
    bpf = FakeBPF()
    assert loader_child._preload(bpf, STEPS) == {}
    assert sorted(bpf.loads) == [("a", 5), ("c", 5), ("raw", 17)]   # "w" may not be needed
    cpus(1)
    bpf = FakeBPF()
    assert loader_child._preload(bpf, STEPS) == {} and bpf.loads == []      # one CPU: in its step


def test_preload_failure_is_its_steps_own_once(cpus):
    FakeBPF.refuse = {"c"}
    bpf = FakeBPF()
    failed = loader_child._preload(bpf, STEPS)
    assert list(failed) == ["c"] and "Permission denied" in str(failed["c"])


@pytest.fixture
def fake_probe(monkeypatch):
    class Probe:
        def __init__(self, steps):
            self.steps = steps

        def plan(self):
            return loader.Plan("x.c", [], self.steps, ["m"])

        def plan_state(self):
            return {}

    mod = types.ModuleType("fake_startup_probe")
    mod.Probe = Probe
    monkeypatch.setitem(sys.modules, "fake_startup_probe", mod)
    monkeypatch.setitem(registry.PROBES, "fake", "fake_startup_probe:Probe")
    made = []

    def bpf_class():
        class Made(FakeBPF):
            def __init__(self, src_file=None, cflags=None):
                super().__init__()
                made.append(self)
        return Made
    monkeypatch.setattr(kernel, "import_bcc", bpf_class)
    return made


def test_run_attaches_every_step_and_a_refused_program_fails_its_step(cpus, fake_probe):
    desc, fds, _ = loader_child._run({"probe": "fake", "kwargs": {"steps": STEPS[1:]}})
    assert desc["ok"] and desc["links"] == ["s:a", "s:b", "s:c"] and desc["progs"] == ["a", "c"]
    # the map, the three links (a and b: one program), then the programs by name
    assert fds == [42, 100, 100, 101, 100, 101] or fds == [42, 101, 101, 100, 101, 100]
    FakeBPF.refuse = {"c"}
    desc, fds, _ = loader_child._run({"probe": "fake", "kwargs": {"steps": STEPS[1:]}})
    assert (desc["ok"], desc["stage"], desc["tp"], fds) == (False, "attach", "s:c", [])
    assert desc["detail"] == "Failed to load BPF program b'c': Permission denied"
    assert [fn for fn, _ in fake_probe[-1].loads].count("c") == 1     # not loaded twice


def test_a_refused_raw_program_still_takes_its_else(cpus, fake_probe):
    FakeBPF.refuse = {"raw"}
    desc, _, _ = loader_child._run({"probe": "fake", "kwargs": {"steps": STEPS[:2]}})
    assert desc["ok"] and desc["links"] == ["s:w", "s:a"] and desc["fallbacks"] == ["sys_enter"]
