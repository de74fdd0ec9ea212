"""journald_stream_clients() against real unix sockets and the kernel's unix_diag."""
import os
import socket

import pytest

from collector.errors import EnvironmentProblem
from collector.host import unixsock
from collector.host.unixsock import bound_stream_paths, journald_stream_clients

pytestmark = pytest.mark.privileged


def ino(sock):
    return os.fstat(sock.fileno()).st_ino


@pytest.fixture
def sockets():
    opened = []

    def make(family=socket.AF_UNIX, kind=socket.SOCK_STREAM):
        s = socket.socket(family, kind)
        opened.append(s)
        return s

    yield make
    for s in opened:
        s.close()


def listener(make, path):
    srv = make()
    srv.bind(path)
    srv.listen()
    return srv


def connect(make, path):
    client = make()
    client.connect(path)
    return client


def test_clients_of_the_listen_path_and_nothing_else(tmp_path, sockets):
    path = str(tmp_path / "stdout")
    srv = listener(sockets, path)
    clients = [connect(sockets, path) for _ in range(2)]
    accepted = [srv.accept()[0] for _ in clients]

    other_path = str(tmp_path / "other")
    other_srv = listener(sockets, other_path)
    other_client = connect(sockets, other_path)
    other_accepted = other_srv.accept()[0]

    found = journald_stream_clients([path])
    assert found == {ino(c) for c in clients}
    assert not found & {ino(a) for a in accepted}
    assert ino(srv) not in found
    assert ino(other_client) not in found and ino(other_accepted) not in found


def test_several_listen_paths(tmp_path, sockets):
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    srv_a, srv_b = listener(sockets, a), listener(sockets, b)
    ca, cb = connect(sockets, a), connect(sockets, b)
    accepted = [srv_a.accept()[0], srv_b.accept()[0]]  # noqa: F841 (must stay open)
    assert journald_stream_clients([a, b]) == {ino(ca), ino(cb)}
    assert journald_stream_clients([]) == set()


def test_not_yet_accepted_and_closed_clients(tmp_path, sockets):
    path = str(tmp_path / "stdout")
    srv = listener(sockets, path)
    waiting = connect(sockets, path)   # its server side has no inode until accept()
    assert journald_stream_clients([path]) == set()
    accepted = [srv.accept()[0]]
    gone = connect(sockets, path)
    gone_ino = ino(gone)
    accepted.append(srv.accept()[0])
    gone.close()
    assert journald_stream_clients([path]) == {ino(waiting)}
    assert gone_ino not in journald_stream_clients([path])


def test_abstract_socket_named_like_the_path_is_not_it(tmp_path, sockets):
    # pyroute2 strips the leading NUL of abstract names: "\0/x" would read as "/x".
    path = str(tmp_path / "stdout")
    srv = listener(sockets, "\0" + path)
    client = connect(sockets, "\0" + path)
    accepted = srv.accept()[0]  # noqa: F841 (must stay open)
    assert ino(client) not in journald_stream_clients([path])


def test_datagram_sockets_are_not_stream_clients(tmp_path, sockets):
    path = str(tmp_path / "dgram")
    server = sockets(kind=socket.SOCK_DGRAM)
    server.bind(path)
    client = sockets(kind=socket.SOCK_DGRAM)
    client.connect(path)
    assert journald_stream_clients([path]) == set()


def test_non_utf8_path(tmp_path, sockets):
    path = os.fsdecode(os.fsencode(str(tmp_path)) + b"/caf\xe9")
    srv = listener(sockets, path)
    client = connect(sockets, path)
    accepted = srv.accept()[0]  # noqa: F841 (must stay open)
    assert journald_stream_clients([path]) == {ino(client)}


def test_diag_failure_with_nobody_listening_is_empty(tmp_path, monkeypatch):
    monkeypatch.setattr(unixsock, "unix_diag_established", _fail)
    assert journald_stream_clients([str(tmp_path / "nobody")]) == set()


def test_diag_failure_with_a_listener_is_a_clear_error(tmp_path, sockets, monkeypatch):
    path = str(tmp_path / "with space")
    listener(sockets, path)
    assert os.fsencode(path) in bound_stream_paths()
    monkeypatch.setattr(unixsock, "unix_diag_established", _fail)
    with pytest.raises(EnvironmentProblem, match="modprobe unix_diag"):
        journald_stream_clients([path])


def _fail():
    raise unixsock._DiagFailed("Operation not permitted")
