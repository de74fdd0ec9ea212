"""A start in the middle of an incident (docs/detection.md): a service already loud when
the detector starts is judged against the host's limits (journald's, [capacity]) and a
configured profile, not only against its own first minutes; intervals over a host limit
are never learnt. Through AlertStage, as `surgewatch run` feeds it."""
import json

import pytest

from collector.aggregate.lossrisk import LossRisk
from collector.aggregate.signals import LOG_BYTES, LOG_WRITES, DetectorConfig
from collector.config import parse
from collector.errors import BadInput
from collector.host.journald_limits import RateLimit
from collector.pipeline.alerts import AlertStage
from collector.records import model

APP = "/var/log/app/app.log"
GLOB = "/var/log/app/*.log"
STDOUT = "journald:/run/systemd/journal/stdout"


class Limits:
    """journald's limits: unit -> (interval_s, burst); others (10 s, 100)."""

    def __init__(self, units=None):
        self.units = dict(units or {})

    def for_unit(self, unit):
        i, b = self.units.get(unit, (10.0, 100))
        return RateLimit(i, b, b, f"test {unit}")

    def reaches_journald(self, path):
        return False


class Run:
    """AlertStage over whole intervals of 1 s; `alerts` holds (interval index, record)."""

    def __init__(self, capacity=(), units=None, config=None, profile=None):
        self.lines = []
        self.stage = AlertStage("h", log=lambda lvl, msg, key=None: self.lines.append(
            (lvl, msg)), config=config, profile=profile,
            loss_risk=LossRisk(Limits(units), capacity))
        self.i = 0
        self.alerts = []

    def step(self, services, n=1):
        """services: {service: {path: writes}}, for n intervals."""
        for _ in range(n):
            ts = 1001.0 + self.i
            recs = [model.rate_record(
                "h", ts, seq=self.i, interval=1.0, service=s, pids=[7], comms=["x"],
                log_writes=sum(p.values()), log_bytes=100 * sum(p.values()),
                paths=[{"path": k, "writes": w, "bytes": 100 * w, "pids": [7]}
                       for k, w in p.items()]) for s, p in services.items()]
            stats = model.stats_record("h", ts, seq=self.i, interval=1.0, drain_ms=1, keys=1,
                                       map_capacity=10, lost_events=0,
                                       unresolved_writes=0, cpu_s=0, rss_bytes=1)
            self.alerts += [(self.i, r) for r in self.stage.interval(recs, stats, [])]
            self.i += 1
        assert not [m for lvl, m in self.lines if lvl == "error"], self.lines

    def floods(self, service=None):
        """(index, state, signal, reason or close_reason) of the detector's alerts."""
        return [(i, r["state"], r["signal"], r["reason"] if r["state"] == "open"
                 else r["close_reason"]) for i, r in self.alerts
                if r["signal"] in (LOG_WRITES, LOG_BYTES)
                and (service is None or r["service"] == service)]

    def opened(self, service, signal=LOG_WRITES):
        return next(r for _, r in self.alerts if r["service"] == service
                    and r["signal"] == signal and r["state"] == "open")

    def baseline(self, service, signal=LOG_WRITES):
        return self.stage.detector.baseline(service, signal)


# -- host limits ---------------------------------------------------------------------------
def test_flooding_at_start_over_a_capacity_opens_above_host_limit():
    r = Run(capacity={GLOB: 1000})
    r.step({"app.service": {APP: 2000}}, n=10)
    # before: learnt as its normal, never an alert; now on the 2nd interval, log writes only
    assert r.floods() == [(1, "open", LOG_WRITES, "above_host_limit")]
    a = r.opened("app.service")
    assert (a["v"], a["rate"], a["threshold"], a["baseline"], a["ratio"], a["started"]) == (
        "1.12", 2000.0, 1000.0, None, None, 1000.0)
    assert a["limit"] == {"limit": "capacity", "key": f"capacity:{GLOB}", "glob": GLOB,
                          "capacity": 1000.0, "allowed_per_s": 1000.0}
    assert a["top"]["paths"][0]["path"] == APP
    assert ("warning", "alert open: app.service log writes 2000 lines/s (over capacity "
            f"{GLOB} 1000 lines/s; no baseline of its own yet); top: {APP}") in r.lines
    assert r.baseline("app.service") is None          # nothing of the flood was learnt


def test_without_a_host_limit_a_flood_at_start_is_still_learnt():
    r = Run()
    r.step({"app.service": {APP: 2000}}, n=40)
    assert r.floods() == []
    assert r.baseline("app.service").median == 2000.0


def test_the_flood_closes_and_only_the_quiet_intervals_are_learnt():
    r = Run(capacity={GLOB: 1000})
    r.step({"app.service": {APP: 2000}}, n=40)
    r.step({"app.service": {APP: 20}}, n=10)
    # closes after 5 intervals below 0.5 x 1000; the 5 after it are the whole baseline
    assert r.floods() == [(1, "open", LOG_WRITES, "above_host_limit"),
                          (44, "close", LOG_WRITES, "recovered")]
    b = r.baseline("app.service")
    assert (b.n, b.median) == (5, 20.0)
    r.step({"app.service": {APP: 2000}}, n=2)       # still learning: judged as at start
    assert r.floods()[-1] == (51, "open", LOG_WRITES, "above_host_limit")


def test_intervals_over_a_limit_are_not_learnt_by_a_warm_service():
    r = Run(capacity={GLOB: 1000})
    r.step({"app.service": {APP: 400}}, n=40)
    r.step({"app.service": {APP: 1100}}, n=300)     # 2.75x: no flood, but over the capacity
    assert r.floods() == []
    assert r.baseline("app.service").median == 400.0    # before: 1100 (the window's 300)
    r.step({"app.service": {APP: 1300}}, n=2)        # 3.25x the baseline it kept
    assert r.floods() == [(341, "open", LOG_BYTES, "above_baseline"),   # bytes kept theirs
                          (341, "open", LOG_WRITES, "above_baseline")]
    assert r.opened("app.service")["baseline"] == 400.0


def test_a_small_writer_to_a_glob_a_neighbour_floods_is_learnt():
    r = Run(capacity={GLOB: 1000})
    r.step({"app.service": {APP: 2000}, "cron.service": {"/var/log/app/cron.log": 150}},
           n=40)
    risks = {(x["service"], x["state"]) for _, x in r.alerts if x["signal"] == "log_loss_risk"}
    assert risks == {("app.service", "open"), ("cron.service", "open")}   # both contribute
    assert r.floods("cron.service") == []
    assert r.floods("app.service") == [(1, "open", LOG_WRITES, "above_host_limit")]
    b = r.baseline("cron.service")
    assert (b.n, b.median) == (40, 150.0)


def test_journald_limit_flood_then_quiet_intervals_in_its_window_are_learnt():
    # journald lets 1000 per 10 s through (100/s): 300/s is over from the 4th interval
    r = Run(units={"chatty.service": (10.0, 1000)})
    r.step({"chatty.service": {STDOUT: 300}}, n=8)
    r.step({"chatty.service": {STDOUT: 20}}, n=10)
    assert r.floods() == [(4, "open", LOG_WRITES, "above_host_limit"),
                          (12, "close", LOG_WRITES, "recovered")]
    a = r.opened("chatty.service")
    assert (a["threshold"], a["started"], a["limit"]["limit"], a["limit"]["burst"]) == (
        100.0, 1003.0, "journald", 1000)
    assert "(over its journald rate limit 100 lines/s; no baseline of its own yet)" in \
        "".join(m for _, m in r.lines)
    # 0..2 were learnt: journald's burst was not spent yet (nothing proved a loss); 13
    # and 14 still carry the journald risk (the 10 s window is over 1000) but at 20/s,
    # under what journald lets through: learnt, as 15..17
    window = r.stage.detector.services["chatty.service"].signals[LOG_WRITES].window
    assert window.samples() == [300.0] * 3 + [20.0] * 5


def test_an_alert_over_a_host_limit_is_not_relearned_while_it_stays_over():
    r = Run(capacity={GLOB: 1000}, config=DetectorConfig(relearn_after=50))
    r.step({"app.service": {APP: 2000}}, n=120)
    assert r.floods() == [(1, "open", LOG_WRITES, "above_host_limit")]


# -- a profile ----------------------------------------------------------------------------
def profile_doc(services, basis=None):
    """services: {name: (log writes/s mean, log bytes/s mean)}."""
    def stats(mean):
        return {"mean": mean, "sd": 0.0, "median": mean, "p10": mean, "p90": mean,
                "max": mean}
    doc = {"format": "surgewatch-profile", "version": 1, "source": "live", "hosts": ["p"],
           "signals": [LOG_WRITES, LOG_BYTES],
           "services": {n: {"active_intervals": 600, LOG_WRITES: stats(w), LOG_BYTES: stats(b)}
                        for n, (w, b) in services.items()}}
    if basis:
        doc["basis"] = basis
    return doc


def profile(services, basis=None, source="/etc/surgewatch/prod.json"):
    from collector.aggregate.priors import Profile
    return Profile(profile_doc(services, basis), source)


def test_a_service_of_the_profile_is_judged_from_its_first_interval():
    r = Run(profile=profile({"app.service": (20.0, 2000.0)}))
    r.step({"app.service": {APP: 2000}}, n=5)
    assert r.floods() == [(1, "open", LOG_BYTES, "above_profile"),
                          (1, "open", LOG_WRITES, "above_profile")]
    a = r.opened("app.service")
    assert (a["rate"], a["baseline"], a["ratio"], a["threshold"], a["started"]) == (
        2000.0, 20.0, 100.0, 100.0, 1000.0)
    assert a["profile"] == {"source": "/etc/surgewatch/prod.json", "basis": "per_interval",
                            "stat": "mean"}
    assert ("warning", "alert open: app.service log writes 2000 lines/s (100.0x profile "
            f"20 lines/s); top: {APP}") in r.lines


def test_the_profile_ratio_rule_three_times_its_mean():
    r = Run(profile=profile({"app.service": (200.0, 1e9)}))
    r.step({"app.service": {APP: 500}}, n=5)        # 2.5x: normal
    assert r.floods() == []
    r.step({"app.service": {APP: 700}}, n=2)        # 3.5x
    assert r.floods() == [(6, "open", LOG_WRITES, "above_profile")]
    assert r.opened("app.service")["threshold"] == 600.0


def test_a_fleet_profile_says_so_and_other_services_learn_as_before():
    r = Run(profile=profile({"app.service": (20.0, 2000.0), "(other)": (0.0, 0.0)},
                            basis="per_host", source="/etc/surgewatch/fleet.json"))
    r.step({"app.service": {APP: 2000}, "db.service": {"/var/log/db.log": 2000},
            "(other)": {"/var/log/x.log": 2000}}, n=5)
    assert r.floods("db.service") == [] and r.floods("(other)") == []
    assert r.opened("app.service")["profile"]["basis"] == "per_host"


def test_once_learnt_its_own_baseline_takes_over():
    r = Run(profile=profile({"app.service": (20.0, 1e9)}))
    r.step({"app.service": {APP: 25}}, n=40)
    assert r.floods() == []
    r.step({"app.service": {APP: 2000}}, n=2)
    assert r.floods() == [(41, "open", LOG_WRITES, "above_baseline")]
    assert r.opened("app.service")["baseline"] == 25.0    # 40 of its own beside 30 seeds


def test_profile_and_host_limit_both_judge_a_service_still_learning():
    # the profile's threshold (3 x 1000) is above the rate; the capacity is not
    r = Run(capacity={GLOB: 1000}, profile=profile({"app.service": (1000.0, 1e9)}))
    r.step({"app.service": {APP: 2000}}, n=3)
    assert r.floods() == [(1, "open", LOG_WRITES, "above_host_limit")]
    assert r.opened("app.service")["baseline"] == 1000.0


# -- the setting --------------------------------------------------------------------------
def test_config_alerts_profile():
    assert parse({}).alerts_profile == ""
    cfg = parse({"alerts": {"profile": "/etc/surgewatch/prod.json", "warmup": 10}})
    assert (cfg.alerts_profile, cfg.alerts.warmup) == ("/etc/surgewatch/prod.json", 10)
    assert parse({"alerts": {"profile": ""}}).alerts_profile == ""
    with pytest.raises(BadInput, match="alerts.profile: 'prod.json' is not an absolute path"):
        parse({"alerts": {"profile": "prod.json"}}, path="f")
    with pytest.raises(BadInput, match="alerts.profile: expected a string, got an integer"):
        parse({"alerts": {"profile": 3}}, path="f")


def test_the_daemon_reads_the_profile_at_start(tmp_path):
    from collector.commands.run import read_alerts_profile
    assert read_alerts_profile("") is None
    good = tmp_path / "prod.json"
    good.write_text(json.dumps(profile_doc({"app.service": (20.0, 2000.0)})))
    p = read_alerts_profile(str(good))
    assert (len(p), p.figure("app.service", LOG_WRITES), p.figure("x", LOG_WRITES)) == (
        1, 20.0, None)
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    with pytest.raises(BadInput, match="bad.json: not a surgewatch profile"):
        read_alerts_profile(str(bad))
    with pytest.raises(BadInput, match="absent.json: cannot read"):
        read_alerts_profile(str(tmp_path / "absent.json"))
