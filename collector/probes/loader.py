"""Compile, load and attach a probe in a short-lived child; hand its fds to the daemon.

bcc compiles C with LLVM at load time and keeps that compiler mapped for the life of the
process (~150 MB), and the kernel's BTF (struct offsets) is only needed to plan. So the
daemon does neither: for each probe it starts a child
(`python -m collector.probes.loader_child`, collector/probes/loader_child.py) and sends it the probe's name and settings over a
SOCK_SEQPACKET socketpair. The child makes the probe's plan (BTF offsets, live tracepoint
formats -> cflags; what to attach; which maps the daemon needs), compiles, attaches, and
sends back in one SCM_RIGHTS message the fds of those maps, of every attachment
(perf-event or raw tracepoint fds: a program stays attached while one is open) and of
its programs (read for the runs the kernel skipped), with a
small JSON description (which fd is which, what was found about the kernel). The child
then leaves with os._exit, skipping bcc's clean-up, whose PERF_EVENT_IOC_DISABLE would
switch off the events the daemon now shares.

If the child dies or hangs, its fds die with it (nothing stays attached) and the daemon
reports one line. If the daemon dies, the kernel closes its fds and every program detaches;
a child still compiling is killed with it (PR_SET_PDEATHSIG).
"""
import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from collector.errors import ProbeUnavailable
from collector.probes import registry
from collector.probes.detach import close_fd, close_fds_parallel
from collector.probes.libbpf import Map
from collector.probes.memcg import MemoryCgroup, size_text

DEFAULT_TIMEOUT_S = 120.0       # bcc's compile takes ~1-2 s here, ~5x that under QEMU TCG
COMPILE_MEMORY = "~250 MB"      # both children compiling at once peak at ~241 MB
MAX_MESSAGE = 1 << 20
FAULT_ENV = "SURGEWATCH_LOADER_FAULT"      # test seam: "probe:point:action,...", below


@dataclass
class Plan:
    """What the child does: compile `source` with `cflags`, then attach `steps` in order.

    A step is {"kind": "tracepoint"|"raw", "tp": ..., "fn": ...}; a step with "else" (a list
    of steps) runs those instead when it cannot attach (the raw hook's fallback). Steps of
    kind "fentry"/"fexit" ({"fn": "kfunc__<func>"/"kretfunc__<func>"}) are attached by bcc
    as it loads the source; the step only collects the attachment. `fallback(why)`, if
    given, returns the plan to run instead when loading this one fails (the fentry path's
    way back to the tracepoints on a kernel that passed the feature probe but refuses the
    real programs).
    """
    source: str
    cflags: list
    steps: list
    maps: list
    fallback: object = None


class LoadFailed(ProbeUnavailable):
    """The child reported a failure: stage "plan" (the probe cannot run on this kernel;
    detail is its one-line reason), "compile/load" or "attach" (bcc's words)."""

    def __init__(self, probe, stage, detail, tp=None):
        self.probe, self.stage, self.detail, self.tp = probe, stage, detail, tp
        where = f" {tp}" if tp else ""
        super().__init__(detail if stage == "plan" else f"{registry.label(probe)}: "
                                                         f"{stage}{where} failed: {detail}")


@dataclass
class Handover:
    """What a loader child handed over: maps by name, attachments by tracepoint, and the
    programs by name (read for the runs the kernel skipped: libbpf.runs_missed)."""
    probe: str
    maps: dict
    links: dict = field(default_factory=dict)     # tracepoint -> fd
    info: dict = field(default_factory=dict)
    progs: dict = field(default_factory=dict)     # program name -> fd

    def close(self):
        """Detach every program (close the attachment fds), then close the maps."""
        close_fds_parallel(list(self.links.values()))
        self.links = {}
        for fd in self.progs.values():
            close_fd(fd)
        self.progs = {}
        for m in self.maps.values():
            m.close()
        self.maps = {}


def child_env(environ=os.environ):
    """Our environment, with the directory we import `collector` from first on the child's
    path: the package's private /usr/share/surgewatch is on no default path."""
    home = str(Path(__file__).resolve().parents[2])
    path = environ.get("PYTHONPATH")
    return {**environ, "PYTHONPATH": f"{home}{os.pathsep}{path}" if path else home}


class Pending:
    """A child started for one plan; wait() returns its Handover or raises one line."""

    def __init__(self, probe, kwargs, timeout_s=None, memory=None, cache_dir=None):
        self.probe, self.kwargs = probe, kwargs
        self.label = registry.label(probe)
        self.timeout_s = DEFAULT_TIMEOUT_S if timeout_s is None else timeout_s
        self.started = time.monotonic()
        # our memory cgroup (the child's too): a SIGKILL is named by its OOM-kill counter
        self.memory = memory if memory is not None else MemoryCgroup()
        self.memory_before = self.memory.state()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.sock = ours
        try:
            # the child's stdout is our stderr: our stdout may be the record stream
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "collector.probes.loader_child", str(theirs.fileno()),
                 str(os.getpid())],
                pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL, stdout=sys.stderr,
                close_fds=True, env=child_env())
        except OSError as e:
            ours.close()
            raise ProbeUnavailable(f"{registry.label(probe)}: cannot start the loader "
                                   f"({sys.executable}): {e.strerror or e}") from None
        finally:
            theirs.close()
        self.sock.sendall(json.dumps({"probe": probe, "kwargs": kwargs,
                                      "cache": cache_dir or None}).encode())

    def wait(self):
        try:
            return self._receive()
        finally:
            self.sock.close()
            self._reap()

    def _receive(self):
        deadline = self.started + self.timeout_s
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                self._kill()
                raise ProbeUnavailable(
                    f"{self.label}: the loader did not finish compiling and "
                    f"attaching within {self.timeout_s:g} s and was killed (nothing stays "
                    "attached); fix: check load with `surgewatch doctor`, or raise "
                    "probes.load_timeout_s")
            ready, _, _ = select.select([self.sock], [], [], min(left, 1.0))
            if ready:
                break
        try:
            data, fds, _flags, _addr = socket.recv_fds(self.sock, MAX_MESSAGE, 253)
        except ConnectionResetError:     # died before it read its request: as an EOF
            data, fds = b"", []
        except OSError as e:
            raise ProbeUnavailable(f"{self.label}: reading the loader's "
                                   f"hand-over failed: {e}") from None
        if not data:
            code = self.proc.wait(timeout=5.0)
            if code == -signal.SIGKILL:
                raise ProbeUnavailable(killed_message(self.label, self.memory_before,
                                                      self.memory.state()))
            how = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit {code}"
            raise ProbeUnavailable(f"{self.label}: the loader died while "
                                   f"compiling ({how}); nothing stays attached; fix: run "
                                   "`surgewatch doctor`")
        try:
            return self._handover(json.loads(data), fds)
        except BaseException:
            for fd in fds:
                close_fd(fd)
            raise

    def _handover(self, desc, fds):
        if not desc.get("ok"):
            hit = limit_hit_message(self.label, self.memory_before, self.memory.state())
            if hit and desc.get("stage") in ("compile/load", "attach"):
                raise ProbeUnavailable(hit)
            raise LoadFailed(self.probe, desc.get("stage", "load"),
                             desc.get("detail", "unknown error"), desc.get("tp"))
        names, links, progs = desc["maps"], desc["links"], desc.get("progs", [])
        if len(fds) != len(names) + len(links) + len(progs):
            raise ProbeUnavailable(f"{self.label}: the loader handed over {len(fds)} fds "
                                   f"for {len(names) + len(links) + len(progs)} objects")
        maps = {}
        try:
            for name, fd in zip(names, fds):
                maps[name] = Map(fd, name)
        except OSError as e:
            raise ProbeUnavailable(f"{self.label}: a handed-over map is "
                                   f"unusable: {e}") from None
        desc["load_s"] = time.monotonic() - self.started
        at = len(names) + len(links)
        return Handover(self.probe, maps, dict(zip(links, fds[len(names):at])), desc,
                        dict(zip(progs, fds[at:])))

    def cancel(self):
        """Stop the child (whatever it attached detaches as it dies)."""
        self._kill()
        self.sock.close()
        self._reap()

    def _kill(self):
        if self.proc.poll() is None:
            self.proc.kill()

    def _reap(self):
        try:
            self.proc.wait(timeout=5.0)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def limit_hit_message(label, before, after):
    """One line for a compile or load that failed while the daemon's cgroup hit its memory
    limit (the kernel refused a map, or the compiler an allocation, before the OOM killer
    acted), or None when the cgroup did not hit it meanwhile: neither its limit-hit count
    (v1's failcnt is not kept by every kernel) nor its OOM-kill count (the other child's
    kill, or one of the compiler's) went up."""
    def grew(a, b):
        return a is not None and b is not None and b > a
    if after.limit is None or not (grew(before.limit_hits, after.limit_hits)
                                   or grew(before.oom_kills, after.oom_kills)):
        return None
    name = "memory.max" if after.version == "v2" else "memory.limit_in_bytes"
    return (f"{label}: the loader failed while compiling; its cgroup hit its memory limit "
            f"({name} {size_text(after.limit)} on {after.limit_cgroup}): the loader needs "
            f"{COMPILE_MEMORY} while compiling; fix: raise MemoryMax= or the container's "
            "memory limit")


def killed_message(label, before, after):
    """One line for a loader child killed by SIGKILL, naming the likely cause from the
    daemon's memory cgroup (collector.probes.memcg.MemoryState before the child started and
    after it died): the OOM killer under a memory limit is the usual one."""
    head = f"{label}: the loader died while compiling (killed by SIGKILL); "
    need = f"the loader needs {COMPILE_MEMORY} while compiling"
    kills = None
    if before.oom_kills is not None and after.oom_kills is not None:
        kills = after.oom_kills - before.oom_kills
    if kills == 0:       # the counter says no OOM kill: something else sent it
        return head + ("not by the OOM killer (oom_kill unchanged in its cgroup); nothing "
                       "stays attached; fix: run `surgewatch doctor`")
    if after.limit is not None:
        what = "its cgroup hit its memory limit" if kills else \
            "its cgroup has a memory limit, likely hit"
        name = "memory.max" if after.version == "v2" else "memory.limit_in_bytes"
        counted = f", oom_kill {kills}" if kills else ""
        return head + (f"{what} ({name} {size_text(after.limit)} on "
                       f"{after.limit_cgroup}{counted}): {need}; fix: raise MemoryMax= or "
                       "the container's memory limit")
    if kills:
        return head + (f"the OOM killer ended it (oom_kill {kills}; no memory limit on its "
                       f"cgroup: the host ran out of memory): {need}; fix: free memory on "
                       "the host")
    return head + (f"most often the OOM killer under a memory limit (the cgroup's memory "
                   f"files are not readable here): {need}; fix: raise MemoryMax= or the "
                   "container's memory limit, else run `surgewatch doctor`")
