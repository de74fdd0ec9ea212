"""What the alert detector knows about a service before it has a baseline of its own: what
the host can take (the loss-risk check's entries on the service's `rate` record: journald's
rate limit for its unit, `[capacity]` globs) and a profile (`surgewatch record`, of this
host or of a fleet from Prometheus) configured as `[alerts] profile`.

Pure: records and a profile document in, judgements out. The rules are in
docs/detection.md, "A start in the middle of an incident". In short:

- an interval in which a service alone is over a host limit (`host_limit`) is not learnt
  into its log baselines, so a flood the host cannot take never becomes its normal; a
  service still learning is above in it (`above_host_limit`);
- a service in the profile starts with a baseline: its window is seeded with `warmup`
  copies of the profile's figure (its `mean`, what `compare` compares by default), so it
  is judged from its first interval (`above_profile` while the seeds outnumber its own
  samples).
"""
from collector.aggregate.lossrisk import CAPACITY, JOURNALD, limit_fields
from collector.aggregate.signals import SIGNALS

ABOVE_HOST_LIMIT = "above_host_limit"
ABOVE_PROFILE = "above_profile"
PROFILE_STAT = "mean"
OTHER_SERVICE = "(other)"           # a fold of many services, not a service to judge


def _number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def host_limit(rec, rate):
    """The `loss_risk` entry of a rate record (collector.aggregate.lossrisk) that the
    service is over by itself at `rate` (its log writes/s this interval), or None.

    journald limits per unit: its entry is the service's own, and counts when `rate` is
    above the lines/s journald lets through (`allowed_per_s`; a window still over the
    burst after the flood stopped does not make a quiet interval abnormal). A capacity
    glob is shared by every writer to its paths: its entry counts only when the service's
    own writes to them (`service_rate`) exceed the capacity, never for a small writer
    next to a loud one. The strictest such limit (lowest allowed_per_s) when several."""
    best = None
    for e in (rec or {}).get("loss_risk") or ():
        if not isinstance(e, dict):
            continue
        allowed = e.get("allowed_per_s")
        if not _number(allowed) or not rate > allowed:
            continue
        if e.get("limit") == CAPACITY:
            own = e.get("service_rate")
            if not _number(own) or not own > allowed:
                continue
        elif e.get("limit") != JOURNALD:
            continue
        if best is None or allowed < best["allowed_per_s"]:
            best = e
    return best


def limit_text(limit):
    """How a log line names the limit of an `above_host_limit` alert."""
    if limit.get("limit") == CAPACITY:
        return f"capacity {limit.get('glob')}"
    return "its journald rate limit"


def host_limit_fields(entry):
    """The extra fields of an `above_host_limit` alert: `limit`, as a log_loss_risk
    alert's (docs/stream.md)."""
    return {"limit": limit_fields(entry)}


class Profile:
    """Per service and signal the figure a service's baseline is seeded with: the
    profile's `mean` (a local profile: the host's mean rate over the recording; a fleet
    profile: a host's mean rate, across the hosts that ran the service)."""

    def __init__(self, doc, source):
        """doc: a profile checked by collector.aggregate.profile.check_profile; source:
        where it was read (the alert records' `profile.source`)."""
        self.source = str(source)
        self.basis = doc.get("basis") or "per_interval"
        signals = [s for s in SIGNALS if s in doc.get("signals", ())]
        self.figures = {}
        for name, body in (doc.get("services") or {}).items():
            if name == OTHER_SERVICE or not isinstance(body, dict):
                continue
            figures = {}
            for s in signals:
                stats = body.get(s)
                if isinstance(stats, dict) and _number(stats.get(PROFILE_STAT)) \
                        and stats[PROFILE_STAT] >= 0:
                    figures[s] = float(stats[PROFILE_STAT])
            if figures:
                self.figures[name] = figures

    def __len__(self):
        return len(self.figures)

    def figure(self, service, signal):
        """The profile's figure of one service and signal, or None (not in the profile)."""
        return self.figures.get(service, {}).get(signal)

    def fields(self):
        """The extra fields of an `above_profile` alert (docs/stream.md)."""
        return {"profile": {"source": self.source, "basis": self.basis,
                            "stat": PROFILE_STAT}}
