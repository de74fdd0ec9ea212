"""The one place a collector is assembled: probes (each compiled in its loader child),
host readers, the resets stage; and how new log rules are applied to a running one."""
import gc
import socket
import sys

from collector.config import Config, env_seams
from collector.errors import ProbeUnavailable
from collector.host.cgroups import CgroupIndex
from collector.host.containers import ContainerNames
from collector.host.destinations import DestinationResolver
from collector.host.hostroot import DEFAULT as DEFAULT_HOST_ROOT, HostFiles, find_host_root
from collector.host.procfs import ProcFS
from collector.host.runtimes import RuntimePipes, runtime_names
from collector.host.services import ServiceResolver
from collector.host.sockdiag import ListenerLookup
from collector.host.unixsock import journald_stream_clients
from collector.pipeline.resets import ResetAttributor, ResetStage
from collector.pipeline.runtime import Collector
from collector.probes import kernel
from collector.probes.logwrites import LogWriteProbe
from collector.probes.resets import ResetProbe


def probe_verdict(probe):
    return lambda dev, gen, ino, is_log: probe.set_verdict(dev, gen, ino, is_log)


def build_collector(rules, probe_kwargs=None, resets=False, probes=None,
                    host_root=DEFAULT_HOST_ROOT):
    """The log-write pipeline, probe loaded and attached (and the TCP reset probe when
    resets=True and it can run here). The caller ends it with collector.close().

    Each probe compiles in its own loader child (collector/probes/loader.py), both at
    once: on two cores start-up takes the longer compile, not the sum. probes: the
    config's ProbesConfig (hook, map sizes, load timeout); probe_kwargs: explicit
    LogWriteProbe arguments that win over it (tests). host_root: the `host_root` setting
    (collector/host/hostroot.py): where the host's own files and cgroup2 mount are, when
    we run in another root; the result is the collector's `host_root`."""
    if probes is None:      # tests and benchmarks: the defaults and the environment's seams
        probes = env_seams(Config()).probes
    kernel.require_environment()
    root = find_host_root(host_root)
    procfs = ProcFS()
    services = ServiceResolver(procfs, CgroupIndex(root.mountinfo, mounts=root.mounts),
                               containers=ContainerNames(root=root.files))
    holder = {}
    probe = LogWriteProbe.from_config(
        probes, on_open=lambda ev: holder["resolver"].note_open(ev), **(probe_kwargs or {}))
    resolver = DestinationResolver(procfs, rules, probe_verdict(probe),
                                   journald_stream_clients,
                                   set_channels=probe.set_socket_paths,
                                   runtime_pipes=RuntimePipes(procfs,
                                                              runtime_names(rules.runtimes)),
                                   host_files=HostFiles(root.files),
                                   forget_pending=probe.forget_pending)
    holder["resolver"] = resolver
    disabled = {}
    pending = probe.start_load(probes.load_timeout_s, probes.cache_dir)
    reset_load = _start_resets(disabled, probes) if resets else None
    try:
        probe.finish_load(pending)
    except BaseException:
        if reset_load is not None:
            reset_load[1].cancel()
        raise
    stage = None
    if reset_load is not None:
        try:
            stage = _reset_stage(procfs, services, reset_load, disabled)
        except BaseException:
            probe.close()
            raise
    resolver.refresh_channels()
    resolver.replay()
    gc.freeze()        # what loading built lives for the whole run: never rescan it
    collector = Collector(probe, resolver, services, resets=stage, disabled_probes=disabled)
    collector.host_root = root
    return collector


def _start_resets(disabled, probes):
    """(probe, pending load) of the TCP reset probe, or None (with a note) when its
    plan cannot be made here."""
    probe = ResetProbe.from_config(probes)
    try:
        return probe, probe.start_load(probes.load_timeout_s, probes.cache_dir)
    except ProbeUnavailable as e:
        _resets_unavailable(e, disabled)
        return None


def _resets_unavailable(e, disabled):
    sys.stderr.write(f"surgewatch: note: TCP resets not watched: {e}\n")
    disabled[ResetProbe.name] = str(e)


def _reset_stage(procfs, services, reset_load, disabled):
    """The TCP reset probe and its enrichment, or None (with a note) when it cannot run."""
    probe, pending = reset_load
    try:
        probe.finish_load(pending)
    except ProbeUnavailable as e:
        _resets_unavailable(e, disabled)
        return None
    return ResetStage(probe, ResetAttributor(services, ListenerLookup(procfs)),
                      socket.gethostname())


def rules_key(rules):
    """What of the rules decides verdicts: equal keys, no reload of verdicts needed."""
    return rules.key()


def apply_rules(collector, rules):
    """Judge log destinations by new rules from now on; the kernel's counts are untouched.

    Every verdict (ours and the kernel's copy) is forgotten, then the files open on the
    host are judged again. Writes meanwhile to an inode without a verdict are counted
    and judged at the next drain, as at start, so nothing is lost across the switch.
    """
    collector.resolver.change_rules(rules)
    collector.probe.clear_verdicts()
    return collector.resolver.replay()
