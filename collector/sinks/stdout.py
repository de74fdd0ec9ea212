"""Records on stdout: the msgpack stream (docs/stream.md) or JSON lines."""
import errno
import sys

from collector.records.stream import StreamWriter
from collector.sinks.jsonout import dumps


class OutputClosed(Exception):
    """An output can no longer be written (its reader went away)."""


class StdoutSink:
    """Records on stdout: msgpack (the stream of docs/stream.md) or JSON lines."""

    name = "stdout"

    def __init__(self, fmt, stream=None):
        if fmt not in ("msgpack", "json"):
            raise ValueError(f"stdout format {fmt!r}")
        self.format = fmt
        stream = stream if stream is not None else sys.stdout
        self._buf = getattr(stream, "buffer", stream)
        self._writer = StreamWriter(self._buf) if fmt == "msgpack" else None

    def write_interval(self, records):
        try:
            if self._writer is not None:
                self._writer.write_many(records)
            else:
                data = "".join(dumps(r, indent=None) + "\n" for r in records)
                self._buf.write(data.encode("utf-8"))
            self._buf.flush()
        except BrokenPipeError:
            raise OutputClosed("stdout: its reader closed the pipe") from None
        except OSError as e:
            if e.errno in (errno.EPIPE, errno.EBADF):
                raise OutputClosed(f"stdout: {e.strerror}") from None
            raise

    def close(self):
        try:
            self._buf.flush()
        except (OSError, ValueError):
            pass
