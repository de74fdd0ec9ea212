"""The messages journald itself threw away, per unit, read from journald's own notices.

When a unit logs above its rate limit, journald drops the excess and, at the unit's next
message that passes, writes one notice: MESSAGE_ID a596d6fe7bfa4994828e72309e95d61e,
"Suppressed N messages from UNIT", with N in the field N_DROPPED (systemd's
journald-server.c). Only journald writes `_TRANSPORT=driver` entries (a trusted field: a
client cannot set it), so a local user's forged notice is not read as one.

JournaldDrops follows the system journal filtered on that message id with Debian's
python3-systemd: the journal's own index finds the notices, no other message is read.
take() returns what arrived since the last call. parse_notice() is pure.
"""
import os
import time
import uuid

DROPPED_ID = "a596d6fe7bfa4994828e72309e95d61e"   # SD_MESSAGE_JOURNAL_DROPPED
MAX_PER_TAKE = 10000        # notices read per interval (journald writes one per window)
MAX_UNITS = 256             # units named per interval; the rest summed under OTHER
OTHER = "(other)"
_MAX_N = 2**31 - 1          # N_DROPPED is a C int
_PREFIX = "Suppressed "
_MIDDLE = " messages from "


def parse_notice(entry):
    """(unit, dropped) of one journal entry (a dict of str fields) that is journald's
    own rate-limit notice, else None."""
    if entry.get("_TRANSPORT") != "driver" or entry.get("MESSAGE_ID") != DROPPED_ID:
        return None
    text = entry.get("N_DROPPED")
    if not isinstance(text, str) or not text.isascii() or not text.isdigit():
        return None
    n = int(text)
    if not 0 < n <= _MAX_N:
        return None
    message = entry.get("MESSAGE")
    if not isinstance(message, str) or not message.startswith(_PREFIX + text + _MIDDLE):
        return None
    unit = message[len(_PREFIX + text + _MIDDLE):]
    if not unit or "\n" in unit:
        return None
    return unit, n


def sum_notices(entries, max_units=MAX_UNITS):
    """{unit: dropped} of the notices among entries; units beyond max_units summed under
    OTHER."""
    out = {}
    for entry in entries:
        found = parse_notice(entry)
        if found is None:
            continue
        unit, n = found
        if unit not in out and len(out) >= max_units:
            unit = OTHER
        out[unit] = out.get(unit, 0) + n
    return out


class Unavailable(Exception):
    """The journal cannot be followed here; the message says why and what to do."""


def _raw(value):
    """A field's value as journald stored it (python3-systemd's converters make a UUID
    of MESSAGE_ID, numbers of others)."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, uuid.UUID):
        return value.hex
    return value if isinstance(value, str) else str(value)


class JournaldDrops:
    """Follows the system journal's drop notices from now on. root: the host's root as
    this process sees it (collector/host/hostroot.py): another root reads the journal
    directory under it."""

    def __init__(self, root="/"):
        try:
            from systemd import journal
        except ImportError:
            raise Unavailable("python3-systemd is not installed; install it (apt-get install "
                              "python3-systemd) to count the messages journald drops") from None
        self._journal = journal
        try:
            if root in ("/", ""):
                reader = journal.Reader(flags=journal.SYSTEM | journal.LOCAL_ONLY)
            else:
                reader = journal.Reader(path=self._directory(root))
            reader.add_match(MESSAGE_ID=DROPPED_ID, _TRANSPORT="driver")
            # from now on: only notices written after the start count (a seek by time
            # holds whether or not an earlier notice exists)
            reader.seek_realtime(time.time())
            reader.fileno()              # inotify: process() then sees rotated files
        except (OSError, ValueError) as e:
            raise Unavailable(f"cannot open the journal: {e}; journald drops are not "
                              "counted") from None
        self._reader = reader

    @staticmethod
    def _directory(root):
        for sub in ("var/log/journal", "run/log/journal"):
            path = os.path.join(root, sub)
            if os.path.isdir(path):
                return path
        raise Unavailable(f"no journal under {root} (var/log/journal, run/log/journal); "
                          "mount the host's journal to count the messages journald drops")

    def take(self):
        """{unit: messages dropped} of the notices written since the last call."""
        reader = self._reader
        try:
            reader.process()             # journal files added or rotated since
        except OSError:
            pass
        entries = []
        for _ in range(MAX_PER_TAKE):
            entry = reader.get_next()
            if not entry:
                break
            entries.append({k: _raw(v) for k, v in entry.items()
                            if k in ("_TRANSPORT", "MESSAGE_ID", "N_DROPPED", "MESSAGE")})
        return sum_notices(entries)

    def close(self):
        self._reader.close()
