"""`make demo`: both production incidents on this machine, with surgewatch catching them.

    sudo .venv/bin/python -m tests.e2e.demo [--keep DIR]

Builds the e2e topology (network namespaces frontend / lb / backend, Debian's HAProxy and
nginx, a frontend client service and a chatty service; tests/e2e/topology.py), runs
the log flood under `surgewatch run` with a live `surgewatch snapshot`, then the idle
resets under `surgewatch snapshot --resets`, narrating as it goes; removes everything
at the end. Takes about a minute and a half. Files (streams, profiles, the plot, the
capture) are kept in DIR when --keep is given.
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

from tests.e2e.incidents import SURGEWATCH, flood_incident, resets_incident
from tests.e2e.topology import Topology, missing_tools, pcap_resets


def say(msg=""):
    print(f"\033[1m==> {msg}\033[0m" if sys.stdout.isatty() else f"==> {msg}", flush=True)


def sh(argv, **kw):
    print("$ " + " ".join(["surgewatch" if a == SURGEWATCH else a for a in argv]), flush=True)
    return subprocess.run(argv, **kw)


def flood(topo, work):
    say("Incident 1: a release makes chatty.service log 100x more")
    say("surgewatch run (the daemon) is watching; the live snapshot shows the host meanwhile")
    result, failure = {}, {}

    def body():
        try:
            result["r"] = flood_incident(topo, work, interval=0.5, base_rate=30,
                                         flood_rate=3000, base_s=20.0, flood_s=5.0,
                                         after_s=3.0, pool=2, requests=(40, 0.5),
                                         narrate=say, show_alerts=lambda l: None)
        except Exception as e:          # reported below, after the snapshot
            failure["e"] = e

    t = threading.Thread(target=body)
    t.start()
    time.sleep(1.0)                      # the daemon starts compiling first
    sh([SURGEWATCH, "snapshot", "--duration", "26", "--interval", "1", "--top", "6"])
    t.join()
    if failure:
        raise failure["e"]
    r = result["r"]
    say(f"chatty wrote {len(r.lines)} lines ({sum(1 for _, p in r.lines if p == 1)} in the "
        f"5 s flood); nginx served {r.nginx_lines} requests, one access-log line each")
    alerts = [x for x in r.records if x["type"] == "alert"]
    say("what the daemon logged (journald in production):")
    for line in r.stderr.splitlines():
        if "alert" in line:
            print("  " + line)
    for a in alerts:
        if a["state"] == "open" and a["service"] == "chatty.service":
            path = a["top"]["paths"][0]["path"] if a["top"].get("paths") else "?"
            print(f"  alert record: seq {a['seq']} {a['signal']} rate {a['rate']:.0f}/s "
                  f"baseline {a['baseline']:.1f}/s ratio {a['ratio']:.0f}x path {path}")
    nginx = sum(p["writes"] for x in r.records if x["type"] == "rate"
                and x["service"] == "nginx.service" for p in x["paths"])
    say(f"surgewatch counted {nginx} access-log writes by nginx.service "
        f"(its log has {r.nginx_lines} lines)")
    plot = os.path.join(work, "flood.png")
    sh([SURGEWATCH, "plot", r.stream, "-o", plot])
    say("the test-environment gate: profile before the release vs after")
    from collector.records.stream import encode

    meta = [x for x in r.records if x["type"] == "meta"]
    first = min(ts for ts, _ in r.lines)
    cut = {"before": [x for x in r.records if x["type"] != "meta"
                      and first + 1 <= x["ts"] < r.jump_ts],
           "after": [x for x in r.records if x["type"] != "meta"
                     and r.jump_ts + 1 <= x["ts"] <= r.flood_end_ts]}
    for name, recs in cut.items():
        with open(os.path.join(work, f"{name}.msgpack"), "wb") as f:
            for x in meta + recs:
                f.write(encode(x))
        sh([SURGEWATCH, "record", "--from", os.path.join(work, f"{name}.msgpack"), "-o",
            os.path.join(work, f"{name}.json")], check=True)
    gate = sh([SURGEWATCH, "compare", os.path.join(work, "before.json"),
               os.path.join(work, "after.json")])
    say(f"surgewatch compare exit code: {gate.returncode} (1 = the release breaks its baseline)")
    return r


def resets(topo, work):
    say("Incident 2: connection resets from too little load")
    say(f"HAProxy in lb: TCP mode, timeout client/server {topo.idle_timeout_s}s, "
        "option nolinger (idle connections are closed with a reset)")
    r = resets_incident(topo, work, pool=4, short=(4, 1.5), long=(3, 5.0), threshold_s=2.0,
                        json_output=False, narrate=say)
    busy = [e for e in r.events if e["kind"] == "request" and e["phase"] == 0]
    quiet = [e for e in r.events if e["kind"] == "request" and e["phase"] == 1]
    say(f"frontend's own view: busy phase {sum(not e['ok'] for e in busy)} of {len(busy)} "
        f"requests failed; quiet phase {sum(not e['ok'] for e in quiet)} of {len(quiet)} "
        "failed (no retry on a reset)")
    at_risk = [x for x in r.inventory.get("frontend.service", []) if x["at_risk"]]
    say(f"inventory {r.inventory_idle_s:.1f}s into the last gap (threshold 2 s): "
        f"{len(at_risk)} frontend.service connections at risk:")
    for x in at_risk:
        print(f"    pid {x['pid']} {x['local']} -> {x['remote']} {x['state']} "
              f"idle {x['idle_s']:.1f}s")
    rsts = pcap_resets(r.pcap)
    fe = sum(x.get("resets_received", 0) for x in r.records if x["type"] == "rate"
             and x["service"] == "frontend.service")
    say(f"tcpdump in the frontend namespace: {len(rsts)} RSTs from the balancer; "
        f"surgewatch: {fe} resets received by frontend.service")
    return r


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keep", metavar="DIR", help="keep the run's files in DIR")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("demo: needs root (BPF, network namespaces): sudo make demo")
    missing = missing_tools()
    if missing:
        sys.exit(f"demo: missing {', '.join(missing)}: run `make setup`")
    work = args.keep or tempfile.mkdtemp(prefix="surgewatch-demo-")
    os.makedirs(work, exist_ok=True)
    topo = Topology(work, idle_timeout_s=3, subnet=1)   # 10.250.1.0/24, 10.250.2.0/24
    say(f"topology: namespaces {', '.join(topo.ns.values())}; HAProxy in lb, nginx in backend")
    try:
        topo.up()
        topo.start_backend()
        topo.start_lb()
        flood(topo, work)
        print()
        resets(topo, work)
    finally:
        topo.down()
        say("topology removed")
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            say(f"files kept in {work}")


if __name__ == "__main__":
    main()
