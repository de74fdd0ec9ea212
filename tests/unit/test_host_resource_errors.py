"""The daemon out of file descriptors or memory (a hostile neighbour can drive it there,
docs/reliability.md "Hostile local user"): every host lookup fails with a typed
HostResourceError, which leaves that key unresolved for the interval and is counted,
never an exception out of the interval."""
import errno
import os

import pytest

from collector.errors import HostResourceError
from collector.host.cgroups import CgroupIndex
from collector.pipeline.resets import ResetAttributor


class Services:
    def __init__(self):
        self.failing = True

    def resolve(self, pid, comm, cgroup_id=None):
        if self.failing:
            raise HostResourceError(f"cgroup of process {pid}", errno.EMFILE)
        return "a.service"


class NoListeners:
    def refresh(self):
        pass

    def owner(self, port):
        return None


def test_reset_owner_out_of_fds_is_unresolved_and_counted():
    services = Services()
    a = ResetAttributor(services, NoListeners())
    assert a.owner(10, "app", 7, "abort", 0) == (ResetAttributor.UNRESOLVED, 10, "app")
    assert a.take_resource_errors() == 1 and a.take_resource_errors() == 0
    services.failing = False
    assert a.owner(10, "app", 7, "abort", 0) == ("a.service", 10, "app")
    assert a.take_resource_errors() == 0


def test_cgroup_walk_out_of_fds_raises_typed_and_walks_again(tmp_path, monkeypatch):
    (tmp_path / "system.slice" / "a.service").mkdir(parents=True)
    idx = CgroupIndex(root_override=str(tmp_path), min_rescan_interval=3600)
    real = os.fwalk

    def emfile(*a, **k):
        raise OSError(errno.EMFILE, "Too many open files")
        yield                                     # a generator, as os.fwalk

    monkeypatch.setattr(os, "fwalk", emfile)
    with pytest.raises(HostResourceError):
        idx.path(os.stat(tmp_path / "system.slice" / "a.service").st_ino)
    monkeypatch.setattr(os, "fwalk", real)
    # not throttled by the failed walk: the next lookup walks and answers
    assert idx.path(os.stat(tmp_path / "system.slice" / "a.service").st_ino) == \
        "/system.slice/a.service"
