"""Reading a segment directory (collector/sinks/segments.py writes it): segments in order,
each decoded with collector.records.stream.read_records; a segment cut mid-record yields
its whole records and the cut is reported to a callback, then reading goes on with the
next segment. SegmentFollower follows a directory (or one stream file) as it grows."""
import os
import re

from collector.errors import StreamError
from collector.records.stream import read_records

SEGMENT_RE = re.compile(r"seg-([0-9]{10})\.msgpack")


def segment_name(index):
    return f"seg-{index:010d}.msgpack"


def list_segments(directory):
    """[(index, path)] of the segment files in directory, oldest first."""
    out = []
    for name in os.listdir(directory):
        m = SEGMENT_RE.fullmatch(name)
        if m:
            out.append((int(m.group(1)), os.path.join(directory, name)))
    out.sort()
    return out



def _is_cut(err):
    return err.reason.startswith("truncated record")


def read_from(f, path, pos, on_problem=None, final=True):
    """Records of one open stream file from offset pos; returns the offset reading stopped at.

    A trailing partial record is a cut (reported to on_problem(err, "cut")) when final,
    else data still being written (the returned offset is where it starts, to read again
    later). Corrupt data is reported as on_problem(err, "corrupt") and ends the file:
    the returned offset is None.
    """
    f.seek(pos)
    try:
        for rec in read_records(f, path):
            yield rec
    except StreamError as e:
        if _is_cut(e):
            if final and on_problem:
                on_problem(e, "cut")
            return e.offset
        if on_problem:
            on_problem(e, "corrupt")
        else:
            raise
        return None
    return f.tell()


def read_file(path, on_problem=None):
    """Every whole record of one stream file; a cut at its end goes to on_problem."""
    with open(path, "rb") as f:
        yield from read_from(f, str(path), 0, on_problem)


def read_segments(directory, on_problem=None, newer_than=None):
    """Every whole record of every segment in directory, oldest first.

    newer_than (unix seconds): skip segments last written before then (their records
    are all older). A segment deleted meanwhile (size cap) is skipped.
    """
    for _, path in list_segments(directory):
        try:
            if newer_than is not None and os.path.getmtime(path) < newer_than:
                continue
            f = open(path, "rb")
        except FileNotFoundError:
            continue
        with f:
            yield from read_from(f, path, 0, on_problem)


class SegmentFollower:
    """Follows a segment directory (or one stream file) as it grows: `tail -f` for records.

    poll() yields the records written since the previous call. A segment is final once a
    newer one exists (the writer never returns to it), so a partial record at its end is
    a cut; in the newest segment it is data still being written and is read again later.
    """

    def __init__(self, source, on_problem=None, from_end=True, newer_than=None):
        self.source = str(source)
        self.is_dir = os.path.isdir(self.source)
        self.on_problem = on_problem
        self._f = None
        self._path = None
        self._index = -1
        self._pos = 0
        self._newer_than = newer_than
        if from_end:
            self._open_newest(at_end=True)

    def _segments(self):
        if self.is_dir:
            try:
                return list_segments(self.source)
            except FileNotFoundError:
                return []
        return [(0, self.source)] if os.path.exists(self.source) else []

    def _open(self, index, path, at_end=False):
        self._close()
        try:
            self._f = open(path, "rb")
        except FileNotFoundError:
            self._f = None
            self._index, self._path, self._pos = index, path, 0
            return False
        self._index, self._path = index, path
        self._pos = os.fstat(self._f.fileno()).st_size if at_end else 0
        return True

    def _open_newest(self, at_end):
        segs = self._segments()
        if segs:
            self._open(*segs[-1], at_end=at_end)

    def _close(self):
        if self._f is not None:
            self._f.close()
            self._f = None

    def poll(self):
        while True:
            segs = self._segments()
            newer = [(i, p) for i, p in segs if i > self._index]
            if self._f is None:
                if not newer:
                    return
                i, p = newer[0]
                if self._newer_than is not None and len(newer) > 1:
                    try:
                        if os.path.getmtime(p) < self._newer_than:
                            self._index = i
                            continue
                    except FileNotFoundError:
                        self._index = i
                        continue
                if not self._open(i, p):
                    continue
                newer = newer[1:]
            final = bool(newer) and self.is_dir
            pos = yield from read_from(self._f, self._path, self._pos, self.on_problem,
                                       final=final)
            if pos is None:             # corrupt: nothing more can be read from this file
                self._close()
                if not self.is_dir:
                    self._index = 1     # a single file: stop reading it
                    return
                continue
            self._pos = pos
            if not final:
                return
            self._close()

    def close(self):
        self._close()
