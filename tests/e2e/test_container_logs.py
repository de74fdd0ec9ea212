"""A real podman container's stdout, counted as the container's and named by its name.

`surgewatch run` watches while podman (conmon, crun) runs `sw-flood-<random>`, a busybox
image built on the spot, printing N lines to stdout with busybox sh's `echo` (one
write(2) each). The container's stdout is a pipe whose reading end conmon holds; conmon
copies every line into the container's log file (k8s-file driver, a path in the daemon's
log dir). Expected:
- service `sw-flood-<random>` (the container's name): exactly N writes, and the lines'
  bytes, on path "container:<conmon's --log-path>";
- the service conmon resolves to (libpod-conmon-<id>.scope under systemd): the log file
  itself, with exactly N * 45 + the lines' bytes (conmon 2.1.6 src/ctr_logging.c
  write_k8s_log: per line a 43-byte "<RFC 3339 nano time> stdout " prefix and "F ")
  in between ceil(3N / 128) and N writev(2) calls (3 iovecs a line, at most 128 per
  writev, one flush per read of the pipe, and every read holds at least one whole line:
  each echo is one write of less than PIPE_BUF).

Timing bound: the container sleeps SLEEP_INTERVALS (>= 2) daemon intervals after its last
line, so conmon still holds the pipe when the drain of the interval holding that line
judges it (at most one interval later, plus the drain's own time); a pipe whose reader is
gone by then cannot be told from any other pipe.

Needs root and a host where crun can run a container: on a v1+v2 hybrid cgroup host crun
refuses ("crun: cgroups in hybrid mode not supported, drop all controllers from
cgroupv2"), so this runs in the Vagrant VM and skips elsewhere with podman's own words.
"""
import math
import os
import uuid

import pytest

from collector.host.cgroups import CgroupIndex
from collector.host.containers import ContainerNames
from collector.host.procfs import ProcFS
from collector.host.services import ServiceResolver
from tests.owncgroup import TIME_SCALE
from tests.support import podman
from tests.support.daemon import Daemon

N = 1000
INTERVAL = 0.5
SLEEP_INTERVALS = 4                     # >= 2: see the docstring
IOVECS_PER_LINE, IOVECS_PER_WRITEV = 3, 128

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: rootful podman")


@pytest.fixture(scope="module")
def image():
    reason = podman.unavailable()
    if reason:
        pytest.skip(reason)
    tag = podman.build_image(f"localhost/sw-flood-img-{uuid.uuid4().hex[:8]}:test")
    yield tag
    podman.remove_image(tag)


def lines():
    return [f"sw-flood line {i} of {N}\n" for i in range(N)]


def loop_script(sleep_s):
    return (f'i=0; while [ $i -lt {N} ]; do echo "sw-flood line $i of {N}"; i=$((i+1)); done; '
            f"sleep {sleep_s}")


def writes_of(records, service):
    """{path: [writes, bytes]} of one service over every rate record."""
    out = {}
    for r in records:
        if r.get("type") == "rate" and r.get("service") == service:
            for p in r.get("paths", ()):
                got = out.setdefault(p["path"], [0, 0])
                got[0] += p["writes"]
                got[1] += p["bytes"]
    return out


def test_container_stdout_is_the_containers_and_the_copy_is_conmons(image, tmp_path):
    name = f"sw-flood-{uuid.uuid4().hex[:8]}"
    d = Daemon(tmp_path, interval=INTERVAL)
    log_path = d.logdir / f"{name}.log"
    sleep_s = round(SLEEP_INTERVALS * INTERVAL * TIME_SCALE, 1)
    try:
        d.attached()
        d.wait_stats(1)
        cid = podman.run_detached(name, image, ["/bin/sh", "-c", loop_script(sleep_s)],
                                  log_path=log_path)
        conmon_pid = int(podman.inspect(name, "{{.State.ConmonPid}}"))
        # what the daemon will call conmon's service, asked while conmon lives
        conmon_service = ServiceResolver(ProcFS(), CgroupIndex(), containers=ContainerNames()
                                         ).resolve(conmon_pid, ProcFS().comm(conmon_pid))
        # the container's name and image as containers.py reads podman's store
        info = ContainerNames().lookup(cid)
        assert (info.name, info.image, info.source) == (name, image, "podman")
        exit_code = podman.podman("wait", name, timeout=60 + sleep_s).stdout.strip()
        assert exit_code == "0"
        d.wait_stats(3)
    finally:
        podman.remove_container(name)
        d.stop()
    text = sum(len(x.encode()) for x in lines())
    # k8s-file records: "<ts> stdout P|F <text>"; a line that straddles two of conmon's
    # pipe reads is written as a partial (P) record and its end (F): one F per line
    records = log_path.read_text().splitlines()
    assert sum(1 for r in records if r.split(" ", 3)[2] == "F") == N
    assert "".join(r.split(" ", 3)[3] + ("\n" if r.split(" ", 3)[2] == "F" else "")
                   for r in records) == "".join(lines())

    assert writes_of(d.records, name) == {f"container:{log_path}": [N, text]}

    on_log = {}                                   # service -> [writes, bytes] on the file
    for r in d.records:
        for p in r.get("paths", ()) if r.get("type") == "rate" else ():
            if p["path"] == str(log_path):
                got = on_log.setdefault(r["service"], [0, 0])
                got[0] += p["writes"]
                got[1] += p["bytes"]
    assert list(on_log) == [conmon_service], (conmon_service, on_log)
    writev_calls, written = on_log[conmon_service]
    assert written == log_path.stat().st_size     # every byte of the file is conmon's
    assert math.ceil(len(records) * IOVECS_PER_LINE / IOVECS_PER_WRITEV) <= writev_calls \
        <= len(records)

