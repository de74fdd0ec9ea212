"""The stream socket's file: refuse a path another process listens on, replace a dead
daemon's socket, bind with no moment wider than the mode, remove it only while it is ours.
"""
import errno
import os
import socket
import stat

from collector.errors import BadInput


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


def listen_unix(path, mode):
    """(non-blocking listening socket, (st_dev, st_ino) of its file) at path; BadInput
    when the directory cannot be made or the path is taken."""
    parent = os.path.dirname(path) or "."
    try:
        os.makedirs(parent, mode=0o755, exist_ok=True)
    except OSError as e:
        raise BadInput(f"socket {path}: cannot create {parent}: "
                       f"{e.strerror or e}") from None
    check_socket_path(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        old = os.umask(0o177)               # no window where the socket is wider than mode
        try:
            sock.bind(path)
        finally:
            os.umask(old)
        os.chmod(path, mode)
        sock.listen(64)
        sock.setblocking(False)
        st = os.stat(path)
        return sock, (st.st_dev, st.st_ino)
    except OSError as e:
        sock.close()
        raise BadInput(f"socket {path}: {e.strerror or e}") from None


def remove_if_ours(path, ident):
    """Unlink path if it is still the file listen_unix() made (not a successor's)."""
    try:
        st = os.stat(path)
        if (st.st_dev, st.st_ino) == ident:
            os.unlink(path)
    except OSError:
        pass
