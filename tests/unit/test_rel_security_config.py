"""Security promises that need no root (docs/reliability.md): config ownership and
modes, Prometheus on loopback by default, and the BPF programs never reading what a
process writes."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from collector import config
from collector.errors import BadInput

ROOT = Path(__file__).resolve().parents[2]
SURGEWATCH = os.path.join(os.path.dirname(sys.executable), "surgewatch")


@pytest.mark.parametrize("mode,who", [(0o664, "its group"), (0o646, "others"),
                                      (0o666, "others"), (0o620, "its group")])
def test_config_writable_by_others_refused(tmp_path, mode, who):
    p = tmp_path / "sw.toml"
    p.write_text("interval = 1\n")
    os.chmod(p, mode)
    with pytest.raises(BadInput) as e:
        config.load(str(p))
    assert str(e.value) == (f"{p}: writable by {who} (mode {mode:04o}); a config is trusted "
                            f"only when only its owner can write it: chmod go-w {p}")
    res = subprocess.run([SURGEWATCH, "run", "--config", str(p)], capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 2
    assert res.stderr.count("\n") == 1 and "writable by" in res.stderr


def test_config_owned_by_another_user_refused(tmp_path):
    st = os.stat_result((0o100644, 0, 0, 1, 1234, 0, 0, 0, 0, 0))
    with pytest.raises(BadInput, match=r"owned by uid 1234, not by root"):
        config._check_owner("/etc/x.toml", st, euid=0)
    config._check_owner("/etc/x.toml", os.stat_result((0o100644, 0, 0, 1, 0, 0, 0, 0, 0, 0)),
                        euid=0)
    config._check_owner("/etc/x.toml", os.stat_result((0o100600, 0, 0, 1, 0, 0, 0, 0, 0, 0)),
                        euid=1000)     # a root-owned file is fine for anyone
    if os.geteuid() == 0:
        p = tmp_path / "sw.toml"
        p.write_text("interval = 1\n")
        os.chown(p, 65534, 65534)
        with pytest.raises(BadInput, match="owned by uid 65534"):
            config.load(str(p))


def test_prometheus_listens_on_loopback_by_default():
    cfg = config.Config()
    host, port = config.parse_listen(cfg.prometheus.listen)
    assert host == "127.0.0.1" and port == 9477


def test_socket_mode_default_has_no_world_access():
    assert config.Config().socket.mode & 0o007 == 0


# The privacy property: the BPF programs read a process's memory only for
#  - the iovec array of writev-family calls, of which only iov_len is used,
#  - openat2's `struct open_how` (its flags),
#  - the path string passed to open* (to name the file),
#  - sendmsg's struct user_msghdr head (name, namelen, iov, iovlen: not the control data)
#    and the socket path a datagram is addressed to (to name the channel).
# The write buffer pointer (write's `buf`, sendto's `buff`, each iovec's `iov_base`) is
# never read.
ALLOWED_USER_READS = {
    "bpf_probe_read_user(&iov, sizeof(iov), (void *)(vec + i * sizeof(iov)))",
    "bpf_probe_read_user(&m, sizeof(m), (void *)CTX_U64(ctx, TP_SENDMSG_MSG_OFF))",
    "bpf_probe_read_user_str(p.path, sizeof(p.path), name + 2)",
}


def _user_reads(text):
    """Every bpf_probe_read_user*(...) call, whitespace normalised."""
    calls = []
    for m in re.finditer(r"bpf_probe_read_user(?:_str)?\s*\(", text):
        depth, i = 1, m.end()
        while depth:
            depth += {"(": 1, ")": -1}.get(text[i], 0)
            i += 1
        calls.append(re.sub(r"\s+", " ", text[m.start():i]))
    return calls


def test_bpf_never_reads_what_a_process_writes():
    found = set()
    for c in sorted((ROOT / "collector" / "bpf").glob("*.[ch]")):
        text = c.read_text()
        # no helper that reads memory generically: user memory only through the calls above
        assert not re.search(r"bpf_probe_read\s*\(|bpf_probe_read_str\s*\(|"
                             r"bpf_copy_from_user|bpf_probe_read_user_dynptr", text), c
        found.update(_user_reads(text))
        # the iovec's base (the written data) is declared but never used
        assert not re.search(r"iov\.base|iov_base", text), c
    assert found == ALLOWED_USER_READS, found
    # the write syscalls' buffer argument is never taken from the tracepoint context
    lw = (ROOT / "collector" / "bpf" / "logwrites.c").read_text()
    assert "BUF_OFF" not in lw and "_VEC_OFF" in lw


def test_write_counts_come_from_the_length_argument_only():
    lw = (ROOT / "collector" / "bpf" / "logwrites.c").read_text()
    # both write paths (syscall tracepoints, fentry) count the length arguments: the count
    # or the iovecs' lengths, never data
    found = re.findall(r"count_key\(&k, (.*), (?:file|0)\);", lw)   # (the struct file *)
    assert sorted(found) == sorted([
        "vectored ? iov_bytes(a1, a2) : a2",
        "vectored ? iov_bytes(bytes_or_vec, vlen) : bytes_or_vec",
        "CTX_U64(ctx, TP_SENDTO_LEN_OFF)",               # sendto's len
        "iov_bytes(m.iov, m.iovlen)",                   # sendmsg's iovec lengths
        "ctx[2]",                                       # unix_dgram_sendmsg's len
    ]), found
    assert "TP_SENDTO_BUFF_OFF" not in lw
