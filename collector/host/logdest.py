"""fd -> log destination: which write targets count as logs.

The probe reports writes per (pid, fd); /proc/<pid>/fd/<fd> says what the fd points at.
A file is a log when it lies under a log directory or its name looks like a log; a
stream socket is a log when its peer is journald's stdout socket (see unixsock.py); a
datagram is a log message when it is sent to a syslog or journald-native socket path
(matched in the kernel: `channels()` is the table it matches against).
"""
import fnmatch
import posixpath
import re

from collector.errors import BadInput

DELETED_SUFFIX = " (deleted)"  # the kernel's mark on a path whose file was unlinked
# Absolute-looking targets that are never log files: the bit bucket, and memfds
# (shown as "/memfd:<name> (deleted)", so a memfd named "x.log" would match a glob).
_NEVER_LOG = ("/dev/null",)
_NEVER_LOG_PREFIXES = ("/memfd:",)

_INODE_TARGET = re.compile(r"(socket|pipe):\[([0-9]+)\]")
_ANON_PREFIX = "anon_inode:"


def parse_fd_target(target):
    """Classify a /proc/<pid>/fd/<n> link target.

    ("file", path) with the path exactly as the kernel shows it (" (deleted)" included),
    ("socket", inode), ("pipe", inode), ("anon", name) for anon_inode:[eventfd] and
    friends (brackets dropped), else ("other", target), e.g. "net:[4026531840]".
    """
    if target.startswith("/"):
        return ("file", target)
    match = _INODE_TARGET.fullmatch(target)
    if match:
        return (match.group(1), int(match.group(2)))
    if target.startswith(_ANON_PREFIX):
        name = target[len(_ANON_PREFIX):]
        if name.startswith("[") and name.endswith("]"):
            name = name[1:-1]
        return ("anon", name)
    return ("other", target)


RULE_KEYS = ("dirs", "globs", "journald_sockets", "syslog_sockets", "journald_native_sockets",
             "runtimes")
NAME_KEYS = ("globs", "runtimes")      # names and patterns, not absolute paths
# the kernel's `sockpaths` table holds 64 paths: each socket path and its symlink target
MAX_SOCKET_PATHS = 32


class LogRules:
    def __init__(self, dirs=("/var/log/",), globs=("*.log", "*.log.[0-9]*"),
                 journald_sockets=("/run/systemd/journal/stdout",),
                 syslog_sockets=("/dev/log",),
                 journald_native_sockets=("/run/systemd/journal/socket",), runtimes=()):
        # "/var/log" and "/var/log/" mean the same, and neither covers "/var/logfoo".
        self.dirs = tuple(posixpath.normpath(d).rstrip("/") + "/" for d in dirs)
        self.globs = tuple(globs)
        self.journald_sockets = tuple(journald_sockets)
        self.syslog_sockets = tuple(syslog_sockets)
        self.journald_native_sockets = tuple(journald_native_sockets)
        # log-copying runtimes besides collector.host.runtimes.DEFAULT_LOG_RUNTIMES: a pipe
        # one of them reads is a log of the process writing into it (comm or argv[0] globs)
        self.runtimes = tuple(runtimes)

    def key(self):
        """What decides verdicts and channels: equal keys need no reload."""
        return tuple(getattr(self, k) for k in RULE_KEYS)

    def channels(self):
        """The datagram channels, in channel-id order: their labels as a destination path
        ("syslog:/dev/log", "journald:/run/systemd/journal/socket")."""
        return [f"syslog:{p}" for p in self.syslog_sockets] + \
               [f"journald:{p}" for p in self.journald_native_sockets]

    def is_log_path(self, path):
        """True when an fd target path is a log file by these rules."""
        if not path.startswith("/"):
            return False  # pipe:[..], socket:[..], anon_inode:.. and other pseudo files
        path = path.removesuffix(DELETED_SUFFIX)  # a rotated-away log is still a log
        if path in _NEVER_LOG or path.startswith(_NEVER_LOG_PREFIXES):
            return False
        if any(path.startswith(d) and len(path) > len(d) for d in self.dirs):
            return True
        name = posixpath.basename(path)
        return any(fnmatch.fnmatchcase(name, g) for g in self.globs)

    @classmethod
    def from_config(cls, config, where="log_rules"):
        """LogRules from a config mapping with optional keys RULE_KEYS.

        Raises BadInput with one line naming the key and what was expected.
        """
        if not isinstance(config, dict):
            raise BadInput(f"{where}: expected a mapping, got {type(config).__name__}")
        known = RULE_KEYS
        unknown = sorted(str(k) for k in config if k not in known)
        if unknown:
            raise BadInput(f"{where}: unknown key {unknown[0]!r} "
                           f"(expected one of {', '.join(known)})")
        values = {}
        for key in known:
            if key not in config:
                continue
            value = config[key]
            if not isinstance(value, (list, tuple)):
                raise BadInput(f"{where}.{key}: expected a list of strings, "
                               f"got {type(value).__name__}")
            for i, item in enumerate(value):
                if not isinstance(item, str):
                    raise BadInput(f"{where}.{key}: expected a list of strings, "
                                   f"item {i} is {type(item).__name__}")
            if any(v == "" for v in value):
                raise BadInput(f"{where}.{key}: empty string in the list")
            if key not in NAME_KEYS:
                relative = [v for v in value if not v.startswith("/")]
                if relative:
                    raise BadInput(f"{where}.{key}: {relative[0]!r} is not an absolute path")
            values[key] = tuple(value)
        rules = cls(**values)
        sockets = len(rules.channels())          # the defaults of keys not given count too
        if sockets > MAX_SOCKET_PATHS:
            raise BadInput(f"{where}: {sockets} syslog and journald-native socket paths; "
                           f"at most {MAX_SOCKET_PATHS} (the kernel's table holds them and "
                           "their symlink targets)")
        return rules
