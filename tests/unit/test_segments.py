"""collector.sinks.segments: append-only segment files, rotation, cap, full disk, cuts."""
import errno
import os

import pytest

from collector.records import model
from collector.errors import BadInput
from collector.records.segments import SegmentFollower, list_segments, read_file, read_segments
from collector.sinks.segments import SegmentStore
from collector.records.stream import encode


class Clock:
    def __init__(self, t=1000.0):
        self.t = t

    def __call__(self):
        return self.t


def meta(ts=1000.0):
    return model.meta_record("h", ts, 1.0, {"logwrites": {"enabled": True}}, "6.1",
                             mode="run", argv=["surgewatch", "run"], version="0.1.0")


def stats(seq, ts=1000.0):
    return model.stats_record("h", ts + seq, seq=seq, interval=1.0, drain_ms=1.0, keys=0,
                              map_capacity=10, lost_events=0,
                              unresolved_writes=0, cpu_s=0.0, rss_bytes=1)


def rate(seq, service="app.service", writes=10):
    return model.rate_record("h", 1000.0 + seq, seq=seq, interval=1.0, service=service,
                             pids=[1], comms=["app"], log_writes=writes, log_bytes=writes * 10,
                             paths=[{"path": "/var/log/a.log", "writes": writes,
                                     "bytes": writes * 10, "pids": [1]}])


def store(tmp_path, **kw):
    kw.setdefault("clock", Clock())
    s = SegmentStore(tmp_path / "seg", **kw)
    s.set_meta(meta())
    return s


def all_records(directory, problems=None):
    return list(read_segments(directory, lambda e, kind: problems.append((kind, e))
                              if problems is not None else None))


def test_writes_meta_then_intervals_and_reads_back(tmp_path):
    s = store(tmp_path)
    s.write_interval([s._meta])
    for seq in range(3):
        s.write_interval([rate(seq), stats(seq)])
    s.close()
    segs = list_segments(tmp_path / "seg")
    assert len(segs) == 1
    recs = all_records(tmp_path / "seg")
    assert [r["type"] for r in recs] == ["meta"] + ["rate", "stats"] * 3
    assert [r["seq"] for r in recs if r["type"] == "stats"] == [0, 1, 2]


def test_rotation_by_size_every_segment_starts_with_meta(tmp_path):
    one = len(encode(rate(0))) + len(encode(stats(0)))
    m = len(encode(meta()))
    s = store(tmp_path, max_segment_bytes=4096, max_total_bytes=1 << 20)
    for seq in range(40):
        s.write_interval([rate(seq), stats(seq)])
    s.close()
    segs = list_segments(tmp_path / "seg")
    assert len(segs) > 1
    for _, path in segs:
        size = os.path.getsize(path)
        assert size <= 4096
        recs = list(read_file(path))
        assert recs[0]["type"] == "meta"
        assert size == m + one * (len(recs) - 1) // 2
    recs = [r for r in all_records(tmp_path / "seg") if r["type"] == "stats"]
    assert [r["seq"] for r in recs] == list(range(40))


def test_rotation_by_age(tmp_path):
    clock = Clock()
    s = store(tmp_path, max_segment_age_s=10, clock=clock)
    for seq in range(5):
        s.write_interval([stats(seq)])
        clock.t += 4
    s.close()
    # segments opened at t=1000 (seq 0,1,2: ages 0,4,8) and t=1012 (seq 3,4)
    per_seg = [[r["seq"] for r in read_file(p) if r["type"] == "stats"]
               for _, p in list_segments(tmp_path / "seg")]
    assert per_seg == [[0, 1, 2], [3, 4]]


def test_total_size_cap_deletes_oldest_first(tmp_path):
    s = store(tmp_path, max_segment_bytes=4096, max_total_bytes=3 * 4096)
    for seq in range(200):
        s.write_interval([rate(seq), stats(seq)])
        assert s.total_bytes() <= 3 * 4096
    s.close()
    segs = list_segments(tmp_path / "seg")
    assert sum(os.path.getsize(p) for _, p in segs) <= 3 * 4096
    assert s.deleted_segments > 0
    seqs = [r["seq"] for r in all_records(tmp_path / "seg") if r["type"] == "stats"]
    assert seqs == list(range(seqs[0], 200))      # the newest are kept, contiguous
    assert segs[0][0] == s.deleted_segments        # the oldest indexes went first


def test_restart_starts_a_new_segment_and_keeps_the_cap(tmp_path):
    s = store(tmp_path)
    s.write_interval([stats(0)])
    s.close()
    s2 = store(tmp_path)
    s2.write_interval([stats(1)])
    s2.close()
    assert [i for i, _ in list_segments(tmp_path / "seg")] == [0, 1]
    assert [r["seq"] for r in all_records(tmp_path / "seg") if r["type"] == "stats"] == [0, 1]


class FlakyDisk:
    """os.write that fails with ENOSPC while `full`, optionally after a partial write."""

    def __init__(self, partial=0):
        self.full = False
        self.partial = partial

    def __call__(self, fd, data):
        if not self.full:
            return os.write(fd, data)
        if self.partial:                  # a short write first, then the error
            n = os.write(fd, bytes(data[:self.partial]))
            self.partial = 0
            return n
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.mark.parametrize("partial", [0, 7])
def test_full_disk_is_a_counted_drop_never_a_crash(tmp_path, partial):
    disk = FlakyDisk(partial=partial)
    drops = []
    s = store(tmp_path, write=disk, on_drop=lambda n, err: drops.append((n, err)))
    s.write_interval([rate(0), stats(0)])
    disk.full = True
    s.write_interval([rate(1), stats(1)])
    s.write_interval([stats(2)])
    assert s.take_dropped() == 3
    assert s.take_dropped() == 0
    assert drops == [(2, "No space left on device"), (1, "No space left on device")]
    disk.full = False
    s.write_interval([stats(3)])
    s.close()
    problems = []
    recs = all_records(tmp_path / "seg", problems)
    assert problems == []                   # the partial write was taken back
    assert [r["seq"] for r in recs if r["type"] == "stats"] == [0, 3]
    assert s.dropped_total == 3


def test_unwritable_directory_is_bad_input(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(BadInput, match="segment directory"):
        SegmentStore(f / "sub")


def test_cut_segment_yields_whole_records_and_reports_the_cut(tmp_path):
    s = store(tmp_path, max_segment_bytes=4096)
    for seq in range(60):
        s.write_interval([rate(seq), stats(seq)])
    s.close()
    segs = list_segments(tmp_path / "seg")
    assert len(segs) >= 3
    # power loss: the first segment loses its last 5 bytes
    path = segs[0][1]
    whole = list(read_file(path))
    os.truncate(path, os.path.getsize(path) - 5)
    problems = []
    recs = all_records(tmp_path / "seg", problems)
    assert [k for k, _ in problems] == ["cut"]
    assert problems[0][1].path == path
    first = list(read_file(path, on_problem=lambda e, k: None))
    assert first == whole[:-1]
    seqs = [r["seq"] for r in recs if r["type"] == "stats"]
    lost = whole[-1]["seq"]
    assert seqs == [q for q in range(60) if q != lost]


def test_corrupt_segment_is_reported_and_the_next_one_read(tmp_path):
    s = store(tmp_path, max_segment_bytes=4096)
    for seq in range(60):
        s.write_interval([stats(seq)])
    s.close()
    segs = list_segments(tmp_path / "seg")
    with open(segs[0][1], "r+b") as f:
        f.seek(0)
        f.write(b"\xc1" * 4)           # 0xc1 is never used in msgpack
    problems = []
    recs = all_records(tmp_path / "seg", problems)
    assert [k for k, _ in problems] == ["corrupt"]
    assert recs and recs[0]["type"] == "meta"


def test_follower_sees_new_records_and_segments(tmp_path):
    s = store(tmp_path, max_segment_bytes=4096)
    s.write_interval([stats(0)])
    follow = SegmentFollower(tmp_path / "seg", from_end=True)
    assert list(follow.poll()) == []
    seen = []
    for seq in range(1, 80):
        s.write_interval([stats(seq)])
        if seq % 7 == 0:
            seen += [r["seq"] for r in follow.poll() if r["type"] == "stats"]
    seen += [r["seq"] for r in follow.poll() if r["type"] == "stats"]
    s.close()
    assert seen == list(range(1, 80))
    assert len(list_segments(tmp_path / "seg")) > 2


def test_follower_waits_for_a_partial_record(tmp_path):
    path = tmp_path / "s.msgpack"
    data = encode(stats(0)) + encode(stats(1))
    path.write_bytes(data[:-3])
    problems = []
    follow = SegmentFollower(path, on_problem=lambda e, k: problems.append(k), from_end=False)
    assert [r["seq"] for r in follow.poll()] == [0]
    with open(path, "ab") as f:
        f.write(data[-3:])
    assert [r["seq"] for r in follow.poll()] == [1]
    assert problems == []


def test_rotation_age_is_monotonic_wall_clock_steps_do_not_move_it(tmp_path, monkeypatch):
    """A wall-clock step back (held rotation for an hour) or forward (cut at once) must
    not change when a segment rotates: the age is taken on the monotonic clock."""
    import inspect
    import time as time_mod
    assert inspect.signature(SegmentStore).parameters["clock"].default is time_mod.monotonic
    for step in (-3600.0, +7200.0):
        mono, wall = Clock(50.0), Clock(1_700_000_000.0)
        monkeypatch.setattr(time_mod, "time", wall)
        d = tmp_path / f"step{int(step)}"
        s = SegmentStore(d, max_segment_age_s=10, clock=mono)
        s.set_meta(meta())
        for seq in range(5):
            s.write_interval([stats(seq)])
            mono.t += 4
            if seq == 1:
                wall.t += step          # the wall clock steps between two intervals
        s.close()
        per_seg = [[r["seq"] for r in read_file(p) if r["type"] == "stats"]
                   for _, p in list_segments(d)]
        assert per_seg == [[0, 1, 2], [3, 4]], step

