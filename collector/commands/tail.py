"""`surgewatch tail [SOURCE]`: show records from a segment directory, a stream file or the
live stream socket of `surgewatch run` (collector/sinks/unixsock.py).

Pretty lines in a terminal, JSON lines otherwise (or with --json). --follow waits for new
records (from the end, or from --since); --since and --service filter. A segment cut by
a crash yields its whole records and a note on stderr; corrupt data is an error line,
and reading goes on with the next segment.
"""
import datetime as dt
import fnmatch
import os
import re
import stat
import sys
import time

from collector.errors import EXIT_OK, EXIT_USAGE, BadInput
from collector.records.model import LOSS_FIELDS
from collector.records.segments import SegmentFollower
from collector.records.source import open_records, read_pipe
from collector.sinks.jsonout import dumps
from collector.sinks.text import escape, format_bytes, format_rate
from collector.sinks.unixsock import subscribe

_REL = re.compile(r"([0-9]+(?:\.[0-9]+)?)\s*(s|m|h|d)")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_since(text, now=None):
    """Unix seconds from "90s"/"10m"/"2h"/"1d" ago, unix seconds, or an ISO date/time."""
    now = time.time() if now is None else now
    text = text.strip()
    m = _REL.fullmatch(text)
    if m:
        return now - float(m.group(1)) * _UNITS[m.group(2)]
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


def keep(rec, since=None, services=()):
    if since is not None:
        ts = rec.get("ts")
        if isinstance(ts, (int, float)) and ts < since:
            return False
    if rec.get("type") == "dropped":
        return True                 # a gap in this reader's stream is always shown
    if services:
        if rec.get("type") != "rate":
            return False
        name = rec.get("service")
        return isinstance(name, str) and any(fnmatch.fnmatchcase(name, p) for p in services)
    return True


def _when(ts):
    try:
        t = dt.datetime.fromtimestamp(float(ts))
    except (TypeError, ValueError, OverflowError, OSError):
        return "?"
    return t.strftime("%Y-%m-%d %H:%M:%S.") + f"{t.microsecond // 1000:03d}"


def format_record(rec):
    """One line for a person, or None for records not worth a line (a healthy stats)."""
    head = f"{_when(rec.get('ts'))} {escape(str(rec.get('host', '?')))}"
    kind = rec.get("type")
    if kind == "meta":
        probes = ",".join(escape(str(p)) for p in (rec.get("probes") or {}))
        return (f"{head} start   surgewatch {escape(str(rec.get('version', '?')))} "
                f"({escape(str(rec.get('mode', '?')))}), interval {rec.get('interval', 0):g}s, "
                f"kernel {escape(str(rec.get('kernel', '?')))}, probes {probes or '-'}")
    if kind == "rate":
        paths = rec.get("paths") or []
        where = escape(str(paths[0].get("path", "?"))) if paths else "-"
        if len(paths) > 1:
            where += f" (+{len(paths) - 1} more)"
        pids = ",".join(str(p) for p in rec.get("pids", [])[:8])
        if len(rec.get("pids", [])) > 8:
            pids += f" +{len(rec['pids']) - 8}"
        return (f"{head} #{rec.get('seq', '?'):<6} {escape(str(rec.get('service', '?')))}  "
                f"{format_rate(rec.get('log_writes_per_s', 0))} writes/s  "
                f"{format_bytes(rec.get('log_bytes_per_s', 0))}/s  {where}  pids {pids}")
    if kind == "stats":
        losses = [f"{k}={rec[k]}" for k in LOSS_FIELDS
                  if isinstance(rec.get(k), (int, float)) and rec[k]]
        if not losses:
            return None
        return f"{head} #{rec.get('seq', '?'):<6} undercount: {' '.join(losses)}"
    if kind == "dropped":
        return (f"{head} gap     {rec.get('dropped', '?')} records dropped for this reader "
                f"(it read too slowly; {rec.get('dropped_total', '?')} in all)")
    return f"{head} {escape(str(kind))}"


class _Out:
    def __init__(self, stream, as_json):
        self.stream, self.as_json = stream, as_json

    def write(self, rec):
        if self.as_json:
            line = dumps(rec, indent=None)
        else:
            line = format_record(rec)
            if line is None:
                return
        self.stream.write(line + "\n")

    def flush(self):
        self.stream.flush()


def run_tail(source, as_json=None, follow=False, since=None, services=(), stdout=None,
             stderr=None, poll_s=0.5, should_stop=lambda: False, socket=False):
    """Print the records of source; returns the exit code."""
    stdout = stdout if stdout is not None else sys.stdout
    stderr = stderr if stderr is not None else sys.stderr
    if as_json is None:
        try:
            as_json = not stdout.isatty()
        except (AttributeError, ValueError):
            as_json = True
    out = _Out(stdout, as_json)
    state = {"corrupt": 0}

    def on_problem(err, kind):
        if kind == "cut":
            stderr.write(f"surgewatch: note: {err}\n")
        else:
            state["corrupt"] += 1
            stderr.write(f"surgewatch: error: {err}\n")
        stderr.flush()

    source = str(source)
    stdin = source == "-"
    if socket or (not stdin and _is_socket(source)):
        return _tail_socket(source, out, on_problem, since, services, state, stdout)
    records = open_records(source, on_problem, newer_than=since)   # refuses a bad source
    try:
        if follow and not stdin:
            follower = SegmentFollower(source, on_problem, from_end=since is None,
                                       newer_than=since)
            try:
                while not should_stop():
                    for rec in follower.poll():
                        if keep(rec, since, services):
                            out.write(rec)
                    out.flush()
                    time.sleep(poll_s)
            finally:
                follower.close()
        else:
            for rec in records:
                if keep(rec, since, services):
                    out.write(rec)
                    if stdin:
                        out.flush()
            out.flush()
    except BrokenPipeError:
        return _reader_gone(stdout)
    return EXIT_USAGE if state["corrupt"] else EXIT_OK


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


def _tail_socket(path, out, on_problem, since, services, state, stdout):
    """The live stream of a running daemon: records as they come, until it stops."""
    sock = subscribe(path)
    try:
        raw = sock.makefile("rb", buffering=0)    # read() returns what has arrived
        for rec in read_pipe(raw, on_problem, name=path):
            if keep(rec, since, services):
                out.write(rec)
                out.flush()
    except BrokenPipeError:
        return _reader_gone(stdout)
    finally:
        sock.close()
    return EXIT_USAGE if state["corrupt"] else EXIT_OK
