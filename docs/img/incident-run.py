"""Make the pictures of docs/img/incident-run.* from a real run (as root, loopback only):

    sudo .venv/bin/python docs/img/incident-run.py [WORKDIR]

A real `surgewatch run` (0.5 s intervals, resets probe, segment files in WORKDIR/seg)
watches, for about 55 s:
- checkout-api.service: 20 log lines/s, 2,000/s for 10 s (the flood), then 20/s again;
- idle-lb.service: a TCP server that aborts (RST) every connection idle for 2 s, like a
  load balancer's idle timeout, and frontend.service: a client keeping 40 pooled
  connections to it, sending requests at random (a pooled connection often idles past 2 s);
- batch-job.service: tests/workloads/resetstorm at 2,000 resets/s for 4 s.
Then `surgewatch plot` draws the segment directory as PNG, SVG and HTML into docs/img/,
and `surgewatch tail` lines of the run go to WORKDIR/tail.txt.
"""
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tests.owncgroup import unit_cgroup
from tests.support.daemon import SURGEWATCH, Daemon
from tests.workloads.build import build

IDLE_TIMEOUT_S = 2.0

WRITER = r"""
import ctypes, os, sys, time
ctypes.CDLL(None).prctl(15, b"checkout-api", 0, 0, 0)
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
line = b"2026-12-02 checkout: order accepted, payment pending, retrying ledger\n"
n = 0
for rate, seconds in ((20, 25), (2000, 10), (20, 20)):
    start = time.monotonic()
    done = 0
    while time.monotonic() - start < seconds:
        due = int((time.monotonic() - start) * rate)
        for _ in range(due - done):
            os.write(fd, line)
        n += due - done
        done = due
        time.sleep(0.005)
print(n, flush=True)
"""

LB = r"""
import ctypes, selectors, socket, struct, sys, time
ctypes.CDLL(None).prctl(15, b"idle-lb", 0, 0, 0)
timeout = float(sys.argv[1])
srv = socket.socket()
srv.bind(("127.0.0.1", 0))
srv.listen(128)
print(srv.getsockname()[1], flush=True)
sel = selectors.DefaultSelector()
sel.register(srv, selectors.EVENT_READ)
last = {}
while True:
    for key, _ in sel.select(0.02):
        s = key.fileobj
        if s is srv:
            c, _ = srv.accept()
            sel.register(c, selectors.EVENT_READ)
            last[c] = time.monotonic()
            continue
        try:
            data = s.recv(64)
        except ConnectionError:
            data = b""
        if data:
            s.sendall(b"OK\n")
            last[s] = time.monotonic()
        else:
            sel.unregister(s); s.close(); last.pop(s)
    now = time.monotonic()
    for c in [c for c, t in last.items() if now - t >= timeout]:
        c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sel.unregister(c); c.close(); last.pop(c)     # the idle timeout: RST
"""

FRONTEND = r"""
import ctypes, random, select, socket, sys, time
ctypes.CDLL(None).prctl(15, b"frontend", 0, 0, 0)
port, seconds = int(sys.argv[1]), float(sys.argv[2])
rnd = random.Random(7)
def connect():
    return socket.create_connection(("127.0.0.1", port))
pool = [connect() for _ in range(40)]
end = time.monotonic() + seconds
failed = 0
while time.monotonic() < end:
    time.sleep(rnd.expovariate(12.0))
    k = rnd.randrange(len(pool))
    c = pool[k]
    try:
        if select.select([c], [], [], 0)[0]:     # reset (or closed) while pooled
            c.recv(16)
            raise ConnectionResetError
        c.sendall(b"GET\n")
        c.recv(16)
    except ConnectionError:
        failed += 1
        c.close()
        pool[k] = connect()
print(failed, flush=True)
"""


def main(workdir):
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    storm = build("resetstorm", workdir)
    d = Daemon(workdir, interval=0.5, stdout="msgpack", segments=True, resets=True)
    procs = []
    try:
        d.wait_meta()                       # the probes are attached
        with unit_cgroup("checkout-api") as app, unit_cgroup("idle-lb") as lbcg, \
                unit_cgroup("frontend") as fecg, unit_cgroup("batch-job") as jobcg:
            lb = subprocess.Popen([sys.executable, "-c", LB, str(IDLE_TIMEOUT_S)],
                                  stdout=subprocess.PIPE, text=True, preexec_fn=lbcg.enter)
            procs.append(lb)
            port = lb.stdout.readline().strip()
            writer = subprocess.Popen([sys.executable, "-c", WRITER,
                                       str(d.logdir / "checkout.log")],
                                      stdout=subprocess.PIPE, text=True, preexec_fn=app.enter)
            fe = subprocess.Popen([sys.executable, "-c", FRONTEND, port, "55"],
                                  stdout=subprocess.PIPE, text=True, preexec_fn=fecg.enter)
            procs += [writer, fe]
            time.sleep(35)
            job = subprocess.run([storm, "2000", "4"], capture_output=True, text=True,
                                 preexec_fn=jobcg.enter, check=True)
            lines = writer.communicate(timeout=60)[0].strip()
            failed = fe.communicate(timeout=60)[0].strip()
            lb.kill()
            lb.wait()
            time.sleep(1.5)                 # the last intervals close
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        d.stop()
    print(f"checkout-api wrote {lines} lines; frontend saw {failed} requests fail on reset "
          f"connections; batch-job made {job.stdout.strip()} resets")
    img = REPO / "docs" / "img"
    for ext in ("png", "svg", "html"):
        subprocess.run([SURGEWATCH, "plot", str(d.segdir), "-o", str(img / f"incident-run.{ext}")],
                       check=True)
    from collector.commands.tail import run_tail

    with open(workdir / "tail.txt", "w") as f:
        run_tail(str(d.segdir), as_json=False, stdout=f)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "/tmp/surgewatch-pictures"))
