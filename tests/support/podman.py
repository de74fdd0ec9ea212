"""Real podman containers for tests: an image built on the spot, containers by exact name.

No registry is reachable, so the image is busybox-static copied into an empty root
filesystem, tarred and `podman import`ed. Everything is created and removed by the exact
name the test gave it.

Whether podman can run a container here is found by trying once (`unavailable()`): on a
host whose cgroups are a v1+v2 hybrid crun refuses every container ("crun: cgroups in
hybrid mode not supported, drop all controllers from cgroupv2"), which is why the
container tests run in the Vagrant VM (docs/probe-logwrites.md "Containers").

ulimits are passed explicitly (ULIMITS): podman's defaults raise RLIMIT_NOFILE/NPROC
above what a root without CAP_SYS_RESOURCE may set ("crun: setrlimit `RLIMIT_NOFILE`:
Operation not permitted"), as on the build host.
"""
import functools
import os
import resource
import shutil
import subprocess
import tarfile
import tempfile
import uuid

PODMAN = "podman"
BUSYBOX = ("/bin/busybox", "/usr/bin/busybox")
TIMEOUT_S = 120


class PodmanFailed(AssertionError):
    pass


def global_args():
    """podman's systemd cgroup manager talks to systemd over D-Bus ("crun: cannot open
    sd-bus"); the Vagrant VM runs no D-Bus daemon, so podman makes its cgroups itself
    there (libpod_parent/libpod-<id>, which names the container just the same)."""
    if os.path.exists("/run/dbus/system_bus_socket"):
        return []
    return ["--cgroup-manager=cgroupfs"]


def podman(*args, check=True, timeout=TIMEOUT_S):
    res = subprocess.run([PODMAN, *global_args(), *args], capture_output=True, text=True,
                         timeout=timeout, check=False)
    if check and res.returncode != 0:
        raise PodmanFailed(f"podman {' '.join(args)}: exit {res.returncode}: "
                           f"{last_line(res.stderr)}")
    return res


def last_line(text):
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""


# what a busybox loop needs, well below the hard limits of any host we run on (the
# current limits themselves are refused for nproc on the build host: podman adjusts
# its own at start)
ULIMITS = (("nofile", resource.RLIMIT_NOFILE, 20000), ("nproc", resource.RLIMIT_NPROC, 32768))


def ulimit_args():
    """--ulimit options for ULIMITS, lowered to this process's hard limits."""
    out = []
    for name, which, want in ULIMITS:
        hard = resource.getrlimit(which)[1]
        value = want if hard == resource.RLIM_INFINITY else min(want, hard)
        out += ["--ulimit", f"{name}={value}:{value}"]
    return out


def build_image(tag):
    """`podman import` a root filesystem holding only busybox (bin/sh -> busybox)."""
    busybox = next((p for p in BUSYBOX if os.path.isfile(p)), None)
    if busybox is None:
        raise PodmanFailed("no busybox binary: install busybox-static")
    with tempfile.TemporaryDirectory(prefix="sw-image-") as tmp:
        root = os.path.join(tmp, "root")
        os.makedirs(os.path.join(root, "bin"))
        shutil.copy(busybox, os.path.join(root, "bin", "busybox"))
        os.symlink("busybox", os.path.join(root, "bin", "sh"))
        tar = os.path.join(tmp, "root.tar")
        with tarfile.open(tar, "w") as t:
            t.add(root, arcname=".")
        podman("import", tar, tag)
    return tag


def remove_image(tag):
    podman("rmi", "--force", tag, check=False)


def run_detached(name, image, command, log_path=None):
    """Start container `name` in the background; its full id. With log_path, conmon
    writes the container's output there (the k8s-file driver), else podman's default."""
    logs = ["--log-driver", "k8s-file", "--log-opt", f"path={log_path}"] if log_path else []
    res = podman("run", "--detach", "--name", name, *ulimit_args(), *logs, image, *command)
    return res.stdout.strip().splitlines()[-1]


def remove_container(name):
    """Remove container `name` (stopping it first) if it exists."""
    podman("rm", "--force", "--time", "0", name, check=False)


def inspect(name, template):
    return podman("inspect", "--format", template, name).stdout.strip()


@functools.lru_cache(maxsize=1)
def unavailable():
    """None when podman runs a container here, else why not (one line, the runtime's own
    words); found by building the image and running `echo` once."""
    if shutil.which(PODMAN) is None:
        return "podman is not installed (tests/setup.sh installs it: make test)"
    if os.geteuid() != 0:
        return "needs root: rootful podman"
    tag = f"localhost/sw-probe-{uuid.uuid4().hex[:8]}:test"
    name = f"sw-probe-{uuid.uuid4().hex[:8]}"
    try:
        build_image(tag)
        res = podman("run", "--rm", "--name", name, *ulimit_args(), tag, "/bin/sh", "-c",
                     "echo ok", check=False)
        if res.returncode != 0 or res.stdout.strip() != "ok":
            return f"podman cannot run a container here: {last_line(res.stderr)}"
        return None
    except (PodmanFailed, OSError, subprocess.TimeoutExpired) as e:
        return f"podman cannot run a container here: {e}"
    finally:
        remove_container(name)
        remove_image(tag)
