"""The segment store: append-only msgpack segment files in one directory.

Writing (SegmentStore): each interval's records are appended to the current segment
`seg-NNNNNNNNNN.msgpack` in one write. A new segment is started when the current one
would grow past max_segment_bytes or is older than max_segment_age_s, and at every start
(a segment cut by a crash is never appended to). Every segment begins with the
collector's `meta` record, so each one is a complete stream (docs/stream.md). After each
write the oldest segments are deleted while the directory holds more than
max_total_bytes. A failed write (full disk, I/O error) drops that interval's records,
counts them (take_dropped(), reported in the next `stats` record) and is retried with the
next interval's records; the store never raises once open.

Reading (read_segments, SegmentFollower): segments in order, each decoded with
collector.stream.read_records; a segment cut mid-record yields its whole records and the
cut is reported to a callback, then reading goes on with the next segment.
"""
import errno
import os
import re
import time

from collector.errors import BadInput, StreamError
from collector.stream import encode, read_records

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


class _Segment:
    def __init__(self, path, fd, opened):
        self.path, self.fd, self.opened = path, fd, opened
        self.size = 0           # bytes of whole records written
        self.broken = False     # ends with a partial record we could not truncate away


class SegmentStore:
    name = "segments"

    def __init__(self, directory, max_segment_bytes=16 << 20, max_segment_age_s=3600.0,
                 max_total_bytes=1 << 30, clock=time.time, on_drop=None, write=os.write):
        self.dir = str(directory)
        self.max_segment_bytes = max_segment_bytes
        self.max_segment_age_s = max_segment_age_s
        self.max_total_bytes = max_total_bytes
        self.clock = clock
        self.on_drop = on_drop or (lambda n, err: None)
        self._os_write = write          # injectable: unit tests simulate ENOSPC
        self._meta = None
        self._cur = None
        self._dropped = 0               # since the last take_dropped()
        self.dropped_total = 0
        self.deleted_segments = 0
        try:
            os.makedirs(self.dir, mode=0o750, exist_ok=True)
            existing = list_segments(self.dir)
            probe = os.path.join(self.dir, ".surgewatch-write-test")
            fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
            os.close(fd)
            os.unlink(probe)
        except OSError as e:
            raise BadInput(f"segment directory {self.dir}: {e.strerror or e}; create it "
                           "writable for surgewatch or set outputs.segments.dir") from None
        self._closed = []               # [[path, size]] of finished segments, oldest first
        for _, path in existing:
            try:
                self._closed.append([path, os.path.getsize(path)])
            except OSError:
                pass
        self._next_index = (existing[-1][0] + 1) if existing else 0
        self._enforce_cap()

    # -- writing ------------------------------------------------------------------
    def set_meta(self, meta):
        """The record each new segment starts with."""
        self._meta = meta

    def take_dropped(self):
        """Records dropped since the last call (for the stats record)."""
        n, self._dropped = self._dropped, 0
        return n

    def _open_segment(self):
        os.makedirs(self.dir, mode=0o750, exist_ok=True)     # removed while we ran
        path = os.path.join(self.dir, segment_name(self._next_index))
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC,
                     0o640)
        self._next_index += 1
        return _Segment(path, fd, self.clock())

    def _finish_current(self):
        cur, self._cur = self._cur, None
        if cur is None:
            return
        try:
            os.fsync(cur.fd)
        except OSError:
            pass
        os.close(cur.fd)
        if cur.size == 0 and not cur.broken:
            try:
                os.unlink(cur.path)
            except OSError:
                pass
        else:
            self._closed.append([cur.path, cur.size])

    def _needs_new_segment(self, nbytes):
        cur = self._cur
        if cur is None or cur.broken:
            return True
        if self._removed(cur):
            return True
        if cur.size > 0 and cur.size + nbytes > self.max_segment_bytes:
            return True
        return cur.size > 0 and self.clock() - cur.opened >= self.max_segment_age_s

    def _removed(self, cur):
        """The current segment was deleted from under us (its directory removed): what
        we append would vanish. Reported, and a new segment (and directory) is started."""
        try:
            gone = os.fstat(cur.fd).st_nlink == 0
        except OSError:
            gone = True
        if gone:
            self._closed = [c for c in self._closed if os.path.exists(c[0])]
            cur.size = 0                  # nothing of it is left to close or to cap
            try:
                self.on_drop(0, f"{cur.path} was deleted while open (segment directory "
                                "removed?); continuing in a new segment")
            except Exception:
                pass
        return gone

    def _write_all(self, fd, data):
        view = memoryview(data)
        done = 0
        while done < len(view):
            n = self._os_write(fd, view[done:])
            if n <= 0:
                raise OSError(errno.EIO, "short write")
            done += n
        return done

    def write_interval(self, records):
        """Append one interval's records (a single write); never raises on I/O errors."""
        if not records:
            return
        data = b"".join(encode(r) for r in records)
        try:
            if self._needs_new_segment(len(data)):
                self._finish_current()
                self._cur = self._open_segment()
            cur = self._cur
            if cur.size == 0 and self._meta is not None and records[0] is not self._meta:
                data = encode(self._meta) + data
            try:
                self._write_all(cur.fd, data)
            except OSError:
                try:            # take back a partial record so the segment stays whole
                    os.ftruncate(cur.fd, cur.size)
                except OSError:
                    cur.broken = True
                raise
            cur.size += len(data)
        except OSError as e:
            self._drop(len(records), e)
            return
        self._enforce_cap()

    def _drop(self, n, err):
        self._dropped += n
        self.dropped_total += n
        reason = err.strerror or str(err)
        try:
            self.on_drop(n, reason)
        except Exception:
            pass

    def _enforce_cap(self):
        total = sum(size for _, size in self._closed) + (self._cur.size if self._cur else 0)
        while total > self.max_total_bytes and self._closed:
            path, size = self._closed.pop(0)
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
            except OSError:
                self._closed.insert(0, [path, size])
                break
            total -= size
            self.deleted_segments += 1

    def total_bytes(self):
        return sum(size for _, size in self._closed) + (self._cur.size if self._cur else 0)

    def close(self):
        self._finish_current()


# -- reading --------------------------------------------------------------------------
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
