"""Stored records from wherever they are, and grouped into intervals.

open_records(source): a segment directory, a stream file or "-" (stdin), read in stream
order, with cuts and corruption reported to on_problem(err, kind) (kind "cut" or
"corrupt") and a missing or unreadable source refused as one line (grouping them into
intervals: collector/records/intervals.py)."""
import os
import sys

from collector.errors import BadInput, NoAccess, StreamError
from collector.records.segments import read_file, read_segments
from collector.records.stream import read_records


def open_records(source, on_problem, newer_than=None, command=None):
    """Records of source (a path or "-"), lazily; BadInput when it cannot be read,
    NoAccess (naming the fix: sudo surgewatch `command`) when this user may not."""
    source = str(source)
    if source == "-":
        return read_pipe(getattr(sys.stdin.buffer, "raw", sys.stdin.buffer), on_problem)
    if not os.path.exists(source):
        raise BadInput(f"{source}: no such file or directory; give a segment directory "
                       "(default /var/lib/surgewatch) or a stream file")
    return _stored(source, on_problem, newer_than, command)


def _stored(source, on_problem, newer_than, command):
    try:
        if os.path.isdir(source):
            yield from read_segments(source, on_problem, newer_than=newer_than)
        else:
            yield from read_file(source, on_problem)
    except StreamError:
        raise
    except PermissionError:
        raise NoAccess.of(source, command) from None
    except OSError as e:
        raise BadInput(f"{source}: cannot read: {e.strerror or e}") from None


def read_pipe(raw, on_problem, name="<stdin>"):
    """Records from a pipe or socket as they arrive; a cut or corruption ends it."""
    try:
        yield from read_records(raw, name)
    except StreamError as e:
        on_problem(e, "cut" if e.reason.startswith("truncated record") else "corrupt")


def notes_only(on_note):
    """on_problem for readers that go on over cuts (noted) and stop at corruption."""
    def on_problem(err, kind):
        if kind == "cut":
            on_note(str(err))
        else:
            raise err
    return on_problem
