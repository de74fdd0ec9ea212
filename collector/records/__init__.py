"""The stream's records: types and builders (model), the msgpack codec (stream), reading
stored records back (segments, source) and grouping them into intervals."""
