"""Output faults not covered elsewhere (docs/reliability.md): the segment directory
removed while the daemon runs."""
import shutil

from collector.records.model import meta_record, stats_record
from collector.sinks.segments import SegmentStore
from collector.records.segments import read_segments


def _stats(i):
    return stats_record("h", 2.0 + i, seq=i, interval=1.0, drain_ms=0.1, keys=0,
                        map_capacity=1, lost_events=0, unresolved_writes=0,
                        cpu_s=0.0, rss_bytes=0)


def test_segment_directory_removed_is_reported_and_writing_goes_on(tmp_path):
    d = tmp_path / "seg"
    problems = []
    store = SegmentStore(str(d), on_drop=lambda n, e: problems.append((n, e)))
    meta = meta_record("h", 1.0, 1.0, {}, "k", mode="run", argv=[])
    store.set_meta(meta)
    store.write_interval([meta, _stats(0)])
    shutil.rmtree(d)
    for i in (1, 2, 3):
        store.write_interval([_stats(i)])
    store.close()
    assert len(problems) == 1 and problems[0][0] == 0
    assert "was deleted while open" in problems[0][1]
    recs = list(read_segments(str(d)))
    assert [(r["type"], r.get("seq")) for r in recs] == \
        [("meta", None), ("stats", 1), ("stats", 2), ("stats", 3)]
    assert store.take_dropped() == 0 and (d.stat().st_mode & 0o777) == 0o750
