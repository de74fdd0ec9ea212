"""The record stream codec: msgpack maps, concatenated (see docs/stream.md).

encode() turns one record dict into bytes; StreamWriter writes records to a binary
file object; read_records() decodes a stream back, refusing corrupt or truncated data
and records from a newer schema major version with a StreamError naming the offset.
"""
import io
import threading

import msgpack

from collector.errors import StreamError
from collector.records.model import SCHEMA_MAJOR, clean_text, schema_major

# Largest single record read_records() accepts. Real records are a few KiB; a length
# header claiming more is corrupt data, and refusing it keeps memory bounded.
MAX_RECORD_BYTES = 16 * 1024 * 1024
_READ_CHUNK = 64 * 1024


def _clean(obj):
    """obj with every str made UTF-8 encodable (see model.clean_text)."""
    if isinstance(obj, str):
        return clean_text(obj)
    if isinstance(obj, dict):
        return {_clean(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    return obj


_local = threading.local()


def _packer():
    # One Packer per thread, reused: msgpack.packb() makes a new one per call, with a
    # 256 KiB buffer (malloc'd and freed for every record of every sink).
    p = getattr(_local, "packer", None)
    if p is None:
        p = _local.packer = msgpack.Packer(use_bin_type=True)
    return p


def encode(record):
    """One record as msgpack bytes (str as msgpack str, bytes as bin)."""
    if not isinstance(record, dict) or "v" not in record or "type" not in record:
        raise TypeError("a stream record is a dict with at least 'v' and 'type'")
    packer = _packer()
    try:
        return packer.pack(record)
    except UnicodeEncodeError:
        packer.reset()        # a failed pack may leave a partial record in the buffer
        # A name with undecodable bytes (lone surrogates): escape it, keep the record.
        return packer.pack(_clean(record))
    except BaseException:
        packer.reset()
        raise


class StreamWriter:
    """Writes encoded records to a file object (binary; a text stream's .buffer is used)."""

    def __init__(self, fileobj):
        if isinstance(fileobj, io.TextIOBase):
            fileobj.flush()
            fileobj = fileobj.buffer
        self._f = fileobj
        self.records = 0
        self.bytes = 0

    def write(self, record):
        data = encode(record)
        self._f.write(data)
        self.records += 1
        self.bytes += len(data)

    def write_many(self, records):
        for record in records:
            self.write(record)

    def flush(self):
        self._f.flush()


class _UnexpectedExt(ValueError):
    pass


def _refuse_ext(code, data):
    raise _UnexpectedExt(f"unexpected msgpack extension type {code}")


# what a msgpack value that is not a map is, in words
_KINDS = {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
          bytes: "binary data", list: "an array", type(None): "nil"}


def _check(record, path, offset):
    if not isinstance(record, dict):
        kind = _KINDS.get(type(record), type(record).__name__)
        raise StreamError(path, offset, f"record is {kind}, not a map "
                                        "(not a surgewatch stream, or corrupt)")
    for key in ("v", "type"):
        if key not in record:
            raise StreamError(path, offset, f"record has no {key!r} field "
                                            "(not a surgewatch stream, or corrupt)")
    version = record["v"]
    try:
        major = schema_major(version)
    except ValueError as e:
        raise StreamError(path, offset, str(e)) from None
    if major > SCHEMA_MAJOR:
        raise StreamError(path, offset, f"written by a newer surgewatch (schema {version}); "
                                        "upgrade to read it")
    if major < SCHEMA_MAJOR:
        raise StreamError(path, offset, f"written by an older surgewatch (schema {version}); "
                                        f"this version reads schema {SCHEMA_MAJOR}.x only")
    if not isinstance(record["type"], str):
        raise StreamError(path, offset, f"record type must be a string, got {record['type']!r}")


def read_records(fileobj, path, *, max_record_bytes=MAX_RECORD_BYTES):
    """Yield each record (a dict) of a binary stream, in order.

    path only names the source in errors. Offsets in errors count from where fileobj
    was positioned when reading started (its absolute position when it can tell).
    Raises StreamError on corrupt data, on a truncated trailing record (after yielding
    every whole record before it; the offset is where the whole records end), on a
    record that is not a map or lacks `v`/`type`, and on a newer schema major version.
    Records of a newer minor version are yielded with their unknown fields; records of
    unknown type are yielded too (readers skip types they do not handle).
    """
    if isinstance(fileobj, io.TextIOBase):
        fileobj = fileobj.buffer
    try:
        base = fileobj.tell()
    except (AttributeError, OSError, ValueError):
        base = 0
    unpacker = msgpack.Unpacker(
        raw=False,
        strict_map_key=True,
        ext_hook=_refuse_ext,
        max_buffer_size=max_record_bytes + _READ_CHUNK,
    )
    too_big = f"record larger than {max_record_bytes} bytes (corrupt data?)"
    fed = 0    # bytes given to the unpacker
    end = 0    # offset just past the last whole record
    while True:
        chunk = fileobj.read(_READ_CHUNK)
        if not chunk:
            break
        try:
            unpacker.feed(chunk)
        except msgpack.BufferFull:
            raise StreamError(path, base + end, too_big) from None
        fed += len(chunk)
        while True:
            try:
                record = unpacker.unpack()
            except msgpack.OutOfData:
                break
            except (ValueError, TypeError, msgpack.UnpackException, RecursionError) as e:
                raise StreamError(path, base + end, f"corrupt data: {e}") from None
            if unpacker.tell() - end > max_record_bytes:
                raise StreamError(path, base + end, too_big)
            _check(record, path, base + end)
            end = unpacker.tell()
            yield record
        if fed - end > max_record_bytes:     # a partial record already exceeds the limit
            raise StreamError(path, base + end, too_big)
    if end < fed:
        n = fed - end
        raise StreamError(path, base + end,
                          f"truncated record ({n} trailing byte{'s' if n != 1 else ''}); "
                          "the whole records before this offset are intact")
