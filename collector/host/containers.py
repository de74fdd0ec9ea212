"""Container id -> the name operators know, from the runtimes' own files (no API calls).

In order, the first that knows the id:
- Kubernetes: kubelet's /var/log/containers/<pod>_<namespace>_<container>-<id>.log
  symlinks (any CRI runtime) -> "namespace/pod/container";
- docker: /var/lib/docker/containers/<id>/config.v2.json -> `Name` (without its "/"),
  `Config.Image`, `LogPath`;
- podman (rootful; CRI-O shares this store): /var/lib/containers/storage/
  overlay-containers/containers.json -> `names[0]`, the image from `metadata`'s
  image-name, else overlay-images/images.json by the `image` id;
- else the first 12 hex digits of the id, as `docker ps` shows it.
A Kubernetes name takes docker's image when docker runs the pod (dockershim).

The parsers are pure (text in, answer out); ContainerNames reads the files under an
overridable root and caches per id. A name found is kept (a container's name does not
change); a fallback is retried after `retry_s`, because kubelet makes its symlink just
after the container starts, when its first lines may already be counted.
"""
import json
import os
import re
import time
from collections import OrderedDict
from typing import NamedTuple

ID_CHARS = 12                                   # as `docker ps` shows it
K8S_LOG_LINKS = "var/log/containers"
DOCKER_CONTAINERS = "var/lib/docker/containers"
PODMAN_STORAGE = "var/lib/containers/storage"
_K8S_LINK = re.compile(r"(?P<pod>[^_/]+)_(?P<ns>[^_/]+)_(?P<ctr>[^_/]+)-(?P<id>[0-9a-f]{64})\.log")


class ContainerInfo(NamedTuple):
    id: str                  # full 64-hex id
    name: str                # "web", "shop/web-5d9f/nginx", or id[:12]
    image: str | None        # "docker.io/library/nginx:1.25", when known
    source: str              # "kubernetes", "docker", "podman" or "id"
    log_path: str | None = None    # the runtime's log file, when its files tell


def fallback(container_id):
    return ContainerInfo(container_id, container_id[:ID_CHARS], None, "id")


# -- pure parsers ------------------------------------------------------------------------

def parse_k8s_log_link(filename):
    """(namespace, pod, container, id) from a /var/log/containers file name, or None.

    Pod, namespace and container names are DNS labels/subdomains: never "_", so the
    three "_"-separated fields are unambiguous."""
    m = _K8S_LINK.fullmatch(filename)
    if m is None:
        return None
    return m.group("ns"), m.group("pod"), m.group("ctr"), m.group("id")


def parse_docker_config(text, container_id):
    """ContainerInfo from config.v2.json text, or None when it is not for this id."""
    try:
        doc = json.loads(text)
    except ValueError:
        return None
    if not isinstance(doc, dict) or doc.get("ID") != container_id:
        return None
    name = str(doc.get("Name") or "").lstrip("/")
    if not name:
        return None
    config = doc.get("Config") if isinstance(doc.get("Config"), dict) else {}
    image = config.get("Image") or doc.get("Image") or None
    return ContainerInfo(container_id, name, image, "docker", doc.get("LogPath") or None)


def parse_podman_containers(text):
    """{id: (name, image name or None, image id or None)} from containers.json text."""
    try:
        doc = json.loads(text)
    except ValueError:
        return {}
    found = {}
    for entry in doc if isinstance(doc, list) else ():
        if not isinstance(entry, dict):
            continue
        cid, names = entry.get("id"), entry.get("names") or []
        if not isinstance(cid, str) or not names:
            continue
        try:
            meta = json.loads(entry.get("metadata") or "{}")
        except ValueError:
            meta = {}
        image_name = (meta.get("image-name") or None) if isinstance(meta, dict) else None
        found[cid] = (str(names[0]), image_name, entry.get("image") or None)
    return found


def parse_podman_images(text):
    """{image id: its first name} from images.json text."""
    try:
        doc = json.loads(text)
    except ValueError:
        return {}
    return {e["id"]: e["names"][0] for e in doc if isinstance(doc, list)
            and isinstance(e, dict) and isinstance(e.get("id"), str) and e.get("names")}


# -- the lookups -------------------------------------------------------------------------

# A file's mtime comes from the kernel's coarse clock (a jiffy, or a second on some file
# systems): a change made within that tick of the last look leaves the stamp unchanged
# (seen in the VM: mkdir then symlink, one mtime). A stamp this recent is not trusted.
RACY_NS = 2_000_000_000


def _stamp(st, *extra):
    """What identifies this version of a file or directory, or None while too recent."""
    if time.time_ns() - st.st_mtime_ns < RACY_NS:
        return None
    return (st.st_mtime_ns, st.st_ino) + extra


class _JsonFile:
    """A parsed file, parsed again when its mtime or size changes."""

    def __init__(self, path, parse):
        self.path, self.parse = path, parse
        self._stamp, self._value = None, {}

    def get(self):
        try:
            st = os.stat(self.path)
        except OSError:
            self._stamp, self._value = None, {}
            return self._value
        stamp = _stamp(st, st.st_size)
        if stamp is None or stamp != self._stamp:
            try:
                with open(self.path, encoding="utf-8", errors="replace") as f:
                    self._value = self.parse(f.read())
            except OSError:
                self._value = {}
            self._stamp = stamp
        return self._value


class ContainerNames:
    """Container id (64 hex) -> ContainerInfo; bounded LRU cache of what was found."""

    def __init__(self, root="/", max_entries=4096, retry_s=10.0, clock=time.monotonic):
        self.root = root
        self.max_entries = max_entries
        self.retry_s = retry_s
        self.clock = clock
        self._cache = OrderedDict()        # id -> (ContainerInfo, retry at or None)
        self._by_name = OrderedDict()      # name -> ContainerInfo (not fallbacks)
        storage = self._path(PODMAN_STORAGE)
        self._podman = _JsonFile(os.path.join(storage, "overlay-containers", "containers.json"),
                                 parse_podman_containers)
        self._images = _JsonFile(os.path.join(storage, "overlay-images", "images.json"),
                                 parse_podman_images)
        self._k8s_dir = self._path(K8S_LOG_LINKS)
        self._k8s_stamp, self._k8s = None, {}

    def lookup(self, container_id):
        got = self._cache.get(container_id)
        if got is not None:
            info, retry_at = got
            if retry_at is None or self.clock() < retry_at:
                self._cache.move_to_end(container_id)
                return info
        info = self._find(container_id)
        retry_at = self.clock() + self.retry_s if info.source == "id" else None
        self._cache[container_id] = (info, retry_at)
        self._cache.move_to_end(container_id)
        if retry_at is None:
            self._by_name[info.name] = info
            self._by_name.move_to_end(info.name)
        for cache in (self._cache, self._by_name):
            while len(cache) > self.max_entries:
                cache.popitem(last=False)
        return info

    def by_name(self, name):
        """The ContainerInfo last found with this name (for a record's image), or None."""
        return self._by_name.get(name)

    def _find(self, cid):
        docker = self._docker(cid)
        k8s = self._kubernetes(cid)
        if k8s is not None:
            return k8s._replace(image=docker.image) if docker is not None else k8s
        if docker is not None:
            return docker
        return self._podman_info(cid) or fallback(cid)

    def _path(self, rel):
        return os.path.join(self.root, rel)

    def _kubernetes(self, cid):
        try:
            st = os.stat(self._k8s_dir)
            stamp = _stamp(st)
            if stamp is None or stamp != self._k8s_stamp:
                self._k8s = self._k8s_index(os.listdir(self._k8s_dir))
                self._k8s_stamp = stamp
        except OSError:
            self._k8s_stamp, self._k8s = None, {}
        found = self._k8s.get(cid)
        if found is None:
            return None
        (ns, pod, ctr), link = found
        return ContainerInfo(cid, f"{ns}/{pod}/{ctr}", None, "kubernetes",
                             self._link_target(link))

    @staticmethod
    def _k8s_index(names):
        index = {}
        for filename in names:
            parsed = parse_k8s_log_link(filename)
            if parsed is not None:
                index[parsed[3]] = (parsed[:3], filename)
        return index

    def _link_target(self, filename):
        """The /var/log/pods/... file the link names (as the host sees it), or None."""
        try:
            target = os.readlink(os.path.join(self._k8s_dir, filename))
        except OSError:
            return None
        return os.path.normpath(os.path.join("/" + K8S_LOG_LINKS, target))

    def _docker(self, cid):
        if not re.fullmatch(r"[0-9a-f]{64}", cid):
            return None                    # the id becomes a path component
        path = os.path.join(self._path(DOCKER_CONTAINERS), cid, "config.v2.json")
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                return parse_docker_config(f.read(), cid)
        except OSError:
            return None

    def _podman_info(self, cid):
        found = self._podman.get().get(cid)
        if found is None:
            return None
        name, image, image_id = found
        if image is None and image_id:
            image = self._images.get().get(image_id)
        return ContainerInfo(cid, name, image, "podman")
