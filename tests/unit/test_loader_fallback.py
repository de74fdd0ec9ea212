"""The loader child's way back from the fentry path: a plan whose programs fail to load
runs its fallback plan, and the handed-over description says so (mocked bcc: the real
fentry path runs in the Vagrant VM's privileged tests)."""
import sys
import types

import pytest

from collector.probes import kernel, loader, loader_child, registry


class FakeTable:
    map_fd = 42


class FakeBPF:
    """bcc's BPF as far as the loader uses it; refuses sources built with SW_FENTRY."""
    made = []

    def __init__(self, src_file, cflags):
        FakeBPF.made.append(cflags)
        if "-DSW_FENTRY=1" in cflags:
            raise Exception("Failed to attach BPF to entry kernel func")
        self.tracepoint_fds, self.funcs = {}, {}

    def attach_tracepoint(self, tp, fn_name):
        self.tracepoint_fds[tp.encode()] = 7

    def __getitem__(self, name):
        return FakeTable()


class FakeProbe:
    name, label = "fake", "fake probe"

    def __init__(self, fallback=True):
        self.path, self.reason, self.fallback = None, None, fallback

    def plan(self):
        self.path, self.reason = "fentry", None      # as the probes' plan(): state anew
        return loader.Plan("x.c", ["-DSW_FENTRY=1"], [{"kind": "fentry", "fn": "kfunc__f"}],
                           ["m"], self._back if self.fallback else None)

    def _back(self, why):
        self.path, self.reason = "tracepoints", f"fentry failed to load: {why}"
        return loader.Plan("x.c", [], [{"kind": "tracepoint", "tp": "a:b", "fn": "g"}], ["m"])

    def plan_state(self):
        return {"path": self.path, "reason": self.reason}


@pytest.fixture
def fake(monkeypatch):
    mod = types.ModuleType("fake_probe_mod")
    mod.FakeProbe = FakeProbe
    monkeypatch.setitem(sys.modules, "fake_probe_mod", mod)
    monkeypatch.setitem(registry.PROBES, "fake", "fake_probe_mod:FakeProbe")
    monkeypatch.setattr(kernel, "import_bcc", lambda: FakeBPF)
    FakeBPF.made.clear()


def test_refused_fentry_programs_fall_back_to_the_tracepoint_plan(fake):
    desc, fds, store = loader_child._run({"probe": "fake", "kwargs": {}})
    assert store is None           # no cache asked for
    assert desc["ok"] is True
    assert desc["fallbacks"] == ["fentry"]
    assert desc["links"] == ["a:b"] and fds == [42, 7]
    assert desc["state"] == {"path": "tracepoints", "reason": "fentry failed to load: "
                             "Failed to attach BPF to entry kernel func"}
    assert FakeBPF.made == [["-DSW_FENTRY=1"], []]


def test_without_a_fallback_the_load_failure_is_reported(fake):
    desc, fds, _ = loader_child._run({"probe": "fake", "kwargs": {"fallback": False}})
    assert (desc["ok"], desc["stage"], fds) == (False, "compile/load", [])
    assert desc["detail"] == "Failed to attach BPF to entry kernel func"


class FakeBTF:
    def __init__(self, funcs):
        self.funcs = funcs

    def func_id(self, name):
        from collector.probes.btf import BTFError
        if name not in self.funcs:
            raise BTFError(f"function {name} not in kernel BTF")
        return 1


def test_which_path_auto_fentry_and_forced(monkeypatch):
    from collector.errors import ProbeUnavailable
    from collector.probes import fentry

    monkeypatch.setattr(kernel, "fentry_refusal", lambda btf, func: None)
    both = FakeBTF({"a", "b"})
    assert fentry.choose("auto", both, ("a", "b"), "p") == (True, None)
    assert fentry.choose("tracepoints", both, ("a", "b"), "p") == (False, None)
    assert fentry.choose("raw", both, ("a", "b"), "p") == (False, None)
    # a function the kernel inlined away: the tracepoints, and why
    assert fentry.choose("auto", FakeBTF({"a"}), ("a", "b"), "p") == \
        (False, "fentry refused: b() is not in the kernel's BTF")
    monkeypatch.setattr(kernel, "fentry_refusal", lambda btf, func: "Operation not permitted")
    assert fentry.choose("auto", both, ("a", "b"), "p") == \
        (False, "fentry refused: Operation not permitted")
    with pytest.raises(ProbeUnavailable) as e:
        fentry.choose("fentry", both, ("a", "b"), "log-write probe")
    assert str(e.value) == ("log-write probe: this kernel refuses the fentry path (Operation "
                            'not permitted); fix: probes.write_hook = "auto" (or '
                            '"tracepoints"), or unset SURGEWATCH_WRITE_HOOK')


def test_a_stored_entry_that_fails_to_load_leaves_the_probe_as_its_own_compile_finds_it(
        fake, monkeypatch, tmp_path):
    """A stored entry made after an fentry refusal replays that fallback (the probe's state
    says "tracepoints") before its load fails; the compile that follows must start from a
    fresh plan, so the state is the compile's own (here fentry loads)."""
    from collector.probes import bpfobj, progcache

    class AcceptsAll(FakeBPF):
        def __init__(self, src_file, cflags):
            FakeBPF.made.append(cflags)
            self.tracepoint_fds, self.funcs = {}, {}
            self.kfunc_entry_fds, self.kfunc_exit_fds = {b"kfunc__f": 9}, {}

    monkeypatch.setattr(kernel, "import_bcc", lambda: AcceptsAll)
    monkeypatch.setattr(progcache, "key", lambda plan: "k" * 64)
    stored = bpfobj.ProbeObject([], [], [{"kind": "tracepoint", "tp": "a:b", "fn": "g",
                                          "prog": "g"}], {"m": 0}, ["fentry"], ["refused"])
    monkeypatch.setattr(progcache.Cache, "get", lambda self, k: stored)

    def refuse(obj):
        raise bpfobj.LoadError("program g: Permission denied")
    monkeypatch.setattr(bpfobj, "load", refuse)
    desc, fds, store = loader_child._run({"probe": "fake", "kwargs": {},
                                          "cache": str(tmp_path)})
    assert desc["ok"] is True and desc["programs"] == "compiled" and store is not None
    assert desc["state"] == {"path": "fentry", "reason": None}
    assert desc["links"] == ["fentry:f"] and fds == [42, 9]
