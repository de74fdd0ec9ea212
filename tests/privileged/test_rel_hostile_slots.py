"""Hostile neighbours (issue 23, items 3-5): an unprivileged user's cheap names never
blind the detector, take a real service's Prometheus label, or pass as a system unit.

Every attacker is real: a process run as nobody (`setpriv --reuid=65534`). Every victim
knows what it wrote. Scaled down where the mechanism is the same (docs/reliability.md,
"Hostile local user"): the detector keeps 50 services instead of 1,000 and Prometheus 20
labels instead of 200, so 300 sprayed names and 25 squatters do what 2,000 and 210 did.
No assertion is on timing.
"""
import json
import os
import shutil
import subprocess
import sys
import textwrap
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from collector.host.cgroups import cgroup2_mount
from tests.owncgroup import remove_cgroup, unit_cgroup
from tests.privileged.relhelp import record_figure
from tests.support.daemon import Daemon, build_config
from tests.support.loopback import free_port
from tests.support.writers import PHASED_WRITER

pytestmark = pytest.mark.privileged

NOBODY = ("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups")

# Opens N files in DIR and, until STOPFILE exists, writes one line to each in turn,
# renaming itself (prctl PR_SET_NAME) to that file's name before every write; then
# prints how many lines it wrote. RATE: lines/s over all files. It exits right after a
# round of writes, so its last round is drained after it exited (its owner can no
# longer be read from /proc then: the daemon keeps the one read while it lived).
SPRAY = textwrap.dedent("""
    import ctypes, os, sys, time
    d, n, rate, stop = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
    libc = ctypes.CDLL(None, use_errno=True)
    fds = [os.open(os.path.join(d, f"spray{i:04d}.log"), os.O_WRONLY | os.O_CREAT
                   | os.O_APPEND, 0o644) for i in range(n)]
    names = [f"sw{i:04d}".encode() for i in range(n)]
    done, start = 0, time.monotonic()
    while True:
        for i, fd in enumerate(fds):
            libc.prctl(15, ctypes.c_char_p(names[i]), 0, 0, 0)     # PR_SET_NAME
            os.write(fd, b"x\\n")
            done += 1
        if os.path.exists(stop):
            break
        due = start + done / rate
        now = time.monotonic()
        if due > now:
            time.sleep(due - now)
    print(done)
""")



def scrape(port, name="surgewatch_log_writes_total"):
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30).read()
    out = {}
    for fam in text_string_to_metric_families(text.decode()):
        for s in fam.samples:
            if s.name == name:
                out[s.labels["service"]] = s.value
    return out


def rate_records(d):
    return [r for r in d.records if r.get("type") == "rate"]


def writes_of(d, service):
    return sum(r["log_writes"] for r in rate_records(d) if r["service"] == service)


def daemon(tmp_path, prometheus_extra="", extra="", segments=False):
    """A Daemon with Prometheus on a free port, `prometheus_extra` lines in its
    [outputs.prometheus] table and `extra` TOML after the config."""
    port = free_port()
    text = build_config(interval=0.5, logdir=shared_logdir(tmp_path), stdout="json",
                        segments=segments, segdir=tmp_path / "seg", socket=False,
                        sock=tmp_path / "run" / "stream.sock", port=port)
    text = text.replace(f'listen = "127.0.0.1:{port}"\n',
                        f'listen = "127.0.0.1:{port}"\n{prometheus_extra}')
    return Daemon(tmp_path, interval=0.5, prometheus=port, segments=segments,
                  config_text=text + extra, logdir=shared_logdir(tmp_path))


def shared_logdir(tmp_path):
    """A log directory nobody can reach and write (pytest's tmp_path is root's, 0700):
    /tmp/sw-hostile-<name>/logs, 1777; removed by the test's `cleanup`."""
    top = f"/tmp/sw-hostile-{tmp_path.name}"
    os.makedirs(f"{top}/logs", exist_ok=True)
    os.chmod(top, 0o755)
    os.chmod(f"{top}/logs", 0o1777)
    return Path(f"{top}/logs")


@pytest.fixture(autouse=True)
def cleanup(tmp_path):
    yield
    shutil.rmtree(f"/tmp/sw-hostile-{tmp_path.name}", ignore_errors=True)


def test_name_spray_cannot_blind_the_detector_or_take_a_services_label(tmp_path):
    """Item 3 (and 4 under load): 300 names of nobody, one per fd, renamed before every
    write, while a system unit goes from 50 to 500 lines/s: its flood alerts, it keeps
    its own label, every line is counted, rate records per interval stay bounded."""
    d = daemon(tmp_path, "max_services = 20\n",
               "[alerts]\nmax_services = 50\nwarmup = 10\n", segments=True)
    # the sprayer in a cgroup that is no unit: under systemd (the VM) the tests' own is
    # ssh.service's, which would name all its names after that unit
    with unit_cgroup("swspray", suffix="") as spray_cg:
        stop = d.logdir.parent / "stop"
        spray = None
        try:
            assert d.wait_meta(timeout=300), d.err
            spray = subprocess.Popen([*NOBODY, sys.executable, "-c", SPRAY, str(d.logdir),
                                      "300", "900", str(stop)], stdout=subprocess.PIPE,
                                     text=True, preexec_fn=spray_cg.enter)
            with unit_cgroup("swvictim-flood") as cg:
                victim = subprocess.run([sys.executable, "-c", PHASED_WRITER,
                                         str(d.logdir / "victim.log"), "victim line",
                                         "14:50", "5:500", "1:50"], preexec_fn=cg.enter,
                                        capture_output=True, text=True, timeout=120,
                                        check=True)
                service = cg.service
                stop.touch()
                sprayed = int(spray.communicate(timeout=60)[0])
                victim_lines = int(victim.stdout)
                # the cgroup stays until its last writes are drained (an exited process is
                # named from its cgroup id)
                d.wait_interval(d.stats_count() + 2)
            metrics = scrape(d.port)
        finally:
            stop.touch()
            if spray is not None and spray.poll() is None:
                spray.kill()
                spray.wait()
            d.stop()
    rates = rate_records(d)
    alerts = [r for r in d.records if r.get("type") == "alert" and r["state"] == "open"]
    # the flood alerted, on the victim's own name
    assert any(a["service"] == service and a["signal"] == "log_writes_per_s"
               for a in alerts), [(a["service"], a["signal"]) for a in alerts]
    # exact: the victim's lines under its name, everything in the stream and in /metrics
    assert writes_of(d, service) == victim_lines
    lost = sum(r.get("lost_writes", 0) for r in d.records if r.get("type") == "stats")
    assert lost == 0
    assert sum(r["log_writes"] for r in rates) == victim_lines + sprayed
    assert metrics[service] == victim_lines
    assert sum(metrics.values()) == victim_lines + sprayed
    assert len([k for k in metrics if k != "(other)"]) <= 20
    # bounded: at most 100 services + "(other)" a interval, the spray's names folded
    per_interval = {}
    for r in rates:
        per_interval[r["seq"]] = per_interval.get(r["seq"], 0) + 1
    assert max(per_interval.values()) <= 101
    others = [r for r in rates if r["service"] == "(other)"]
    assert others and all(r["owner"] == "mixed" and r["folded"] > 0 for r in others)
    assert {r["owner"] for r in rates if r["service"] == service} == {"system"}
    # every sprayed name is nobody's, its last round's too (drained after it exited)
    assert {r["owner"] for r in rates if r["service"].startswith("sw0")} == {"uid:65534"}, \
        [(r["seq"], r["service"], r["owner"], r["pids"], r["log_writes"])
         for r in rates if r["service"].startswith("sw0") and r["owner"] != "uid:65534"]
    seg_bytes = sum(p.stat().st_size for p in d.segdir.iterdir())
    record_figure("hostile_name_spray", names=300, sprayed_lines=sprayed,
                  victim_lines=victim_lines, intervals=len(per_interval),
                  max_rate_records_per_interval=max(per_interval.values()),
                  folded_max=max(r["folded"] for r in others), segment_bytes=seg_bytes,
                  segment_bytes_per_interval=seg_bytes // max(1, d.stats_count()),
                  alerts=[a["service"] for a in alerts])


def test_squatters_cannot_keep_a_loud_service_out_of_prometheus(tmp_path):
    """Item 4: 25 one-line names of nobody take all 20 labels first; a later process
    of another user (no unit: not protected) writes 5,000 lines and gets its own label
    by volume; the squatters' lines stay counted, in their labels or "(other)"."""
    d = daemon(tmp_path, "max_services = 20\n")
    squat = textwrap.dedent("""
        import ctypes, os, sys
        libc = ctypes.CDLL(None)
        for i in range(25):
            libc.prctl(15, ctypes.c_char_p(f"squat{i:02d}".encode()), 0, 0, 0)
            fd = os.open(os.path.join(sys.argv[1], f"squat{i:02d}.log"),
                         os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            os.write(fd, b"one line\\n")
            os.close(fd)
    """)
    loud = textwrap.dedent("""
        import ctypes, os, sys
        ctypes.CDLL(None).prctl(15, ctypes.c_char_p(b"swloud"), 0, 0, 0)
        fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        for _ in range(5000):
            os.write(fd, b"a real line\\n")
    """)
    try:
        assert d.wait_meta(timeout=300), d.err
        with unit_cgroup("swsquat", suffix="") as squat_cg:    # no unit (see the spray)
            subprocess.run([*NOBODY, sys.executable, "-c", squat, str(d.logdir)],
                           check=True, timeout=60, preexec_fn=squat_cg.enter)
            d.wait_interval(d.stats_count() + 2)
        before = scrape(d.port)
        with unit_cgroup("swloud", suffix="") as cg:       # no unit: the comm names it
            subprocess.run([sys.executable, "-c", loud, str(d.logdir / "loud.log")],
                           preexec_fn=cg.enter, check=True, timeout=60)
            d.wait_interval(d.stats_count() + 2)
        after = scrape(d.port)
    finally:
        d.stop()
    squatters = {k for k in before if k.startswith("squat")}
    # they took every label still free (the rest: this host's own services, e.g. with
    # TCP load and no log lines); the ones without a label counted in "(other)"
    assert len([k for k in before if k != "(other)"]) == 20
    assert len(squatters) >= 15 and before.get("(other)") == 25 - len(squatters)
    assert after["swloud"] == 5000
    assert sum(after.values()) == 25 + 5000
    record_figure("hostile_label_squatters", squatters=25, labels=20,
                  loud_label=after["swloud"], other=after.get("(other)"))


@contextmanager
def cgroup_path(*parts):
    """mkdir -p under the cgroup2 mount; removes (innermost first) what it made."""
    root = cgroup2_mount()[0]
    made, path = [], root
    for p in parts:
        path = os.path.join(path, p)
        if not os.path.isdir(path):
            os.mkdir(path)
            made.append(path)
    try:
        yield path
    finally:
        for p in reversed(made):
            remove_cgroup(p)


def enter(path):
    def go():
        with open(os.path.join(path, "cgroup.procs"), "w") as f:
            f.write("0")
    return go


def test_a_users_nginx_service_is_not_named_like_the_systems(tmp_path):
    """Item 5: a process of nobody in its (simulated) delegated subtree
    user@65534.service/app.slice/swtest-nginx.service and the system's
    system.slice/swtest-nginx.service: two names, two owners, two labels, exact."""
    unit = "swtest-nginx.service"
    d = daemon(tmp_path)
    # writes N lines, says so, and stays alive (its service is read from its live
    # cgroup) until its stdin closes
    lines = textwrap.dedent("""
        import os, sys
        fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        for _ in range(int(sys.argv[2])):
            os.write(fd, b"GET / 200\\n")
        print("done", flush=True)
        sys.stdin.read()
    """)
    procs = []
    try:
        assert d.wait_meta(timeout=300), d.err
        with cgroup_path("system.slice", unit) as sysdir, \
                cgroup_path("user.slice", "user-65534.slice", "user@65534.service",
                            "app.slice", unit) as userdir:
            for argv, path, n, where in (
                    ((), "sys.log", "111", sysdir),
                    # root moves the child into the user's cgroup, setpriv drops to nobody
                    (NOBODY, "user.log", "222", userdir)):
                p = subprocess.Popen([*argv, sys.executable, "-c", lines,
                                      str(d.logdir / path), n], preexec_fn=enter(where),
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
                procs.append(p)
                assert p.stdout.readline() == "done\n"
            d.wait_interval(d.stats_count() + 2)
            metrics = scrape(d.port)
            for p in procs:
                p.stdin.close()
                p.wait(timeout=30)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
        d.stop()
    user_name = f"user@65534:{unit}"
    assert writes_of(d, unit) == 111
    assert writes_of(d, user_name) == 222
    assert {r["owner"] for r in rate_records(d) if r["service"] == unit} == {"system"}
    assert {r["owner"] for r in rate_records(d) if r["service"] == user_name} == \
        {"uid:65534"}
    assert metrics[unit] == 111 and metrics[user_name] == 222
    record_figure("hostile_user_unit", system=unit, user=user_name,
                  names=json.dumps(sorted({r["service"] for r in rate_records(d)})))
