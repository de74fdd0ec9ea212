"""Keys from the terminal for the live view: cbreak mode (keys arrive one by one, no
echo; Ctrl-C still raises SIGINT), read without blocking, the saved mode restored on
close whatever ends the run."""
import os
import select
import sys
import termios
import tty


class TerminalKeys:
    """Context manager over a TTY fd; read() returns the keys typed so far ("" if none)."""

    def __init__(self, fd, owned=False):
        self.fd, self.owned = fd, owned
        self._saved = None

    def __enter__(self):
        self._saved = termios.tcgetattr(self.fd)
        tty.setcbreak(self.fd, termios.TCSANOW)
        return self

    def read(self):
        out = b""
        while select.select([self.fd], [], [], 0)[0]:
            chunk = os.read(self.fd, 64)
            if not chunk:           # the terminal went away
                break
            out += chunk
        return out.decode("utf-8", "replace")

    def suspend(self):
        """The saved mode back while the process is stopped (Ctrl-Z)."""
        if self._saved is not None:
            termios.tcsetattr(self.fd, termios.TCSADRAIN, self._saved)

    def resume(self):
        if self._saved is not None:
            tty.setcbreak(self.fd, termios.TCSANOW)

    def close(self):
        if self._saved is not None:
            try:
                termios.tcsetattr(self.fd, termios.TCSADRAIN, self._saved)
            except termios.error:
                pass
            self._saved = None
        if self.owned:
            os.close(self.fd)
            self.owned = False

    def __exit__(self, *exc):
        self.close()


def open_keys(stdin=None):
    """TerminalKeys on stdin when it is a TTY, else on /dev/tty; None without a terminal
    (the view then runs without keys)."""
    stdin = stdin if stdin is not None else sys.stdin
    try:
        if stdin is not None and stdin.isatty():
            return TerminalKeys(stdin.fileno())
    except (AttributeError, ValueError, OSError):
        pass
    try:
        fd = os.open("/dev/tty", os.O_RDONLY | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError:
        return None
    return TerminalKeys(fd, owned=True)
