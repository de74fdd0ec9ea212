"""The two production incidents, run on a Topology with surgewatch watching. Shared by the
e2e tests (which assert on what these return) and tests/e2e/demo.py (which narrates).

- resets_incident: pooled keep-alive connections through HAProxy with an idle timeout;
  a busy phase (gaps shorter than the timeout: no resets) then a "too little load" phase
  (gaps longer: the balancer resets the pool). `surgewatch snapshot --resets` watches.
- flood_incident: the chatty service goes from tens to thousands of lines/s while the
  frontend sends requests through HAProxy to nginx. `surgewatch run` watches.
"""
import json
import os
import signal
import subprocess
import sys
import time

from tests.e2e.topology import read_events

SURGEWATCH = os.path.join(os.path.dirname(sys.executable), "surgewatch")


def _say(narrate, msg):
    if narrate:
        narrate(msg)


def _wait_for(pred, timeout, what, proc=None):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what}: surgewatch exited with {proc.returncode}")
        time.sleep(0.05)
    raise RuntimeError(f"timed out waiting for {what}")


def _meta_written(path):
    try:
        return os.path.getsize(path) > 0
    except OSError:
        return False


def read_stream(path):
    from collector.records.stream import read_records

    with open(path, "rb") as f:
        return list(read_records(f, path))


def inventory_now(threshold_s):
    """surgewatch's open-connection inventory (what `snapshot --resets` prints at its
    end), taken right now: {service: [row, ...]}."""
    from collector.host.cgroups import CgroupIndex
    from collector.host.procfs import ProcFS
    from collector.host.services import ServiceResolver
    from collector.commands.snapshot import _inventory

    return _inventory(ServiceResolver(ProcFS(), CgroupIndex()), threshold_s)


class ResetsResult:
    pass


def resets_incident(topo, workdir, pool=4, short=(4, 1.5), long=(3, 5.0), threshold_s=2.0,
                    inventory_at_s=2.4, json_output=True, narrate=None):
    """Run the idle-reset incident under `surgewatch snapshot --resets`.

    Client phases: short[0] bursts with short[1] s gaps, then long[0] bursts with long[1]
    s gaps (the balancer's idle timeout, topo.idle_timeout_s, lies between). The open-
    connection inventory is taken inventory_at_s seconds into the last long gap, when the
    pool has been idle longer than threshold_s but not yet as long as the timeout."""
    r = ResetsResult()
    r.pcap = os.path.join(workdir, "frontend.pcap")
    r.events_path = os.path.join(workdir, "frontend-events.jsonl")
    r.stream = os.path.join(workdir, "snapshot.msgpack")
    client_s = short[0] * short[1] + long[0] * long[1]
    duration = client_s + 2.5
    cap = topo.start_capture(r.pcap)
    argv = [SURGEWATCH, "snapshot", "--resets", "--interval", "1", "--duration", str(duration),
            "--idle-threshold", str(threshold_s), "--msgpack", r.stream]
    if json_output:
        argv.append("--json")
    r.argv = argv
    _say(narrate, "$ " + " ".join(["surgewatch"] + argv[1:]))
    snap = subprocess.Popen(argv, stdout=subprocess.PIPE if json_output else None,
                            stderr=subprocess.PIPE if json_output else None, text=True)
    try:
        _wait_for(lambda: _meta_written(r.stream), 120, "the snapshot's probes", snap)
        _say(narrate, f"frontend: pool of {pool} keep-alive connections through HAProxy "
                      f"(idle timeout {topo.idle_timeout_s}s); {short[0]} bursts {short[1]}s "
                      f"apart, then {long[0]} bursts {long[1]}s apart")
        client = topo.start_frontend(pool, [short, long], r.events_path)
        # the last long gap starts with the last burst: wait for its requests
        last_burst = short[0] + long[0] - 1

        def last_burst_done():
            try:
                ev = read_events(r.events_path)
            except (OSError, ValueError):
                return None
            done = [e for e in ev if e["kind"] == "idle" and e["burst"] == last_burst]
            return done[0] if done else None

        idle_ev = _wait_for(last_burst_done, client_s + 30, "the frontend's last burst")
        time.sleep(max(0.0, idle_ev["ts"] + inventory_at_s - time.time()))
        r.inventory_ts = time.time()
        r.inventory = inventory_now(threshold_s)
        r.inventory_idle_s = r.inventory_ts - idle_ev["ts"]
        _say(narrate, f"inventory {r.inventory_idle_s:.1f}s into the last idle gap: "
                      + ", ".join(f"{svc}: {sum(x['at_risk'] for x in rows)} of {len(rows)} "
                                  f"at risk" for svc, rows in sorted(r.inventory.items())
                                  if any(x['at_risk'] for x in rows)))
        client.wait(timeout=client_s + 30)
        r.client_rc = client.returncode
        out, err = snap.communicate(timeout=duration + 60)
        r.snapshot_rc, r.snapshot_err = snap.returncode, err
        r.doc = json.loads(out) if json_output and out else None
    finally:
        if snap.poll() is None:
            snap.send_signal(signal.SIGINT)
            try:
                snap.wait(10)
            except subprocess.TimeoutExpired:
                snap.kill()
                snap.wait()
        time.sleep(0.3)                   # let tcpdump write the last packets
        topo.stop(cap, signal.SIGINT)
    r.events = read_events(r.events_path)
    r.records = read_stream(r.stream)
    return r


class FloodResult:
    pass


def flood_incident(topo, workdir, interval=0.25, base_rate=30, flood_rate=3000, base_s=10.0,
                   flood_s=4.0, after_s=1.5, pool=2, requests=(24, 0.5), narrate=None,
                   show_alerts=None):
    """Run the log-flood incident under `surgewatch run` (JSON lines on stdout)."""
    r = FloodResult()
    r.log = os.path.join(workdir, "chatty", "chatty.log")
    os.makedirs(os.path.dirname(r.log), exist_ok=True)
    r.events_path = os.path.join(workdir, "flood-frontend-events.jsonl")
    r.stream = os.path.join(workdir, "run.msgpack")
    r.stderr_path = os.path.join(workdir, "run.stderr")
    argv = [SURGEWATCH, "run", "--interval", str(interval), "--format", "msgpack",
            "--no-segments", "--no-socket", "--no-prometheus"]
    r.argv = argv
    _say(narrate, "$ " + " ".join(["surgewatch"] + argv[1:]) + " > run.msgpack")
    out = open(r.stream, "wb")
    err = open(r.stderr_path, "w+")
    daemon = subprocess.Popen(argv, stdout=out, stderr=err)
    try:
        _wait_for(lambda: _meta_written(r.stream), 120, "surgewatch run's probes", daemon)
        r.started = time.time()
        _say(narrate, f"chatty.service: {base_rate} lines/s for {base_s:g}s, then "
                      f"{flood_rate} lines/s for {flood_s:g}s (the new release), then "
                      f"{base_rate} again; frontend: {requests[0]} bursts to nginx")
        chatty = topo.start_chatty(r.log, [(base_s, base_rate), (flood_s, flood_rate),
                                           (after_s, base_rate)])
        client = topo.start_frontend(pool, [requests], r.events_path)
        deadline = time.monotonic() + base_s + flood_s + after_s + 60
        seen = 0
        while chatty.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
            if show_alerts is not None:
                err.seek(seen)
                new = err.read()
                seen += len(new)
                for line in new.splitlines():
                    if "alert" in line:
                        show_alerts(line)
        chatty.wait(timeout=5)
        client.wait(timeout=max(5, deadline - time.monotonic()))
        r.chatty_rc, r.client_rc = chatty.returncode, client.returncode
        time.sleep(2 * interval)           # the last lines' interval is drained
    finally:
        if daemon.poll() is None:
            daemon.send_signal(signal.SIGTERM)
            try:
                daemon.wait(30)
            except subprocess.TimeoutExpired:
                daemon.kill()
                daemon.wait()
        out.close()
        err.seek(0)
        r.stderr = err.read()
        err.close()
    r.daemon_rc = daemon.returncode
    r.records = read_stream(r.stream)
    r.events = read_events(r.events_path)
    with open(r.log, "rb") as f:
        r.lines = [(float(line.split()[0]), int(line.split()[1].split(b"=")[1]))
                   for line in f if line.strip()]
    r.jump_ts = min(ts for ts, phase in r.lines if phase == 1)
    r.flood_end_ts = max(ts for ts, phase in r.lines if phase == 1)
    with open(topo.nginx_log) as f:
        r.nginx_stamps = [float(line.split()[0]) for line in f if line.strip()]
    r.nginx_lines = len(r.nginx_stamps)
    return r


def interval_windows(records):
    """{seq: (start, end)} wall-clock bounds of each interval, from the stats records (the
    boundary is taken before the drain, the record's ts after it)."""
    out = {}
    for s in records:
        if s["type"] == "stats":
            end = s["ts"] - s["drain_ms"] / 1000.0
            out[s["seq"]] = (end - s["interval"], end)
    return out
