"""Helpers for the reliability tests (docs/reliability.md): BPF program listing, the
figures they record. The `surgewatch run` child and /proc readers are in tests/support/."""
import json
import os
import subprocess

# every BPF function the two probes load (bpftool shows names cut to 15 characters)
PROG_NAMES = {n[:15] for n in (
    "raw_sys_enter", "enter_write", "enter_writev", "enter_pwrite64", "enter_pwritev",
    "enter_pwritev2", "enter_sendto", "enter_sendmsg", "sw_set_state", "sw_destroy", "sw_exit_accept", "sw_enter_io",
    "sw_send_length", "sw_recv_length", "sw_send_reset", "sw_receive_reset",
    # the fentry path (kernels that allow it: the Vagrant VM): bcc names a tracing program
    # after its target function, with or without the kfunc__/kretfunc__ prefix and, where
    # bcc has module support (collector/bpf/fentry.h), the vmlinux__ part
    *(pre + f for f in ("vfs_write", "vfs_writev", "do_filp_open", "inet_csk_accept",
                        "tcp_sendmsg", "tcp_recvmsg", "tcp_sendpage", "unix_dgram_sendmsg")
      for pre in ("", "vmlinux__", "kfunc__", "kretfunc__", "kfunc__vmlinux__",
                  "kretfunc__vmlinux__")))}


def ours(name):
    """Is a program of this name one of surgewatch's? (bpftool shows the BTF name, which
    can be longer than the kernel's 15-character one: compare those.)"""
    return (name or "")[:15] in PROG_NAMES
ATTACH_TYPES = {24: "fentry", 25: "fexit"}      # BPF_TRACE_FENTRY / BPF_TRACE_FEXIT


def fdinfos(pid, kind):
    """/proc/PID/fdinfo of every fd of `pid` that is an anon inode `kind` (bpf-prog,
    bpf_link), as {field: value} (this bpftool has no pids column)."""
    fddir = f"/proc/{pid}/fd"
    for fd in os.listdir(fddir):
        try:
            if os.readlink(os.path.join(fddir, fd)) != f"anon_inode:{kind}":
                continue
            with open(f"/proc/{pid}/fdinfo/{fd}") as f:
                yield {k: v.strip() for k, v in (line.split(":", 1) for line in f if ":" in line)}
        except OSError:
            continue


def _links_of(pid):
    """[(prog_id, attach kind)] of the BPF links (fentry/fexit attachments) `pid` holds.
    Raw tracepoint links are left out: bpftool perf lists those (by tracepoint name)."""
    return [(int(i["prog_id"]), ATTACH_TYPES.get(int(i.get("attach_type", -1)), "link"))
            for i in fdinfos(pid, "bpf_link") if i.get("link_type") != "raw_tracepoint"]


def bpf_programs():
    """[{id, name, pids...}] of every BPF program loaded on the host (bpftool)."""
    out = subprocess.run(["bpftool", "prog", "show", "-j"], capture_output=True, text=True,
                         check=True).stdout
    return json.loads(out or "[]")


def programs_of(pid):
    """Ids of the BPF programs with our names that the process `pid` holds open (from
    /proc/PID/fdinfo: this bpftool is built without the pids column)."""
    held = {int(i["prog_id"]) for i in fdinfos(pid, "bpf-prog")}
    # programs the loader child attached and handed over: the process holds their
    # perf-event / raw tracepoint fds, not the program fds (bpftool perf names the holder)
    out = subprocess.run(["bpftool", "-j", "perf"], capture_output=True, text=True,
                         check=True).stdout
    held |= {a["prog_id"] for a in json.loads(out or "[]") if a.get("pid") == pid}
    held |= {prog for prog, _ in _links_of(pid)}          # fentry/fexit links
    names = {p["id"]: p.get("name") for p in bpf_programs()}
    return {i for i in held if ours(names.get(i))}


def attachments_of(pid):
    """Tracepoints (bpftool perf names) with a program attached through an fd of `pid`,
    and its fentry/fexit links as "<kind>:<program name>"."""
    out = subprocess.run(["bpftool", "-j", "perf"], capture_output=True, text=True,
                         check=True).stdout
    names = {p["id"]: p.get("name") for p in bpf_programs()}
    return sorted([a.get("tracepoint", "?") for a in json.loads(out or "[]")
                   if a.get("pid") == pid] +
                  [f"{kind}:{names.get(prog, prog)}" for prog, kind in _links_of(pid)])


def attached_programs():
    """Ids of our programs attached anywhere on the host (bpftool perf and link): the
    oracle for 'nothing left attached'."""
    out = subprocess.run(["bpftool", "-j", "perf"], capture_output=True, text=True,
                         check=True).stdout
    links = subprocess.run(["bpftool", "-j", "link"], capture_output=True, text=True,
                           check=True).stdout
    names = {p["id"]: p.get("name") for p in bpf_programs()}
    return {a["prog_id"] for a in json.loads(out or "[]") + json.loads(links or "[]")
            if ours(names.get(a.get("prog_id")))}


def record_figure(name, **figures):
    """Append measured figures to $SURGEWATCH_REL_RESULTS (JSON lines) when set, and print
    them (pytest -s shows them); docs/reliability.md quotes them."""
    line = json.dumps({"test": name, **figures}, sort_keys=True)
    print(line)
    path = os.environ.get("SURGEWATCH_REL_RESULTS")
    if path:
        with open(path, "a") as f:
            f.write(line + "\n")
