"""collector.host.journald_limits on recorded trees (tests/unit/fixtures/journald/): journald.conf
and drop-ins with systemd's precedence, per-unit LogRateLimit* from unit files, drop-ins,
transient units and PID 1's exports, the disk-space scaling of the burst, bad values."""
import os
from pathlib import Path
from types import SimpleNamespace

import pytest

from collector.host.journald_limits import JournaldLimits
from collector.host.journald_ratelimit import (
    DEFAULT_BURST,
    DEFAULT_INTERVAL_S,
    burst_modulate,
    journal_available,
)
from collector.host.systemd_conf import parse_conf, parse_size
from collector.host.timespans import parse_timespan

FIX = Path(__file__).resolve().parent / "fixtures" / "journald"
HOST = str(FIX / "host")
MIB, GIB = 1 << 20, 1 << 30


def no_space(_path):
    raise OSError(5, "Input/output error")


def small_fs(_path):
    """8 MiB, half free: journald may use 1 MiB (max_use's floor): the burst unscaled."""
    return SimpleNamespace(f_frsize=4096, f_blocks=2048, f_bsize=4096, f_bavail=1024)


def limits(root=HOST, statvfs=small_fs):
    warnings = []
    return JournaldLimits(root, warn=warnings.append, statvfs=statvfs), warnings


# -- syntax -----------------------------------------------------------------------------
@pytest.mark.parametrize("text, seconds", [
    ("30s", 30.0), ("1min", 60.0), ("500ms", 0.5), ("2", 2.0), ("0", 0.0),
    ("1min 30s", 90.0), ("1h30min", 5400.0), ("1.5s", 1.5), ("250us", 0.00025),
    ("2 min", 120.0), ("1d", 86400.0), ("3m", 180.0),
])
def test_timespans(text, seconds):
    assert parse_timespan(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "soon", "5 parsecs", "s", "-5s", "1,5s"])
def test_bad_timespans(text):
    with pytest.raises(ValueError):
        parse_timespan(text)


def test_sizes():
    assert parse_size("512M") == 512 * MIB
    assert parse_size("1G") == GIB
    assert parse_size("4096") == 4096
    with pytest.raises(ValueError):
        parse_size("lots")


def test_conf_syntax():
    text = "# c\n; c\n[Journal]\nA = 1\nB=two \\\n  words\n\n[Other]\nA=3\n"
    assert parse_conf(text) == [("Journal", "A", "1"), ("Journal", "B", "two words"),
                                ("Other", "A", "3")]


# -- journald's arithmetic --------------------------------------------------------------
def test_burst_modulate_is_systemds_table():
    # journald-rate-limit.c: <= 1 MiB x1, 16 MiB x2, 256 MiB x3, 4 GiB x4, 64 GiB x5, 1 TiB x6
    assert [burst_modulate(1000, a) for a in
            (0, 1, MIB, 2 * MIB - 1, 16 * MIB, 256 * MIB, 4 * GIB, 64 * GIB, 1 << 40)] == \
        [1000, 1000, 1000, 1000, 2000, 3000, 4000, 5000, 6000]
    assert burst_modulate(1000, 2 * MIB) == 1250          # k = 21: (21 - 16) / 4
    assert burst_modulate(10, 3 * MIB) == 12              # integer arithmetic
    assert burst_modulate(10000, 100 * GIB) == 50000      # k = 36


def test_available_space_default_metrics():
    # 100 GiB file system, 50 GiB free, journal 1 GiB: max_use 4 GiB (10% capped), so
    # 3 GiB still available
    assert journal_available(100 * GIB, 50 * GIB, GIB) == 3 * GIB
    # nearly full: free 6 GiB, keep_free 4 GiB (5%, capped) -> 2 GiB beyond the journal
    assert journal_available(100 * GIB, 6 * GIB, GIB) == 2 * GIB
    # below keep_free: only min_use (2% = 16 MiB cap, raised to the use) -> nothing left
    assert journal_available(100 * GIB, 2 * GIB, GIB) == 0
    # SystemMaxUse=2G with 1.5 GiB used
    assert journal_available(100 * GIB, 50 * GIB, 3 * GIB // 2, max_use=2 * GIB) == GIB // 2


# -- journald.conf ------------------------------------------------------------------------
def test_journald_conf_and_dropins_in_systemds_order():
    j, warnings = limits()
    assert [os.path.relpath(p, "/") for p in j.journald_files()] == [
        "etc/systemd/journald.conf",
        "usr/lib/systemd/journald.conf.d/50-vendor.conf",
        "etc/systemd/journald.conf.d/60-vendor.conf",     # over /run's and /usr/lib's
        "etc/systemd/journald.conf.d/70-local.conf",
    ]                                                     # 80-masked.conf: /dev/null
    conf = j.journald()
    assert (conf.interval_s, conf.burst) == (20.0, 3000)
    assert conf.source == ("interval /etc/systemd/journald.conf.d/60-vendor.conf, "
                           "burst /etc/systemd/journald.conf.d/70-local.conf")
    assert warnings == []


def test_no_files_means_systemds_defaults(tmp_path):
    j, warnings = limits(str(tmp_path))
    lim = j.for_unit("any.service")
    assert (lim.interval_s, lim.burst, lim.effective_burst) == \
        (DEFAULT_INTERVAL_S, DEFAULT_BURST, DEFAULT_BURST)
    assert (lim.source, warnings) == ("default", [])


def test_bad_journald_values_warn_once_and_use_the_defaults():
    j, warnings = limits(str(FIX / "bad"))
    conf = j.journald()
    assert (conf.interval_s, conf.burst) == (DEFAULT_INTERVAL_S, DEFAULT_BURST)
    j.for_unit("a.service")
    j.for_unit("b.service")
    assert warnings == [
        "/etc/systemd/journald.conf: RateLimitIntervalSec=soon: 'soon' is not a time span "
        "(like 30s, 1min, 500ms); using 30",
        "/etc/systemd/journald.conf: RateLimitBurst=-5: '-5' is not an unsigned integer; "
        "using 10000",
    ]


def test_unreadable_file_warns_and_is_skipped(tmp_path):
    conf = tmp_path / "etc" / "systemd" / "journald.conf"
    conf.parent.mkdir(parents=True)
    conf.mkdir()                                       # a directory: reading it fails
    (tmp_path / "etc" / "systemd" / "journald.conf.d").mkdir()
    (tmp_path / "etc" / "systemd" / "journald.conf.d" / "x.conf").write_text(
        "[Journal]\nRateLimitBurst=77\n")
    j, warnings = limits(str(tmp_path))
    assert j.journald().burst == 77
    assert warnings == []                  # a directory is no main file: the next is used


# -- units --------------------------------------------------------------------------------
def test_unit_file_and_dropins():
    j, warnings = limits()
    assert [os.path.relpath(p, "/") for p in j.unit_files("app.service")] == [
        "usr/lib/systemd/system/app.service",
        "etc/systemd/system/app.service.d/10-burst.conf",      # over /run's 10-burst.conf
        "usr/lib/systemd/system/app.service.d/20-interval.conf",
    ]
    lim = j.for_unit("app.service")
    assert (lim.interval_s, lim.burst) == (0.5, 50)             # [Unit]'s key ignored
    assert lim.source == ("interval /usr/lib/systemd/system/app.service.d/20-interval.conf, "
                          "burst /etc/systemd/system/app.service.d/10-burst.conf")
    assert warnings == []


def test_transient_unit_of_systemd_run():
    j, _ = limits()
    lim = j.for_unit("run-u42.service")
    assert (lim.interval_s, lim.burst) == (2.0, 10)
    assert lim.source == "/run/systemd/transient/run-u42.service"


def test_running_unit_uses_what_pid1_exported():
    j, _ = limits()
    # burst exported; the unit file's 99999 is what a restart would give, not what runs
    lim = j.for_unit("live.service")
    assert (lim.interval_s, lim.burst) == (20.0, 25)
    # running, nothing exported: journald's own (the file's 5 is not in effect)
    lim = j.for_unit("quiet.service")
    assert (lim.interval_s, lim.burst) == (20.0, 3000)


def test_template_instance_and_masked_unit():
    j, _ = limits()
    assert j.for_unit("worker@1.service").burst == 30
    assert j.for_unit("worker@3.service").burst == 33          # its own drop-in
    assert j.unit_files("masked.service") == []
    assert j.for_unit("masked.service").burst == 3000


def test_bad_unit_values_warn_and_fall_back_to_journalds():
    j, warnings = limits()
    lim = j.for_unit("bad.service")
    assert (lim.interval_s, lim.burst) == (20.0, 3000)
    assert warnings == [
        "/etc/systemd/system/bad.service: LogRateLimitBurst=lots: 'lots' is not an "
        "unsigned integer; using the default",
        "/etc/systemd/system/bad.service: LogRateLimitIntervalSec=soon: 'soon' is not a "
        "time span (like 30s, 1min, 500ms); using the default",
    ]


def test_names_that_are_not_units_get_journalds_limit():
    j, _ = limits()
    for name in ("python3", "container:0123456789ab", "../etc.service/x"):
        lim = j.for_unit(name)
        assert (lim.interval_s, lim.burst) == (20.0, 3000)


# -- disk scaling and sockets -------------------------------------------------------------
def test_burst_scaled_by_the_journals_free_space():
    seen = []

    def statvfs(path):
        seen.append(os.path.relpath(path, HOST))
        # 100 GiB, 50 GiB free: available 4 GiB (empty journal) -> x4
        return SimpleNamespace(f_frsize=4096, f_blocks=100 * GIB // 4096, f_bsize=4096,
                               f_bavail=50 * GIB // 4096)

    j, warnings = limits(statvfs=statvfs)
    lim = j.for_unit("app.service")
    assert (lim.burst, lim.effective_burst, lim.available_bytes) == (50, 200, 4 * GIB)
    assert lim.per_s == 400.0
    assert seen == ["var/log/journal/0123456789abcdef0123456789abcdef"]
    assert warnings == []


def test_space_unknown_means_the_burst_unscaled_and_one_warning():
    j, warnings = limits(statvfs=no_space)
    lim = j.for_unit("app.service")
    assert (lim.effective_burst, lim.available_bytes) == (50, None)
    j.for_unit("run-u42.service")
    assert warnings == ["/var/log/journal/0123456789abcdef0123456789abcdef: cannot measure "
                        "the journal's space (Input/output error); judging against the "
                        "burst unscaled"]


def test_syslog_socket_reaches_journald_through_the_symlink():
    j, _ = limits()
    assert j.reaches_journald("/dev/log")
    assert j.reaches_journald("/run/systemd/journal/dev-log")
    assert not j.reaches_journald("/run/rsyslog/dev-log")


def test_answers_are_cached_for_ttl(tmp_path):
    now = [0.0]
    j = JournaldLimits(str(tmp_path), clock=lambda: now[0], statvfs=no_space, ttl_s=30)
    assert j.for_unit("a.service").burst == DEFAULT_BURST
    d = tmp_path / "etc" / "systemd"
    d.mkdir(parents=True)
    (d / "journald.conf").write_text("[Journal]\nRateLimitBurst=5\n")
    now[0] = 29.0
    assert j.for_unit("a.service").burst == DEFAULT_BURST
    now[0] = 31.0
    assert j.for_unit("a.service").burst == 5
