"""The incident topology: three network namespaces, HAProxy, nginx, a frontend client and
a chatty service, each started by us and torn down by us (tests/e2e, tests/e2e/demo.py).

    frontend ns                lb ns                         backend ns
    frontend.service  --veth-- haproxy.service (TCP) --veth-- nginx.service
    10.250.A.1                 10.250.A.2 | 10.250.B.1        10.250.B.2:8080
                               :8080

Addresses are private and live only on the veths made here, inside these namespaces:
nothing is routed and no traffic leaves them. A and B (B = A + 1) are picked per run
unless given, and the tests add the run's tag to the unit names
(frontend-<tag>.service): two runs at once on one host (surgewatch sees every
namespace) then never mistake each other's resets or log writes for their own. Processes are started with nsenter in the
namespace and moved into their own cgroup2 group named like a systemd unit
(<cgroup2>/surgewatch-e2e-<tag>.slice/<name>.service) before they exec, so surgewatch
names them "frontend.service", "haproxy.service", ... Only pids started here are killed.
"""
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager

HERE = os.path.dirname(os.path.abspath(__file__))
HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
TCPDUMP = shutil.which("tcpdump") or "/usr/bin/tcpdump"
NSENTER = shutil.which("nsenter") or "/usr/bin/nsenter"

LB_PORT = 8080
BE_PORT = 8080

HAPROXY_CFG = """\
global
    maxconn 256
    pidfile {dir}/haproxy.pid

defaults
    mode tcp
    # a cloud balancer's idle timeout: an idle connection is closed after this ...
    timeout connect 2s
    timeout client {idle}
    timeout server {idle}
    # ... with a reset, not a FIN: SO_LINGER 0 on both sides when closing
    option nolinger

frontend fe
    bind {lb_fe}:{lb_port}
    default_backend be

backend be
    server nginx {be}:{be_port}
"""

NGINX_CFG = """\
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.txt warn;
daemon off;
master_process on;
events {{ worker_connections 256; }}
http {{
    client_body_temp_path {dir}/tmp_body;
    proxy_temp_path {dir}/tmp_proxy;
    fastcgi_temp_path {dir}/tmp_fastcgi;
    uwsgi_temp_path {dir}/tmp_uwsgi;
    scgi_temp_path {dir}/tmp_scgi;
    # $msec first: each line carries its own time (ms), the tests' ground truth
    log_format stamped '$msec $remote_addr "$request" $status $body_bytes_sent';
    access_log {dir}/access.log stamped;
    keepalive_timeout 300s;
    keepalive_requests 100000;
    server {{
        listen {be}:{be_port};
        location / {{ return 200 "ok\\n"; }}
    }}
}}
"""


def haproxy_time(seconds):
    """HAProxy's spelling of a timeout: 3 -> "3s", 3.5 -> "3500ms"."""
    return f"{seconds:g}s" if float(seconds).is_integer() else f"{round(seconds * 1000)}ms"


def cgroup2_root():
    from collector.host.cgroups import cgroup2_mount

    found = cgroup2_mount()
    if found is None:
        raise RuntimeError("no cgroup2 hierarchy mounted")
    return found[0]


@contextmanager
def _in_netns(netns_cls, name):
    """An rtnetlink socket in the named namespace: pyroute2's NetNS, which Debian 12's 0.7
    has (IPRoute(netns=...) is 0.8's) and 0.9 keeps."""
    ipr = netns_cls(name)
    try:
        yield ipr
    finally:
        ipr.close()


def missing_tools():
    """Names of the programs the topology needs that are not installed."""
    return [p for p in (HAPROXY, NGINX, TCPDUMP, NSENTER) if not os.path.exists(p)]


class Topology:
    """Namespaces, veths, cgroups and the processes started in them.

    up() builds the network; start_lb/start_backend/spawn start processes; down() kills
    every process started here and removes the namespaces and cgroups, whatever state
    up() reached (call it from a finally)."""

    def __init__(self, workdir, idle_timeout_s=3, tag=None, subnet=None, unit_suffix=""):
        self.tag = tag or uuid.uuid4().hex[:6]
        a = subnet if subnet is not None else 2 * random.randrange(8, 124)
        self.fe_net, self.be_net = f"10.250.{a}.", f"10.250.{a + 1}."
        self.fe_addr, self.lb_fe_addr = self.fe_net + "1", self.fe_net + "2"
        self.lb_be_addr, self.be_addr = self.be_net + "1", self.be_net + "2"
        self.units = {role: f"{role}{unit_suffix}.service"
                      for role in ("frontend", "haproxy", "nginx", "chatty")}
        self.dir = str(workdir)
        self.idle_timeout_s = idle_timeout_s
        self.ns = {role: f"sw{role[:2]}-{self.tag}" for role in ("frontend", "lb", "backend")}
        self.procs = []          # Popen objects we started, newest last
        self.created_ns = []
        self.cg_slice = os.path.join(cgroup2_root(), f"surgewatch-e2e-{self.tag}.slice")
        self.cgroups = []

    # -- network ------------------------------------------------------------------------
    def up(self):
        from pyroute2 import NetNS, netns

        for role in ("frontend", "lb", "backend"):
            netns.create(self.ns[role])
            self.created_ns.append(self.ns[role])
        # veth pairs are made inside a namespace with the peer created directly in the
        # other one: no interface ever appears in the host's namespace
        pairs = (("frontend", "fe0", "lb", "lbfe0"), ("lb", "lbbe0", "backend", "be0"))
        for a, a_if, b, b_if in pairs:
            with _in_netns(NetNS, self.ns[a]) as ipr:
                ipr.link("add", ifname=a_if, kind="veth",
                         peer={"ifname": b_if, "net_ns_fd": self.ns[b]})
        for role, ifs in (("frontend", [("fe0", self.fe_addr)]),
                          ("lb", [("lbfe0", self.lb_fe_addr), ("lbbe0", self.lb_be_addr)]),
                          ("backend", [("be0", self.be_addr)])):
            with _in_netns(NetNS, self.ns[role]) as ipr:
                ipr.link("set", index=ipr.link_lookup(ifname="lo")[0], state="up")
                for ifname, addr in ifs:
                    idx = ipr.link_lookup(ifname=ifname)[0]
                    ipr.addr("add", index=idx, address=addr, prefixlen=24)
                    ipr.link("set", index=idx, state="up")
        os.makedirs(self.cg_slice, exist_ok=True)
        self.cgroups.append(self.cg_slice)
        return self

    def owns_address(self, addr):
        """Is addr one of this topology's addresses?"""
        return addr.startswith((self.fe_net, self.be_net))

    def netns_path(self, role):
        return f"/var/run/netns/{self.ns[role]}"

    # -- processes ----------------------------------------------------------------------
    def cgroup(self, unit):
        path = os.path.join(self.cg_slice, unit)
        if path not in self.cgroups:
            os.makedirs(path, exist_ok=True)
            self.cgroups.append(path)
        return path

    def spawn(self, role, argv, unit=None, **popen):
        """Start argv in role's namespace (role None: the host's), in cgroup `unit`."""
        cmd = list(argv)
        if role is not None:
            cmd = [NSENTER, f"--net={self.netns_path(role)}", "--"] + cmd
        if unit is not None:
            procs = os.path.join(self.cgroup(unit), "cgroup.procs")
            # the shell moves itself into the unit's cgroup, then execs: every process
            # of the service starts there
            cmd = ["/bin/sh", "-c", 'echo $$ > "$0" && exec "$@"', procs] + cmd
        popen.setdefault("stdin", subprocess.DEVNULL)
        p = subprocess.Popen(cmd, start_new_session=True, **popen)
        self.procs.append(p)
        return p

    def start_backend(self):
        d = os.path.join(self.dir, "nginx")
        os.makedirs(d, exist_ok=True)
        conf = os.path.join(d, "nginx.conf")
        with open(conf, "w") as f:
            f.write(NGINX_CFG.format(dir=d, be=self.be_addr, be_port=BE_PORT))
        self.nginx_log = os.path.join(d, "access.log")
        self.nginx_out = open(os.path.join(d, "stderr.txt"), "w")
        self.nginx = self.spawn("backend", [NGINX, "-p", d, "-c", conf], unit=self.units["nginx"],
                                stdout=self.nginx_out, stderr=subprocess.STDOUT)
        self.wait_listening("backend", self.be_addr, BE_PORT, self.nginx, "nginx")
        return self.nginx

    def start_lb(self):
        d = os.path.join(self.dir, "haproxy")
        os.makedirs(d, exist_ok=True)
        conf = os.path.join(d, "haproxy.cfg")
        with open(conf, "w") as f:
            f.write(HAPROXY_CFG.format(dir=d, idle=haproxy_time(self.idle_timeout_s),
                                       lb_fe=self.lb_fe_addr,
                                       lb_port=LB_PORT, be=self.be_addr, be_port=BE_PORT))
        self.haproxy_out = open(os.path.join(d, "stderr.txt"), "w")
        # -db: foreground, no daemon; -Ws would need systemd
        self.haproxy = self.spawn("lb", [HAPROXY, "-db", "-f", conf], unit=self.units["haproxy"],
                                  stdout=self.haproxy_out, stderr=subprocess.STDOUT)
        self.wait_listening("lb", self.lb_fe_addr, LB_PORT, self.haproxy, "haproxy")
        return self.haproxy

    def wait_listening(self, role, addr, port, proc, name, timeout=10.0):
        probe = ("import socket,sys\n"
                 "s=socket.socket(); s.settimeout(0.5)\n"
                 f"sys.exit(s.connect_ex(({addr!r},{port})))\n")
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}: "
                                   f"{self.output_of(name)}")
            r = subprocess.run([NSENTER, f"--net={self.netns_path(role)}", "--",
                                sys.executable, "-c", probe])
            if r.returncode == 0:
                return
            time.sleep(0.1)
        raise RuntimeError(f"{name} not listening on {addr}:{port}: {self.output_of(name)}")

    def output_of(self, name):
        path = os.path.join(self.dir, name, "stderr.txt")
        try:
            with open(path) as f:
                return f.read()[-2000:]
        except OSError:
            return ""

    def start_frontend(self, pool, phases, events_path):
        """The frontend client service (tests/e2e/frontend_client.py) in `frontend`."""
        return self.spawn("frontend", [sys.executable, os.path.join(HERE, "frontend_client.py"),
                                       f"{self.lb_fe_addr}:{LB_PORT}", str(pool), events_path,
                                       *[f"{n}:{gap}" for n, gap in phases]],
                          unit=self.units["frontend"])

    def start_chatty(self, log_path, phases, ready_path=None):
        """The chatty service (tests/e2e/chatty.py) in the host namespace."""
        argv = [sys.executable, os.path.join(HERE, "chatty.py"), log_path]
        argv += [f"{d}:{r}" for d, r in phases]
        return self.spawn(None, argv, unit=self.units["chatty"])

    def start_capture(self, pcap_path, ports=(LB_PORT,)):
        """tcpdump in `frontend` on our own ports only; returns once it is capturing."""
        flt = " or ".join(f"tcp port {p}" for p in ports)
        self.tcpdump_err = open(os.path.join(self.dir, "tcpdump.txt"), "w+")
        p = self.spawn("frontend", [TCPDUMP, "-i", "fe0", "-n", "-U", "-w", pcap_path, flt],
                       stdout=subprocess.DEVNULL, stderr=self.tcpdump_err)
        end = time.monotonic() + 10
        while time.monotonic() < end:
            self.tcpdump_err.seek(0)
            if "listening on" in self.tcpdump_err.read():
                return p
            if p.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError("tcpdump did not start: " + open(self.tcpdump_err.name).read())

    def stop(self, proc, sig=signal.SIGTERM, timeout=10):
        """Stop one process we started (and its process group, which is its own)."""
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                pass
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    # -- teardown -----------------------------------------------------------------------
    def down(self):
        from pyroute2 import netns

        errors = []
        for p in reversed(self.procs):
            try:
                self.stop(p, timeout=5)
            except Exception as e:      # keep tearing down
                errors.append(e)
        # processes of our services we did not fork directly (nginx workers) live in our
        # cgroups: kill what is left there, they are ours
        for cg in reversed(self.cgroups):
            self._empty_cgroup(cg)
        for cg in reversed(self.cgroups):
            try:
                os.rmdir(cg)
            except FileNotFoundError:
                pass
            except OSError as e:
                errors.append(e)
        for name in reversed(self.created_ns):
            try:
                netns.remove(name)
            except Exception as e:
                errors.append(e)
        for f in ("nginx_out", "haproxy_out", "tcpdump_err"):
            if getattr(self, f, None):
                getattr(self, f).close()
        if errors:
            raise RuntimeError(f"teardown: {errors}")

    @staticmethod
    def _empty_cgroup(cg):
        procs = os.path.join(cg, "cgroup.procs")
        for _ in range(50):
            try:
                with open(procs) as f:
                    pids = [int(x) for x in f.read().split()]
            except FileNotFoundError:
                return
            if not pids:
                return
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.05)


def read_events(path):
    """The frontend client's JSON-lines events."""
    out = []
    with open(path) as f:
        for line in f:
            if line.strip():
                out.append(json.loads(line))
    return out


def pcap_resets(pcap_path, ports=(LB_PORT,)):
    """[(src, sport, dst, dport)] of every TCP RST in a capture, read back with tcpdump."""
    flt = "(tcp[tcpflags] & tcp-rst != 0) and (" + " or ".join(f"tcp port {p}" for p in ports) + ")"
    out = subprocess.run([TCPDUMP, "-n", "-r", pcap_path, flt], capture_output=True, text=True)
    rows = []
    for line in out.stdout.splitlines():
        # 12:00:00.000000 IP 10.250.1.2.8080 > 10.250.1.1.41234: Flags [R.], ...
        parts = line.split()
        if len(parts) < 5 or parts[1] != "IP":
            continue
        src, dst = parts[2], parts[4].rstrip(":")
        s_addr, s_port = src.rsplit(".", 1)
        d_addr, d_port = dst.rsplit(".", 1)
        rows.append((s_addr, int(s_port), d_addr, int(d_port)))
    return rows
