"""The segment store: append-only msgpack segment files in one directory.

Writing (SegmentStore): each interval's records are appended to the current segment
`seg-NNNNNNNNNN.msgpack` in one write. A new segment is started when the current one
would grow past max_segment_bytes or is older than max_segment_age_s, and at every start
(a segment cut by a crash is never appended to). A segment's age is measured on the
monotonic clock: a step of the wall clock (NTP, an operator's `date -s`) neither holds
rotation back nor cuts a segment early; the records' own timestamps stay wall-clock. Every segment begins with the
collector's `meta` record, so each one is a complete stream (docs/stream.md). After each
write the oldest segments are deleted while the directory holds more than
max_total_bytes. A failed write (full disk, I/O error) drops that interval's records,
counts them (take_stats(): the collector puts them in the next `stats` record) and is
retried with the next interval's records; the store never raises once open.

Reading them back is collector/records/segments.py.
"""
import errno
import os
import time

from collector.errors import BadInput
from collector.records.segments import list_segments, segment_name
from collector.records.stream import encode


class SegmentFile:
    """One open segment file, appended whole records only."""

    def __init__(self, path, fd, opened):
        self.path, self.fd, self.opened = path, fd, opened
        self.size = 0           # bytes of whole records written
        self.broken = False     # ends with a partial record we could not truncate away

    @classmethod
    def create(cls, directory, name, clock):
        os.makedirs(directory, mode=0o750, exist_ok=True)     # removed while we ran
        path = os.path.join(directory, name)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC,
                     0o640)
        return cls(path, fd, clock())

    def append(self, data, write=os.write):
        """Write data whole, or raise OSError with the file as it was (broken if a partial
        write could not be taken back)."""
        try:
            view = memoryview(data)
            done = 0
            while done < len(view):
                n = write(self.fd, view[done:])
                if n <= 0:
                    raise OSError(errno.EIO, "short write")
                done += n
        except OSError:
            try:            # take back a partial record so the segment stays whole
                os.ftruncate(self.fd, self.size)
            except OSError:
                self.broken = True
            raise
        self.size += len(data)

    def deleted(self):
        """Unlinked from under us (its directory removed): what we append would vanish."""
        try:
            return os.fstat(self.fd).st_nlink == 0
        except OSError:
            return True

    def finish(self):
        """Sync and close; an empty, whole segment is removed. True when the file stays."""
        try:
            os.fsync(self.fd)
        except OSError:
            pass
        os.close(self.fd)
        if self.size == 0 and not self.broken:
            try:
                os.unlink(self.path)
            except OSError:
                pass
            return False
        return True


class SegmentStore:
    name = "segments"

    def __init__(self, directory, max_segment_bytes=16 << 20, max_segment_age_s=3600.0,
                 max_total_bytes=1 << 30, clock=time.monotonic, on_drop=None,
                 write=os.write):
        """clock: what a segment's age is measured on; monotonic (never the wall clock,
        which steps)."""
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
        """Records dropped since the last call."""
        n, self._dropped = self._dropped, 0
        return n

    def take_stats(self):
        """This output's part of the next `stats` record (Outputs.take_stats)."""
        return {"segment_dropped_records": self.take_dropped()}

    def _open_segment(self):
        seg = SegmentFile.create(self.dir, segment_name(self._next_index), self.clock)
        self._next_index += 1
        return seg

    def _finish_current(self):
        cur, self._cur = self._cur, None
        if cur is not None and cur.finish():
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
        gone = cur.deleted()
        if gone:
            self._closed = [c for c in self._closed if os.path.exists(c[0])]
            cur.size = 0                  # nothing of it is left to close or to cap
            try:
                self.on_drop(0, f"{cur.path} was deleted while open (segment directory "
                                "removed?); continuing in a new segment")
            except Exception:
                pass
        return gone

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
            cur.append(data, self._os_write)
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
