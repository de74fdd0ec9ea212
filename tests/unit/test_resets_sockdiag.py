"""collector.host.sockdiag: pure parts (diag message parsing, inventory, listener lookup)."""
import os
import socket

from collector.host.procfs import ProcFS
from collector.host.sockdiag import (
    Owner,
    TcpConn,
    conn_from_diag,
    inventory,
    listener_of_port,
    socket_owners,
)


def msg(state, sport, dport, inode, family=socket.AF_INET, src="127.0.0.1", dst="127.0.0.1"):
    return {"idiag_family": family, "idiag_state": state, "idiag_src": src, "idiag_sport": sport,
            "idiag_dst": dst, "idiag_dport": dport, "idiag_inode": inode, "idiag_uid": 0,
            "idiag_cookie": 7}


def info(sent, recv):
    return {"tcpi_last_data_sent": sent, "tcpi_last_data_recv": recv}


def test_conn_idle_is_time_since_last_data_either_way():
    c = conn_from_diag(msg(1, 5000, 80, 11), info(900_000, 400_000))
    assert c.state == "ESTABLISHED" and c.idle_ms == 400_000 and c.inode == 11
    assert conn_from_diag(msg(10, 80, 0, 12), info(5, 5)).idle_ms is None     # LISTEN
    assert conn_from_diag(msg(1, 1, 2, 3), None).idle_ms is None


def test_inventory_flags_connections_idle_beyond_threshold():
    conns = [
        TcpConn(socket.AF_INET, "ESTABLISHED", "10.0.0.1", 40000, "10.0.0.9", 443, 11, 0, 1, 301_000),
        TcpConn(socket.AF_INET, "ESTABLISHED", "10.0.0.1", 40001, "10.0.0.9", 443, 12, 0, 2, 2_000),
        TcpConn(socket.AF_INET6, "CLOSE_WAIT", "::1", 40002, "::1", 8080, 13, 0, 3, 300_000),
        TcpConn(socket.AF_INET, "LISTEN", "0.0.0.0", 80, "0.0.0.0", 0, 14, 0, 4, None),
        TcpConn(socket.AF_INET, "TIME_WAIT", "10.0.0.1", 40003, "10.0.0.9", 443, 0, 0, 5, None),
        TcpConn(socket.AF_INET, "ESTABLISHED", "10.0.0.1", 40004, "10.0.0.9", 443, 0, 0, 6, 1),
    ]
    owners = {11: [Owner(100, "front")], 12: [Owner(100, "front")], 13: [Owner(200, "api")]}
    inv = inventory(conns, owners, lambda pid, comm: f"{comm}.service", threshold_s=300)
    assert set(inv) == {"front.service", "api.service", "(no process)"}
    front = inv["front.service"]
    assert [r["local"] for r in front] == ["10.0.0.1:40000", "10.0.0.1:40001"]    # idlest first
    assert [r["at_risk"] for r in front] == [True, False] and front[0]["idle_s"] == 301.0
    assert inv["api.service"][0]["remote"] == "[::1]:8080" and inv["api.service"][0]["at_risk"]


def test_listener_of_port_prefers_lowest_pid_and_ignores_others():
    conns = [TcpConn(2, "LISTEN", "0.0.0.0", 80, "0.0.0.0", 0, 14, 0, 1, None),
             TcpConn(2, "ESTABLISHED", "1.1.1.1", 80, "2.2.2.2", 5, 15, 0, 2, 0)]
    owners = {14: [Owner(300, "nginx"), Owner(299, "nginx")], 15: [Owner(1, "x")]}
    assert listener_of_port(conns, 80, owners) == Owner(299, "nginx")
    assert listener_of_port(conns, 81, owners) is None


def test_socket_owners_from_fd_links(tmp_path):
    for pid, comm, links in ((10, "a", {"0": "/dev/null", "3": "socket:[111]", "4": "socket:[222]"}),
                             (20, "b", {"5": "socket:[111]", "6": "pipe:[9]"})):
        d = tmp_path / str(pid)
        (d / "fd").mkdir(parents=True)
        (d / "comm").write_text(comm + "\n")
        for fd, target in links.items():
            os.symlink(target, d / "fd" / fd)
    owners = socket_owners(ProcFS(str(tmp_path)))
    assert sorted(owners[111]) == [Owner(10, "a"), Owner(20, "b")]
    assert owners[222] == [Owner(10, "a")] and len(owners) == 2
