"""Drained (process, fd, inode) keys -> (service, path), kept across intervals.

A busy host drains the same keys every interval. A key's answer (the log path from its
inode's verdict, the service from its process's cgroup and comm) only changes when:
- the process does: it exits (and its pid may be reused). Each process is watched with a
  pidfd: one epoll check per drain lists the processes that exited, whose keys are then
  forgotten. A reused pid implies its old owner was reaped, so its exit is already
  visible when a drain that holds the new owner's writes is checked. Where pidfds cannot
  be used (a fixture /proc tree, fd budget spent) the start time is read again once per
  process per drain, as ServiceResolver always did;
- the comm (exec) or cgroup id (a move): the kernel sends both with every key, and a
  difference recomputes the service;
- the log rules: a new rules object forgets everything.
Nothing here runs when the drain is empty.

The owner of a service (collector/aggregate/slots.py ranks by it) is read while its
process lives. A process's last writes are often drained after it exited (a short-lived
writer, or any writer's final lines): /proc can no longer tell its uid, so such a key
keeps the owner read while that very process lived (the Proc whose pidfd reported the
exit in this drain; unwatched, one found alive at the previous drain), in the same
cgroup. Only a process never seen alive is "unknown" (unless its cgroup tells).

Per-interval totals go into path accumulators shared by every key of one (service, path)
(lists, for speed): [stamp, writes, bytes, (pid, comm), extra {(pid, comm)} or None,
service, path]. An accumulator whose stamp is not the current interval's counts as 0.
"""
from itertools import count
from operator import itemgetter
from struct import Struct

from collector.errors import HostLookupError, HostResourceError
from collector.host.destinations import NOT_LOG, UNRESOLVED
from collector.host.pidwatch import PidWatch, Proc
from collector.host.services import UNKNOWN_OWNER, service_label
from collector.probes.logwrite_counts import (KEY_LAYOUT, VAL_COUNTS, VAL_IDENT_OFFSET,
                                              VAL_LAYOUT)


class KeyCache:
    def __init__(self, resolver, services, max_keys=262144, watch=None):
        self.resolver, self.services = resolver, services
        self.max_keys = max_keys
        procfs = getattr(services, "procfs", None)
        live = getattr(procfs, "root", None) == "/proc"
        self.watch = watch if watch is not None else (PidWatch() if live else None)
        self._identify = getattr(services, "identify", None)
        self._owner = getattr(services, "owner", None)
        self.owners = {}       # service -> owner of the process that last opened its path
        self._keys = {}        # the kernel's key bytes -> entry (see _lookup)
        self._paths = {}       # (service, path) -> accumulator
        self._procs = {}       # pid -> Proc
        self._unwatched = []   # Proc checked again each drain
        self._gone = {}        # pid -> Proc whose exit its pidfd reported in this drain
        self._drain = 0        # non-empty drains so far (Proc.seen)
        self._rules = getattr(resolver, "rules", None)
        self.stamp = None
        self._once = {}        # this interval's entries for processes not identified
        self.resource_errors = 0   # keys left unresolved: the daemon out of fds/memory

    def take_resource_errors(self):
        """Keys left unresolved by a HostResourceError since the last call."""
        n, self.resource_errors = self.resource_errors, 0
        return n

    def close(self):
        """Forget everything and close the pidfds."""
        self.clear()
        if self.watch is not None:
            self.watch.close()

    def clear(self):
        if self.watch is not None:
            for proc in self._procs.values():
                self.watch.unwatch(proc)
        self._keys.clear()
        self._paths.clear()
        self.owners.clear()
        self._procs.clear()
        self._unwatched = []
        self._gone = {}

    def _forget(self, proc):
        keys = self._keys
        for k in proc.keys:
            keys.pop(k, None)
        if self._procs.get(proc.pid) is proc:
            del self._procs[proc.pid]
        proc.ok = False

    def _begin(self):
        rules = getattr(self.resolver, "rules", None)
        if rules is not self._rules:
            self._rules = rules
            self.clear()
        if len(self._keys) > self.max_keys or len(self._paths) > self.max_keys:
            self.clear()        # bound: rare, the next drain rebuilds what is live
        self._drain += 1
        self._gone = {}
        if self.watch is not None:
            for proc in self.watch.exited():
                self._forget(proc)
                self._gone[proc.pid] = proc     # its last writes may be in this drain
        for proc in self._unwatched:
            proc.ok = False

    def enrich(self, counts, stamp):
        """(accumulators touched in this interval, unresolved writes) for drained counts;
        stamp: a new object per interval."""
        self.stamp = stamp
        self._once = {}
        if not counts:
            return [], 0
        self._begin()
        return _accumulate(self._keys.get, self._slow, counts, stamp)

    def _proc(self, pid, cgroup_id):
        """(Proc or None when the process is not identified, (kind, name) or None)."""
        if self._identify is None:
            return None, None
        found, start = self._identify(pid, cgroup_id)
        if start is None:
            return None, found
        proc = self._procs.get(pid)
        if proc is not None and proc.start == start:
            proc.ok = True
            self._alive(proc, cgroup_id)
            return proc, found
        if proc is not None:              # the pid was reused
            if self.watch is not None:
                self.watch.unwatch(proc)
            self._forget(proc)
        proc = Proc(pid, start)
        watched = self.watch is not None and self.watch.watch(proc)
        if watched:
            try:          # the pidfd must be the process the answer is for
                same = self.services.procfs.start_time(pid) == start
            except HostLookupError:
                same = False
            if not same:
                self.watch.unwatch(proc)
                return None, found
        else:
            self._unwatched.append(proc)
        self._procs[pid] = proc
        self._alive(proc, cgroup_id)
        return proc, found

    def _alive(self, proc, cgroup_id):
        """proc was found alive in this drain: note it, and its owner while it can be read."""
        proc.seen = self._drain
        if self._owner is not None and (proc.owner is None or proc.owner[0] != cgroup_id):
            proc.owner = (cgroup_id, self._owner(proc.pid, cgroup_id))

    def _owner_of(self, proc, tgid, cgroup_id):
        """The owner for a key's service: the resolver's answer; for a process gone before
        its uid could be read, the owner read while that same process lived, in the same
        cgroup: the Proc whose pidfd reported its exit in this drain, one still watched
        (alive at this drain's start: it exited since), or an unwatched one found alive
        at the previous drain."""
        owner = self._owner(tgid, cgroup_id)
        if proc is not None or owner != UNKNOWN_OWNER:
            return owner
        last = self._gone.get(tgid)
        if last is None:
            last = self._procs.get(tgid)
            if last is not None and last.fd is None and last.seen < self._drain - 1:
                last = None     # unwatched and not seen alive lately: maybe another's pid
        if last is not None and last.owner is not None and last.owner[0] == cgroup_id:
            return last.owner[1]
        return owner

    def _slow(self, c, key, ident):
        """The entry for a key not known (or stale), None when unresolved. The daemon out
        of a resource (EMFILE...: a hostile neighbour can drive it there) leaves this key
        unresolved for the interval, counted, never an exception out of the drain."""
        try:
            return self._lookup(c, key, ident)
        except HostResourceError:
            self.resource_errors += 1
            return None

    def _lookup(self, c, key, ident):
        tgid, comm, cgroup_id = c.tgid, c.comm, c.cgroup_id
        e = self._keys.get(key)
        if e is not None and not e[0].ok and self._identify is not None:
            # an unwatched process: is it still the one its keys were answered for? (one
            # start time read per process per drain: its other keys then pass)
            proc = e[0]
            if self._proc(tgid, cgroup_id)[0] is proc and e[1] == comm \
                    and e[2] == cgroup_id:
                return e
        dest = self.resolver.destination(c)
        if dest is UNRESOLVED:
            return None
        proc, found = self._proc(tgid, cgroup_id)
        if self._identify is None:
            service = self.services.resolve(tgid, comm, cgroup_id)
        else:
            service = service_label(found, comm)
        pc = (tgid, comm)
        if proc is not None:
            # one (pid, comm) tuple and one identity bytes object per process, shared by
            # its keys: the interval's passes read 1 object per process, not 1 per key
            shared = proc.shared
            if shared is not None and shared[0] == pc and shared[1] == ident:
                pc, ident = shared
            else:
                proc.shared = (pc, ident)
        if dest is NOT_LOG:
            pa = None
        else:
            pa = self._paths.get((service, dest))
            if pa is None:
                pa = self._paths[(service, dest)] = [None, 0, 0, pc, None, service, dest]
            if self._owner is not None:
                self.owners[service] = self._owner_of(proc, tgid, cgroup_id)
        # a key's entry (a tuple: its items inline, one memory read): [0] its Proc, [1] comm,
        # [2] cgroup id, [3] its path accumulator (None: not a log), [4] (pid, comm),
        # [5] service, [6] path, [7] the value's identity bytes (from VAL_IDENT_OFFSET) it
        # was answered for
        e = (proc if proc is not None else _ONCE, comm, cgroup_id, pa, pc, service, dest, ident)
        if proc is not None:
            self._keys[key] = e
            proc.keys.append(key)
        else:
            self._once[key] = e
        return e

    def writes(self, counts):
        """(pid, comm, service, path, writes, bytes) per count of the last enrich() that
        was a log write (for callers that want per-key detail)."""
        if not counts:
            return []
        get, once = self._keys.get, self._once.get
        out = []
        for key, c in zip(map(_FIRST, _KEY_CUT.iter_unpack(counts.keys)), counts):
            e = once(key) or get(key)
            if e is None or e[3] is None:
                continue
            out.append((c.tgid, c.comm, e[5], e[6], c.writes, c.bytes))
        return out


def _accumulate(get, slow, counts, stamp):
    """Each drained key's writes into its (service, path) accumulator, over the kernel's
    bytes (collector.probes.logwrite_counts.RawCounts). The per-key work that needs no
    decision runs at C level: the key bytes (the cache key) are cut out by
    struct.iter_unpack and looked up by map(); each value unpacks to (writes, bytes,
    identity bytes) the same way. What is left in Python per known key: the entry's
    checks (process still trusted, (cgroup id, comm) bytes unchanged) and the additions.
    A missing or stale entry goes through slow()."""
    kb, vb, n = counts.keys, counts.vals, counts.n
    if not n:
        return [], 0
    keys = list(map(_FIRST, _KEY_CUT.iter_unpack(kb)))
    touched = []
    append = touched.append
    unresolved = 0
    for i, e, key, (w, b, ident) in zip(count(), map(get, keys), keys,
                                         _VAL_CUT.iter_unpack(vb)):
        if e is None or not e[0].ok or e[7] != ident:
            e = slow(counts.count(i), key, ident)
            if e is None:
                unresolved += w
                continue
        pa = e[3]
        if pa is not None and (w or b):
            if pa[0] is stamp:
                pa[1] += w
                pa[2] += b
                pc = e[4]
                if pa[3] is not pc and pa[3] != pc:
                    if pa[4] is None:
                        pa[4] = {pc}
                    else:
                        pa[4].add(pc)
            else:
                pa[0] = stamp
                pa[1] = w
                pa[2] = b
                pa[3] = e[4]
                pa[4] = None
                append(pa)
    return touched, unresolved


# a drained key's bytes (the cache's key: bytes, not a tuple, one memory read less per
# lookup), and a value as (writes, bytes, the identity bytes from VAL_IDENT_OFFSET on),
# each cut by one C-level iter_unpack
_KEY_CUT = Struct(f"{KEY_LAYOUT.size}s")
_FIRST = itemgetter(0)
_VAL_CUT = Struct(f"={VAL_COUNTS.format.lstrip('=@<>!')}"
                  f"{VAL_IDENT_OFFSET - VAL_COUNTS.size}x"
                  f"{VAL_LAYOUT.size - VAL_IDENT_OFFSET}s")


class _Never:
    ok = False


_ONCE = _Never()      # an entry for an unidentified process: used once, never cached
