"""collector.config: the `surgewatch run` TOML file."""
import pytest

from collector import config
from collector.errors import EXIT_USAGE, BadInput


def write(tmp_path, text, name="sw.toml"):
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def test_defaults_when_default_file_missing(monkeypatch, tmp_path):
    monkeypatch.setattr(config, "DEFAULT_PATH", str(tmp_path / "absent.toml"))
    cfg = config.load(None)
    assert cfg.interval == 1.0
    assert cfg.stdout_format == "auto"
    assert cfg.segments.enabled and cfg.segments.dir == "/var/lib/surgewatch"
    assert cfg.log_rules.dirs == ("/var/log/",)


def test_missing_explicit_file_is_an_error(tmp_path):
    path = str(tmp_path / "nope.toml")
    with pytest.raises(BadInput) as e:
        config.load(path)
    assert str(e.value).startswith(f"{path}: ")
    assert e.value.exit_code == EXIT_USAGE


def test_full_file(tmp_path):
    path = write(tmp_path, """
        interval = 2
        [log_rules]
        dirs = ["/srv/logs"]
        globs = ["*.out"]
        journald_sockets = []
        [outputs.stdout]
        format = "json"
        [outputs.segments]
        enabled = true
        dir = "/data/sw"
        max_segment_bytes = 65536
        max_segment_age_s = 60
        max_total_bytes = 1048576
    """)
    cfg = config.load(path)
    assert cfg.path == path
    assert cfg.interval == 2.0 and isinstance(cfg.interval, float)
    assert cfg.log_rules.dirs == ("/srv/logs/",)
    assert cfg.log_rules.globs == ("*.out",)
    assert cfg.log_rules.journald_sockets == ()
    assert cfg.stdout_format == "json"
    assert cfg.segments == config.SegmentsConfig(True, "/data/sw", 65536, 60.0, 1048576)


def test_empty_file_is_defaults(tmp_path):
    cfg = config.load(write(tmp_path, ""))
    assert cfg.interval == 1.0 and cfg.segments == config.SegmentsConfig()


BAD = [
    # (toml text, key named in the message, words in the reason)
    ("intervall = 1", "intervall", "unknown key"),
    ("interval = '1'", "interval", "expected a number, got a string"),
    ("interval = true", "interval", "expected a number, got a boolean"),
    ("interval = 0", "interval", "must be between"),
    ("interval = -1.5", "interval", "must be between"),
    ("interval = nan", "interval", "finite"),
    ("interval = inf", "interval", "finite"),
    ("interval = 100000", "interval", "must be between"),
    ("rate_max_paths = -1", "rate_max_paths", "must be between"),
    ("lock_file = 'run/x.lock'", "lock_file", "not an absolute path"),
    ("[probes]\nwrite_hook = 'kprobe'", "probes.write_hook",
     "is not one of auto, fentry, tracepoints, raw"),
    ("[probes]\nmax_keys = 10", "probes.max_keys", "must be between"),
    ("[probes]\nload_timeout_s = 0", "probes.load_timeout_s", "must be between"),
    ("[probes]\nfentry = true", "probes.fentry", "unknown key"),
    ("[alerts]\nk = 1", "alerts", "k must be > 1"),
    ("[alerts]\nwarmup = 400", "alerts", "must not exceed window"),
    ("[alerts]\nwindow = 2.5", "alerts.window", "expected an integer"),
    ("[alerts]\nlimits = 3", "alerts.limits", "unknown key"),
    ("rate_max_paths = 2.5", "rate_max_paths", "expected an integer, got a number"),
    ("log_rules = 3", "log_rules", "expected a table"),
    ("[log_rules]\nfoo = []", "log_rules.foo", "unknown key"),
    ("[log_rules]\ndirs = '/var/log'", "log_rules.dirs", "expected a list of strings"),
    ("[log_rules]\ndirs = ['var/log']", "log_rules.dirs", "not an absolute path"),
    ("[log_rules]\nglobs = [1]", "log_rules.globs", "item 0 is int"),
    ("[log_rules]\nglobs = ['']", "log_rules.globs", "empty string"),
    ("[outputs]\nkafka = {}", "outputs.kafka", "unknown key"),
    ("[outputs.socket]\npath = 'run/s.sock'", "outputs.socket.path", "not an absolute path"),
    ("[outputs.socket]\npath = '/" + "x" * 120 + "'", "outputs.socket.path", "107 bytes"),
    ("[outputs.socket]\nmode = 0o1777", "outputs.socket.mode", "must be between"),
    ("[outputs.socket]\nqueue_records = 1", "outputs.socket.queue_records", "must be between"),
    ("[outputs.socket]\nenabled = 1", "outputs.socket.enabled", "expected true or false"),
    ("[outputs.socket]\nstall_timeout_s = 0.5", "outputs.socket.stall_timeout_s",
     "must be between"),
    ("[outputs.socket]\nstall_timeout_s = '60'", "outputs.socket.stall_timeout_s",
     "expected a number"),
    ("[outputs.prometheus]\nlisten = '127.0.0.1'", "outputs.prometheus.listen", "HOST:PORT"),
    ("[outputs.prometheus]\nlisten = '::1:9477'", "outputs.prometheus.listen", "[ADDR]:PORT"),
    ("[outputs.prometheus]\nlisten = 'localhost:0'", "outputs.prometheus.listen", "port"),
    ("[outputs.prometheus]\nlisten = 9477", "outputs.prometheus.listen", "expected a string"),
    ("[outputs.prometheus]\nmax_services = 0", "outputs.prometheus.max_services",
     "must be between"),
    ("[outputs.prometheus]\nport = 1", "outputs.prometheus.port", "unknown key"),
    ("[resets]\nenabled = 'no'", "resets.enabled", "expected true or false"),
    ("[resets]\nlimit = 3", "resets.limit", "unknown key"),
    ("[resets]\nmax_records = -1", "resets.max_records", "must be between"),
    ("outputs = []", "outputs", "expected a table, got an array"),
    ("[outputs.stdout]\nformat = 'xml'", "outputs.stdout.format", "'xml' is not one of"),
    ("[outputs.stdout]\nformat = 1", "outputs.stdout.format", "expected a string"),
    ("[outputs.stdout]\ncolor = true", "outputs.stdout.color", "unknown key"),
    ("[outputs.segments]\ndir = 'rel/dir'", "outputs.segments.dir", "not an absolute path"),
    ("[outputs.segments]\ndir = 5", "outputs.segments.dir", "expected a string"),
    ("[outputs.segments]\nenabled = 'yes'", "outputs.segments.enabled", "expected true or false"),
    ("[outputs.segments]\nmax_segment_bytes = 1.5", "outputs.segments.max_segment_bytes",
     "expected an integer, got a number"),
    ("[outputs.segments]\nmax_segment_bytes = 10", "outputs.segments.max_segment_bytes",
     "must be between"),
    ("[outputs.segments]\nmax_segment_age_s = 0", "outputs.segments.max_segment_age_s",
     "must be between"),
    ("[outputs.segments]\nmax_total_bytes = 8192\nmax_segment_bytes = 65536",
     "outputs.segments.max_total_bytes", "smaller than max_segment_bytes"),
    ("[outputs.segments]\nsize = 1", "outputs.segments.size", "unknown key"),
]


@pytest.mark.parametrize("text,key,reason", BAD, ids=[b[1] + ":" + b[2] for b in BAD])
def test_bad_config_is_one_line_naming_file_and_key(tmp_path, text, key, reason):
    path = write(tmp_path, text)
    with pytest.raises(BadInput) as e:
        config.load(path)
    msg = str(e.value)
    assert msg.startswith(f"{path}: {key}: "), msg
    assert reason in msg
    assert "\n" not in msg
    assert e.value.exit_code == EXIT_USAGE


@pytest.mark.parametrize("data,reason", [
    (b"interval = = 1", "invalid TOML"),
    (b"interval = 1\xff", "not UTF-8"),
])
def test_unparseable_file(tmp_path, data, reason):
    p = tmp_path / "bad.toml"
    p.write_bytes(data)
    with pytest.raises(BadInput) as e:
        config.load(str(p))
    assert str(e.value).startswith(f"{p}: {reason}")
    assert "\n" not in str(e.value)


def test_directory_is_refused(tmp_path):
    with pytest.raises(BadInput, match="is a directory"):
        config.load(str(tmp_path))


def test_socket_prometheus_resets_sections(tmp_path):
    cfg = config.load(write(tmp_path, """
        [outputs.socket]
        enabled = true
        path = "/tmp/sw/s.sock"
        mode = 0o600
        queue_records = 50
        [outputs.prometheus]
        listen = "[::1]:9999"
        max_services = 10
        max_paths_per_service = 0
        label_idle_s = 60
        [resets]
        enabled = false
        max_records = 7
    """))
    assert cfg.socket == config.SocketConfig(True, "/tmp/sw/s.sock", 0o600, 50)
    assert cfg.prometheus == config.PrometheusConfig(True, "[::1]:9999", 10, 0, 60.0)
    assert config.parse_listen(cfg.prometheus.listen) == ("::1", 9999)
    assert cfg.resets == config.ResetsConfig(False, 7)
    d = config.load(write(tmp_path, "", "empty.toml"))
    assert d.socket.path == "/run/surgewatch/stream.sock" and d.socket.mode == 0o660
    assert d.prometheus.listen == "127.0.0.1:9477" and d.prometheus.enabled
    assert d.resets.enabled


def test_outputs_limits_against_hostile_neighbours(tmp_path):
    """docs/reliability.md, "Hostile local user": every bound is a setting."""
    cfg = config.load(write(tmp_path, """
        [outputs.socket]
        max_subscribers = 8
        max_subscribers_per_uid = 2
        stall_timeout_s = 5
        [outputs.prometheus]
        max_connections = 4
        request_timeout_s = 2.5
    """))
    assert (cfg.socket.max_subscribers, cfg.socket.max_subscribers_per_uid,
            cfg.socket.stall_timeout_s) == (8, 2, 5.0)
    assert (cfg.prometheus.max_connections, cfg.prometheus.request_timeout_s) == (4, 2.5)
    d = config.load(write(tmp_path, "", "empty.toml"))
    assert (d.socket.max_subscribers, d.socket.max_subscribers_per_uid,
            d.socket.stall_timeout_s) == (64, 16, 60.0)
    assert (d.prometheus.max_connections, d.prometheus.request_timeout_s) == (16, 10.0)


def test_rate_max_paths(tmp_path):
    assert config.load(write(tmp_path, "")).rate_max_paths == config.RATE_MAX_PATHS == 20
    assert config.load(write(tmp_path, "rate_max_paths = 0")).rate_max_paths == 0
    assert config.load(write(tmp_path, "rate_max_paths = 5")).rate_max_paths == 5


def test_probes_alerts_lock_sections(tmp_path):
    cfg = config.load(write(tmp_path, "lock_file = '/tmp/x.lock'\n[probes]\nwrite_hook = 'raw'\n"
                                      "max_keys = 1024\nload_timeout_s = 30\n[alerts]\nk = 4.5\n"
                                      "window = 100\nwarmup = 10\n"), environ={})
    assert cfg.lock_file == "/tmp/x.lock"
    assert (cfg.probes.write_hook, cfg.probes.max_keys, cfg.probes.load_timeout_s) == \
        ("raw", 1024, 30.0)
    assert (cfg.alerts.k, cfg.alerts.window, cfg.alerts.warmup) == (4.5, 100, 10)


def test_max_tcp_processes_and_its_old_name(tmp_path):
    def probes(text):
        return config.load(write(tmp_path, "[probes]\n" + text), environ={}).probes

    assert probes("").max_tcp_processes == 8192
    assert probes("max_tcp_processes = 512\n").max_tcp_processes == 512
    assert probes("max_loads = 256\n").max_tcp_processes == 256       # the old name, read
    with pytest.raises(BadInput, match=r"probes.max_loads: the old name of max_tcp_processes, "
                                       r"which is set too; keep max_tcp_processes only"):
        probes("max_loads = 256\nmax_tcp_processes = 512\n")
    with pytest.raises(BadInput, match=r"probes.max_loads: must be between 16 and"):
        probes("max_loads = 3\n")


def test_env_seams_override_the_file_in_one_place(tmp_path):
    path = write(tmp_path, "[probes]\nwrite_hook = 'tracepoints'\n")
    env = {"SURGEWATCH_WRITE_HOOK": "raw", "SURGEWATCH_LOCK_FILE": "/tmp/l",
           "SURGEWATCH_LOAD_TIMEOUT": "7"}
    cfg = config.load(path, environ=env)
    assert (cfg.probes.write_hook, cfg.lock_file, cfg.probes.load_timeout_s) == \
        ("raw", "/tmp/l", 7.0)
    with pytest.raises(BadInput, match="SURGEWATCH_WRITE_HOOK='kprobe' is not one of"):
        config.load(path, environ={"SURGEWATCH_WRITE_HOOK": "kprobe"})
