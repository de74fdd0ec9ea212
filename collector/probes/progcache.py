"""Compiled probes kept between starts: probes.cache_dir (docs/operations.md).

bcc compiles a probe's C with LLVM at every start (~0.4-0.9 s of CPU per probe here, and
~120 MB per loader child). The programs depend only on what went into the compile, so
the loader child keeps what bcc made (collector/probes/bpfobj.py: the instructions as the
kernel got them, the maps' shapes, the attachments) under a key of everything that went
in: this format, the compiler (bcc's version and package files), the kernel (release,
build, machine, the BTF the offsets came from), every file of the probes' C directory,
the cflags (BTF offsets, tracepoint fields, sizes), the steps and the maps. A later start
with the same key loads and attaches those without bcc; the kernel verifies every program
again as it loads. Anything else (no entry, a changed input, a damaged or untrusted file,
a refused load) compiles with bcc as without a cache, and stores the result.

Only root may write the directory: it must be owned by us and written by nobody else,
and so must every directory above it (or be sticky); a file must be ours, regular and
written by nobody else. Otherwise the cache is not used and the loader says why once.
"""
import base64
import hashlib
import importlib.util
import json
import os
import stat
import time
from pathlib import Path

from collector.probes.bpfobj import FORMAT, PROG_TYPES, ProbeObject

KEEP_PER_PROBE = 4              # newest entries kept per probe (kernels, versions)
MAX_ENTRY_BYTES = 8 << 20
STALE_TMP_NS = 3600 * 10**9
BTF_PATH = "/sys/kernel/btf/vmlinux"


def _digest(h, *parts):
    for p in parts:
        b = p if isinstance(p, bytes) else str(p).encode()
        h.update(len(b).to_bytes(8, "little"))
        h.update(b)


def compiler_id():
    """bcc's version and its Python package files (version-locked to libbcc in Debian)."""
    spec = importlib.util.find_spec("bcc")
    if spec is None or not spec.origin:
        return "no bcc"
    pkg = Path(spec.origin).parent
    h = hashlib.sha256()
    for name in ("__init__.py", "version.py"):
        try:
            st = (pkg / name).stat()
            _digest(h, name, st.st_mtime_ns, (pkg / name).read_bytes())
        except OSError:
            _digest(h, name, "missing")
    return h.hexdigest()


def key(plan, btf_path=BTF_PATH):
    """The hex key of everything a compile of `plan` depends on."""
    h = hashlib.sha256()
    u = os.uname()
    _digest(h, FORMAT, compiler_id(), u.release, u.version, u.machine)
    try:
        _digest(h, Path(btf_path).read_bytes())
    except OSError:
        _digest(h, "no BTF")
    src = Path(plan.source)
    for f in sorted(src.parent.iterdir()):
        if f.is_file():
            _digest(h, f.name, f.read_bytes())
    _digest(h, src.name, json.dumps([plan.cflags, plan.steps, plan.maps], sort_keys=True))
    return h.hexdigest()


def _encode(obj):
    progs = [{**p, "insns": base64.b64encode(p["insns"]).decode()} for p in obj.progs]
    return {"maps": obj.maps, "progs": progs, "steps": obj.steps, "handed": obj.handed,
            "fallbacks": obj.fallbacks, "reasons": obj.reasons}


MAP_FIELDS = {"name": str, "type": int, "key_size": int, "value_size": int,
              "max_entries": int, "flags": int}
PROG_FIELDS = {"fn": str, "name": str, "type": int, "attach": int, "func": (str, type(None)),
               "license": str, "kern_version": int, "insns": str, "refs": list}


def _fields(d, fields, what):
    if not isinstance(d, dict) or any(not isinstance(d.get(k), t) for k, t in fields.items()):
        raise ValueError(f"a {what} without the fields of this format")


def _decode(d):
    """The ProbeObject of an entry's object; ValueError for anything not of this format."""
    _fields(d, {"maps": list, "progs": list, "steps": list, "handed": dict,
                "fallbacks": list, "reasons": list}, "object")
    for m in d["maps"]:
        _fields(m, MAP_FIELDS, "map")
    progs = []
    for p in d["progs"]:
        _fields(p, PROG_FIELDS, "program")
        insns = base64.b64decode(p["insns"], validate=True)
        n = len(insns) // 8
        refs = [tuple(r) for r in p["refs"]]
        if len(insns) % 8 or any(len(r) != 2 or not all(isinstance(x, int) for x in r)
                                 or not (0 <= r[1] < len(d["maps"]) and 0 <= r[0] < n)
                                 for r in refs):
            raise ValueError(f"program {p['fn']}: a map reference out of range")
        progs.append({**p, "insns": insns, "refs": refs})
    names = {p["fn"] for p in progs}
    for s in d["steps"]:
        _fields(s, {"kind": str, "fn": str, "prog": str}, "step")
        if s["kind"] not in PROG_TYPES or s["prog"] not in names or \
                (s["kind"] in ("tracepoint", "raw") and not isinstance(s.get("tp"), str)):
            raise ValueError(f"a step of {s['fn']} that does not fit its programs")
    if any(not isinstance(i, int) or not 0 <= i < len(d["maps"]) for i in d["handed"].values()):
        raise ValueError("a handed-over map out of range")
    return ProbeObject(d["maps"], progs, d["steps"], d["handed"], d["fallbacks"], d["reasons"])


class Untrusted(Exception):
    """The directory or an entry may have been written by someone else (said why)."""


def _trusted(st, what):
    if st.st_uid != os.geteuid():
        raise Untrusted(f"{what} is owned by uid {st.st_uid}, not by us")
    if st.st_mode & 0o022:
        raise Untrusted(f"{what} is writable by group or others "
                        f"(mode {stat.S_IMODE(st.st_mode):o})")


def _check_ancestors(path):
    for parent in Path(path).parents:
        st = os.lstat(parent)
        if st.st_uid not in (0, os.geteuid()):
            raise Untrusted(f"{parent} is owned by uid {st.st_uid}")
        if st.st_mode & 0o022 and not st.st_mode & stat.S_ISVTX:
            raise Untrusted(f"{parent} is writable by group or others and not sticky")


class Cache:
    """One probe's entries in `path`; get() and put() never raise (a problem is a miss,
    kept in `problem` for the loader's one line)."""

    def __init__(self, path, probe):
        self.path, self.probe, self.problem = str(path), probe, None

    def _dir(self):
        """An fd of the directory (made 0700 when missing), checked as trusted."""
        path = os.path.abspath(self.path)
        _check_ancestors(path)
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            pass
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            _trusted(os.fstat(fd), path)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _name(self, k):
        return f"{self.probe}-{k[:40]}.json"

    def get(self, k):
        """The stored object of key k, or None."""
        try:
            d = self._dir()
        except (OSError, Untrusted) as e:
            self.problem = f"cache {self.path} not used: {e}"
            return None
        try:
            fd = os.open(self._name(k), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=d)
        except FileNotFoundError:
            return None
        except OSError as e:
            self.problem = f"cache entry not read: {e}"
            return None
        finally:
            os.close(d)
        try:
            with os.fdopen(fd, "rb") as f:
                st = os.fstat(f.fileno())
                if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_ENTRY_BYTES:
                    raise Untrusted("not a regular file of sane size")
                _trusted(st, "the entry")
                entry = json.loads(f.read())
            body = json.dumps(entry["object"], sort_keys=True).encode()
            if entry["key"] != k or entry["sha256"] != hashlib.sha256(body).hexdigest():
                raise ValueError("its key or digest does not match")
            return _decode(entry["object"])
        except (OSError, ValueError, KeyError, TypeError, UnicodeError, Untrusted) as e:
            self.problem = f"cache entry {self._name(k)} not used: {e}"
            return None

    def put(self, k, obj):
        """Store obj under key k (atomically: a new file renamed into place), and keep the
        newest KEEP_PER_PROBE entries of this probe."""
        try:
            d = self._dir()
        except (OSError, Untrusted) as e:
            self.problem = f"cache {self.path} not used: {e}"
            return
        try:
            body = _encode(obj)
            text = json.dumps({"key": k, "sha256": hashlib.sha256(
                json.dumps(body, sort_keys=True).encode()).hexdigest(), "object": body})
            tmp = f".{self.probe}-{os.getpid()}-{os.urandom(4).hex()}.tmp"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                         | os.O_CLOEXEC, 0o600, dir_fd=d)
            try:
                with os.fdopen(fd, "w") as f:
                    f.write(text)
                os.rename(tmp, self._name(k), src_dir_fd=d, dst_dir_fd=d)
            except OSError:
                os.unlink(tmp, dir_fd=d)
                raise
            self._prune(d)
        except OSError as e:
            self.problem = f"cache entry not stored: {e}"
        finally:
            os.close(d)

    def _prune(self, d):
        """Keep the newest entries of this probe; drop its temporary files older than an
        hour (a loader child killed while writing: the daemon waits 5 s for it to exit)."""
        mine, stale = [], []
        old = time.time_ns() - STALE_TMP_NS
        for name in os.listdir(d):
            try:
                mtime = os.stat(name, dir_fd=d, follow_symlinks=False).st_mtime_ns
            except OSError:
                continue
            if name.startswith(f"{self.probe}-") and name.endswith(".json"):
                mine.append((mtime, name))
            elif name.startswith(f".{self.probe}-") and name.endswith(".tmp") and mtime < old:
                stale.append((mtime, name))
        for _, name in sorted(mine, reverse=True)[KEEP_PER_PROBE:] + stale:
            try:
                os.unlink(name, dir_fd=d)
            except OSError:
                pass
