"""A cgroup id the index's last walk did not see is opened by id between walks (CgroupIndex
with an injected look_up; the real open_by_handle_at is exercised by the privileged tests'
short-lived writers in fresh cgroups)."""
import os

from collector.host.cgroupid import relative_path
from collector.host.cgroups import CgroupIndex


def make_index(tmp_path, now, looked):
    def look_up(top, cgroup_id):
        looked.append(cgroup_id)
        return {999: "made.slice/late.service"}.get(cgroup_id)

    return CgroupIndex(root_override=str(tmp_path), min_rescan_interval=1.0,
                       clock=lambda: now[0], look_up=look_up)


def test_an_id_made_after_the_walk_is_found_by_id_within_the_second(tmp_path):
    (tmp_path / "a.service").mkdir()
    now, looked = [100.0], []
    idx = make_index(tmp_path, now, looked)
    assert idx.path(os.stat(tmp_path / "a.service").st_ino) == "/a.service"   # the walk
    assert (idx.scans, looked) == (1, [])
    now[0] = 100.5                                  # within the second: no walk allowed
    assert idx.path(999) == "/made.slice/late.service"
    assert (idx.scans, looked, idx.lookups) == (1, [999], 1)
    assert idx.path(999) == "/made.slice/late.service"      # kept: not asked again
    assert looked == [999]
    assert idx.path(12345) is None                  # unknown to both
    assert (idx.scans, looked, idx.lookups) == (1, [999, 12345], 1)
    now[0] = 101.5                                  # a walk is allowed again: it walks
    assert idx.path(12345) is None
    assert (idx.scans, looked) == (2, [999, 12345])


def test_an_id_opens_nothing_where_the_file_system_has_no_such_handles(tmp_path):
    # not cgroup2 (kernfs): the handle type is refused, which is "unknown", not an error
    assert relative_path(str(tmp_path), os.stat(tmp_path).st_ino) is None
    assert relative_path(str(tmp_path / "missing"), 1) is None
