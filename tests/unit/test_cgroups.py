"""CgroupIndex on recorded mountinfo files and a small cgroup2-shaped tree
(tests/unit/fixtures/cgroup). A cgroup id is its directory's inode number, so expected
ids are read with os.stat() from the same tree."""
import os
import shutil
from pathlib import Path

import pytest

from collector.host.cgroups import CgroupIndex, cgroup2_mount

FIXTURES = Path(__file__).parent / "fixtures" / "cgroup"
TREE = FIXTURES / "unified"
ID = "3f4e9c1a7b2d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f"


def ino(path):
    return os.stat(path).st_ino


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


@pytest.fixture
def tree(tmp_path):
    copy = tmp_path / "unified"
    shutil.copytree(TREE, copy)
    return copy


@pytest.mark.parametrize("name, expected", [
    ("mountinfo-hybrid", ("/sys/fs/cgroup/unified", "/")),
    ("mountinfo-unified", ("/sys/fs/cgroup", "/")),
    ("mountinfo-subtree-first", ("/sys/fs/cgroup", "/")),
    ("mountinfo-v1-only", None),
])
def test_cgroup2_mount_from_recorded_mountinfo(name, expected):
    assert cgroup2_mount(str(FIXTURES / name)) == expected


def test_cgroup2_mount_of_a_subtree_only_with_escaped_space(tmp_path):
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text("301 28 0:25 /system.slice/ci.service /srv/my\\040cgroup rw shared:4"
                         " - cgroup2 cgroup2 rw\n")
    assert cgroup2_mount(str(mountinfo)) == ("/srv/my cgroup", "/system.slice/ci.service")


def test_paths_are_relative_to_the_mount(tree):
    index = CgroupIndex(root_override=str(tree))
    assert index.path(ino(tree)) == "/"
    assert index.path(ino(tree / "system.slice" / "nginx.service")) == \
        "/system.slice/nginx.service"
    assert index.path(ino(tree / "system.slice" / f"docker-{ID}.scope")) == \
        f"/system.slice/docker-{ID}.scope"
    foo = tree / "user.slice/user-1000.slice/user@1000.service/app.slice/foo.service"
    assert index.path(ino(foo)) == \
        "/user.slice/user-1000.slice/user@1000.service/app.slice/foo.service"
    assert index.path(ino(tree / "dir with space")) == "/dir with space"


def test_files_are_not_cgroups(tree):
    index = CgroupIndex(root_override=str(tree))
    assert index.path(ino(tree / "init.scope" / "cgroup.procs")) is None


def test_mount_found_through_mountinfo(tree, tmp_path):
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text(f"41 31 0:38 / {tree} rw,relatime - cgroup2 cgroup2 rw\n")
    index = CgroupIndex(mountinfo=str(mountinfo))
    assert index.path(ino(tree / "init.scope")) == "/init.scope"


def test_subtree_mount_paths_carry_the_mount_root(tree, tmp_path):
    # A container sees only its own subtree mounted; ids still map to full paths.
    mountinfo = tmp_path / "mountinfo"
    mount_point = tree / "system.slice"
    mountinfo.write_text(f"41 31 0:38 /system.slice {mount_point} rw - cgroup2 cgroup2 rw\n")
    index = CgroupIndex(mountinfo=str(mountinfo))
    assert index.path(ino(tree / "system.slice" / "nginx.service")) == \
        "/system.slice/nginx.service"
    assert index.path(ino(tree / "system.slice")) == "/system.slice"


def test_no_cgroup2_mount_means_unknown():
    index = CgroupIndex(mountinfo=str(FIXTURES / "mountinfo-v1-only"))
    assert index.path(12345) is None


def test_rescans_on_miss_at_most_once_per_second(tree):
    clock = Clock()
    index = CgroupIndex(root_override=str(tree), clock=clock)
    index.path(ino(tree))
    assert index.scans == 1
    new = tree / "system.slice" / "cron.service"
    new.mkdir()
    assert index.path(ino(new)) is None      # a miss within the second: no walk
    assert index.path(424242424) is None
    assert index.scans == 1
    clock.now += 1.0
    assert index.path(ino(new)) == "/system.slice/cron.service"
    assert index.scans == 2
    assert index.path(ino(new)) == "/system.slice/cron.service"  # a hit never rescans
    clock.now += 5
    index.path(ino(tree))
    assert index.scans == 2


def test_removed_cgroups_are_remembered(tree):
    # Ids are never reused, so an old entry stays right after its cgroup is gone:
    # exactly when a process has exited and we need its service.
    clock = Clock()
    index = CgroupIndex(root_override=str(tree), clock=clock)
    gone = ino(tree / "system.slice" / "nginx.service")
    index.path(gone)
    shutil.rmtree(tree / "system.slice" / "nginx.service")
    clock.now += 2
    index.rescan()
    assert index.path(gone) == "/system.slice/nginx.service"


def test_bounded_and_live_cgroups_evict_removed_ones_first(tree):
    clock = Clock()
    index = CgroupIndex(root_override=str(tree), clock=clock, max_entries=20)
    gone = ino(tree / "init.scope")
    assert index.path(gone) == "/init.scope"
    for i in range(9):
        (tree / f"new-{i}").mkdir()
    # removed after the mkdirs: a plain file system (unlike cgroup2) would hand its inode
    # number to the next new directory
    shutil.rmtree(tree / "init.scope")  # the tree now has 20 directories
    clock.now += 2
    index.rescan()
    assert len(index._paths) == 20
    assert index.path(gone) is None
    assert index.path(ino(tree / "new-8")) == "/new-8"


def test_walk_stops_at_the_bound(tree):
    index = CgroupIndex(root_override=str(tree), max_entries=3)
    index.rescan()
    assert len(index._paths) == 3
    assert index.truncated


def test_very_long_paths_beyond_path_max(tmp_path):
    # Deeper than PATH_MAX (4096): the walk must not build absolute paths to open.
    top = tmp_path / "cg"
    top.mkdir()
    name = "n" * 250
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(20):
            os.mkdir(name, dir_fd=fd)
            child = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = child
        deepest = os.fstat(fd).st_ino
    finally:
        os.close(fd)
    index = CgroupIndex(root_override=str(top))
    assert index.path(deepest) == "/" + "/".join([name] * 20)
    assert len(index.path(deepest)) > 4096



def test_host_mounts_under_another_root_with_a_private_cgroup_namespace(tree, tmp_path):
    """The daemon in a container with a private cgroup namespace: its own cgroup2 mount
    shows only its subtree, so the host's mount is walked where PID 1's mountinfo puts
    it, under /proc/1/root (here a directory standing for it); the kernel shows that
    mount's root relative to our namespace ("/.."), which the paths carry like our
    /proc/PID/cgroup lines do, and services are named from them as on the host."""
    from collector.host.services import service_from_cgroup

    host = tmp_path / "hostroot"
    (host / "sys" / "fs").mkdir(parents=True)
    shutil.move(str(tree), host / "sys" / "fs" / "cgroup")
    mountinfo = tmp_path / "pid1-mountinfo"
    mountinfo.write_text("41 31 0:38 /.. /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n")
    index = CgroupIndex(mountinfo=str(mountinfo), mounts=str(host))
    nginx = host / "sys" / "fs" / "cgroup" / "system.slice" / "nginx.service"
    path = index.path(ino(nginx))
    assert path == "/../system.slice/nginx.service"
    assert service_from_cgroup([f"0::{path}"]) == ("systemd", "nginx.service")


def test_unreadable_mountinfo_means_unknown(tmp_path):
    index = CgroupIndex(mountinfo=str(tmp_path / "gone" / "mountinfo"), mounts=str(tmp_path))
    assert index.path(12345) is None
