import pytest

from collector.errors import BadInput
from collector.host.logdest import LogRules, parse_fd_target

RULES = LogRules()


@pytest.mark.parametrize("path", [
    "/var/log/syslog",
    "/var/log/nginx/access.log",
    "/var/log/nginx/error.log.1 (deleted)",   # rotated away while still open
    "/var/log/journal/abc/system.journal",
    "/srv/app/logs/app.log",
    "/srv/app/app.log.1",
    "/srv/app/app.log.2.gz",
    "/opt/x/" + "very-long-directory-name-" * 200 + "/trace.log",
    "/tmp/with space/odd\nname.log",
])
def test_log_paths(path):
    assert RULES.is_log_path(path)


@pytest.mark.parametrize("path", [
    "/var/logfoo",                # not under /var/log/
    "/var/logfoo/x.txt",
    "/var/log/",                  # the directory itself
    "/var/log",
    "/dev/null",
    "/dev/null (deleted)",
    "pipe:[31337]",
    "socket:[48121]",
    "anon_inode:[eventpoll]",
    "anon_inode:inotify",
    "net:[4026531840]",
    "/memfd:app.log (deleted)",   # a memfd, whatever its name
    "/srv/app/app.logger",
    "/srv/app/app.log.old",       # *.log.[0-9]* needs a digit
    "/srv/app/APP.LOG",           # globs are case-sensitive like the file system
    "/srv/app/log/x.txt",
    "relative/app.log",
    "",
])
def test_not_log_paths(path):
    assert not RULES.is_log_path(path)


def test_globs_match_the_basename_only():
    rules = LogRules(dirs=(), globs=("*.log",))
    assert not rules.is_log_path("/srv/x.log/data")
    assert rules.is_log_path("/srv/x.log/data.log")


def test_directory_rule_with_or_without_trailing_slash():
    for d in ("/srv/logs", "/srv/logs/", "/srv//logs/"):
        rules = LogRules(dirs=(d,), globs=())
        assert rules.is_log_path("/srv/logs/a/b.txt")
        assert not rules.is_log_path("/srv/logsx/b.txt")


def test_deleted_suffix_is_stripped_once_before_matching():
    rules = LogRules(dirs=(), globs=("*.log",))
    assert rules.is_log_path("/srv/x.log (deleted)")
    assert not rules.is_log_path("/srv/x.txt (deleted)")


def test_defaults():
    assert RULES.dirs == ("/var/log/",)
    assert RULES.globs == ("*.log", "*.log.[0-9]*")
    assert RULES.journald_sockets == ("/run/systemd/journal/stdout",)


@pytest.mark.parametrize("target, expected", [
    ("/var/log/a.log", ("file", "/var/log/a.log")),
    ("/var/log/a.log (deleted)", ("file", "/var/log/a.log (deleted)")),
    ("socket:[48121]", ("socket", 48121)),
    ("pipe:[31337]", ("pipe", 31337)),
    ("anon_inode:[eventpoll]", ("anon", "eventpoll")),
    ("anon_inode:inotify", ("anon", "inotify")),
    ("anon_inode:bpf-map", ("anon", "bpf-map")),
    ("net:[4026531840]", ("other", "net:[4026531840]")),
    ("socket:[abc]", ("other", "socket:[abc]")),
    ("socket:[12]x", ("other", "socket:[12]x")),
    ("", ("other", "")),
])
def test_parse_fd_target(target, expected):
    assert parse_fd_target(target) == expected


def test_from_config():
    rules = LogRules.from_config({"dirs": ["/srv/logs"], "globs": ["*.out"],
                                  "journald_sockets": []})
    assert rules.dirs == ("/srv/logs/",)
    assert rules.globs == ("*.out",)
    assert rules.journald_sockets == ()
    assert rules.is_log_path("/srv/logs/a") and rules.is_log_path("/x/y.out")


def test_from_config_missing_keys_keep_defaults():
    rules = LogRules.from_config({"globs": ["*.out"]})
    assert rules.dirs == ("/var/log/",)
    assert rules.journald_sockets == ("/run/systemd/journal/stdout",)


@pytest.mark.parametrize("config, message", [
    ({"dirs": "/var/log"}, "log_rules.dirs: expected a list of strings, got str"),
    ({"globs": ["*.log", 3]}, "log_rules.globs: expected a list of strings, item 1 is int"),
    ({"journald_sockets": None},
     "log_rules.journald_sockets: expected a list of strings, got NoneType"),
    ({"dirs": ["var/log"]}, "log_rules.dirs: 'var/log' is not an absolute path"),
    ({"globs": [""]}, "log_rules.globs: empty string in the list"),
    ({"dir": ["/var/log"]},
     "log_rules: unknown key 'dir' (expected one of dirs, globs, journald_sockets, "
     "syslog_sockets, journald_native_sockets, runtimes)"),
    (["/var/log"], "log_rules: expected a mapping, got list"),
])
def test_from_config_errors_are_one_line(config, message):
    with pytest.raises(BadInput) as info:
        LogRules.from_config(config)
    assert str(info.value) == message
    assert "\n" not in str(info.value)


def test_from_config_names_the_section():
    with pytest.raises(BadInput, match=r"^logs\.dirs: "):
        LogRules.from_config({"dirs": 1}, where="logs")


def test_socket_paths_are_bounded_by_the_kernels_table():
    many = [f"/run/s{i}" for i in range(33)]
    with pytest.raises(BadInput) as info:
        LogRules.from_config({"syslog_sockets": many[:20], "journald_native_sockets": many[20:]})
    assert str(info.value) == ("log_rules: 33 syslog and journald-native socket paths; at most "
                               "32 (the kernel's table holds them and their symlink targets)")
    assert len(LogRules.from_config({"syslog_sockets": many[:31]}).channels()) == 32
