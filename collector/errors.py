"""Typed errors. Each user-facing error carries one line (problem and fix) and an exit code.

Exit codes (documented in docs/operations.md and the README):
  0 ok, 1 runtime failure / doctor found problems, 2 bad usage, input or environment
  (missing privileges, tracefs, headers, bad config, corrupt stream; records or a stream
  socket this user may not read: NoAccess).
"""

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2


class SurgewatchError(Exception):
    """An error meant for the user: str(err) is one line naming the problem and the fix."""

    exit_code = EXIT_FAILURE


class EnvironmentProblem(SurgewatchError):
    """The host cannot run the probes as it is (privileges, tracefs, headers, kernel)."""

    exit_code = EXIT_USAGE


class ProbeUnavailable(EnvironmentProblem):
    """One probe cannot run here; others may."""


class NoAccess(EnvironmentProblem):
    """A reader (tail, plot, record --from) may not read the daemon's records or connect
    to its stream socket: permission denied (exit 2, as missing privileges)."""

    @classmethod
    def of(cls, path, command=None):
        """The error for `path`, naming its owner, group and mode (when they can be read)
        and the fix: root, or the file's group when that is not root's."""
        import grp
        import os
        import pwd
        import stat

        detail, group = "", None
        try:
            st = os.stat(path)
        except OSError:
            st = None
        if st is not None:
            def name(lookup, n):
                try:
                    return lookup(n)[0]
                except KeyError:
                    return str(n)
            group = name(grp.getgrgid, st.st_gid) if st.st_gid != 0 else None
            detail = (f" (owner {name(pwd.getpwuid, st.st_uid)}, group "
                      f"{name(grp.getgrgid, st.st_gid)}, mode {stat.S_IMODE(st.st_mode):04o})")
        join = f", or as a member of group {group}" if group else ""
        how = f"sudo surgewatch {command}" if command else "sudo"
        return cls(f"{path}: permission denied{detail}: run it as root ({how}){join}")


class BadInput(SurgewatchError):
    """A config value, flag or input file is wrong."""

    exit_code = EXIT_USAGE


class StreamError(BadInput):
    """A stream or segment file cannot be decoded at some offset."""

    def __init__(self, path, offset, reason):
        super().__init__(f"{path}: offset {offset}: {reason}")
        self.path, self.offset, self.reason = path, offset, reason


# Host lookups (procfs): a process can vanish or be hidden between two reads.
class HostLookupError(Exception):
    pass


class NoSuchProcess(HostLookupError):
    def __init__(self, pid):
        super().__init__(f"process {pid} no longer exists")
        self.pid = pid


class AccessDenied(HostLookupError):
    def __init__(self, pid, what=""):
        super().__init__(f"access denied reading {what or 'process'} of {pid}")
        self.pid = pid


class HostOSError(HostLookupError):
    """Any other OS error of a host lookup (EIO, ELOOP, ...): that answer is unknown."""

    def __init__(self, what, errno_):
        import os
        super().__init__(f"{what}: {os.strerror(errno_)}")
        self.errno = errno_


class HostResourceError(Exception):
    """A host lookup failed because the daemon itself ran out of a resource (EMFILE,
    ENFILE, ENOMEM, ENOBUFS): nothing is known about the process looked up. Deliberately
    not a HostLookupError (those mean "gone" or "hidden" and name the process some other
    way): the key stays unresolved for this interval, counted in the stats record's
    `host_resource_errors`, and is asked again next interval. Never raised out of the
    interval loop (docs/reliability.md, "Hostile local user")."""

    def __init__(self, what, errno_):
        import os
        super().__init__(f"{what}: {os.strerror(errno_)}")
        self.errno = errno_
