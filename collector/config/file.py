"""Reading the config file: trusted only when root (or its reader) alone can write it."""
import os
import tomllib

from collector.config.parse import parse
from collector.config.schema import DEFAULT_PATH, Config
from collector.errors import BadInput


def _check_owner(path, st, euid=None):
    """Refuse a config that someone other than its reader (root for the daemon) could
    have written: owned by another user, or group- or world-writable. Whoever can write
    it chooses what the privileged daemon reads, writes and listens on."""
    euid = os.geteuid() if euid is None else euid
    if st.st_uid not in (0, euid):
        raise BadInput(f"{path}: owned by uid {st.st_uid}, not by root; a config is trusted "
                       f"only from root: chown root {path}")
    if st.st_mode & 0o022:
        who = "others" if st.st_mode & 0o002 else "its group"
        raise BadInput(f"{path}: writable by {who} (mode {st.st_mode & 0o7777:04o}); a config "
                       f"is trusted only when only its owner can write it: chmod go-w {path}")


def load_file(path=None):
    """The config from `path` (None: DEFAULT_PATH, where a missing file means defaults)."""
    explicit = path is not None
    path = str(path) if explicit else DEFAULT_PATH
    try:
        with open(path, "rb") as f:
            _check_owner(path, os.fstat(f.fileno()))
            raw = f.read()
    except FileNotFoundError:
        if not explicit:
            return Config(path=path)
        raise BadInput(f"{path}: cannot read config: no such file; "
                       "give an existing file to --config") from None
    except IsADirectoryError:
        raise BadInput(f"{path}: cannot read config: is a directory; "
                       "give a TOML file") from None
    except OSError as e:
        raise BadInput(f"{path}: cannot read config: {e.strerror or e}") from None
    try:
        text = raw.decode("utf-8")
        data = tomllib.loads(text)
    except UnicodeDecodeError as e:
        raise BadInput(f"{path}: not UTF-8 text (byte {e.start}); a config is a TOML file") from None
    except tomllib.TOMLDecodeError as e:
        raise BadInput(f"{path}: invalid TOML: {e}") from None
    return parse(data, path)
