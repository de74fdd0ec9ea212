"""The idle timeout named: resets received after an idle period, per service and peer,
clustered in one idle bucket, said in one line.

Pure: received resets (reset records, or the snapshot's events) in, verdicts out; time
comes in as arguments. The rule (docs/detection.md, "The idle timeout named"):

- per service and peer, over the last `window_s` seconds (None: everything observed, as
  a snapshot's window), the received resets with a known idle time;
- when at least `min_resets` of them are known and one log2 idle bucket (the buckets of
  collector/aggregate/idle_hist.py) holds at least `min_share` of them, and that bucket
  starts at `min_idle_ms` or later (a reset after a few milliseconds is no idle timeout),
  that is an idle timeout; its value is the median idle time of the resets in the bucket
  (reset records carry it to the millisecond; the bucket alone is a factor of 2 wide);
- the connections at risk now are the service's open connections to that peer idle at
  least the bucket's lower bound (from the sock_diag inventory).

A peer is named by address and port when its port is the lower of the connection's two
(it is the server side: a pool of ours to it, `10.0.0.5:8080`), else by its address alone
(`10.0.0.9:*`: a client of ours, whose ports differ per connection, all counted together).
"""
from collections import deque
from dataclasses import dataclass

from collector.aggregate.idle_hist import IDLE_BUCKETS, bucket_bounds_ms, bucket_label, bucket_of

MIN_RESETS = 4               # known idle times needed before anything is said
MIN_SHARE = 0.6              # share of them one bucket must hold
MIN_IDLE_MS = 512            # the bucket must start here or later: [512 ms, 1.02 s) and up
WINDOW_S = 600.0             # the daemon's recent window
MAX_PEERS = 1000             # (service, peer) pairs kept; the least recently reset go first
MAX_SAMPLES = 1000           # idle times kept per pair (the newest)


def pool_peer(remote, remote_port, local_port, ipv6=False):
    """The peer a received reset is grouped by: `addr:port` when the remote port is the
    lower of the two (we connected to it), else `addr:*` (it connected to us)."""
    addr = f"[{remote}]" if ipv6 else str(remote)
    if isinstance(remote_port, int) and isinstance(local_port, int) \
            and remote_port > local_port:
        return f"{addr}:*"
    return f"{addr}:{remote_port}"


def record_peer(rec):
    """pool_peer() of a `reset` record (docs/stream.md)."""
    return pool_peer(rec.get("remote"), rec.get("remote_port"), rec.get("local_port"),
                     rec.get("family") == "ipv6")


def approx(ms, digits=2):
    """A duration rounded to `digits` significant digits, as a person says it: 350 ms,
    3.5 s, 60 s, 15 min, 1.2 h."""
    def sig(x):
        return f"{float(f'{x:.{digits}g}'):g}"
    if ms < 1000:
        return f"{sig(ms)} ms"
    s = ms / 1000.0
    if s < 120:
        return f"{sig(s)} s"
    if s < 7200:
        return f"{sig(s / 60)} min"
    return f"{sig(s / 3600)} h"


def _median(values):
    v = sorted(values)
    n = len(v)
    return float(v[n // 2]) if n % 2 else (v[n // 2 - 1] + v[n // 2]) / 2.0


@dataclass(frozen=True)
class IdleVerdict:
    service: str
    peer: str
    bucket: int
    in_bucket: int           # resets in the bucket
    known: int               # resets from this peer with a known idle time, in the window
    unknown: int             # ... and without one (socket not connected)
    timeout_ms: float        # median idle time of the resets in the bucket
    nbuckets: int = IDLE_BUCKETS

    @property
    def lower_ms(self):
        return bucket_bounds_ms(self.bucket, self.nbuckets)[0]

    @property
    def upper_ms(self):
        return bucket_bounds_ms(self.bucket, self.nbuckets)[1]

    def line(self, at_risk=None):
        """The verdict in one line; at_risk (an int) adds the connections about to go."""
        t = approx(self.timeout_ms)
        out = (f"resets from {self.peer} after ~{t} idle: an idle timeout near {t} "
               f"({self.in_bucket} of {self.known} in {bucket_label(self.bucket, self.nbuckets)})")
        if at_risk is not None:
            out += (f"; {at_risk} open connection{'' if at_risk == 1 else 's'} to it idle "
                    f">= {approx(self.lower_ms, 3)} now, about to be reset")
        return out

    def as_dict(self, at_risk=None):
        doc = {"peer": self.peer, "bucket": self.bucket,
               "bucket_label": bucket_label(self.bucket, self.nbuckets),
               "lower_ms": self.lower_ms, "upper_ms": self.upper_ms,
               "resets": self.in_bucket, "known": self.known, "unknown": self.unknown,
               "timeout_ms": self.timeout_ms, "line": self.line(at_risk)}
        if at_risk is not None:
            doc["at_risk"] = at_risk
        return doc


def judge(service, peer, idle_ms, unknown=0, min_resets=MIN_RESETS, min_share=MIN_SHARE,
          min_idle_ms=MIN_IDLE_MS, nbuckets=IDLE_BUCKETS):
    """The IdleVerdict of one service and peer from the known idle times (ms) of its
    received resets, or None when they do not cluster (the rule above)."""
    known = len(idle_ms)
    if known < min_resets:
        return None
    counts = {}
    for ms in idle_ms:
        b = bucket_of(ms, nbuckets)
        counts[b] = counts.get(b, 0) + 1
    b = max(counts, key=lambda k: (counts[k], -k))
    if counts[b] < min_share * known or bucket_bounds_ms(b, nbuckets)[0] < min_idle_ms:
        return None
    typical = _median([ms for ms in idle_ms if bucket_of(ms, nbuckets) == b])
    return IdleVerdict(service, peer, b, counts[b], known, unknown, typical, nbuckets)


def at_risk(verdict, rows):
    """How many of the service's open connections (collector.host.sockdiag.inventory rows
    of that service: `remote`, `idle_s`) go to the verdict's peer and have been idle at
    least the bucket's lower bound: the next ones the timeout resets."""
    addr, _, port = verdict.peer.rpartition(":")
    n = 0
    for r in rows or ():
        r_addr, _, r_port = str(r.get("remote", "")).rpartition(":")
        if r_addr != addr or (port != "*" and r_port != port):
            continue
        idle = r.get("idle_s")
        if idle is not None and idle * 1000.0 >= verdict.lower_ms:
            n += 1
    return n


class IdleTimeouts:
    """Received resets per (service, peer) over a recent window, judged on demand."""

    def __init__(self, window_s=WINDOW_S, min_resets=MIN_RESETS, min_share=MIN_SHARE,
                 min_idle_ms=MIN_IDLE_MS, max_peers=MAX_PEERS, max_samples=MAX_SAMPLES):
        self.window_s = window_s
        self.rule = dict(min_resets=min_resets, min_share=min_share, min_idle_ms=min_idle_ms)
        self.max_peers, self.max_samples = max_peers, max_samples
        self.samples = {}        # (service, peer) -> deque of (ts, idle_ms or None)
        self.now = None

    def add(self, ts, service, peer, idle_ms):
        """One received reset at ts (unix s); idle_ms None: no known idle time."""
        key = (service, peer)
        q = self.samples.pop(key, None)      # re-inserted: the dict stays in reset order
        if q is None:
            q = deque(maxlen=self.max_samples)
            while len(self.samples) >= self.max_peers:
                del self.samples[next(iter(self.samples))]
        q.append((float(ts), idle_ms if isinstance(idle_ms, (int, float)) else None))
        self.samples[key] = q
        self.now = ts if self.now is None else max(self.now, ts)

    def observe(self, ts, records):
        """An interval's `reset` records (dicts); only received ones count."""
        for r in records:
            if r.get("direction") == "received" and isinstance(r.get("service"), str):
                self.add(ts, r["service"], record_peer(r), r.get("idle_ms"))
        self.now = ts if self.now is None else max(self.now, ts)

    def _expire(self):
        if self.window_s is None or self.now is None:
            return
        since = self.now - self.window_s
        for key in list(self.samples):
            q = self.samples[key]
            while q and q[0][0] <= since:
                q.popleft()
            if not q:
                del self.samples[key]

    def verdicts(self, service=None):
        """[IdleVerdict] of one service (None: every service), most resets first."""
        self._expire()
        out = []
        for (svc, peer), q in self.samples.items():
            if service is not None and svc != service:
                continue
            known = [ms for _, ms in q if ms is not None]
            v = judge(svc, peer, known, len(q) - len(known), **self.rule)
            if v is not None:
                out.append(v)
        out.sort(key=lambda v: (-v.in_bucket, v.service, v.peer))
        return out
