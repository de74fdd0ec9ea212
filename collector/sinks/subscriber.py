"""One subscriber of the stream socket (collector/sinks/unixsock.py): its connection, its
bounded queue of encoded records and the count of records it missed.

The queue is touched under the sink's lock (the collector thread appends, the I/O thread
takes); the socket only by the I/O thread, outside the lock.
"""
import collections
import selectors

SEND_CHUNK = 256 * 1024        # whole records joined into one send call up to about this


class Subscriber:
    __slots__ = ("sock", "queue", "buf", "dropped", "dropped_total", "sent_records",
                 "writable", "uid", "stalled_since")

    def __init__(self, sock, uid=None):
        self.sock = sock
        self.uid = uid                     # the peer's uid (SO_PEERCRED), None if unknown
        self.stalled_since = None          # monotonic time its socket stopped taking data
        self.queue = collections.deque()   # encoded whole records, oldest first
        self.buf = b""                     # the rest of the record being sent
        self.dropped = 0                   # since the last notice
        self.dropped_total = 0
        self.sent_records = 0
        self.writable = False              # registered for EVENT_WRITE

    def enqueue(self, data, limit, notice):
        """Queue one encoded record if fewer than limit are queued (caller holds the lock).
        After a drop, notice(dropped, dropped_total) -> the encoded `dropped` record goes
        in front of the next record that fits. False when data was dropped."""
        room = limit - len(self.queue)
        if self.dropped:
            if room < 2:                    # the notice and the record must both fit
                self.dropped += 1
                self.dropped_total += 1
                return False
            self.queue.append(notice(self.dropped, self.dropped_total))
            self.dropped = 0
        elif room < 1:
            self.dropped += 1
            self.dropped_total += 1
            return False
        self.queue.append(data)
        return True

    def send_queued(self, lock):
        """Send queued records (never cut) until the socket would block or the queue is
        empty. False when the connection failed: the caller drops the subscriber."""
        while True:
            if not self.buf:
                with lock:
                    if not self.queue:
                        break
                    parts, size = [], 0
                    while self.queue and size < SEND_CHUNK:
                        d = self.queue.popleft()
                        parts.append(d)
                        size += len(d)
                    self.sent_records += len(parts)
                self.buf = b"".join(parts)
            try:
                n = self.sock.send(self.buf)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                return False
            self.buf = self.buf[n:]
        return True

    def watch_writable(self, sel):
        """Ask sel for EVENT_WRITE exactly while part of a record waits to be sent."""
        want = bool(self.buf)
        if want != self.writable:
            self.writable = want
            events = selectors.EVENT_READ | (selectors.EVENT_WRITE if want else 0)
            try:
                sel.modify(self.sock, events, self)
            except (KeyError, ValueError, OSError):
                pass

    def discard_input(self):
        """Read and discard what the subscriber sent (subscribers have nothing to say).
        False on EOF or error: it is gone."""
        try:
            data = self.sock.recv(4096)
        except (BlockingIOError, InterruptedError):
            return True
        except OSError:
            data = b""
        return bool(data)
