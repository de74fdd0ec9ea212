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
"""
import collections
import errno
import os
import selectors
import socket
import stat
import threading
import time

from collector.records import model
from collector.errors import BadInput
from collector.records.stream import encode

DEFAULT_PATH = "/run/surgewatch/stream.sock"
DEFAULT_MODE = 0o660
DEFAULT_QUEUE_RECORDS = 10000
RECORD_DROPPED = "dropped"
_SEND_CHUNK = 256 * 1024


def dropped_record(host, ts, dropped, dropped_total):
    """The notice a subscriber gets after records for it were dropped (docs/stream.md)."""
    return {"v": model.SCHEMA_VERSION, "type": RECORD_DROPPED, "ts": float(ts), "host": host,
            "dropped": int(dropped), "dropped_total": int(dropped_total)}


class _Subscriber:
    __slots__ = ("sock", "queue", "buf", "dropped", "dropped_total", "sent_records",
                 "writable")

    def __init__(self, sock):
        self.sock = sock
        self.queue = collections.deque()   # encoded whole records, oldest first
        self.buf = b""                     # the rest of the record being sent
        self.dropped = 0                   # since the last notice
        self.dropped_total = 0
        self.sent_records = 0
        self.writable = False              # registered for EVENT_WRITE


def check_socket_path(path):
    """Make path free for a new listening socket, or raise BadInput saying why not.

    Missing: fine. A socket with a listener: another surgewatch runs (refused). A socket
    without one: left by a daemon that died; removed. Anything else: refused, never
    deleted.
    """
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    except OSError as e:
        raise BadInput(f"socket {path}: {e.strerror or e}") from None
    if not stat.S_ISSOCK(st.st_mode):
        kind = "a directory" if stat.S_ISDIR(st.st_mode) else \
            "a symlink" if stat.S_ISLNK(st.st_mode) else "a file that is not a socket"
        raise BadInput(f"socket {path}: the path is taken by {kind}; remove it or set "
                       "outputs.socket.path to another path")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    probe.settimeout(1.0)
    try:
        probe.connect(path)
    except (ConnectionRefusedError, FileNotFoundError):
        pass                                # stale: nobody listens
    except OSError as e:
        if e.errno not in (errno.ECONNREFUSED, errno.ENOENT):
            raise BadInput(f"socket {path}: cannot check it: {e.strerror or e}") from None
    else:
        raise BadInput(f"socket {path}: another process (a running surgewatch?) listens on "
                       "it; stop it or set outputs.socket.path to another path")
    finally:
        probe.close()
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as e:
        raise BadInput(f"socket {path}: cannot remove the stale socket: "
                       f"{e.strerror or e}") from None


class UnixSocketSink:
    name = "socket"

    def __init__(self, path=DEFAULT_PATH, mode=DEFAULT_MODE,
                 queue_records=DEFAULT_QUEUE_RECORDS, host=None, clock=time.time):
        self.path = str(path)
        self.mode = mode
        self.queue_records = int(queue_records)
        self.host = host or socket.gethostname()
        self.clock = clock
        self._lock = threading.Lock()
        self._subs = {}                     # fd -> _Subscriber
        self._meta = None
        self._closing = False
        self.dropped_total = 0              # over every subscriber
        self.subscribers_total = 0
        parent = os.path.dirname(self.path) or "."
        try:
            os.makedirs(parent, mode=0o755, exist_ok=True)
        except OSError as e:
            raise BadInput(f"socket {self.path}: cannot create {parent}: "
                           f"{e.strerror or e}") from None
        check_socket_path(self.path)
        self._listen = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            old = os.umask(0o177)           # no window where the socket is wider than mode
            try:
                self._listen.bind(self.path)
            finally:
                os.umask(old)
            os.chmod(self.path, self.mode)
            self._listen.listen(64)
            self._listen.setblocking(False)
            st = os.stat(self.path)
            self._ident = (st.st_dev, st.st_ino)
        except OSError as e:
            self._listen.close()
            raise BadInput(f"socket {self.path}: {e.strerror or e}") from None
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

    def write_interval(self, records):
        if not records:
            return
        data = [encode(r) for r in records]
        with self._lock:
            for sub in self._subs.values():
                for d in data:
                    self._enqueue(sub, d)
        self._wake()

    def _enqueue(self, sub, data):
        room = self.queue_records - len(sub.queue)
        if sub.dropped:
            if room < 2:                    # the notice and the record must both fit
                sub.dropped += 1
                sub.dropped_total += 1
                self.dropped_total += 1
                return
            sub.queue.append(encode(dropped_record(self.host, self.clock(), sub.dropped,
                                                   sub.dropped_total)))
            sub.dropped = 0
        elif room < 1:
            sub.dropped += 1
            sub.dropped_total += 1
            self.dropped_total += 1
            return
        sub.queue.append(data)

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
            conn.setblocking(False)
            sub = _Subscriber(conn)
            with self._lock:
                if self._meta is not None:
                    sub.queue.append(self._meta)
                self._subs[conn.fileno()] = sub
                self.subscribers_total += 1
            self._sel.register(conn, selectors.EVENT_READ, sub)

    def _readable(self, sub):
        # Subscribers have nothing to say; what they send is discarded. EOF: gone.
        try:
            data = sub.sock.recv(4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._drop_subscriber(sub)

    def _send_all(self):
        with self._lock:
            subs = list(self._subs.values())
        for sub in subs:
            self._send(sub)

    def _send(self, sub):
        while True:
            if not sub.buf:
                with self._lock:
                    if not sub.queue:
                        break
                    # several whole records per send call
                    parts, size = [], 0
                    while sub.queue and size < _SEND_CHUNK:
                        d = sub.queue.popleft()
                        parts.append(d)
                        size += len(d)
                    sub.sent_records += len(parts)
                sub.buf = b"".join(parts)
            try:
                n = sub.sock.send(sub.buf)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                self._drop_subscriber(sub)
                return
            sub.buf = sub.buf[n:]
        want = bool(sub.buf)
        if want != sub.writable:
            sub.writable = want
            events = selectors.EVENT_READ | (selectors.EVENT_WRITE if want else 0)
            try:
                self._sel.modify(sub.sock, events, sub)
            except (KeyError, ValueError, OSError):
                pass

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
        try:
            st = os.stat(self.path)
            if (st.st_dev, st.st_ino) == self._ident:
                os.unlink(self.path)
        except OSError:
            pass
        for s in (self._listen, self._wake_r, self._wake_w):
            s.close()
        self._sel.close()


def subscribe(path, timeout=None):
    """A connected socket to a surgewatch stream socket (BadInput when it cannot connect)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    s.settimeout(timeout)
    try:
        s.connect(str(path))
    except OSError as e:
        s.close()
        hint = "; is `surgewatch run` running with outputs.socket enabled?" \
            if e.errno in (errno.ENOENT, errno.ECONNREFUSED) else ""
        raise BadInput(f"{path}: cannot connect: {e.strerror or e}{hint}") from None
    return s
