"""A loader child OOM-killed under a memory-limited cgroup, or refused a map's memory
there, is reported as that, in one line naming the limit and the fix (issue 23, "also
seen"; collector/probes/memcg.py).

`surgewatch snapshot` runs inside a child memory cgroup of 100 MiB (no swap in it):
compiling needs ~250 MB, so the OOM killer ends a loader child. The memory controller is
cgroup v2's where it is enabled, else v1's (a hybrid host: this project's sandbox); the
test skips, with the reason, where neither can be used.
"""
import os
import subprocess

import pytest

from collector.probes.memcg import MemoryCgroup
from tests.owncgroup import remove_cgroup
from tests.support.daemon import SURGEWATCH

LIMIT = 100 << 20


def _memory_parent():
    """(directory to make the test cgroup in, "v1"|"v2"), or pytest.skip with why."""
    mem = MemoryCgroup()
    try:
        mounts = mem._mounts()
        with open("/proc/self/cgroup") as f:
            lines = f.read().split("\n")
    except OSError as e:
        pytest.skip(f"cannot read our cgroups: {e}")
    own = {}
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) == 3:
            if parts[0] == "0" and parts[1] == "":
                own["v2"] = parts[2]
            elif "memory" in parts[1].split(","):
                own["v1"] = parts[2]
    if "v1" in own and "v1" in mounts:
        point, root = mounts["v1"]
        if root == "/":
            return os.path.join(point, own["v1"].lstrip("/")), "v1"
    if "v2" in own and "v2" in mounts:
        point, root = mounts["v2"]
        # our own cgroup first; under systemd (the VM) that is ssh.service's, whose children
        # get no memory controller, so then the root's, as tests/owncgroup.py does
        own_dir = os.path.join(point, own["v2"].lstrip("/")) if root == "/" else point
        for parent in dict.fromkeys((own_dir, point)):
            try:
                with open(os.path.join(parent, "cgroup.subtree_control")) as f:
                    if "memory" in f.read().split():
                        return parent, "v2"
            except OSError:
                pass
        pytest.skip(f"cgroup2 at {point} has no memory controller enabled for children "
                    f"of {own_dir} or of its root (hybrid host, or not delegated); the "
                    "unit tests (unit/test_memcg.py) cover the message")
    pytest.skip("no usable memory cgroup controller (neither cgroup v2 with memory nor "
                "v1 memory); the unit tests (unit/test_memcg.py) cover the message")


def _write(path, value):
    with open(path, "w") as f:
        f.write(value)


def test_loader_oom_killed_under_a_memory_limit_says_so(tmp_path):
    parent, version = _memory_parent()
    cg = os.path.join(parent, f"swtest-oom-{os.getpid()}")
    os.mkdir(cg)
    try:
        if version == "v2":
            _write(os.path.join(cg, "memory.max"), str(LIMIT))
            if os.path.exists(os.path.join(cg, "memory.swap.max")):
                _write(os.path.join(cg, "memory.swap.max"), "0")
        else:
            _write(os.path.join(cg, "memory.limit_in_bytes"), str(LIMIT))
            sw = os.path.join(cg, "memory.memsw.limit_in_bytes")
            if os.path.exists(sw):
                _write(sw, str(LIMIT))
        # no stored programs: this is about compiling (a stored probe loads in far less)
        env = dict(os.environ, SURGEWATCH_LOCK_FILE=str(tmp_path / "lock"),
                   SURGEWATCH_PROBE_CACHE="")
        res = subprocess.run(
            [SURGEWATCH, "snapshot", "--duration", "1", "--json"],
            capture_output=True, text=True, env=env, timeout=300,
            preexec_fn=lambda: _write(os.path.join(cg, "cgroup.procs"), "0"))
    finally:
        remove_cgroup(cg)
    assert res.returncode == 2, res
    # ours is one line, the last; before it libbcc may have printed its own words from the
    # child (in the Debian 13 VM the cgroup's limit first failed a map: "could not open
    # bpf map: verdicts, error: Cannot allocate memory")
    lines = [ln for ln in res.stderr.strip().splitlines() if ln.startswith("surgewatch:")]
    assert len(lines) == 1 and res.stderr.strip().endswith(lines[0]), res.stderr
    name = "memory.max" if version == "v2" else "memory.limit_in_bytes"
    # which comes first under the limit is a race: the OOM killer ends the compile, or the
    # kernel refuses a map's memory (bcc: "could not open bpf map ... Cannot allocate
    # memory"); either way the line names the limit and the fix
    how = ("the loader died while compiling (killed by SIGKILL)",
           "the loader failed while compiling")
    assert lines[0].startswith("surgewatch: error: ") and any(
        f"{h}; its cgroup hit its memory limit ({name} 100 MiB on " in lines[0]
        for h in how), res.stderr
    assert "the loader needs ~250 MB while compiling; fix: raise MemoryMax= or the " \
        "container's memory limit" in lines[0], res.stderr
    assert "Traceback" not in res.stderr and res.stdout == ""
