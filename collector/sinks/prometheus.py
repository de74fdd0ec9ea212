"""Prometheus `/metrics` for `surgewatch run`: the metric model (running totals).

PrometheusSink consumes the same records as every other sink and keeps running totals:
log writes and bytes per service (and per service and path), TCP resets per service and
direction (sent ones by kind, and the idle-before-reset histogram: schema 1.10), the
service's load (TCP connections accepted/connected, bytes sent into TCP sockets: schema
1.5, only for services whose records carry them) and the collector's own
health from `stats`. A scrape renders them through a custom collector, so a scrape
never waits on the collection loop beyond one lock.

Label cardinality is bounded (collector/sinks/prometheus_labels.py). Names, help and
the families a scrape renders: collector/sinks/prometheus_exposition.py; the HTTP
endpoint: collector/sinks/prometheus_http.py.
"""
import threading
import time

from collector.aggregate.loglost import LOG_LOST
from collector.aggregate.lossrisk import LOG_LOSS_RISK
from collector.aggregate.slots import DEFAULT_PER_OWNER
from collector.aggregate.signals import CONNS_ACCEPTED, CONNS_CONNECTED, TCP_BYTES_OUT
from collector.config import parse_listen
from collector.records.model import RESETS_IDLE_HIST, RESETS_SENT_BY_KIND, clean_text
from collector.sinks import prometheus_exposition as exposition, prometheus_http
from collector.sinks.prometheus_exposition import PREFIX, STATS_COUNTERS
from collector.sinks.prometheus_labels import ServiceSlots, ServiceTotals

# surgewatch_lost_writes_by_uid_total: at most this many uid labels (the kernel's per
# interval slots, SW_LOST_UIDS in collector/bpf/common.h) plus uid="other"
LOST_UID_LABELS = 64
LOST_UID_OTHER = "other"


def add_lost_by_uid(totals, rec, limit=LOST_UID_LABELS):
    """Add one `stats` record's lost_writes_by_uid to totals {uid label: writes}: at most
    `limit` uid labels (first come: uids are few and stable on a host), the rest, any key
    that is not a uid, and lost writes the record does not attribute (a record without
    the field) under "other", so the labels always sum to lost_writes exactly."""
    lost = rec.get("lost_writes")
    lost = int(lost) if isinstance(lost, int) and not isinstance(lost, bool) else 0
    by_uid = rec.get("lost_writes_by_uid")
    named = 0
    if isinstance(by_uid, dict):
        for key, n in by_uid.items():
            if not isinstance(n, int) or isinstance(n, bool) or n <= 0:
                continue
            label = str(key)
            if not (label.isdigit() and len(label) <= 10 and int(label) <= 0xFFFFFFFF) \
                    or (label not in totals and
                        sum(1 for k in totals if k != LOST_UID_OTHER) >= limit):
                label = LOST_UID_OTHER
            else:
                label = str(int(label))
            totals[label] = totals.get(label, 0) + n
            named += n
    if lost > named:
        totals[LOST_UID_OTHER] = totals.get(LOST_UID_OTHER, 0) + lost - named


def _label(text):
    return clean_text(str(text))


def _reset_details(svc, rec):
    """A rate record's sent resets by kind and idle-before-reset histogram (schema 1.10)
    into its service's totals."""
    kinds = rec.get(RESETS_SENT_BY_KIND)
    for kind, n in (kinds.items() if isinstance(kinds, dict) else ()):
        k = _label(kind)
        svc.kinds[k] = svc.kinds.get(k, 0) + int(n)
    hist = rec.get(RESETS_IDLE_HIST)
    if isinstance(hist, list) and hist:
        if len(svc.idle_hist) < len(hist):
            svc.idle_hist += [0] * (len(hist) - len(svc.idle_hist))
        for i, n in enumerate(hist):
            svc.idle_hist[i] += int(n)
        svc.idle_count += sum(int(n) for n in hist)


class PrometheusSink:
    name = "prometheus"

    def __init__(self, host="127.0.0.1", port=9477, max_services=200,
                 max_paths_per_service=5, label_idle_s=3600.0, clock=time.monotonic,
                 serve=True, max_services_per_owner=DEFAULT_PER_OWNER):
        # lazy: only a daemon with this output enabled loads prometheus_client
        from prometheus_client import CollectorRegistry
        from prometheus_client.process_collector import ProcessCollector

        self.clock = clock
        self.max_paths = max_paths_per_service
        self.idle_s = label_idle_s
        self._lock = threading.Lock()
        self._services = ServiceSlots(max_services, label_idle_s,
                                      lambda: ServiceTotals(self.max_paths, self.idle_s),
                                      per_owner=max_services_per_owner)
        self._counters = {k: 0.0 for k in STATS_COUNTERS}
        self._gauges = {}
        self._alerts = {}          # (service, signal) -> 1 open / 0 closed (`alert` records)
        self._loss = {}            # (service, limit) -> [1 at risk / 0, allowed lines/s]
        self._lost_uids = {}       # uid label -> lost writes (add_lost_by_uid)
        self._intervals = 0
        self.build_info = exposition.build_info()
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(exposition.Exporter(self))
        ProcessCollector(namespace=PREFIX, registry=self.registry)
        self.server = None
        if serve:
            self.server = prometheus_http.serve(host, port, self.registry)
            self.address = self.server.server_address[:2]
            h, p = self.address
            self.url = f"http://{'[' + h + ']' if ':' in h else h}:{p}"   # the bound port
            self._thread = threading.Thread(target=self.server.serve_forever,
                                            kwargs={"poll_interval": 0.25},
                                            name="surgewatch-prometheus", daemon=True)
            self._thread.start()

    @classmethod
    def from_config(cls, pc):
        host, port = parse_listen(pc.listen)
        return cls(host, port, max_services=pc.max_services,
                   max_paths_per_service=pc.max_paths_per_service,
                   label_idle_s=pc.label_idle_s)

    # -- records in --------------------------------------------------------------------
    def write_interval(self, records):
        now = self.clock()
        with self._lock:
            for rec in records:
                kind = rec.get("type")
                if kind == "rate":
                    self._rate(rec, now)
                elif kind == "stats":
                    self._stats(rec, now)
                elif kind == "alert":
                    self._alert(rec)

    def _alert(self, rec):
        """surgewatch_alert{service,signal}: 1 while open, 0 once closed; closed series
        leave with their service's label; at most 4 x max_services series."""
        key = (_label(rec.get("service", "?")), _label(rec.get("signal", "?")))
        if key in self._alerts or len(self._alerts) < 4 * self._services.limit:
            self._alerts[key] = 1 if rec.get("state") == "open" else 0
        if rec.get("signal") == LOG_LOSS_RISK:
            self._loss_risk(key[0], rec)

    def _loss_risk(self, service, rec):
        """surgewatch_log_loss_risk{service,limit} (1 at risk, 0 once over) and the limit
        itself, surgewatch_log_loss_limit{service,limit} in lines/s: from log_loss_risk
        alerts; series leave with their service's label, at most 4 x max_services."""
        limit = rec.get("limit") if isinstance(rec.get("limit"), dict) else {}
        key = (service, _label(limit.get("key", "?")))
        allowed = rec.get("threshold")
        allowed = float(allowed) if isinstance(allowed, (int, float)) else float("nan")
        if key in self._loss or len(self._loss) < 4 * self._services.limit:
            self._loss[key] = [1 if rec.get("state") == "open" else 0, allowed]

    def _rate(self, rec, now):
        owner = rec.get("owner")
        volume = sum(int(rec.get(k, 0) or 0)
                     for k in ("log_writes", "resets_sent", "resets_received", LOG_LOST))
        svc = self._services.get(_label(rec.get("service", "?")), now,
                                 owner if isinstance(owner, str) else "unknown", volume)
        svc.writes += int(rec.get("log_writes", 0))
        svc.bytes += int(rec.get("log_bytes", 0))
        for p in rec.get("paths") or ():
            pv = svc.paths.get(_label(p.get("path", "?")), now)
            pv[0] += int(p.get("writes", 0))
            pv[1] += int(p.get("bytes", 0))
        for direction in ("sent", "received"):
            svc.resets[direction] += int(rec.get(f"resets_{direction}", 0) or 0)
        if CONNS_ACCEPTED in rec or CONNS_CONNECTED in rec:
            if svc.conns is None:
                svc.conns = {"accepted": 0, "connected": 0}
            svc.conns["accepted"] += int(rec.get(CONNS_ACCEPTED, 0) or 0)
            svc.conns["connected"] += int(rec.get(CONNS_CONNECTED, 0) or 0)
        if TCP_BYTES_OUT in rec:
            svc.tcp_bytes = (svc.tcp_bytes or 0) + int(rec.get(TCP_BYTES_OUT) or 0)
        if LOG_LOST in rec:
            svc.lost = (svc.lost or 0) + int(rec.get(LOG_LOST) or 0)
        _reset_details(svc, rec)

    def _stats(self, rec, now):
        self._intervals += 1
        for key in STATS_COUNTERS:
            v = rec.get(key)
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                self._counters[key] += v
        add_lost_by_uid(self._lost_uids, rec)
        g = self._gauges
        g["drain_seconds"] = float(rec.get("drain_ms", 0.0)) / 1000.0
        g["interval_seconds"] = float(rec.get("interval", 0.0))
        g["map_keys"] = float(rec.get("keys", 0))
        g["map_capacity"] = float(rec.get("map_capacity", 0))
        cap = g["map_capacity"]
        g["map_fill_ratio"] = g["map_keys"] / cap if cap else 0.0
        g["rss_bytes"] = float(rec.get("rss_bytes", 0))
        self._services.expire(now)
        self._services.decay()
        for key in [k for k, v in self._alerts.items()
                    if not v and k[0] not in self._services.items]:
            del self._alerts[key]
        for key in [k for k, (v, _) in self._loss.items()
                    if not v and k[0] not in self._services.items]:
            del self._loss[key]
        for _, (svc, _) in self._services.items.items():
            svc.paths.expire(now)

    # -- scrape ------------------------------------------------------------------------
    def families(self):
        """The metric families of a scrape, from one consistent view of the totals."""
        with self._lock:
            out = exposition.service_families(
                [(name, svc) for name, (svc, _) in sorted(self._services.items.items())])
            counters = dict(self._counters)
            gauges = dict(self._gauges)
            alerts = sorted(self._alerts.items())
            loss = sorted((k, tuple(v)) for k, v in self._loss.items())
            intervals = self._intervals
            lost_uids = sorted(self._lost_uids.items())
        return [exposition.build_info_family(self.build_info)] + out + \
            [exposition.alert_family(alerts)] + exposition.loss_families(loss) + \
            exposition.health_families(intervals, counters, gauges) + \
            [exposition.lost_uid_family(lost_uids)]

    def render(self):
        from prometheus_client import generate_latest    # lazy, as in __init__

        return generate_latest(self.registry)

    def close(self):
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self._thread.join(timeout=2.0)
            self.server = None

    def reconfigure(self, pc):
        """Take the settings pc in place, keeping the endpoint and its running totals: a
        reload whose listen address is this sink's (a second server could not bind the
        port this one holds; collector/sinks/registry.py). Never fails."""
        with self._lock:
            self.max_paths, self.idle_s = pc.max_paths_per_service, pc.label_idle_s
            self._services.limit, self._services.idle_s = pc.max_services, pc.label_idle_s
            for svc, _ in self._services.items.values():
                svc.paths.limit, svc.paths.idle_s = pc.max_paths_per_service, pc.label_idle_s
        if self.server is not None:
            self.server.set_limits(pc.max_connections, pc.request_timeout_s)
