"""Append stream records to one msgpack file (e.g. `surgewatch snapshot --record FILE`)."""
import errno

from collector.errors import BadInput, SurgewatchError
from collector.records.stream import StreamWriter


def _open_error(path, err):
    if isinstance(err, IsADirectoryError):
        fix = "give a file name, not a directory"
    elif isinstance(err, FileNotFoundError):
        fix = "create the directory first or choose another path"
    elif isinstance(err, PermissionError):
        fix = "choose a path you can write, or run with the needed privileges"
    elif getattr(err, "errno", None) in (errno.EROFS,):
        fix = "choose a path on a writable filesystem"
    else:
        fix = "choose another path"
    return BadInput(f"cannot write stream file {path}: {err.strerror or err}; {fix}")


class MsgpackFileSink:
    """Appends encoded records to `path`; flush() (or write_interval()) once per interval."""

    def __init__(self, path):
        self.path = str(path)
        try:
            self._f = open(self.path, "ab")
        except OSError as e:
            raise _open_error(self.path, e) from None
        self._writer = StreamWriter(self._f)

    def write(self, record):
        try:
            self._writer.write(record)
        except OSError as e:
            raise SurgewatchError(f"cannot write stream file {self.path}: {e.strerror or e}; "
                                  "free space or choose another path") from None

    def flush(self):
        try:
            self._f.flush()
        except OSError as e:
            raise SurgewatchError(f"cannot write stream file {self.path}: {e.strerror or e}; "
                                  "free space or choose another path") from None

    def write_interval(self, records):
        """Write one interval's records, then flush so readers see whole intervals."""
        for record in records:
            self.write(record)
        self.flush()

    def close(self):
        if not self._f.closed:
            try:
                self.flush()
            finally:
                self._f.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
