"""A unix datagram socket that reads everything sent to it, for the socket-channel tests
(test_logwrites_exact.py, test_other_root.py)."""
import os
import socket
import threading


class Receiver:
    """A datagram socket bound at `path` that reads everything sent to it (the sender would
    block once net.unix.max_dgram_qlen datagrams are queued)."""

    def __init__(self, path):
        if os.path.lexists(path):
            os.unlink(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.settimeout(0.2)
        self.got, self.path, self.stop = [], path, False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stop:
            try:
                self.got.append(len(self.sock.recv(65536)))
            except socket.timeout:
                continue
            except OSError:
                return

    def close(self):
        self.stop = True
        self.thread.join(2)
        self.sock.close()
        if os.path.lexists(self.path):
            os.unlink(self.path)
