"""`surgewatch tail [SOURCE]`: show records from a segment directory, a stream file or the
live stream socket of `surgewatch run` (collector/sinks/unixsock.py).

One line per record in a terminal (collector/views/recordlines.py), JSON lines otherwise
(or with --json). --follow waits for new records (from the end, or from --since);
--since, --service, --pid and --type filter. A segment cut by
a crash yields its whole records and a note on stderr; corrupt data is an error line,
and reading goes on with the next segment.
"""
import datetime as dt
import fnmatch
import os
import stat
import sys
import time

from collector.errors import EXIT_OK, EXIT_USAGE, BadInput, NoAccess
from collector.records.model import RECORD_TYPES
from collector.records.segments import SegmentFollower, list_segments
from collector.records.source import open_records, read_pipe
from collector.sinks.jsonout import dumps
from collector.sinks.unixsock import subscribe
from collector.host.timespans import flag_duration
from collector.views.recordlines import format_record
from collector.commands.tail_fold import ResetFold


def default_source(cfg, from_socket=False):
    """SOURCE when none is given: the configured socket (--socket), else the configured
    segment directory, which must exist."""
    if from_socket:
        return cfg.socket.path
    source = cfg.segments.dir
    if not os.path.exists(source):      # the usual cause: no daemon has run here
        raise BadInput(f"{source}: no such directory: `surgewatch run` writes its segments "
                       "there (sudo systemctl start surgewatch); or give SOURCE, or "
                       "--socket for the live stream")
    return source


def parse_since(text, now=None):
    """Unix seconds from "90s"/"10m"/"2h"/"1d" ago, unix seconds, or an ISO date/time."""
    now = time.time() if now is None else now
    text = text.strip()
    try:
        return now - flag_duration(text, bare=False)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        pass
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise BadInput(f"--since {text!r}: expected a duration ago (30s, 10m, 2h, 1d), unix "
                       "seconds, or a date/time like 2026-01-31T14:05") from None
    return when.timestamp()          # naive: local time


TYPES = RECORD_TYPES + ("dropped",)


def parse_types(values):
    """The record types of --type (repeatable, or comma-separated); BadInput on a typo."""
    types = {t.strip() for v in values for t in v.split(",") if t.strip()}
    unknown = sorted(types - set(TYPES))
    if unknown:
        raise BadInput(f"--type {unknown[0]}: no such record type; use one or more of "
                       f"{', '.join(TYPES)} (docs/stream.md)")
    return frozenset(types)


def _pids_of(rec):
    """The pids a record names: a rate record's writers and owners, a reset's pid, an
    alert's top pids (docs/stream.md)."""
    t = rec.get("type")
    if t == "reset":
        found = [rec.get("pid")]
    elif t == "alert":
        top = rec.get("top") if isinstance(rec.get("top"), dict) else {}
        found = top.get("pids")
    else:
        found = rec.get("pids")
    return {p for p in (found if isinstance(found, list) else []) if isinstance(p, int)}


def keep(rec, since=None, services=(), types=(), pids=()):
    if since is not None:
        ts = rec.get("ts")
        if isinstance(ts, (int, float)) and ts < since:
            return False
    if rec.get("type") == "dropped":
        return True                 # a gap in this reader's stream is always shown
    if types and rec.get("type") not in types:
        return False
    if services:                    # records of a service: rate, reset, alert
        name = rec.get("service")
        if not (isinstance(name, str) and any(fnmatch.fnmatchcase(name, p) for p in services)):
            return False
    # with pids: rate, reset and alert records naming one of them
    return not pids or (rec.get("type") in ("rate", "reset", "alert")
                        and bool(_pids_of(rec) & set(pids)))


class _Out:
    """Lines for a person (resets folded per service and interval unless verbose) or
    JSON lines (one per record, never folded)."""

    def __init__(self, stream, as_json, every_stats=False, verbose=False):
        self.stream, self.as_json, self.every_stats = stream, as_json, every_stats
        self.fold = None if as_json or verbose else ResetFold()

    def see(self, rec, shown):
        """Every record read, in order; shown: it passed the filters."""
        lines, held = self.fold.see(rec, shown) if self.fold is not None else ([], False)
        if shown and not held:
            line = dumps(rec, indent=None) if self.as_json else \
                format_record(rec, self.every_stats)
            if line is not None:
                lines.append(line)
        self._write(lines)

    def _write(self, lines):
        if lines:
            self.stream.write("".join(line + "\n" for line in lines))

    def flush(self, idle=False):
        """idle (a follow found nothing new), or the end: the held resets are written."""
        if idle and self.fold is not None:
            self._write(self.fold.flush())
        self.stream.flush()


def run_tail(source, as_json=None, follow=False, since=None, services=(), stdout=None,
             stderr=None, poll_s=0.5, should_stop=lambda: False, socket=False, types=(),
             pids=(), verbose=False):
    """Print the records of source (of `types` only, when given); returns the exit code.
    A healthy stats record gets a line only when stats were asked for by type; in a
    terminal a service's resets of one interval get one line unless verbose. A source
    this user may not read is NoAccess (one line, exit 2), never a traceback."""
    stdout = stdout if stdout is not None else sys.stdout
    stderr = stderr if stderr is not None else sys.stderr
    if as_json is None:
        try:
            as_json = not stdout.isatty()
        except (AttributeError, ValueError):
            as_json = True
    out = _Out(stdout, as_json, every_stats="stats" in types, verbose=verbose)
    want = {"since": since, "services": services, "types": types, "pids": pids}
    state = {"corrupt": 0}

    def on_problem(err, kind):
        if kind == "cut":
            stderr.write(f"surgewatch: note: {err}\n")
        else:
            state["corrupt"] += 1
            stderr.write(f"surgewatch: error: {err}\n")
        stderr.flush()

    def show(rec):
        out.see(rec, keep(rec, **want))

    source = str(source)
    try:
        if socket or (source != "-" and _is_socket(source)):
            _tail_socket(source, out, on_problem, show)
        else:
            _tail_stored(source, out, on_problem, show, stderr, follow, since, poll_s,
                         should_stop)
    except BrokenPipeError:
        return _reader_gone(stdout)
    except PermissionError:      # a root-only directory, segment or socket: one line
        raise NoAccess.of(source, "tail --socket" if socket else "tail") from None
    return EXIT_USAGE if state["corrupt"] else EXIT_OK


def _tail_stored(source, out, on_problem, show, stderr, follow, since, poll_s, should_stop):
    stdin = source == "-"
    records = open_records(source, on_problem, newer_than=since,   # refuses a bad source
                           command="tail")
    if not stdin and os.path.isdir(source) and not list_segments(source):
        # silence would look like "nothing happened"; it may be the wrong directory
        stderr.write(f"surgewatch: note: {source}: no segment files (seg-*.msgpack) "
                     f"{'yet, waiting' if follow else 'in it'}; the daemon's are in "
                     "outputs.segments.dir (default /var/lib/surgewatch)\n")
        stderr.flush()
    if follow and not stdin:
        follower = SegmentFollower(source, on_problem, from_end=since is None,
                                   newer_than=since)
        try:
            while not should_stop():
                found = False
                for rec in follower.poll():
                    found = True
                    show(rec)
                out.flush(idle=not found)
                time.sleep(poll_s)
        finally:
            follower.close()
    else:
        for rec in records:
            show(rec)
            if stdin:
                out.flush()
    out.flush(idle=True)


def _reader_gone(stdout):
    """The reader (head, less) went away: stop quietly, and keep Python from complaining
    about the unflushable stdout at exit."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stdout.fileno())
    except (AttributeError, OSError, ValueError):
        pass
    return EXIT_OK


def _is_socket(path):
    try:
        return stat.S_ISSOCK(os.stat(path).st_mode)
    except OSError:
        return False


def _tail_socket(path, out, on_problem, show):
    """The live stream of a running daemon: records as they come, until it stops."""
    sock = subscribe(path)
    try:
        raw = sock.makefile("rb", buffering=0)    # read() returns what has arrived
        for rec in read_pipe(raw, on_problem, name=path):
            show(rec)
            out.flush(idle=rec.get("type") != "reset")
        out.flush(idle=True)
    finally:
        sock.close()
