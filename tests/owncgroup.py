"""Test workloads in a cgroup of their own, named like a systemd unit.

Under systemd (the Vagrant VM) a test's children sit in the cgroup of whatever started
the tests (ssh.service there), so their service is that unit, not their comm. A test that
asserts per-service figures starts its workloads in <cgroup2>/<name>.service instead,
which names their service `<name>.service` on every host, systemd or not.
"""
import os
import time
from contextlib import contextmanager

# Tests scale their "this must be quick" bounds by this (set by vagrant/vm-test.sh under
# QEMU's software CPU, where everything runs several times slower than on this host).
TIME_SCALE = float(os.environ.get("SURGEWATCH_TEST_TIME_SCALE", "1"))


class UnitCgroup:
    def __init__(self, path):
        self.path = path
        self.service = os.path.basename(path)

    def enter(self):
        """preexec_fn: the child moves itself in before it execs."""
        with open(os.path.join(self.path, "cgroup.procs"), "w") as f:
            f.write("0")


@contextmanager
def unit_cgroup(name, suffix=".service"):
    """<cgroup2>/<name><suffix>; suffix "": a cgroup that is no unit (the service is then
    the process's comm, on any host)."""
    from collector.host.cgroups import cgroup2_mount

    found = cgroup2_mount()
    if found is None:
        raise RuntimeError("no cgroup2 hierarchy mounted: the tests need one")
    path = os.path.join(found[0], f"{name}{suffix}")
    os.mkdir(path)
    try:
        yield UnitCgroup(path)
    finally:
        remove_cgroup(path)


def remove_cgroup(path):
    """rmdir a test's cgroup, waiting up to 5 s for its members to be reaped."""
    for _ in range(100):
        try:
            os.rmdir(path)
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(0.05)
