"""The container image and the DaemonSet for real (docs/deploy/README.md): the image made
by debian/make-image (its root built on the host by `make vm-test`, imported here) runs
with the documented `podman run` line, read from that page, and counts a host process's
lines exactly under its host service name, to a file it opened before the container
started and to one opened after; stopping it leaves no program attached. The DaemonSet
manifest is played by podman where podman plays DaemonSets, with the same counts (its
API types are checked offline everywhere: tests/unit/test_deploy_manifest.py).

Needs systemd as PID 1 (the Vagrant VM, `make vm-test`); skipped elsewhere."""
import os
import re
import shlex
import subprocess
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

from tests.owncgroup import unit_cgroup
from tests.support.podman import global_args, podman
from tests.support.unitrun import METRICS, UNDER_SYSTEMD_AS_ROOT, metric, sh, this_run, \
    totals, wait_for

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "docs" / "deploy"
MANIFEST = DEPLOY / "surgewatch-daemonset.yaml"
CONTAINER = "surgewatch"
N_BEFORE, N_AFTER = 700, 300

pytestmark = UNDER_SYSTEMD_AS_ROOT


def version():
    return re.match(r"surgewatch \(([^)]+)\)", (ROOT / "debian" / "changelog").read_text()).group(1)


def documented_commands():
    """The shell block of docs/deploy/README.md that runs the container, one command a line."""
    text = (DEPLOY / "README.md").read_text()
    block = next(b for b in re.findall(r"```sh\n(.*?)```", text, re.S) if "podman run" in b)
    return [line for line in block.replace("\\\n", " ").splitlines() if line.strip()]


def our_programs():
    from tests.privileged.relhelp import bpf_programs, ours

    return [p["id"] for p in bpf_programs() if ours(p.get("name"))]


@pytest.fixture(scope="module")
def image():
    if sh("podman", "container", "exists", CONTAINER, check=False).returncode == 0:
        pytest.skip(f"a container named {CONTAINER} exists here; not touching it")
    roots = sorted((ROOT / "build" / "image").glob(f"surgewatch-rootfs_{version()}_*.tar"))
    assert roots, ("no build/image/surgewatch-rootfs_*.tar: `make vm-test` builds it on the "
                   "host (debian/make-image --rootfs) and copies it in; elsewhere: make image")
    # the suite the root was built from (make vm-test: the VM's own): its name's last part
    suite = roots[-1].name.removesuffix(".tar").rsplit("_", 1)[1]
    sh("bash", str(ROOT / "debian" / "make-image"), "--import", str(ROOT), timeout=900,
       env={**os.environ, "SURGEWATCH_IMAGE_SUITE": suite})
    tag = f"localhost/surgewatch:{version()}"
    yield tag
    podman("rmi", "--force", tag, check=False)


class Writer:
    """A host process in a unit cgroup of its own: opens `before` now, and on go() writes
    N_BEFORE lines to it, then opens `after` and writes N_AFTER lines, and exits."""

    def __init__(self, cg, name):
        self.before = Path(f"/var/log/{name}-before.log")
        self.after = Path(f"/var/log/{name}-after.log")
        script = f"""
import os, sys
fd = os.open({str(self.before)!r}, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
print("open", flush=True)
sys.stdin.readline()
for _ in range({N_BEFORE}): os.write(fd, b"written by a host process\\n")
fd2 = os.open({str(self.after)!r}, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
for _ in range({N_AFTER}): os.write(fd2, b"after\\n")
"""
        self.proc = subprocess.Popen(["/usr/bin/python3", "-c", script], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, preexec_fn=cg.enter)
        assert self.proc.stdout.readline() == b"open\n"

    def go(self):
        self.proc.stdin.write(b"go\n")
        self.proc.stdin.close()
        assert self.proc.wait(timeout=120) == 0

    def remove(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for p in (self.before, self.after):
            if p.exists():
                p.unlink()


def counts_exactly(start, stop):
    """start() the collector, a writer's lines (a file opened before the start, one
    after) counted exactly under its host service name in the segments and /metrics, then
    stop() it: no program left attached."""
    name = f"swimg{uuid.uuid4().hex[:8]}"
    service = f"{name}.service"
    with unit_cgroup(name) as cg:
        writer = Writer(cg, name)
        try:
            start_ts = time.time()
            start()
            # compiling both probes under QEMU's software CPU takes minutes
            wait_for("the container's meta and first stats record",
                     lambda: any(r["type"] == "stats" for r in this_run(start_ts)), True, 300)
            writer.go()
            want = N_BEFORE + N_AFTER
            wait_for(f"{want} writes of {service} in the segments",
                     lambda: totals(this_run(start_ts), service, "log_writes"), want, 60)
            paths = {}
            for r in this_run(start_ts):
                if r["type"] == "rate" and r["service"] == service:
                    for p in r["paths"]:
                        paths[p["path"]] = paths.get(p["path"], 0) + p["writes"]
            assert paths == {str(writer.before): N_BEFORE, str(writer.after): N_AFTER}

            def scraped():
                with urllib.request.urlopen(METRICS + "/metrics", timeout=10) as r:
                    return metric(r.read().decode(), "surgewatch_log_writes_total",
                                  service=service)

            wait_for(f"{want} writes of {service} in /metrics", scraped, want, 30)
            assert our_programs()
        finally:
            stop()
            writer.remove()
    assert our_programs() == [], "programs left attached after the container stopped"


def test_the_documented_podman_run_counts_exactly(image):
    install, run = documented_commands()
    assert run.startswith("podman run ") and run.split()[-1] == image, run
    sh("bash", "-c", install)
    argv = shlex.split(run)
    argv[1:1] = global_args()              # the VM has no D-Bus for systemd's cgroup manager

    def start():
        sh(*argv, timeout=300)

    def stop():
        podman("stop", "--time", "20", CONTAINER, check=False, timeout=60)
        code = podman("inspect", "--format", "{{.State.ExitCode}}", CONTAINER,
                      check=False).stdout.strip()
        logs = podman("logs", CONTAINER, check=False)
        podman("rm", "--force", CONTAINER, check=False)
        assert code == "0", f"exit {code}: {logs.stdout}{logs.stderr}"
        assert "stopped by SIGTERM; probes detached" in logs.stderr + logs.stdout

    counts_exactly(start, stop)


def test_podman_kube_play_runs_the_daemonset(image):
    version_line = podman("--version").stdout.strip()
    tried = podman("kube", "play", "--start=false", str(MANIFEST), check=False)
    podman("kube", "down", str(MANIFEST), check=False)
    if tried.returncode != 0 and re.search(r"(?i)daemonset|unsupported|kind", tried.stderr):
        pytest.skip(f"{version_line} does not play DaemonSets ({tried.stderr.strip()[:160]}); "
                    f"the manifest is checked against the API types instead")
    assert tried.returncode == 0, f"{version_line}: {tried.stderr}"
    os.makedirs("/var/lib/surgewatch", mode=0o750, exist_ok=True)

    def start():
        podman("kube", "play", str(MANIFEST), timeout=300)

    def stop():
        podman("kube", "down", str(MANIFEST), check=False, timeout=120)

    counts_exactly(start, stop)
