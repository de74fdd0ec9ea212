"""The live stream on a unix socket: any number of subscribers, none can slow the collector.

UnixSocketSink listens on a SOCK_STREAM unix socket (default /run/surgewatch/stream.sock,
mode 0660). Every subscriber that connects gets the current `meta` record, then every
record the daemon writes from then on, as the msgpack stream of docs/stream.md.

The collector thread only encodes each interval's records once and appends them to each
subscriber's bounded queue (write_interval() takes a lock held for list appends, never
for I/O). A background thread does the I/O with non-blocking sockets: it accepts
subscribers, sends queued records (a record is always sent whole, never cut), and drops
subscribers that hang up. When a subscriber's queue is full, new records for it are
dropped and counted; when its queue has room again, a `dropped` notice record telling it
how many records it missed is queued in front of the next record it gets, so the gap is
visible exactly where it is in its stream.

At start a path that exists is checked: a socket nobody listens on (a dead daemon's) is
replaced; a socket another process listens on, or any other kind of file, is refused with
BadInput (exit 2).

Subscribers are bounded (docs/reliability.md, "Hostile local user": each costs an fd):
at most `max_subscribers` at once, and at most `max_subscribers_per_uid` of one user other
than root (the peer's uid from SO_PEERCRED), so one user of the socket's group cannot take
every slot; a connection over either limit is accepted and closed at once (counted in
`refused_total`). A subscriber whose socket took no byte for `stall_timeout_s` while
records waited for it is dropped (it may connect again and starts from `meta`).

A subscriber's queue and connection are collector/sinks/subscriber.py; the socket file's
checks are collector/sinks/socketfile.py.
"""
import errno
import os
import selectors
import socket
import struct
import threading
import time

from collector.errors import BadInput, NoAccess
from collector.records import model
from collector.records.stream import encode
from collector.sinks.socketfile import listen_unix, remove_if_ours
from collector.sinks.subscriber import Subscriber

DEFAULT_PATH = "/run/surgewatch/stream.sock"
DEFAULT_MODE = 0o660
DEFAULT_QUEUE_RECORDS = 10000
DEFAULT_MAX_SUBSCRIBERS = 64
DEFAULT_MAX_SUBSCRIBERS_PER_UID = 16
STALL_TIMEOUT_S = 60.0
_PEERCRED = struct.Struct("3i")             # struct ucred: pid, uid, gid
RECORD_DROPPED = "dropped"


def dropped_record(host, ts, dropped, dropped_total):
    """The notice a subscriber gets after records for it were dropped (docs/stream.md)."""
    return {"v": model.SCHEMA_VERSION, "type": RECORD_DROPPED, "ts": float(ts), "host": host,
            "dropped": int(dropped), "dropped_total": int(dropped_total)}


class UnixSocketSink:
    name = "socket"

    def __init__(self, path=DEFAULT_PATH, mode=DEFAULT_MODE,
                 queue_records=DEFAULT_QUEUE_RECORDS, host=None, clock=time.time,
                 max_subscribers=DEFAULT_MAX_SUBSCRIBERS,
                 max_subscribers_per_uid=DEFAULT_MAX_SUBSCRIBERS_PER_UID,
                 stall_timeout_s=STALL_TIMEOUT_S):
        self.path = str(path)
        self.mode = mode
        self.queue_records = int(queue_records)
        self.max_subscribers = int(max_subscribers)
        self.max_subscribers_per_uid = int(max_subscribers_per_uid)
        self.stall_timeout_s = float(stall_timeout_s)
        self.refused_total = 0              # connections over a limit, closed at once
        self.stalled_total = 0              # subscribers dropped after stall_timeout_s
        self.host = host or socket.gethostname()
        self.clock = clock
        self._lock = threading.Lock()
        self._subs = {}                     # fd -> Subscriber
        self._meta = None
        self._closing = False
        self.dropped_total = 0              # over every subscriber
        self.subscribers_total = 0
        self._listen, self._ident = listen_unix(self.path, self.mode)
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._sel = selectors.DefaultSelector()
        self._sel.register(self._listen, selectors.EVENT_READ, "listen")
        self._sel.register(self._wake_r, selectors.EVENT_READ, "wake")
        self._thread = threading.Thread(target=self._loop, name="surgewatch-socket",
                                        daemon=True)
        self._thread.start()

    # -- collector side (never blocks on a subscriber) -------------------------------
    def set_meta(self, meta):
        with self._lock:
            self._meta = encode(meta)

    def subscribers(self):
        with self._lock:
            return len(self._subs)

    def reconfigure(self, sc):
        """Take a reload's settings for the same path in place (collector/sinks/registry.py):
        subscribers stay connected; the mode applies to the socket file now, the limits to
        new connections, the queue bound to the next records, the stall timeout to the
        next check. Never fails."""
        with self._lock:
            self.queue_records = int(sc.queue_records)
            self.max_subscribers = int(sc.max_subscribers)
            self.max_subscribers_per_uid = int(sc.max_subscribers_per_uid)
            self.stall_timeout_s = float(sc.stall_timeout_s)
        if sc.mode != self.mode:
            try:
                os.chmod(self.path, sc.mode)
                self.mode = sc.mode
            except OSError:
                pass                        # the file stays as it was; so does self.mode

    def write_interval(self, records):
        if not records:
            return
        data = [encode(r) for r in records]
        with self._lock:
            for sub in self._subs.values():
                for d in data:
                    if not sub.enqueue(d, self.queue_records, self._notice):
                        self.dropped_total += 1
        self._wake()

    def _notice(self, dropped, dropped_total):
        return encode(dropped_record(self.host, self.clock(), dropped, dropped_total))

    def _wake(self):
        try:
            self._wake_w.send(b"\0")
        except (BlockingIOError, OSError):
            pass                            # already woken (buffer full) or closing

    # -- the I/O thread ----------------------------------------------------------------
    def _loop(self):
        while not self._closing:
            try:
                events = self._sel.select(timeout=1.0)
            except OSError:
                if self._closing:
                    return
                raise
            for key, mask in events:
                if key.data == "listen":
                    self._accept()
                elif key.data == "wake":
                    try:
                        while self._wake_r.recv(4096):
                            pass
                    except (BlockingIOError, OSError):
                        pass
                else:
                    sub = key.data
                    if mask & selectors.EVENT_READ:
                        self._readable(sub)
            self._send_all()

    def _accept(self):
        while True:
            try:
                conn, _ = self._listen.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return                      # e.g. EMFILE: try again on the next event
            uid = _peer_uid(conn)
            with self._lock:
                full = len(self._subs) >= self.max_subscribers or (
                    uid != 0 and sum(1 for s in self._subs.values() if s.uid == uid)
                    >= self.max_subscribers_per_uid)
                if full:
                    self.refused_total += 1
            if full:
                conn.close()
                continue
            conn.setblocking(False)
            sub = Subscriber(conn, uid)
            with self._lock:
                if self._meta is not None:
                    sub.queue.append(self._meta)
                self._subs[conn.fileno()] = sub
                self.subscribers_total += 1
            self._sel.register(conn, selectors.EVENT_READ, sub)

    def _readable(self, sub):
        if not sub.discard_input():
            self._drop_subscriber(sub)

    def _send_all(self):
        with self._lock:
            subs = list(self._subs.values())
        for sub in subs:
            self._send(sub)

    def _send(self, sub):
        before = (len(sub.buf), sub.sent_records)
        if not sub.send_queued(self._lock):
            self._drop_subscriber(sub)
            return
        if not sub.buf or (len(sub.buf), sub.sent_records) != before:
            sub.stalled_since = None        # nothing waits, or its socket took bytes
        else:
            now = time.monotonic()
            if sub.stalled_since is None:
                sub.stalled_since = now
            elif now - sub.stalled_since >= self.stall_timeout_s:
                self.stalled_total += 1
                self._drop_subscriber(sub)
                return
        sub.watch_writable(self._sel)

    def _drop_subscriber(self, sub):
        with self._lock:
            self._subs.pop(sub.sock.fileno(), None)
        try:
            self._sel.unregister(sub.sock)
        except (KeyError, ValueError, OSError):
            pass
        sub.sock.close()

    # -- shutdown ----------------------------------------------------------------------
    def close(self, flush_s=0.5):
        """Give subscribers up to flush_s to receive what is queued, then hang up and
        remove the socket file (only if it is still ours)."""
        if self._closing:
            return
        deadline = time.monotonic() + flush_s
        while time.monotonic() < deadline:
            with self._lock:
                pending = any(s.queue or s.buf for s in self._subs.values())
            if not pending:
                break
            self._wake()
            time.sleep(0.01)
        self._closing = True
        self._wake()
        self._thread.join(timeout=2.0)
        for sub in list(self._subs.values()):
            self._drop_subscriber(sub)
        remove_if_ours(self.path, self._ident)
        for s in (self._listen, self._wake_r, self._wake_w):
            s.close()
        self._sel.close()


def _peer_uid(conn):
    """The connecting process's uid (SO_PEERCRED), None when the kernel does not say."""
    try:
        return _PEERCRED.unpack(conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                _PEERCRED.size))[1]
    except (OSError, struct.error):
        return None


def subscribe(path, timeout=None):
    """A connected socket to a surgewatch stream socket (BadInput when it cannot connect)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    s.settimeout(timeout)
    try:
        s.connect(str(path))
    except PermissionError:
        s.close()
        raise NoAccess.of(path, "tail --socket") from None
    except OSError as e:
        s.close()
        hint = "; is `surgewatch run` running with outputs.socket enabled?" \
            if e.errno in (errno.ENOENT, errno.ECONNREFUSED) else ""
        raise BadInput(f"{path}: cannot connect: {e.strerror or e}{hint}") from None
    return s
