"""Profiles: per-service rates and their spread over a window (comparing two:
collector/aggregate/compare.py).

Pure: records in, plain dicts out; no I/O. The file format is in docs/detection.md
("The gate"); reading and writing it is collector/commands/profile_file.py.

Per service and signal a profile keeps the exact mean rate (total / window length), the
spread of the per-interval rates (standard deviation, median, p10, p90, max) and how many
intervals the service was active in. Per-interval rates go into a log-bucketed histogram
(8 buckets per doubling: quantiles within about 4.5%), so memory stays bounded however
long the window; mean, standard deviation and max are exact. The load ratios (log writes
per connection, ...) are ratios of the window's sums, one value per service: a mean of
per-interval ratios would break on intervals without connections.
"""
import math

from collector.aggregate.signals import (
    CONNS,
    LOAD_SIGNALS,
    LOG_BYTES,
    LOG_BYTES_PER_TCP_KIB,
    LOG_WRITES,
    LOG_WRITES_PER_CONN,
    RATIOS,
    RESETS_PER_CONN,
    RESETS_RECEIVED,
    RESETS_SENT,
    SIGNALS,
    TCP_BYTES,
    TCP_BYTES_OUT,
    conns_of,
    ratios_of,
    signal_value,
)
from collector.records.intervals import IntervalGrouper

PROFILE_FORMAT = "surgewatch-profile"
PROFILE_VERSION = 2          # 2: load signals and ratios (written only when present)
OTHER_PATHS = "(other)"
STATS = ("mean", "median", "p90", "max")
PROFILE_SIGNALS = SIGNALS + LOAD_SIGNALS + RATIOS
SIGNAL_LABELS = {LOG_WRITES: "log writes/s", LOG_BYTES: "log bytes/s",
                 RESETS_SENT: "resets sent/s", RESETS_RECEIVED: "resets received/s",
                 CONNS: "conns/s", TCP_BYTES: "tcp bytes out/s",
                 LOG_WRITES_PER_CONN: "log writes/conn", LOG_BYTES_PER_TCP_KIB:
                 "log bytes/tcp KiB", RESETS_PER_CONN: "resets/conn"}


def ratio_stats(r):
    """A ratio's stats in a one-host profile: one value (the ratio of the window's sums),
    so every stat is that value."""
    return {"mean": r, "sd": 0.0, "median": r, "p10": r, "p90": r, "max": r}


def profile_signals(resets, conns, tcp_bytes):
    """A profile's signal list: log signals always, then those the source measured."""
    out = [LOG_WRITES, LOG_BYTES]
    if resets:
        out += [RESETS_SENT, RESETS_RECEIVED]
    if conns:
        out.append(CONNS)
    if tcp_bytes:
        out.append(TCP_BYTES)
    if conns:
        out.append(LOG_WRITES_PER_CONN)
    if tcp_bytes:
        out.append(LOG_BYTES_PER_TCP_KIB)
    if conns and resets:
        out.append(RESETS_PER_CONN)
    return out


def profile_version(signals):
    # a profile without load reads in surgewatch before version 2
    return PROFILE_VERSION if set(signals) & set(LOAD_SIGNALS) else 1


class RateHistogram:
    """Per-interval rates of one signal: exact count, sum, sum of squares, max; quantiles
    from log buckets (8 per doubling, each with its count and sum) plus an exact count of zero intervals."""

    PER_DOUBLING = 8

    def __init__(self):
        self.n = 0
        self.zeros = 0
        self.total = 0.0
        self.total_sq = 0.0
        self.max = 0.0
        self.buckets = {}

    def add(self, v, count=1):
        if v < 0 or v != v:
            raise ValueError(f"rate must be >= 0, got {v!r}")
        self.n += count
        self.total += v * count
        self.total_sq += v * v * count
        if v > self.max:
            self.max = v
        if v == 0:
            self.zeros += count
            return
        b = math.floor(self.PER_DOUBLING * math.log2(v))
        slot = self.buckets.setdefault(b, [0, 0.0])
        slot[0] += count
        slot[1] += v * count

    def quantile(self, q):
        """Quantile q of the rates: the mean of the bucket it falls in (exact when the
        bucket holds one value; 0 for no data)."""
        if self.n == 0:
            return 0.0
        rank = q * (self.n - 1)
        seen = self.zeros
        if rank < seen:
            return 0.0
        for b in sorted(self.buckets):
            n, total = self.buckets[b]
            seen += n
            if rank < seen:
                return total / n
        return self.max

    def sd(self):
        if self.n < 2:
            return 0.0
        mean = self.total / self.n
        return math.sqrt(max(0.0, self.total_sq / self.n - mean * mean))


class _ServiceProfile:
    """One service's per-signal histograms and totals and its top paths."""

    def __init__(self, signals, max_paths):
        self.hist = {s: RateHistogram() for s in signals}
        self.totals = {s: 0.0 for s in signals}     # rate x interval summed: counts
        self.active = 0
        self.intervals = 0                         # intervals since first seen
        self.paths = {}                            # path -> [writes, bytes]
        self.max_paths = max_paths
        # the window's sums behind the ratios: each numerator over the records that carry
        # its denominator (a ratio of sums, never a mean of per-interval ratios)
        self.conns = self.tcp = None               # None: never measured
        self.writes_c = self.resets_c = self.bytes_t = 0
        self.resets_seen = False

    def add_quiet(self):
        """An interval without a rate record of this service: 0 on every signal."""
        self.intervals += 1
        for h in self.hist.values():
            h.add(0.0)

    def add_active(self, rec, interval):
        """An interval with this service's rate record."""
        self.intervals += 1
        self.active += 1
        for sig in self.hist:
            v = signal_value(rec, sig) or 0.0
            self.hist[sig].add(v)
            self.totals[sig] += v * interval
        self._add_load(rec)
        for p in rec.get("paths") or ():
            path = p.get("path")
            if not isinstance(path, str):
                continue
            if path not in self.paths and len(self.paths) >= 100:
                path = OTHER_PATHS
            t = self.paths.setdefault(path, [0, 0])
            t[0] += int(p.get("writes") or 0)
            t[1] += int(p.get("bytes") or 0)

    def _add_load(self, rec):
        conns = conns_of(rec)
        if conns is not None:
            self.conns = (self.conns or 0) + conns
            self.writes_c += int(rec.get("log_writes") or 0)
            if "resets_sent" in rec or "resets_received" in rec:
                self.resets_seen = True
                self.resets_c += int(rec.get("resets_sent") or 0) + \
                    int(rec.get("resets_received") or 0)
        tcp = rec.get(TCP_BYTES_OUT)
        if isinstance(tcp, int) and not isinstance(tcp, bool) and tcp >= 0:
            self.tcp = (self.tcp or 0) + tcp
            self.bytes_t += int(rec.get("log_bytes") or 0)

    def ratios(self):
        return ratios_of(self.writes_c, self.bytes_t, self.conns, self.tcp,
                         self.resets_c if self.resets_seen else None)

    def body(self, signals, dur):
        """This service's part of the profile over dur seconds."""
        body = {"active_intervals": self.active}
        if CONNS in signals:
            body["conns"] = self.conns or 0
        if TCP_BYTES in signals:
            body[TCP_BYTES_OUT] = self.tcp or 0
        ratios = self.ratios()
        for sig in signals:
            if sig in RATIOS:
                if sig in ratios:       # absent: no denominator in the window
                    body[sig] = ratio_stats(ratios[sig])
                continue
            h = self.hist[sig]
            body[sig] = {
                "mean": self.totals[sig] / dur,
                "sd": h.sd(),
                "median": h.quantile(0.5),
                "p10": h.quantile(0.1),
                "p90": h.quantile(0.9),
                "max": h.max,
            }
        top = sorted(self.paths.items(), key=lambda kv: (-kv[1][0], kv[0]))[:self.max_paths]
        body["paths"] = [{"path": p, "writes_per_s": w / dur, "bytes_per_s": b / dur}
                         for p, (w, b) in top]
        return body


class ProfileBuilder:
    """Feed a stream's records in order (add()); profile() gives the profile dict.

    A `rate` record belongs to the interval of the next `stats` record (the order every
    surgewatch stream has); a service absent from an interval counts as 0 in it.
    Reset signals are kept only when the stream carries them (resets probe loaded).
    """

    def __init__(self, max_paths=5, max_services=10_000):
        self.max_paths = max_paths
        self.max_services = max_services
        self.services = {}
        self.duration = 0.0
        self.intervals = 0
        self.hosts = set()
        self.first_ts = None
        self.last_ts = None
        self.resets_seen = False
        self.conns_seen = self.tcp_seen = False
        self.folded_services = 0
        self._grouper = IntervalGrouper(self._interval)

    def add(self, rec):
        """One record of a stream, in order (rates are held until their stats)."""
        kind = rec.get("type")
        host = rec.get("host")
        if isinstance(host, str) and kind in ("meta", "rate", "stats"):
            self.hosts.add(host)
        self._grouper.add(rec)

    def add_interval(self, rates, stats):
        for rec in rates + [stats]:
            host = rec.get("host")
            if isinstance(host, str):
                self.hosts.add(host)
        self._interval(rates, stats)

    def _interval(self, rates, stats):
        interval = stats.get("interval")
        ts = stats.get("ts")
        if not isinstance(interval, (int, float)) or interval <= 0:
            return
        if isinstance(ts, (int, float)):
            start = ts - interval
            self.first_ts = start if self.first_ts is None else min(self.first_ts, start)
            self.last_ts = ts if self.last_ts is None else max(self.last_ts, ts)
        self.intervals += 1
        self.duration += interval
        seen = {}
        for rec in rates:
            name = rec.get("service")
            if isinstance(name, str):
                seen[name] = rec
                if "resets_sent" in rec or "resets_received" in rec:
                    self.resets_seen = True
                if conns_of(rec) is not None:
                    self.conns_seen = True
                if TCP_BYTES_OUT in rec:
                    self.tcp_seen = True
        for name, rec in seen.items():
            if name not in self.services:
                if len(self.services) >= self.max_services:
                    self.folded_services += 1
                    continue
                svc = self.services[name] = _ServiceProfile(SIGNALS + LOAD_SIGNALS,
                                                            self.max_paths)
                # intervals before it appeared were zeros
                for h in svc.hist.values():
                    if self.intervals > 1:
                        h.add(0.0, self.intervals - 1)
                svc.intervals = self.intervals - 1
        for name, svc in self.services.items():
            rec = seen.get(name)
            if rec is None:
                svc.add_quiet()
            else:
                svc.add_active(rec, interval)

    def profile(self, source, meta=None):
        """The profile dict (docs/detection.md); meta: extra top-level fields."""
        if self.intervals == 0:
            raise ValueError("no complete interval in the window (no stats record)")
        signals = profile_signals(self.resets_seen, self.conns_seen, self.tcp_seen)
        dur = self.duration
        services = {}
        for name in sorted(self.services):
            services[name] = self.services[name].body(signals, dur)
        doc = {
            "format": PROFILE_FORMAT, "version": profile_version(signals),
            "source": source, "hosts": sorted(self.hosts),
            "started": self.first_ts, "ended": self.last_ts,
            "duration_s": dur, "intervals": self.intervals,
            "signals": signals, "services": services,
        }
        if self.folded_services:
            doc["services_not_kept"] = self.folded_services
        if meta:
            doc.update(meta)
        return doc


# -- checking a loaded profile ---------------------------------------------------------------
def check_profile(doc, name):
    """Why doc is not a usable profile (one line), or None."""
    if not isinstance(doc, dict) or doc.get("format") != PROFILE_FORMAT:
        return f"{name}: not a surgewatch profile (no \"format\": \"{PROFILE_FORMAT}\")"
    v = doc.get("version")
    if not isinstance(v, int) or isinstance(v, bool):
        return f"{name}: malformed profile version {v!r}"
    if v > PROFILE_VERSION:
        return (f"{name}: profile version {v} is newer than this surgewatch reads "
                f"({PROFILE_VERSION}); upgrade surgewatch")
    signals = doc.get("signals")
    services = doc.get("services")
    if not isinstance(signals, list) or not all(s in PROFILE_SIGNALS for s in signals) \
            or not isinstance(services, dict):
        return f"{name}: malformed profile (signals/services)"
    for svc, body in services.items():
        if not isinstance(body, dict):
            return f"{name}: malformed profile: service {svc!r}"
        for sig in signals:
            st = body.get(sig)
            if sig in RATIOS and st is None:
                continue                 # the service had no denominator in the window
            if not isinstance(st, dict) or not all(
                    isinstance(st.get(k), (int, float)) and not isinstance(st.get(k), bool)
                    and st.get(k) >= 0 for k in STATS):
                return f"{name}: malformed profile: service {svc!r} signal {sig}"
    return None
