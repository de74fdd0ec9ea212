"""The peers benchmark's table (tests/bench/peers.py): per case and VM mode each tool's
added ns and (untraced + added) / untraced, surgewatch's added ns over each peer's, the
issue's targets, then each tool's start, stop and memory."""
import statistics

from tests.bench.syscalls import PAIR_CASES

LABELS = {"null": "1-byte write, /dev/null (unrelated)",
          "log": "1-byte log append (O_APPEND, counted)", "ppid": "getppid (not traced)"}
PEERS = ("syscount", "bpftrace")
# the targets: surgewatch's added ns against each peer's (<: below, <=: at most)
TARGETS = {"null": {"syscount": "<", "bpftrace": "<"}, "log": {"syscount": "<="},
           "ppid": {"bpftrace": "<="}}


def _fmt_cell(m):
    return f"{m['delta_ns']:+.0f} ({(m['base_ns'] + m['delta_ns']) / m['base_ns']:.2f}x)"


def _spread(v, fmt):
    if not v:
        return "-"
    lo, med, hi = min(v), statistics.median(v), max(v)
    return fmt.format(med) + (f" ({fmt.format(lo)}-{fmt.format(hi)})" if len(v) > 1 else "")


def report(r):
    summary = r["clean"] or r["all"]
    by = summary["by_tracer"]
    names = ["floor", *r["tools"]]
    print(f"\n-- peers: added ns per call and (untraced + added) / untraced, paired method "
          f"({r['rounds_kept']} clean rounds of {len(r['rounds'])}, {r['pairs']} pairs per "
          f"tool, {r['n']:,} calls per measurement; median paired delta; {r['duration_s']:.0f} s)")
    if r["clean"] is None:
        print("   NO CLEAN ROUND: figures below are from contaminated rounds")
    for name, why in r["skipped"].items():
        print(f"   {name} skipped: {why}")
    head = f"   {'case [mode]':44} {'untraced':>9}" + "".join(f" {n:>15}" for n in names)
    peers = [p for p in PEERS if p in r["tools"]]
    if "surgewatch" in r["tools"]:
        head += "".join(f" {'sw/' + p:>12}" for p in peers)
    print(head)
    for c in PAIR_CASES:
        for mode in ("fast", "slow", "all"):
            cells = {n: by.get(n, {}).get(c, {}).get(mode) for n in names}
            if not any(cells.values()):
                continue
            base = statistics.median(m["base_ns"] for m in cells.values() if m)
            line = f"   {LABELS[c] + ' [' + mode + ']':44} {base:7.0f} ns"
            line += "".join(f" {_fmt_cell(m) if m else '-':>15}" for m in cells.values())
            sw = cells.get("surgewatch")
            for p in peers:
                pm = cells.get(p)
                ratio = f"{sw['delta_ns'] / pm['delta_ns']:.2f}x" \
                    if sw and pm and pm["delta_ns"] > 0 else "-"
                line += f" {ratio:>12}"
            print(line)
    _report_targets(by)
    print(f"   {'per tool':16} {'start to attached':>22} {'stop (signal to exit)':>24} "
          f"{'programs gone':>18} {'RSS MB':>16} {'PSS MB':>16}")
    for name, t in r["tools"].items():
        print(f"   {name:16} {_spread(t['start_s'], '{:.2f}') + ' s':>22} "
              f"{_spread(t['stop_s'], '{:.2f}') + ' s':>24} {_spread(t['gone_s'], '{:.2f}'):>18} "
              f"{_spread(t['rss_mb'], '{:.0f}'):>16} {_spread(t['pss_mb'], '{:.0f}'):>16}")
    for name, t in r["tools"].items():
        print(f"   hooks {name}: {len(t['hooks'] or ())}"
              + (" (the floor's)" if t["hooks"] == r["floor_hooks"] else
                 f" {t['hooks']}" if len(t["hooks"] or ()) < 4 else " (NOT the floor's)"))
    if r["counts"]:
        exact = all(ch["exact"] for ch in r["counts"])
        print(f"   surgewatch counted {sum(ch['counted'] for ch in r['counts']):,} of "
              f"{sum(ch['written'] for ch in r['counts']):,} log writes over "
              f"{len(r['counts'])} daemon runs -> {'exact' if exact else 'NOT EXACT'}"
              + ("" if exact else f" {r['counts']}"))
    print(f"   checkout {r['checkout']}; rounds: "
          + "; ".join(f"{n['attempt']}: {n['contaminated'] or 'clean'} "
                      f"({n['foreign_cpu']:.1%}, {n['wall_s']:.0f} s)" for n in r["rounds"]))


def _report_targets(by):
    sw = by.get("surgewatch")
    if not sw:
        return
    out = []
    for c, against in TARGETS.items():
        for peer, op in against.items():
            for mode in ("fast", "slow", "all"):
                s, p = sw.get(c, {}).get(mode), by.get(peer, {}).get(c, {}).get(mode)
                if not s or not p:
                    continue
                ok = s["delta_ns"] < p["delta_ns"] if op == "<" else s["delta_ns"] <= p["delta_ns"]
                out.append(f"{c} [{mode}] {op} {peer}: {'met' if ok else 'MISSED'}")
    if out:
        print("   targets (surgewatch's added ns): " + "; ".join(out))
