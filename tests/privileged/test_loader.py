"""The loader child (collector/probes/loader.py): the daemon never maps bcc's compiler,
programs keep counting after the child is gone, and a child that dies or hangs leaves
nothing attached and one line of error (docs/reliability.md)."""
import os
import signal
import subprocess
import time

import pytest

from tests.privileged.relhelp import attachments_of, bpf_programs, fdinfos, programs_of
from tests.owncgroup import TIME_SCALE
from tests.support.daemon import SURGEWATCH, Daemon
from tests.support.records import writes_by_path

COMPILER_LIBS = ("libbcc", "libLLVM", "libclang")
LINE = b"loader test line\n"


def _children(pid):
    kids = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        kids.append(int(d))
            except (OSError, ValueError, IndexError):
                continue
    return kids


def _loaders_of(pid):
    """Loader children `pid` started (their command line ends with the parent's pid),
    found by command line: after the parent's SIGKILL they are no longer its children."""
    found = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if b"collector.probes.loader_child" in argv and argv[-2:-1] == [str(pid).encode()]:
            found.append(int(d))
    return found


def _held_by(pid):
    """Attachments held by `pid` or by a loader child it started: tracepoints (bpftool
    perf) and fentry/fexit links (the VM's path, which bpftool perf does not list). Other
    programs on the host, from tests running beside this one, are not ours."""
    mine = []
    for holder in [pid, *_loaders_of(pid)]:
        try:
            mine += attachments_of(holder)
        except OSError:                   # the process is gone: it holds nothing
            continue
    return mine


def _held_by_loader(pid):
    try:
        return attachments_of(pid)
    except OSError:                       # gone: it holds nothing
        return []


def program_names(pid):
    """Names of the BPF programs `pid` holds open (bpf-prog fds)."""
    names = {p["id"]: p.get("name", "") for p in bpf_programs()}
    return {names.get(int(i["prog_id"]), "") for i in fdinfos(pid, "bpf-prog")}


def named_programs(meta):
    """The tracepoint programs the meta record's attachments run (tracepoint path)."""
    from collector.probes.logwrites import LogWriteProbe
    from collector.probes.resets import ResetProbe

    fns = set()
    for probe in (LogWriteProbe(hook="tracepoints"), ResetProbe(hook="tracepoints")):
        if meta["probes"][probe.name].get("hook") in (None, "tracepoints"):
            fns |= {st["fn"] for st in probe.plan().steps}
    return fns


def _wait_detached(pid, timeout=10.0):
    deadline = time.monotonic() + timeout
    while True:
        left = _held_by(pid)
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.2)


def test_daemon_holds_no_compiler_and_counts_after_the_child_left(tmp_path):
    d = Daemon(tmp_path)
    try:
        meta = d.wait_meta()
        with open(f"/proc/{d.pid}/maps") as f:
            maps = f.read()
        mapped = [lib for lib in COMPILER_LIBS if lib in maps]
        assert not mapped, f"the daemon maps {mapped}"
        assert _children(d.pid) == [], "a loader child is still running"
        # every attachment the meta record names is held by the daemon itself
        named = meta["probes"]["logwrites"]["tracepoints"] + meta["probes"]["resets"]["tracepoints"]
        # (17+ on the tracepoint path; 10 on the fentry path: 3 + 7)
        assert len(attachments_of(d.pid)) == len(named) >= 10, (attachments_of(d.pid), named)
        assert len(programs_of(d.pid)) >= 10
        log = d.write_between_intervals("after-child.log", 1234, LINE)
        # it holds its programs too (for the runs the kernel skipped): the loaded ones
        held = {n[:15] for n in program_names(d.pid)}
        steps = {fn[:15] for fn in named_programs(meta)}
        assert steps <= held, (steps, held)
    finally:
        rc = d.stop()
    assert rc == 0, d.err
    assert writes_by_path(d.records, log) == (1234, 1234 * len(LINE))
    stats = [r for r in d.records if r.get("type") == "stats"]
    assert stats and all(type(r["probe_runs_missed"]) is int and r["probe_runs_missed"] >= 0
                         for r in stats), stats


# a hang is cut by the load timeout; it must outlast a real compile (~1 s here, several
# under QEMU's software CPU) so that "attached:hang" hangs with its programs attached
HANG_TIMEOUT_S = 5 * TIME_SCALE


@pytest.mark.parametrize("fault,expect", [
    ("logwrites:compile:die", "log-write probe: the loader died while compiling (killed by SIGKILL)"),
    ("logwrites:attached:die", "log-write probe: the loader died while compiling (killed by SIGKILL)"),
    ("logwrites:attached:hang", "log-write probe: the loader did not finish compiling and "
                                f"attaching within {HANG_TIMEOUT_S:g} s and was killed"),
])
def test_loader_dies_or_hangs_exit_2_one_line_nothing_attached(tmp_path, fault, expect):
    env = dict(os.environ, SURGEWATCH_LOADER_FAULT=fault,
               SURGEWATCH_LOAD_TIMEOUT=str(HANG_TIMEOUT_S if "hang" in fault else 120),
               SURGEWATCH_LOCK_FILE=str(tmp_path / "lock"))
    t0 = time.monotonic()
    proc = subprocess.Popen([SURGEWATCH, "snapshot", "--duration", "1", "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    out, err = proc.communicate(timeout=120)
    res = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    assert res.returncode == 2, res
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"surgewatch: error: {expect}"), res.stderr
    assert res.stdout == ""
    if "hang" in fault:
        assert time.monotonic() - t0 < HANG_TIMEOUT_S + 30   # the timeout, then the exit
    assert not _wait_detached(proc.pid), "programs left attached"


def test_resets_loader_dies_log_writes_still_run(tmp_path):
    d = Daemon(tmp_path, env={"SURGEWATCH_LOADER_FAULT": "resets:attached:die"})
    try:
        meta = d.wait_meta()
        log = d.write_between_intervals("resets-down.log", 55, LINE)
    finally:
        rc = d.stop()
    assert rc == 0, d.err
    assert meta["probes"]["resets"]["enabled"] is False
    assert "the loader died" in meta["probes"]["resets"]["reason"]
    assert writes_by_path(d.records, log)[0] == 55


def test_daemon_killed_while_its_loader_is_attached_leaves_nothing(tmp_path):
    """SIGKILL of the daemon while the child holds attached programs (it hangs after
    attaching): the child dies with its parent (PR_SET_PDEATHSIG), so nothing stays."""
    d = Daemon(tmp_path, env={"SURGEWATCH_LOADER_FAULT": "logwrites:attached:hang"})
    try:
        # the hanging loader: one that holds attachments and still holds them a moment
        # later (the other probe's loader holds its own only until it hands them over:
        # seen there, they were gone by the next look, 2 of 14 runs)
        deadline = time.monotonic() + 120 * TIME_SCALE
        hanging = []
        while not hanging and time.monotonic() < deadline:
            holding = [p for p in _loaders_of(d.pid) if _held_by_loader(p)]
            time.sleep(0.3)
            hanging = [p for p in holding if _held_by_loader(p)]
        assert hanging, "the log-write loader never attached and hung"
        kids = _children(d.pid)
        d.proc.send_signal(signal.SIGKILL)
    finally:
        d.kill()
    assert not _wait_detached(d.pid), "programs left attached after SIGKILL"
    for k in kids:
        assert not os.path.exists(f"/proc/{k}") or _zombie_or_gone(k)


def _zombie_or_gone(pid, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    return True
        except OSError:
            return True
        time.sleep(0.1)
    return False
