"""The Debian package for real: `make deb` builds it (lintian without errors; in `make
vm-test` the host does, beside the boot), apt installs
it pulling Debian packages only, the unit it enables and starts counts a writer's lines
exactly (segments, /metrics, `surgewatch tail`), `apt-get remove` leaves no BPF program
attached, `apt-get purge` leaves no configuration or state; every package the install
pulled in is purged again afterwards.

Needs systemd as PID 1 (the Vagrant VM, `make vm-test`); skipped elsewhere."""
import json
import os
import re
import subprocess
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

from tests.owncgroup import unit_cgroup
from tests.support.unitrun import METRICS, STATE_DIR, UNIT, UNDER_SYSTEMD_AS_ROOT, metric, \
    sh, this_run, totals, unit_log, wait_for

ROOT = Path(__file__).resolve().parents[2]
CONFFILE = "/etc/surgewatch/surgewatch.toml"
N_LINES = 1000
APT_ENV = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}

pytestmark = UNDER_SYSTEMD_AS_ROOT


def installed_packages():
    out = sh("dpkg-query", "-W", "-f=${Package} ${db:Status-Abbrev}\n").stdout
    return {p for p, _, status in (line.partition(" ") for line in out.splitlines())
            if status.startswith("ii")}


def our_programs():
    """Programs with the names of surgewatch's that are loaded on the host (bpftool)."""
    from tests.privileged.relhelp import bpf_programs, ours

    return [p["id"] for p in bpf_programs() if ours(p.get("name"))]


@pytest.fixture(scope="module")
def deb():
    for busy in (f"/etc/systemd/system/{UNIT}", "/usr/bin/surgewatch"):
        if os.path.lexists(busy):
            pytest.skip(f"{busy} exists: another surgewatch is installed here; not touching it")
    if sh("dpkg-query", "-W", "surgewatch", check=False).returncode == 0:
        pytest.skip("a surgewatch package is installed here; not touching it")
    version = re.match(r"surgewatch \(([^)]+)\)",
                       (ROOT / "debian" / "changelog").read_text()).group(1)
    path = ROOT / "build" / f"surgewatch_{version}_all.deb"
    # `make vm-test` builds it on the host (beside the boot, with lintian) and copies it in:
    # dpkg-buildpackage under QEMU's software CPU takes minutes. Built here otherwise, or
    # when any source is newer than it.
    if not path.is_file() or path.stat().st_mtime < newest_source():
        sh("bash", str(ROOT / "debian" / "make-deb"), str(ROOT), timeout=1800)
    assert path.is_file(), f"make deb made no {path}"
    return path, version


def newest_source():
    return max(p.stat().st_mtime for d in ("collector", "debian", "docs")
               for p in (ROOT / d).rglob("*") if p.is_file() and "__pycache__" not in p.parts)


@pytest.fixture
def before_install(deb):
    before = installed_packages()
    yield before
    # whatever the test left: the package, then every package its install pulled in
    sh("apt-get", "purge", "-y", "surgewatch", check=False, env=APT_ENV, timeout=600)
    pulled = sorted(installed_packages() - before)
    if pulled:
        sh("apt-get", "purge", "-y", *pulled, check=False, env=APT_ENV, timeout=600)
    sh("systemctl", "reset-failed", UNIT, check=False)


def test_package_installs_debian_packages_only_counts_exactly_and_goes_away(deb, before_install):
    path, version = deb
    # Recommends left out: the running kernel's headers are here already (the VM's runtime
    # set-up), and matplotlib is only for `surgewatch plot`
    install = ("apt-get", "install", "-y", "--no-install-recommends", str(path))
    plan = sh(*install[:2], "-s", *install[3:], env=APT_ENV).stdout
    assert not re.search(r"^Remv ", plan, re.M), plan
    pulled = re.findall(r"^Inst (\S+) \((\S+) ([^)]*)\)", plan, re.M)
    assert ("surgewatch", version) in [(p, v) for p, v, _ in pulled], plan
    foreign = [(p, origin) for p, _, origin in pulled
               if p != "surgewatch" and not origin.startswith("Debian")]
    assert foreign == [], f"packages from outside Debian's archive: {foreign}"

    since = time.strftime("%Y-%m-%d %H:%M:%S")
    start_ts = time.time()
    sh(*install, env=APT_ENV, timeout=1200)
    assert sh("systemctl", "is-enabled", UNIT, check=False).stdout.strip() == "enabled"
    assert sh("systemctl", "is-active", UNIT, check=False).stdout.strip() == "active", \
        unit_log(since)
    assert sh("surgewatch", "--version").stdout.strip() == f"surgewatch, version {version}"
    assert CONFFILE in sh("dpkg-query", "-W", "-f=${Conffiles}", "surgewatch").stdout
    for f in ("/usr/share/man/man8/surgewatch.8.gz",
              "/usr/share/bash-completion/completions/surgewatch",
              "/lib/systemd/system/surgewatch.service"):
        assert os.path.isfile(f), f

    def started():
        return any(r["type"] == "stats" for r in this_run(start_ts))

    # compiling both probes under QEMU's software CPU takes minutes
    wait_for("the packaged daemon's meta and first stats record", started, True, 300)
    assert this_run(start_ts)[0]["version"] == version

    writer = f"swdeb{uuid.uuid4().hex[:8]}"
    log = Path(f"/var/log/{writer}.log")
    service = f"{writer}.service"
    script = (f"import os; fd = os.open({str(log)!r}, os.O_WRONLY | os.O_CREAT | os.O_APPEND, "
              f"0o644)\nfor _ in range({N_LINES}): os.write(fd, b'packaged daemon line\\n')")
    try:
        with unit_cgroup(writer) as cg:
            subprocess.run(["/usr/bin/python3", "-c", script], check=True, timeout=120,
                           preexec_fn=cg.enter)
            wait_for(f"{N_LINES} writes of {service} in the segments",
                     lambda: totals(this_run(start_ts), service, "log_writes"), N_LINES, 60)

            def scraped():
                with urllib.request.urlopen(METRICS + "/metrics", timeout=10) as r:
                    return metric(r.read().decode(), "surgewatch_log_writes_total",
                                  service=service)

            wait_for(f"{N_LINES} writes of {service} in /metrics", scraped, N_LINES, 30)
        tail = sh("surgewatch", "tail", "--json", "--service", service, "--type", "rate").stdout
        rates = [json.loads(line) for line in tail.splitlines()]
        assert sum(r["log_writes"] for r in rates) == N_LINES, tail
    finally:
        if log.exists():
            log.unlink()
    assert our_programs(), "the running daemon's programs are not loaded"

    sh("apt-get", "remove", "-y", "surgewatch", env=APT_ENV, timeout=600)
    assert sh("systemctl", "is-active", UNIT, check=False).stdout.strip() != "active"
    assert our_programs() == [], "programs left attached after apt-get remove"
    assert os.path.isfile(CONFFILE), "remove took the configuration (only purge may)"
    journal = unit_log(since)
    assert "stopped by SIGTERM; probes detached" in journal, journal

    sh("apt-get", "purge", "-y", "surgewatch", env=APT_ENV, timeout=600)
    for gone in ("/etc/surgewatch", STATE_DIR, "/usr/bin/surgewatch", "/usr/share/surgewatch",
                 "/lib/systemd/system/surgewatch.service",
                 "/etc/systemd/system/multi-user.target.wants/surgewatch.service"):
        assert not os.path.lexists(gone), f"{gone} is left after apt-get purge"
