"""Every probe, registered once: name -> "module:Class". The class carries the rest of
the probe's contract (collector/probes/base.py: its label, plan, meta, doctor checks,
typed drain). Adding a probe: collector/bpf/<name>.c, collector/probes/<name>.py, and
one line here.

Classes are imported on first use: the loader child imports the one it loads, and this
module stays importable from collector/probes/loader.py, which every probe imports."""
import importlib

PROBES = {
    "logwrites": "collector.probes.logwrites:LogWriteProbe",
    "resets": "collector.probes.resets:ResetProbe",
}


def probe_class(name):
    module, cls = PROBES[name].split(":")
    return getattr(importlib.import_module(module), cls)


def label(name):
    """How errors name the probe ("log-write probe"); an unknown name as itself."""
    return probe_class(name).label if name in PROBES else name


def probe_classes():
    return [probe_class(name) for name in PROBES]
