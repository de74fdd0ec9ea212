"""pid -> service name: the systemd unit, else the container, else comm (DESIGN.md).

service_from_cgroup() is pure (cgroup lines in, answer out); ServiceResolver adds /proc
reads and a cache keyed so that a reused pid never inherits a dead process's service,
and, given a collector.host.containers.ContainerNames, names a container the way its
operators do (its name, or namespace/pod/container) instead of by its id.
"""
import re
from collections import OrderedDict

from collector.errors import HostLookupError

SYSTEMD = "systemd"
CONTAINER = "container"               # name: the 12-hex id (no better name known)
NAMED_CONTAINER = "named-container"   # name: docker/podman name, or namespace/pod/container
USER = "user"     # name: "user@UID:<unit or container:id>", inside a user's own manager
CONTAINER_ID_CHARS = 12  # as `docker ps` shows it

# systemd cgroup driver scopes (docker, containerd/CRI, CRI-O, podman); the cgroupfs
# drivers use the same names without ".scope". "crio-conmon-<id>.scope" is the monitor
# process, not the container, and deliberately does not match.
_CONTAINER_UNIT = re.compile(r"(?:docker|cri-containerd|crio|libpod)-([0-9a-f]{64})(?:\.scope)?")
_BARE_ID = re.compile(r"[0-9a-f]{64}")
_UNIT_SUFFIXES = (".service", ".scope")


# A user's own systemd instance (user@UID.service) and everything in its subtree is
# delegated to that user: they create units and cgroups there with any name. A unit or
# container found inside it is named "user@UID:<name>", so "nginx.service" in a user's
# app.slice can never read as the system's nginx.service (docs/stream.md, `service`).
_USER_MANAGER = re.compile(r"user@(\d+)\.service")
_USER_SLICE = re.compile(r"user-(\d+)\.slice")
# A process name is any 15 bytes its owner chose: one that would read as a unit, a
# user unit, a container or the collector's own remainder is given as "comm:<name>".
_UNIT_LIKE = (".service", ".scope", ".slice", ".socket", ".mount", ".timer")
_RESERVED_PREFIXES = ("container:", "user@", "comm:", "(")

SYSTEM, CONTAINER_OWNER, UNKNOWN_OWNER = "system", "container", "unknown"


def service_from_cgroup(lines):
    """(kind, name) for a process with these /proc/<pid>/cgroup lines, or None.

    kind is "systemd" (name = unit, e.g. "nginx.service"), "container" (name = the
    first 12 hex chars of the id) or "user" (inside a user's own manager,
    user@UID.service: name = "user@UID:<unit>" or "user@UID:container:<id12>"). None for
    the root cgroup or slices only.
    """
    v2, systemd_v1, other_v1 = _paths_by_hierarchy(lines)
    for path in v2 + systemd_v1:
        found = _service_from_path(path)
        if found:
            return found
    # Without systemd (cgroupfs drivers on a v1 or hybrid host) a container may only
    # be visible in the controller hierarchies; those never name a systemd unit.
    for path in other_v1:
        container = _innermost_container(_components(path))
        if container:
            return (CONTAINER, container[:CONTAINER_ID_CHARS])
    return None


def container_id_from_cgroup(lines):
    """The full 64-hex id of the container these cgroup lines put a process in, or None
    (the same search as service_from_cgroup, so both name the same container)."""
    v2, systemd_v1, other_v1 = _paths_by_hierarchy(lines)
    for path in v2 + systemd_v1:
        components = _components(path)
        container = _innermost_container(components)
        if container or _unit_of(components):
            return container
    for path in other_v1:
        container = _innermost_container(_components(path))
        if container:
            return container
    return None


def _paths_by_hierarchy(lines):
    v2, systemd_v1, other_v1 = [], [], []
    for line in lines:
        parts = line.rstrip("\n").split(":", 2)  # the path itself may contain ":"
        if len(parts) != 3:
            continue
        hierarchy, controllers, path = parts
        if hierarchy == "0" and controllers == "":
            v2.append(path)
        elif "name=systemd" in controllers.split(","):
            systemd_v1.append(path)
        else:
            other_v1.append(path)
    return v2, systemd_v1, other_v1


def _components(path):
    return [c for c in path.split("/") if c and c != ".."]


def owner_from_cgroup(lines):
    """Who owns a process with these cgroup lines, as far as the path tells:
    "uid:UID" anywhere under user-UID.slice (sessions, the user's manager and all it
    delegates, rootless containers), "container" for a container elsewhere, "system"
    for a unit elsewhere (a system unit), None when the path names neither (the
    process's uid then decides: ServiceResolver)."""
    v2, systemd_v1, other_v1 = _paths_by_hierarchy(lines)
    for path in v2 + systemd_v1:
        components = _components(path)
        uid = _user_of(components)
        if uid is not None:
            return f"uid:{uid}"
        found = _service_from_path(path)
        if found:
            return CONTAINER_OWNER if found[0] == CONTAINER else SYSTEM
    for path in other_v1:
        if _innermost_container(_components(path)):
            return CONTAINER_OWNER
    return None


def _user_of(components):
    for component in components:
        m = _USER_SLICE.fullmatch(component) or _USER_MANAGER.fullmatch(component)
        if m:
            return int(m.group(1))
    return None


def _service_from_path(path):
    components = _components(path)
    # A container wins over everything around it (its .scope, an enclosing service) and
    # over units nested inside it: unit names are only unique per systemd instance.
    # Inside a user's manager (user@UID.service, not itself inside a container) both
    # are the user's and carry its prefix.
    container_at = _innermost_container_index(components)
    for i, component in enumerate(components):
        m = _USER_MANAGER.fullmatch(component)
        if m is None:
            continue
        if container_at is not None and container_at < i:
            break                           # a systemd inside a container
        inner = components[i + 1:]
        if container_at is not None:
            name = f"container:{_container_id(components[container_at])[:CONTAINER_ID_CHARS]}"
        else:
            name = _unit_of(inner)
        if name:
            return (USER, f"user@{m.group(1)}:{name}")
        return (SYSTEMD, component)         # the user's manager itself
    container = _innermost_container(components)
    if container:
        return (CONTAINER, container[:CONTAINER_ID_CHARS])
    unit = _unit_of(components)
    return (SYSTEMD, unit) if unit else None


def _unit_of(components):
    for component in reversed(components):
        if component.endswith(_UNIT_SUFFIXES) and not component.startswith("."):
            return component
    return None


def _innermost_container(components):
    i = _innermost_container_index(components)
    return None if i is None else _container_id(components[i])


def _container_id(component):
    match = _CONTAINER_UNIT.fullmatch(component)
    return match.group(1) if match else component


def _innermost_container_index(components):
    for i in range(len(components) - 1, -1, -1):
        component = components[i]
        if _CONTAINER_UNIT.fullmatch(component):
            return i
        # cgroupfs drivers: /docker/<id>, /kubepods/<qos>/pod<uid>/<id>
        if _BARE_ID.fullmatch(component) and (
            (i > 0 and components[i - 1] == "docker") or "kubepods" in components[:i]
        ):
            return i
    return None


def service_label(found, comm):
    """The service string used in records: unit, container name, "container:<id>" (a
    container with no better name known), else comm."""
    if found is None:
        if comm.endswith(_UNIT_LIKE) or comm.startswith(_RESERVED_PREFIXES):
            return f"comm:{comm}"
        return comm
    kind, name = found
    return f"container:{name}" if kind == CONTAINER else name


class ServiceResolver:
    """Caches pid -> service by (pid, start_time, cgroup_id).

    start_time changes when a pid is reused, cgroup_id (when the probe gives one) when a
    process is moved to another cgroup, so a cache hit is never stale. exec keeps both,
    which is why comm is not cached: the caller's comm is always the current one.
    """

    def __init__(self, procfs, cgroups=None, max_entries=8192, containers=None):
        """containers: a ContainerNames (collector/host/containers.py), or None to name
        containers by id only."""
        self.procfs = procfs
        self.cgroups = cgroups
        self.containers = containers
        self.max_entries = max_entries
        self._cache = OrderedDict()  # key -> ((kind, name) or None, owner)
        self._owners = OrderedDict()  # (pid, cgroup_id) -> owner of the last answer
        self._this_drain = None      # during a drain: (pid, cgroup_id) -> answer

    def start_drain(self):
        """A drain holds many keys per process: until end_drain(), look each (pid, cgroup)
        up once. Within one drain a reused pid in the same cgroup gets the same answer
        anyway (the service follows from the cgroup)."""
        self._this_drain = {}

    def end_drain(self):
        self._this_drain = None

    def resolve(self, pid, comm, cgroup_id=None):
        return service_label(self.identify(pid, cgroup_id)[0], comm)

    def owner(self, pid, cgroup_id=None):
        """Who owns the process identify() last answered for (pid, cgroup_id): "system"
        (a system unit), "container", "uid:UID" (from a user slice, else the process's
        real uid) or "unknown" (gone before its uid was read, unreadable).
        collector/aggregate/slots.py ranks services by it."""
        got = self._owners.get((pid, cgroup_id))
        if got is None:
            self.identify(pid, cgroup_id)
            got = self._owners.get((pid, cgroup_id), UNKNOWN_OWNER)
        return got

    def _note_owner(self, pid, cgroup_id, owner):
        key = (pid, cgroup_id)
        self._owners[key] = owner
        self._owners.move_to_end(key)
        if len(self._owners) > self.max_entries:
            self._owners.popitem(last=False)

    def _uid_owner(self, pid, start):
        """"uid:N" from /proc/PID/status (real uid), checked against the start time."""
        root = getattr(self.procfs, "root", None)
        if root is None:
            return UNKNOWN_OWNER
        try:
            with open(f"{root}/{int(pid)}/status", "rb") as f:
                text = f.read()
            if self.procfs.start_time(pid) != start:
                return UNKNOWN_OWNER
        except (OSError, HostLookupError):
            return UNKNOWN_OWNER
        for line in text.split(b"\n"):
            if line.startswith(b"Uid:"):
                fields = line.split()
                if len(fields) > 1 and fields[1].isdigit():
                    return f"uid:{int(fields[1])}"
        return UNKNOWN_OWNER

    def container_info(self, service):
        """The ContainerInfo (id, image, source, log path) behind a service that is a
        container's name, or None: what a record may add about a container service."""
        if self.containers is None:
            return None
        return self.containers.by_name(service)

    def identify(self, pid, cgroup_id=None):
        """((kind, name) or None, start time or None): the answer and the process it is
        for; start time None when the process was gone (answered from its cgroup id)."""
        memo = self._this_drain
        if memo is None:
            return self._resolve(pid, cgroup_id)
        key = (pid, cgroup_id)
        got = memo.get(key)
        if got is None:
            got = memo[key] = self._resolve(pid, cgroup_id)
        return got

    def _resolve(self, pid, cgroup_id):
        """((kind, name) or None (then the service is the comm), start time or None)."""
        try:
            start = self.procfs.start_time(pid)
        except HostLookupError:
            return self._resolve_gone(pid, cgroup_id), None
        key = (pid, start, cgroup_id)
        if key in self._cache:
            self._cache.move_to_end(key)
            found, owner = self._cache[key]
            self._note_owner(pid, cgroup_id, owner)
            return found, start
        try:
            lines = self.procfs.cgroup(pid)
            # The pid could have died and been reused between the two reads.
            if self.procfs.start_time(pid) != start:
                return self._resolve_gone(pid, cgroup_id), None
        except HostLookupError:
            return self._resolve_gone(pid, cgroup_id), None
        found, final = self._named(lines)
        owner = owner_from_cgroup(lines) or self._uid_owner(pid, start)
        self._note_owner(pid, cgroup_id, owner)
        if final:       # a container known by id only is asked again (its name may come)
            self._cache[key] = (found, owner)
            if len(self._cache) > self.max_entries:
                self._cache.popitem(last=False)
        return found, start

    def _named(self, lines):
        """(service_from_cgroup's answer with a container's name when one is known,
        whether that answer is final)."""
        found = service_from_cgroup(lines)
        if found is None or found[0] != CONTAINER or self.containers is None:
            return found, True
        container_id = container_id_from_cgroup(lines)
        if container_id is None:
            return found, True
        info = self.containers.lookup(container_id)
        if info.source == "id":
            return found, False
        return (NAMED_CONTAINER, info.name), True

    def _resolve_gone(self, pid, cgroup_id):
        # The process exited before we looked: its cgroup (id from the probe) still
        # tells which unit or container it belonged to, even if the cgroup is gone too.
        owner = UNKNOWN_OWNER
        found = None
        if cgroup_id is not None and self.cgroups is not None:
            path = self.cgroups.path(cgroup_id)
            if path is not None:
                lines = [f"0::{path}"]
                found = self._named(lines)[0]
                owner = owner_from_cgroup(lines) or UNKNOWN_OWNER
        self._note_owner(pid, cgroup_id, owner)
        return found
