import shutil
from pathlib import Path

import pytest

from collector.errors import AccessDenied, NoSuchProcess
from collector.host.procfs import ProcFS
from collector.host.containers import ContainerNames
from collector.host.services import (ServiceResolver, container_id_from_cgroup,
                                     service_from_cgroup)

FIXTURES = Path(__file__).parent / "fixtures" / "proc"
ID = "3f4e9c1a7b2d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f"
ID12 = ID[:12]
V1_EMPTY = ["9:name=systemd:/", "4:memory:/", "1:cpu:/"]


@pytest.mark.parametrize("path, expected", [
    ("/system.slice/nginx.service", ("systemd", "nginx.service")),
    ("/init.scope", ("systemd", "init.scope")),
    ("/user.slice/user-1000.slice/session-3.scope", ("systemd", "session-3.scope")),
    # a user's own manager: its units carry the user, never pass as system units
    ("/user.slice/user-1000.slice/user@1000.service/app.slice/foo.service",
     ("user", "user@1000:foo.service")),
    ("/user.slice/user-65534.slice/user@65534.service/app.slice/nginx.service",
     ("user", "user@65534:nginx.service")),
    ("/user.slice/user-1000.slice/user@1000.service/init.scope", ("user", "user@1000:init.scope")),
    ("/user.slice/user-1000.slice/user@1000.service", ("systemd", "user@1000.service")),
    ("/user.slice/user-1000.slice/user@1000.service/app.slice/x", ("systemd", "user@1000.service")),
    ("/user.slice/user-1000.slice/user@1000.service/app.slice/app-gnome-term-4711.scope",
     ("user", "user@1000:app-gnome-term-4711.scope")),
    ("/system.slice/system-getty.slice/getty@tty1.service", ("systemd", "getty@tty1.service")),
    # a delegated subtree below a unit: the unit is still the service
    ("/system.slice/ci-runner.service/job-17/worker", ("systemd", "ci-runner.service")),
    # containers, systemd cgroup drivers
    (f"/system.slice/docker-{ID}.scope", ("container", ID12)),
    (f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1a2b.slice/"
     f"cri-containerd-{ID}.scope", ("container", ID12)),
    (f"/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod9.slice/crio-{ID}.scope",
     ("container", ID12)),
    # a rootless container is the user's too (its id is the user's to choose)
    (f"/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{ID}.scope",
     ("user", f"user@1000:container:{ID12}")),
    # a user manager inside a container is the container's
    (f"/system.slice/docker-{ID}.scope/user.slice/user-0.slice/user@0.service/a.service",
     ("container", ID12)),
    # containers, cgroupfs drivers
    (f"/docker/{ID}", ("container", ID12)),
    (f"/kubepods/burstable/pod1a2b-33/{ID}", ("container", ID12)),
    (f"/kubepods/pod1a2b-33/{ID}", ("container", ID12)),
    (f"/kubepods/besteffort/pod9/crio-{ID}", ("container", ID12)),
    # docker in docker: the innermost container
    (f"/docker/{'a' * 64}/docker/{ID}", ("container", ID12)),
    # a systemd inside a container: unit names repeat across containers, the id does not
    (f"/system.slice/docker-{ID}.scope/system.slice/nginx.service", ("container", ID12)),
    # the conmon monitor is a plain scope, not the container
    (f"/machine.slice/libpod-conmon-{ID}.scope", ("systemd", f"libpod-conmon-{ID}.scope")),
    # only slices, the root, or nothing systemd or container shaped
    ("/", None),
    ("", None),
    ("/system.slice", None),
    ("/user.slice/user-1000.slice", None),
    ("/process_api/7a87062456dfe5f6583ac612cb58cbe3", None),
    (f"/{ID}", None),                       # a bare id outside docker/kubepods
    (f"/docker/{ID[:63]}", None),           # not a full id
    (f"/system.slice/docker-{ID.upper()}.scope", ("systemd", f"docker-{ID.upper()}.scope")),
    ("/system.slice/.service", None),
])
def test_v2_paths(path, expected):
    assert service_from_cgroup([f"0::{path}"]) == expected


def test_v1_name_systemd_line_when_v2_is_root():
    lines = ["12:pids:/system.slice/cron.service", "1:name=systemd:/system.slice/cron.service",
             "0::/"]
    assert service_from_cgroup(lines) == ("systemd", "cron.service")


def test_v1_only_host():
    lines = ["4:memory:/system.slice/cron.service", "1:name=systemd:/system.slice/cron.service"]
    assert service_from_cgroup(lines) == ("systemd", "cron.service")


def test_v2_line_wins_over_v1():
    lines = ["1:name=systemd:/system.slice/old.service", "0::/system.slice/new.service"]
    assert service_from_cgroup(lines) == ("systemd", "new.service")


def test_container_seen_only_in_controller_hierarchies():
    # docker's cgroupfs driver on a hybrid host without systemd (like the CI host)
    lines = ["9:name=systemd:/", f"4:memory:/docker/{ID}", f"8:pids:/docker/{ID}", "0::/"]
    assert service_from_cgroup(lines) == ("container", ID12)


def test_controller_hierarchies_never_name_a_unit():
    lines = ["9:name=systemd:/", "4:memory:/system.slice/foo.service", "0::/"]
    assert service_from_cgroup(lines) is None


def test_v1_controller_list_with_name_systemd_among_others():
    lines = ["1:cpu,name=systemd:/system.slice/a.service"]
    assert service_from_cgroup(lines) == ("systemd", "a.service")


@pytest.mark.parametrize("lines", [
    [],
    ["garbage"],
    ["0:/no-third-field"],
    V1_EMPTY + ["0::/"],
])
def test_nothing_to_find(lines):
    assert service_from_cgroup(lines) is None


def test_colons_and_spaces_in_path():
    assert service_from_cgroup(["0::/system.slice/a:b c.service"]) == ("systemd", "a:b c.service")


def test_very_long_path():
    path = "/" + "/".join(f"level-{i}-" + "x" * 200 for i in range(40)) + "/deep.service"
    assert service_from_cgroup([f"0::{path}"]) == ("systemd", "deep.service")


def test_recorded_fixture_cgroup_files():
    proc = ProcFS(root=str(FIXTURES))
    assert service_from_cgroup(proc.cgroup(1)) == ("systemd", "init.scope")
    assert service_from_cgroup(proc.cgroup(812)) == ("systemd", "nginx.service")
    assert service_from_cgroup(proc.cgroup(2301)) == ("container", ID12)
    assert service_from_cgroup(proc.cgroup(2302)) == ("user", "user@1000:foo.service")
    assert service_from_cgroup(proc.cgroup(2303)) == ("systemd", "session-3.scope")
    assert service_from_cgroup(proc.cgroup(2304)) is None


# -- ServiceResolver ------------------------------------------------------------------

class FakeProc:
    """A process table we can change between calls: pid -> (start_time, cgroup lines)."""

    def __init__(self, table):
        self.table = dict(table)
        self.cgroup_reads = 0

    def start_time(self, pid):
        self.stat_reads = getattr(self, "stat_reads", 0) + 1
        if pid not in self.table:
            raise NoSuchProcess(pid)
        return self.table[pid][0]

    def cgroup(self, pid):
        self.cgroup_reads += 1
        if pid not in self.table:
            raise NoSuchProcess(pid)
        return self.table[pid][1]


class FakeCgroups:
    def __init__(self, paths):
        self.paths = paths

    def path(self, cgroup_id):
        return self.paths.get(cgroup_id)


def test_resolver_on_fixture_tree():
    resolver = ServiceResolver(ProcFS(root=str(FIXTURES)))
    assert resolver.resolve(812, "nginx") == "nginx.service"
    assert resolver.resolve(2301, "evil) (x y") == f"container:{ID12}"
    assert resolver.resolve(2302, "two\nlines") == "user@1000:foo.service"
    assert resolver.resolve(2304, "bash") == "bash"


def test_resolver_caches_per_process():
    proc = FakeProc({10: (100, ["0::/system.slice/a.service"])})
    resolver = ServiceResolver(proc)
    assert resolver.resolve(10, "a") == "a.service"
    assert resolver.resolve(10, "a") == "a.service"
    assert proc.cgroup_reads == 1


def test_pid_reuse_is_never_served_from_cache():
    proc = FakeProc({10: (100, ["0::/system.slice/a.service"])})
    resolver = ServiceResolver(proc)
    assert resolver.resolve(10, "a") == "a.service"
    proc.table[10] = (250, ["0::/system.slice/b.service"])  # a died, b got its pid
    assert resolver.resolve(10, "b") == "b.service"


def test_pid_reused_between_start_time_and_cgroup_reads():
    proc = FakeProc({10: (100, ["0::/system.slice/a.service"])})

    def cgroup_then_reuse(pid):
        proc.table[10] = (250, ["0::/system.slice/b.service"])
        return ["0::/system.slice/b.service"]  # what the new process shows

    proc.cgroup = cgroup_then_reuse
    resolver = ServiceResolver(proc)
    assert resolver.resolve(10, "a") == "a"  # neither a's nor b's service is trusted
    assert resolver.resolve(10, "b") == "b.service"


def test_comm_without_service_follows_exec():
    proc = FakeProc({10: (100, ["0::/"])})
    resolver = ServiceResolver(proc)
    assert resolver.resolve(10, "bash") == "bash"
    assert resolver.resolve(10, "python3") == "python3"  # same pid and start, new comm


def test_cgroup_move_with_a_new_cgroup_id_is_seen():
    proc = FakeProc({10: (100, ["0::/user.slice/user-0.slice/session-1.scope"])})
    resolver = ServiceResolver(proc)
    assert resolver.resolve(10, "sh", cgroup_id=500) == "session-1.scope"
    proc.table[10] = (100, ["0::/system.slice/run-u7.scope"])  # systemd-run --scope
    assert resolver.resolve(10, "sh", cgroup_id=501) == "run-u7.scope"


def test_gone_process_falls_back_to_cgroup_id():
    cgroups = FakeCgroups({501: f"/system.slice/docker-{ID}.scope", 502: "/system.slice"})
    resolver = ServiceResolver(FakeProc({}), cgroups)
    assert resolver.resolve(10, "worker", cgroup_id=501) == f"container:{ID12}"
    assert resolver.resolve(10, "worker", cgroup_id=502) == "worker"
    assert resolver.resolve(10, "worker", cgroup_id=999) == "worker"
    assert resolver.resolve(10, "worker") == "worker"


def test_gone_process_without_cgroup_index_is_comm():
    assert ServiceResolver(FakeProc({})).resolve(10, "worker", cgroup_id=501) == "worker"


def test_process_exiting_between_reads():
    proc = FakeProc({10: (100, ["0::/system.slice/a.service"])})

    def exits(pid):
        proc.table.clear()
        raise NoSuchProcess(pid)

    proc.cgroup = exits
    cgroups = FakeCgroups({7: "/system.slice/a.service"})
    assert ServiceResolver(proc, cgroups).resolve(10, "a", cgroup_id=7) == "a.service"


def test_hidden_process_is_treated_as_gone():
    class Hidden(FakeProc):
        def start_time(self, pid):
            raise AccessDenied(pid, "stat")

    assert ServiceResolver(Hidden({})).resolve(10, "x") == "x"


def test_cache_is_bounded_and_evicts_least_recently_used():
    proc = FakeProc({pid: (1, [f"0::/system.slice/s{pid}.service"]) for pid in range(1, 6)})
    resolver = ServiceResolver(proc, max_entries=3)
    for pid in (1, 2, 3):
        resolver.resolve(pid, "x")
    resolver.resolve(1, "x")       # 1 is now the most recent
    resolver.resolve(4, "x")       # evicts 2
    assert len(resolver._cache) == 3
    reads = proc.cgroup_reads
    resolver.resolve(1, "x")
    assert proc.cgroup_reads == reads
    resolver.resolve(2, "x")
    assert proc.cgroup_reads == reads + 1


def test_resolver_on_copied_fixture_after_process_exit(tmp_path):
    root = tmp_path / "proc"
    shutil.copytree(FIXTURES, root)
    resolver = ServiceResolver(ProcFS(root=str(root)))
    assert resolver.resolve(812, "nginx") == "nginx.service"
    shutil.rmtree(root / "812")
    assert resolver.resolve(812, "nginx") == "nginx"


def test_one_proc_lookup_per_process_per_drain_and_fresh_after_it():
    proc = FakeProc({10: (100, ["0::/system.slice/a.service"])})
    resolver = ServiceResolver(proc)
    resolver.start_drain()
    for fd in range(50):                   # 50 keys (files) of one process in one drain
        assert resolver.resolve(10, "a", cgroup_id=7) == "a.service"
    assert proc.stat_reads == 2 and proc.cgroup_reads == 1   # start time checked around it
    resolver.end_drain()
    proc.table[10] = (250, ["0::/system.slice/b.service"])  # pid reused after the drain
    resolver.start_drain()
    assert resolver.resolve(10, "b", cgroup_id=7) == "b.service"
    assert resolver.resolve(10, "b", cgroup_id=7) == "b.service"
    assert proc.cgroup_reads == 2
    resolver.end_drain()


def test_same_pid_other_cgroup_in_one_drain_is_looked_up_again():
    proc = FakeProc({10: (100, ["0::/system.slice/a.service"])})
    resolver = ServiceResolver(proc)
    resolver.start_drain()
    assert resolver.resolve(10, "a", cgroup_id=7) == "a.service"
    proc.table[10] = (100, ["0::/system.slice/c.service"])  # moved: new cgroup id
    assert resolver.resolve(10, "a", cgroup_id=8) == "c.service"
    resolver.end_drain()


# -- containers named as operators know them ----------------------------------------------

CONTAINERS = Path(__file__).parent / "fixtures" / "containers"
PODMAN_WEB = "a16ba8e6dcfe40b703ae0b3ce2cb125bcf0af486e6b4d173c3d3d314c7eab0c3"
DOCKER = "9f3c2b1a0e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c8b7a6f5e4d3c2b"
K8S_NGINX = "4b8e0f6a2c9d1e3f5a7b9c0d2e4f6a8b0c1d3e5f7a9b1c3d5e7f9a0b2c4d6e8f"


@pytest.mark.parametrize("lines, expected", [
    ([f"0::/machine.slice/libpod-{ID}.scope/container"], ID),
    ([f"0::/system.slice/docker-{ID}.scope/system.slice/nginx.service"], ID),
    (["9:name=systemd:/", f"4:memory:/docker/{ID}", "0::/"], ID),
    (["0::/system.slice/nginx.service", f"4:memory:/docker/{ID}"], None),  # as the service
    ([f"0::/machine.slice/libpod-conmon-{ID}.scope"], None),
    (["0::/"], None),
])
def test_full_container_id(lines, expected):
    assert container_id_from_cgroup(lines) == expected
    found = service_from_cgroup(lines)
    assert (found is not None and found[0] == "container") == (expected is not None)


@pytest.mark.parametrize("tree, cgroup, service", [
    ("podman", f"/machine.slice/libpod-{PODMAN_WEB}.scope/container", "sw-fixture-web"),
    ("docker", f"/system.slice/docker-{DOCKER}.scope", "shop-web"),
    ("k8s", f"/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod8a3f.slice/"
            f"cri-containerd-{K8S_NGINX}.scope", "shop/web-7d4b9c6f5-x2k9p/nginx"),
    ("k8s", f"/system.slice/docker-{ID}.scope", f"container:{ID12}"),    # nobody knows it
    ("podman", "/system.slice/nginx.service", "nginx.service"),
])
def test_container_service_is_its_name(tree, cgroup, service):
    proc = FakeProc({10: (100, [f"0::{cgroup}"])})
    resolver = ServiceResolver(proc, containers=ContainerNames(root=str(CONTAINERS / tree)))
    assert resolver.resolve(10, "sh") == service


def test_container_image_for_the_record():
    proc = FakeProc({10: (100, [f"0::/system.slice/docker-{DOCKER}.scope"])})
    resolver = ServiceResolver(proc, containers=ContainerNames(root=str(CONTAINERS / "docker")))
    assert resolver.resolve(10, "nginx") == "shop-web"
    info = resolver.container_info("shop-web")
    assert (info.id, info.image, info.source) == (DOCKER, "nginx:1.25", "docker")
    assert resolver.container_info("nginx.service") is None
    assert ServiceResolver(proc).container_info("shop-web") is None


def test_container_known_by_id_only_is_asked_again(tmp_path):
    proc = FakeProc({10: (100, [f"0::/system.slice/docker-{DOCKER}.scope"])})
    names = ContainerNames(root=str(tmp_path), retry_s=0)
    resolver = ServiceResolver(proc, containers=names)
    assert resolver.resolve(10, "nginx") == f"container:{DOCKER[:12]}"
    shutil.copytree(CONTAINERS / "docker", tmp_path, dirs_exist_ok=True)   # config written
    assert resolver.resolve(10, "nginx") == "shop-web"
    reads = proc.cgroup_reads
    assert resolver.resolve(10, "nginx") == "shop-web"                      # now cached
    assert proc.cgroup_reads == reads


def test_gone_container_process_is_named_from_its_cgroup_id():
    cgroups = FakeCgroups({501: f"/machine.slice/libpod-{PODMAN_WEB}.scope/container"})
    resolver = ServiceResolver(FakeProc({}), cgroups,
                               containers=ContainerNames(root=str(CONTAINERS / "podman")))
    assert resolver.resolve(10, "sh", cgroup_id=501) == "sw-fixture-web"


# -- issue 23 item 5: nothing a user makes passes for a system unit --------------------
@pytest.mark.parametrize("comm, expected", [
    ("nginx", "nginx"), ("nginx.service", "comm:nginx.service"),
    ("x.scope", "comm:x.scope"), ("container:abc", "comm:container:abc"),
    ("user@0:a", "comm:user@0:a"), ("(other)", "comm:(other)"), ("comm:x", "comm:comm:x"),
])
def test_a_process_name_never_reads_as_a_unit_or_container(comm, expected):
    from collector.host.services import service_label
    assert service_label(None, comm) == expected


@pytest.mark.parametrize("path, owner", [
    ("/system.slice/nginx.service", "system"),
    (f"/system.slice/docker-{ID}.scope", "container"),
    ("/user.slice/user-65534.slice/user@65534.service/app.slice/nginx.service", "uid:65534"),
    ("/user.slice/user-1000.slice/session-3.scope", "uid:1000"),
    (f"/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{ID}.scope",
     "uid:1000"),
    ("/", None), ("/system.slice", None),
])
def test_owner_from_cgroup(path, owner):
    from collector.host.services import owner_from_cgroup
    assert owner_from_cgroup([f"0::{path}"]) == owner


def test_owner_of_a_process_without_a_unit_is_its_real_uid(tmp_path):
    d = tmp_path / "42"
    d.mkdir()
    (d / "stat").write_text("42 (x) S 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 777 0 0\n")
    (d / "cgroup").write_text("0::/\n")
    (d / "status").write_text("Name:\tx\nUid:\t65534\t0\t0\t0\n")
    resolver = ServiceResolver(ProcFS(str(tmp_path)))
    assert resolver.resolve(42, "x") == "x"
    assert resolver.owner(42) == "uid:65534"
    assert resolver.owner(43) == "unknown"             # gone: nothing to tell
