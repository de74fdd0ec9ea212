"""The signals alerts are raised on (log writes/s, log bytes/s, resets sent/s, resets
received/s), their absolute limits, the detector's settings, a signal's rate in a `rate`
record and what contributed to it; the load signals and ratios profiles and compare use
(schema 1.5). Pure; the algorithm is in docs/detection.md.
"""
from collections import Counter
from dataclasses import dataclass, field

from collector.aggregate.idle_hist import IDLE_BUCKETS, bucket_label, bucket_of

LOG_WRITES = "log_writes_per_s"
LOG_BYTES = "log_bytes_per_s"
RESETS_SENT = "resets_sent_per_s"
RESETS_RECEIVED = "resets_received_per_s"
SIGNALS = (LOG_WRITES, LOG_BYTES, RESETS_SENT, RESETS_RECEIVED)
RESET_SIGNALS = {RESETS_SENT: "sent", RESETS_RECEIVED: "received"}


@dataclass(frozen=True)
class Limits:
    """Absolute limits of one signal, in its unit per second."""

    floor: float       # never above unless the rate exceeds this
    new_floor: float   # a service without a baseline yet is above only past this


DEFAULT_LIMITS = {
    LOG_WRITES: Limits(floor=100.0, new_floor=1000.0),
    LOG_BYTES: Limits(floor=100_000.0, new_floor=1_000_000.0),
    RESETS_SENT: Limits(floor=10.0, new_floor=50.0),
    RESETS_RECEIVED: Limits(floor=10.0, new_floor=50.0),
}


@dataclass(frozen=True)
class DetectorConfig:
    window: int = 300            # intervals in the baseline window
    warmup: int = 30             # intervals a service is learnt before the ratio test applies
    k: float = 3.0               # above when rate > k x median ...
    z: float = 6.0               # ... and > median + z x sigma
    burst_factor: float = 1.5    # ... and > burst_factor x p98 (regular bursts are normal)
    open_after: int = 2          # consecutive above intervals that open an alert
    close_after: int = 5         # consecutive intervals below hysteresis x threshold to close
    hysteresis: float = 0.5
    relearn_after: int = 1800    # an alert open this long becomes the new baseline
    expire_after: int = 900      # a service quiet this long (no open alert) is forgotten
    max_services: int = 1000     # beyond this the longest-quiet services are forgotten
    top: int = 3                 # contributors (paths, peers) carried by an alert
    refresh: int = 10            # recompute a baseline after this many new samples
    limits: dict = field(default_factory=lambda: dict(DEFAULT_LIMITS))

    def __post_init__(self):
        for name in ("window", "warmup", "open_after", "close_after", "relearn_after",
                     "expire_after", "max_services", "top", "refresh"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        if self.warmup > self.window:
            raise ValueError(f"warmup ({self.warmup}) must not exceed window ({self.window})")
        if not self.k > 1:
            raise ValueError(f"k must be > 1, got {self.k!r}")
        if not 0 < self.hysteresis <= 1:
            raise ValueError(f"hysteresis must be within (0, 1], got {self.hysteresis!r}")
        missing = set(SIGNALS) - set(self.limits)
        if missing:
            raise ValueError(f"limits missing for {', '.join(sorted(missing))}")


def signal_value(rec, signal):
    """The rate of `signal` in one `rate` record, or None when the record does not carry it
    (reset or load fields without the resets probe, tcp_bytes_out without an exact count)."""
    if signal in (LOG_WRITES, LOG_BYTES):
        v = rec.get(signal)
        return float(v) if isinstance(v, (int, float)) else None
    if signal in LOAD_SIGNALS:
        count = conns_of(rec) if signal == CONNS else _count(rec, TCP_BYTES_OUT)
    else:
        count = rec.get("resets_sent" if signal == RESETS_SENT else "resets_received")
    interval = rec.get("interval")
    if not isinstance(count, (int, float)) or not isinstance(interval, (int, float)) \
            or interval <= 0:
        return None
    return count / interval


def _peer(rec):
    addr, port = rec.get("remote"), rec.get("remote_port")
    if rec.get("family") == "ipv6":
        return f"[{addr}]:{port}"
    return f"{addr}:{port}"


def contributors(signal, rec, resets, top=3):
    """What an operator looks at next: for log signals the top paths (by writes or bytes)
    and the pids; for reset signals the top peers and the idle-before-reset buckets, from
    the interval's `reset` records of this service and direction (a sample: at most 100
    records per interval)."""
    out = {}
    if rec is not None:
        out["pids"] = list(rec.get("pids") or [])[:20]
        out["comms"] = list(rec.get("comms") or [])[:10]
    if signal in (LOG_WRITES, LOG_BYTES):
        paths = list((rec or {}).get("paths") or [])
        key = "bytes" if signal == LOG_BYTES else "writes"
        paths.sort(key=lambda p: (-(p.get(key) or 0), str(p.get("path"))))
        interval = (rec or {}).get("interval") or 1.0
        out["paths"] = [{"path": p.get("path"),
                         "writes_per_s": (p.get("writes") or 0) / interval,
                         "bytes_per_s": (p.get("bytes") or 0) / interval,
                         "pids": list(p.get("pids") or [])[:10]} for p in paths[:top]]
        return out
    direction = RESET_SIGNALS[signal]
    peers, idle, sampled = Counter(), Counter(), 0
    for r in resets:
        if r.get("direction") != direction:
            continue
        sampled += 1
        peers[_peer(r)] += 1
        ms = r.get("idle_ms")
        if isinstance(ms, (int, float)):
            idle[bucket_of(ms, IDLE_BUCKETS)] += 1
    out["sampled_resets"] = sampled
    out["peers"] = [{"peer": p, "resets": n}
                    for p, n in sorted(peers.items(), key=lambda kv: (-kv[1], kv[0]))[:top]]
    out["idle"] = [{"bucket": bucket_label(b, IDLE_BUCKETS), "resets": idle[b]}
                   for b in sorted(idle)]
    return out



# -- load (schema 1.5): a service's own traffic and the ratios normalised by it ----------------
CONNS_ACCEPTED = "conns_accepted"       # rate record fields (counts in the interval)
CONNS_CONNECTED = "conns_connected"
TCP_BYTES_OUT = "tcp_bytes_out"
CONNS = "conns_per_s"                   # profile signals: accepted + connected per second
TCP_BYTES = "tcp_bytes_out_per_s"
LOG_WRITES_PER_CONN = "log_writes_per_conn"
LOG_BYTES_PER_TCP_KIB = "log_bytes_per_tcp_kib"
RESETS_PER_CONN = "resets_per_conn"
LOAD_SIGNALS = (CONNS, TCP_BYTES)
RATIOS = (LOG_WRITES_PER_CONN, LOG_BYTES_PER_TCP_KIB, RESETS_PER_CONN)


def _count(rec, key):
    v = rec.get(key)
    return v if isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0 else None


def conns_of(rec):
    """conns_accepted + conns_connected of a record, or None when it carries neither."""
    a, c = _count(rec, CONNS_ACCEPTED), _count(rec, CONNS_CONNECTED)
    if a is None and c is None:
        return None
    return (a or 0) + (c or 0)


def ratios_of(log_writes, log_bytes, conns, tcp_bytes_out, resets):
    """The load ratios from totals (one interval's, or a window's sums: a ratio of sums,
    never a mean of ratios). Any argument may be None (not measured); a ratio is present
    only when its denominator is > 0 and its numerator measured."""
    out = {}
    if conns is not None and conns > 0:
        if log_writes is not None:
            out[LOG_WRITES_PER_CONN] = log_writes / conns
        if resets is not None:
            out[RESETS_PER_CONN] = resets / conns
    if tcp_bytes_out is not None and tcp_bytes_out > 0 and log_bytes is not None:
        out[LOG_BYTES_PER_TCP_KIB] = log_bytes / (tcp_bytes_out / 1024)
    return out


def load_ratios(rec):
    """The ratio fields of one `rate` record (docs/stream.md, schema 1.5), a new dict (the
    record is not changed): log_writes_per_conn, log_bytes_per_tcp_kib, resets_per_conn,
    each only when its denominator is > 0 (and, for resets, the record has reset fields)."""
    sent, received = _count(rec, "resets_sent"), _count(rec, "resets_received")
    resets = None if sent is None and received is None else (sent or 0) + (received or 0)
    return ratios_of(_count(rec, "log_writes"), _count(rec, "log_bytes"), conns_of(rec),
                     _count(rec, TCP_BYTES_OUT), resets)
