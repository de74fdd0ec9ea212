"""collector/host/timespans.py: systemd.time(7) spans (journald's settings) and the command
line's narrower form (tail --since, record --range/--step), exact seconds."""
import math

import pytest

from collector.host.timespans import flag_duration, parse_timespan


@pytest.mark.parametrize("text, seconds", [
    ("30s", 30.0), ("30 s", 30.0), (" 30s ", 30.0), ("2", 2.0), ("0", 0.0),
    ("1min 30s", 90.0), ("1h30min", 5400.0), ("1h30", 3630.0), ("1 2", 3.0),
    ("1.5s", 1.5), (".5s", 0.5), ("500ms", 0.5), ("250us", 0.00025), ("2µs", 2e-6),
    ("3m", 180.0), ("1M", 2629800.0), ("1w", 604800.0), ("1y", 31557600.0),
    ("2 minutes", 120.0), ("1d", 86400.0),
])
def test_systemd_spans(text, seconds):
    assert parse_timespan(text) == seconds


def test_bare_number_in_the_settings_unit():
    assert parse_timespan("2", default_unit=1e-6) == 2e-6
    assert parse_timespan("2s", default_unit=1e-6) == 2.0


def test_infinity():
    assert parse_timespan("infinity") == math.inf
    with pytest.raises(ValueError):
        parse_timespan("infinity", infinity=False)


@pytest.mark.parametrize("text, message", [
    ("", "empty time span"),
    ("soon", "'soon' is not a time span (like 30s, 1min, 500ms)"),
    ("1.", "'1.' is not a time span (like 30s, 1min, 500ms)"),
    ("1.2.3s", "'1.2.3s' is not a time span (like 30s, 1min, 500ms)"),
    ("-5s", "'-5s' is not a time span (like 30s, 1min, 500ms)"),
    ("5 parsecs", "'5 parsecs': unknown time unit 'parsecs'"),
    ("1,5s", "'1,5s': unknown time unit ','"),
])
def test_bad_spans_say_why(text, message):
    with pytest.raises(ValueError) as e:
        parse_timespan(text)
    assert str(e.value) == message


@pytest.mark.parametrize("text, seconds", [
    ("90", 90.0), ("90s", 90.0), ("10m", 600.0), ("10 m", 600.0), ("24h", 86400.0),
    ("7d", 604800.0), ("1.5h", 5400.0), ("0", 0.0),
])
def test_flag_durations(text, seconds):
    assert flag_duration(text) == seconds


@pytest.mark.parametrize("text", ["10min", "500ms", "1m 30s", "1h30m", "1M", "infinity",
                                  "-1s", "1e3", "soon", ""])
def test_flag_durations_take_one_term_of_s_m_h_d(text):
    with pytest.raises(ValueError):
        flag_duration(text)


def test_flag_duration_without_bare_numbers():
    assert flag_duration("90s", bare=False) == 90.0
    with pytest.raises(ValueError) as e:
        flag_duration("1700000000", bare=False)
    assert str(e.value) == "'1700000000': a number without a unit is not a time span"
