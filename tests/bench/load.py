"""Case 7: what counting TCP load costs (issue 18), by the kernel's own count.

    python -m tests.bench.load [hook ...]          (default: every hook this kernel offers)
    python -m tests.bench load                     (the same, in make bench)

For each hook path a real `surgewatch run` (resets on, as its defaults) is attached, and
kernel.bpf_stats_enabled is switched on only around each of three loops of one pinned
client process (CPU 0; its server on CPU 1):
  conn   N loopback connect + accept + 1-byte request + close (the server accepts)
  tcp    N 1-byte sends on one established connection
  udp    N 1-byte UDP sendto (a socket send that is not TCP)
Each program's run_cnt / run_time_ns growth gives ns per run: sw_set_state and the accept
hook carry the connection counting, sw_send_length (tracepoint path) or
kretfunc__tcp_sendmsg (fentry path) the bytes. The floor is an empty program on the same
bytes hook (sock:sock_send_length, or fexit tcp_sendmsg), attached alone by a separate
process and measured in the same loops: what any program there costs, bpf_stats' own
~30 ns included. The daemon's records must hold exactly the conn loop's accepts and
connects and the tcp loop's bytes (a wrong count fails the case)."""
import json
import os
import subprocess
import sys
import tempfile

from tests.bench.daemon import BenchDaemon
from tests.bench.progstats import _set_stats, offered_hooks
from tests.bench.syscalls import TRACING_TYPES, _progs

N = int(os.environ.get("BENCH_LOAD_N", "20000"))
CONNS = int(os.environ.get("BENCH_LOAD_CONNS", "2000"))
CASES = ("conn", "tcp", "udp")

# one process on CPU 0: a request line "case n", one reply line when done
CLIENT = r"""
import ctypes, socket, sys
ctypes.CDLL(None).prctl(15, b"swbench-cli", 0, 0, 0)
port = int(sys.argv[1])
keep = socket.create_connection(("127.0.0.1", port))
keep.sendall(b"K")
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sink.bind(("127.0.0.1", 0))
dst = sink.getsockname()
for line in sys.stdin:
    case, n = line.split()
    n = int(n)
    if case == "conn":
        for _ in range(n):
            c = socket.create_connection(("127.0.0.1", port))
            c.sendall(b"c")
            c.recv(1)
            c.close()
    elif case == "tcp":
        for i in range(n):
            keep.send(b"t")
    elif case == "udp":
        for i in range(n):
            udp.sendto(b"u", dst)
            if i % 64 == 63:
                sink.setblocking(False)
                try:
                    while True:
                        sink.recv(16)
                except BlockingIOError:
                    pass
                sink.setblocking(True)
    print("done", flush=True)
"""

# on CPU 1: accepts; the first connection is kept and drained, the others answered
SERVER = r"""
import ctypes, socket, threading
ctypes.CDLL(None).prctl(15, b"swbench-srv", 0, 0, 0)
srv = socket.socket()
srv.bind(("127.0.0.1", 0))
srv.listen(512)
print(srv.getsockname()[1], flush=True)
keep, _ = srv.accept()
def drain():
    while keep.recv(65536):
        pass
threading.Thread(target=drain, daemon=True).start()
while True:
    c, _ = srv.accept()
    if c.recv(1) == b"c":
        c.sendall(b"r")
    c.close()
"""

FLOOR = r"""
import sys
from bcc import BPF
hook = sys.argv[1]
if hook == "fentry":
    b = BPF(text="KRETFUNC_PROBE(tcp_sendmsg) { return 0; }")
else:
    b = BPF(text="int empty(void *ctx) { return 0; }")
    b.attach_raw_tracepoint(tp="sock_send_length", fn_name="empty")   # as the probe does
print("ready", flush=True)
sys.stdin.read()
"""


def _ours(before):
    return {i: p for i, p in _progs().items() if i not in before and p.get("type") in TRACING_TYPES}


def measure(hook, workdir, n=N, conns=CONNS):
    """{"programs": {name: {case: (runs, ns per run)}}, "floor": {case: ...}, "counted": ...}."""
    logdir = os.path.join(workdir, "logs")
    os.makedirs(logdir, exist_ok=True)
    before = set(_progs())
    daemon = BenchDaemon(workdir, logdir, hook=hook, cpu=1, resets=True, interval=0.5)
    server = client = floor = None
    out = {"programs": {}, "floor": {}}
    try:
        meta, _ = daemon.attached()
        ours = _ours(before)
        floor = subprocess.Popen(["taskset", "-c", "1", sys.executable, "-c", FLOOR, hook],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        if floor.stdout.readline().strip() != "ready":
            raise RuntimeError("load bench: the floor program did not attach")
        floor_ids = set(_ours(before)) - set(ours)
        server = subprocess.Popen(["taskset", "-c", "1", sys.executable, "-c", SERVER],
                                  stdout=subprocess.PIPE, text=True)
        port = server.stdout.readline().strip()
        client = subprocess.Popen(["taskset", "-c", "0", sys.executable, "-c", CLIENT, port],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

        def run(case, k):
            client.stdin.write(f"{case} {k}\n")
            client.stdin.flush()
            assert client.stdout.readline().strip() == "done"

        for case in CASES:
            run(case, 200)                                   # warm
        daemon.wait_stats(daemon.stats_count() + 3)
        mark = len(daemon.records)
        for case in CASES:
            k = conns if case == "conn" else n
            _set_stats(True)
            try:
                start = _progs()
                run(case, k)
                end = _progs()
            finally:
                _set_stats(False)
            for pid in list(ours) + list(floor_ids):
                a, b = start.get(pid, {}), end.get(pid, {})
                runs = b.get("run_cnt", 0) - a.get("run_cnt", 0)
                ns = b.get("run_time_ns", 0) - a.get("run_time_ns", 0)
                cell = (runs, ns / runs if runs else 0.0)
                if pid in floor_ids:
                    out["floor"][case] = cell
                else:
                    out["programs"].setdefault(ours[pid].get("name", str(pid)), {})[case] = cell
        daemon.wait_stats(daemon.stats_count() + 3)
        counted = {"accepted": 0, "connected": 0, "srv_bytes": 0, "cli_bytes": 0}
        for r in daemon.records[mark:]:
            if r.get("type") != "rate":
                continue
            if r["service"] == "swbench-srv":
                counted["accepted"] += r.get("conns_accepted", 0)
                counted["srv_bytes"] += r.get("tcp_bytes_out", 0)
            elif r["service"] == "swbench-cli":
                counted["connected"] += r.get("conns_connected", 0)
                counted["cli_bytes"] += r.get("tcp_bytes_out", 0)
        bytes_on = meta["probes"]["resets"].get("tcp_bytes") is not None
        out["counted"] = counted
        out["expected"] = {"accepted": conns, "connected": conns, "srv_bytes": conns if bytes_on
                           else 0, "cli_bytes": (conns + n) if bytes_on else 0}
        out["tcp_bytes_hook"] = meta["probes"]["resets"].get("tcp_bytes")
        out["hook"] = meta["probes"]["resets"].get("hook")
    finally:
        for p in (client, floor):
            if p is not None:
                p.stdin.close()
                p.wait(timeout=30)
        if server is not None:
            server.kill()
            server.wait(timeout=30)
        daemon.stop()
    return out


def report(results, n=N, conns=CONNS):
    print(f"\n-- case 7: TCP load counting, ns per program run by bpf_stats ({conns:,} "
          f"connections, {n:,} TCP and {n:,} UDP 1-byte sends)")
    for hook, r in results.items():
        ok = r["counted"] == r["expected"]
        print(f"   hook {r['hook']}, bytes by {r['tcp_bytes_hook']}: counted {r['counted']} "
              f"{'exact' if ok else 'WRONG, expected ' + str(r['expected'])}")
        for case in CASES:
            k = conns if case == "conn" else n
            cells = [f"{name} {runs / k:.2f}/call {ns:.1f} ns"
                     for name, c in sorted(r["programs"].items())
                     for runs, ns in [c.get(case, (0, 0.0))] if runs >= k / 2]
            fr, fns = r["floor"].get(case, (0, 0.0))
            floor = f"floor {fr / k:.2f}/call {fns:.1f} ns" if fr >= k / 2 else "floor not run"
            print(f"     {case:5} {', '.join(cells) or 'no program runs'}; {floor}")


def run(workdir, hooks=None):
    return {h: measure(h, os.path.join(workdir, h)) for h in hooks or offered_hooks()}


def main(argv):
    with tempfile.TemporaryDirectory(prefix="sw-load-") as d:
        results = run(d, argv)
    report(results)
    print(json.dumps(results, default=list))
    return 0 if all(r["counted"] == r["expected"] for r in results.values()) else 1


if __name__ == "__main__":
    if os.geteuid() != 0:
        sys.exit("load bench: run as root (bpf_stats, bpftool)")
    sys.exit(main(sys.argv[1:]))
