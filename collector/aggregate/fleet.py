"""Fleet profiles: the same profile format as collector/aggregate/profile.py, built from
per-host rate series (a Prometheus query_range answer) instead of one host's intervals.

Pure: decoded `matrix` results in, a profile dict out; the HTTP side is
collector/records/prometheus_api.py, the wiring collector/commands/record.py. Format and
definitions in docs/detection.md ("Fleet profiles").

Per service and signal, over the steps of the range (each step's sample is the rate over
the step before it, so the steps tile the range):
- a host's rate: the mean of its samples (the steps it was scraped with this service);
- `fleet_total`: the mean, over the steps with any sample of the service, of the sum
  across hosts;
- mean, sd, p10, median, p90, p95, max: over the hosts' rates (a quantile interpolates
  linearly between ranks, as PromQL's quantile() does across series).
So `mean`, `median`... mean "a host's rate", the same thing a one-host local profile's
mean is, and compare can set a fleet against one test host.

Ratios (log writes per connection, log bytes per KiB of TCP output, resets per
connection) are ratios of sums, never means of per-step ratios: a host's ratio is the sum
of its numerator samples over the steps with a denominator sample, divided by the sum of
those denominator samples (only hosts whose denominator sum is > 0); `mean` and
`fleet_total` are the fleet's ratio of sums (every host's numerators over every host's
denominators: the connection-weighted mean of the hosts' ratios); sd and the quantiles
are across the hosts' ratios.
"""
import math

from collector.aggregate.profile import PROFILE_FORMAT, profile_version, profile_signals
from collector.aggregate.signals import (
    CONNS,
    LOG_BYTES,
    LOG_BYTES_PER_TCP_KIB,
    LOG_WRITES,
    LOG_WRITES_PER_CONN,
    RATIOS,
    RESETS_PER_CONN,
    RESETS_RECEIVED,
    RESETS_SENT,
    TCP_BYTES,
    TCP_BYTES_OUT,
)

BASIS_PER_HOST = "per_host"
HOST_LABEL = "instance"
RESET_DIRECTIONS = {"sent": RESETS_SENT, "received": RESETS_RECEIVED}
CONN_DIRECTIONS = {"accepted": CONNS, "connected": CONNS}    # summed: conns
# ratio -> (numerator signals, denominator signal, scale of the denominator)
RATIO_PARTS = {LOG_WRITES_PER_CONN: ((LOG_WRITES,), CONNS, 1.0),
               LOG_BYTES_PER_TCP_KIB: ((LOG_BYTES,), TCP_BYTES, 1 / 1024),
               RESETS_PER_CONN: ((RESETS_SENT, RESETS_RECEIVED), CONNS, 1.0)}


def quantile(values, q):
    """Quantile q of values (sorted or not): linear between ranks q x (n - 1)."""
    v = sorted(values)
    if not v:
        return 0.0
    rank = q * (len(v) - 1)
    lo = math.floor(rank)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (rank - lo)


def _finite(x):
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) and v >= 0 else None


class FleetBuilder:
    """Add each signal's matrix (add_matrix); profile() gives the profile dict."""

    def __init__(self, step_s):
        self.step = float(step_s)
        # service -> signal -> host -> {ts: rate}
        self.series = {}
        self.signals = []
        self.hosts = set()
        self.steps = set()

    def add_matrix(self, signal, result, split=None):
        """result: the `data.result` list of a matrix answer, series labelled by service
        and HOST_LABEL; split: (label, {value: signal}) when a label names the signal
        (direction of resets), and signal is then ignored."""
        for series in result:
            labels = series.get("metric") or {}
            svc, host = labels.get("service"), labels.get(HOST_LABEL)
            if not isinstance(svc, str) or not isinstance(host, str):
                continue
            sig = signal
            if split is not None:
                sig = split[1].get(labels.get(split[0]))
                if sig is None:
                    continue
            by_ts = self.series.setdefault(svc, {}).setdefault(sig, {}).setdefault(host, {})
            for ts, value in series.get("values") or ():
                v = _finite(value)
                if v is None:
                    continue
                by_ts[float(ts)] = by_ts.get(float(ts), 0.0) + v
                self.steps.add(float(ts))
                self.hosts.add(host)
            if sig not in self.signals and by_ts:
                self.signals.append(sig)

    def _signals(self):
        # as local profiles: log signals always, the others when the fleet has them
        have = set(self.signals)
        return profile_signals(bool(have & {RESETS_SENT, RESETS_RECEIVED}), CONNS in have,
                               TCP_BYTES in have)

    def _ratio(self, sigs, ratio):
        """Stats of one ratio of one service (sigs: signal -> host -> {ts: rate}), and the
        denominator's count over the range; (None, 0) when no host has a denominator."""
        nums, den, scale = RATIO_PARTS[ratio]
        per_host, total_n, total_d = [], 0.0, 0.0
        for host, d_series in sigs.get(den, {}).items():
            if not any(sigs.get(n, {}).get(host) for n in nums):
                continue             # no numerator series (resets probe off on this host)
            d = sum(d_series.values())
            if d <= 0:
                continue
            n = sum(sigs.get(sig, {}).get(host, {}).get(ts, 0.0)
                    for sig in nums for ts in d_series)
            per_host.append(n / (d * scale))
            total_n, total_d = total_n + n, total_d + d
        if not per_host:
            return None
        fleet = total_n / (total_d * scale)
        k = len(per_host)
        mean_h = sum(per_host) / k
        sd = math.sqrt(sum((r - mean_h) ** 2 for r in per_host) / k) if k > 1 else 0.0
        return {"mean": fleet, "sd": sd, "median": quantile(per_host, 0.5),
                "p10": quantile(per_host, 0.1), "p90": quantile(per_host, 0.9),
                "p95": quantile(per_host, 0.95), "max": max(per_host),
                "fleet_total": fleet, "hosts": k}

    def _stats(self, per_host):
        """per_host: host -> {ts: rate}, of one service and signal."""
        means = [sum(s.values()) / len(s) for s in per_host.values() if s]
        fleet = {}
        for s in per_host.values():
            for ts, v in s.items():
                fleet[ts] = fleet.get(ts, 0.0) + v
        n = len(means)
        mean = sum(means) / n if n else 0.0
        sd = math.sqrt(sum((m - mean) ** 2 for m in means) / n) if n > 1 else 0.0
        return {
            "mean": mean, "sd": sd, "median": quantile(means, 0.5),
            "p10": quantile(means, 0.1), "p90": quantile(means, 0.9),
            "p95": quantile(means, 0.95), "max": max(means, default=0.0),
            "fleet_total": sum(fleet.values()) / len(fleet) if fleet else 0.0,
        }

    def profile(self, source, meta=None):
        """The profile dict; ValueError when no series had a sample."""
        if not self.steps:
            raise ValueError("no samples")
        signals = self._signals()
        services = {}
        for name in sorted(self.series):
            sigs = self.series[name]
            hosts = sorted({h for per_host in sigs.values() for h, s in per_host.items() if s})
            steps = {ts for per_host in sigs.values() for s in per_host.values() for ts in s}
            body = {"hosts": len(hosts), "active_intervals": len(steps)}
            for sig in signals:
                if sig in RATIOS:
                    st = self._ratio(sigs, sig)
                    if st is not None:          # absent: no host had a denominator
                        body[sig] = st
                    continue
                body[sig] = self._stats(sigs.get(sig, {}))
            for sig, key in ((CONNS, "conns"), (TCP_BYTES, TCP_BYTES_OUT)):
                if sig in signals:              # the count over the range, every host
                    body[key] = sum(v for s in sigs.get(sig, {}).values()
                                    for v in s.values()) * self.step
            body["paths"] = []
            services[name] = body
        first, last = min(self.steps), max(self.steps)
        doc = {
            "format": PROFILE_FORMAT, "version": profile_version(signals),
            "source": source, "basis": BASIS_PER_HOST, "hosts": sorted(self.hosts),
            "started": first - self.step, "ended": last,
            "duration_s": len(self.steps) * self.step, "intervals": len(self.steps),
            "interval_s": self.step, "signals": signals, "services": services,
        }
        if meta:
            doc.update(meta)
        return doc
