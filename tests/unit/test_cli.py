"""The command line (collector/cli.py) through click's CliRunner: help, usage errors,
environment errors as one line with exit 2, doctor's output and exit code. Nothing here
loads a probe: the environment and the checks are monkeypatched."""
import pytest

import collector.commands.doctor
import collector.commands.snapshot
from tests.support.cli import cli_runner
from collector.cli import main
from collector.commands.doctor import Check
from collector.errors import BadInput, EnvironmentProblem, SurgewatchError
from collector.probes import kernel


@pytest.fixture
def run():
    def invoke(*args):
        return cli_runner().invoke(main, list(args), prog_name="surgewatch")
    return invoke


@pytest.fixture
def no_snapshot(monkeypatch):
    """Fail loudly if a test reaches the real snapshot run."""
    calls = []
    monkeypatch.setattr(collector.commands.snapshot, "run_snapshot", lambda **kw: calls.append(kw))
    return calls


def stderr_lines(result):
    return [line for line in result.stderr.splitlines() if line.strip()]


# -- help -----------------------------------------------------------------------------------

@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_main_help(run, flag):
    res = run(flag)
    assert res.exit_code == 0, res.output
    assert "Usage: surgewatch" in res.stdout
    assert "snapshot" in res.stdout and "doctor" in res.stdout
    assert "Exit codes" in res.stdout


def test_snapshot_help(run, no_snapshot):
    res = run("snapshot", "--help")
    assert res.exit_code == 0, res.output
    for option in ("--duration", "--interval", "--top", "--json", "--msgpack", "--log-dir",
                   "--log-glob", "--journald-socket"):
        assert option in res.stdout
    assert no_snapshot == []


def test_doctor_help(run, monkeypatch):
    monkeypatch.setattr(collector.commands.doctor, "run_checks",
                        lambda: pytest.fail("doctor --help ran the checks"))
    res = run("doctor", "--help")
    assert res.exit_code == 0, res.output
    assert "Usage: surgewatch doctor" in res.stdout


def test_version(run):
    res = run("--version")
    assert res.exit_code == 0 and "0.1.0" in res.stdout


# -- usage errors ---------------------------------------------------------------------------

def test_interval_longer_than_duration_is_a_usage_error(run, no_snapshot):
    res = run("snapshot", "--interval", "5", "--duration", "1")
    assert res.exit_code == 2
    errors = [line for line in stderr_lines(res) if line.startswith("Error:")]
    assert len(errors) == 1
    assert "--interval" in errors[0] and "--duration" in errors[0]
    assert "Traceback" not in res.output
    assert no_snapshot == []


@pytest.mark.parametrize("args", [["--duration", "0"], ["--interval", "0.01"], ["--top", "0"],
                                  ["--duration", "abc"], ["--no-such-option"]])
def test_bad_option_values_exit_2(run, no_snapshot, args):
    res = run("snapshot", *args)
    assert res.exit_code == 2
    assert len([line for line in stderr_lines(res) if line.startswith("Error:")]) == 1
    assert no_snapshot == []


def test_unknown_command_exits_2(run):
    assert run("nope").exit_code == 2


def test_valid_options_reach_the_snapshot(run, no_snapshot):
    res = run("snapshot", "--duration", "3", "--interval", "0.5", "--top", "7",
              "--log-dir", "/srv/app/logs", "--log-glob", "*.out")
    assert res.exit_code == 0, res.output
    (kw,) = no_snapshot
    assert (kw["duration"], kw["interval"], kw["top"]) == (3.0, 0.5, 7)
    assert kw["as_json"] is False          # not a terminal: still the text table
    assert kw["rules"].dirs == ("/srv/app/logs/",) and kw["rules"].globs == ("*.out",)
    assert kw["rules"].journald_sockets == ("/run/systemd/journal/stdout",)


# -- environment and runtime errors: one line, no traceback ------------------------------------

def test_snapshot_environment_problem_is_one_line_exit_2(run, monkeypatch):
    msg = "tracefs is not mounted; fix: mount -t tracefs nodev /sys/kernel/tracing (as root)"

    def refuse():
        raise EnvironmentProblem(msg)

    monkeypatch.setattr(kernel, "require_environment", refuse)
    res = run("snapshot", "--duration", "1")
    assert res.exit_code == 2
    lines = res.stderr.splitlines()
    assert lines == [f"surgewatch: error: {msg}"]
    assert lines[0].startswith("surgewatch: error:")
    assert "Traceback" not in res.output
    assert res.stdout == ""


def test_snapshot_privilege_problem_from_the_real_check(run, monkeypatch):
    # require_environment itself, with no capabilities: the first blocker, one line
    monkeypatch.setattr(kernel, "effective_caps", lambda status_path="/proc/self/status": 0)
    res = run("snapshot", "--duration", "1")
    assert res.exit_code == 2
    lines = res.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("surgewatch: error:")
    assert "CAP_BPF" in lines[0] and "fix:" in lines[0]


@pytest.mark.parametrize("error,code", [(BadInput("bad --msgpack path"), 2),
                                        (SurgewatchError("probe died; fix: rerun"), 1)])
def test_surgewatch_errors_map_to_their_exit_code(run, monkeypatch, error, code):
    def fail(**kw):
        raise error

    monkeypatch.setattr(collector.commands.snapshot, "run_snapshot", fail)
    res = run("snapshot", "--duration", "1")
    assert res.exit_code == code
    assert res.stderr.splitlines() == [f"surgewatch: error: {error}"]


def test_interrupt_exits_130(run, monkeypatch):
    def interrupted(**kw):
        raise KeyboardInterrupt

    monkeypatch.setattr(collector.commands.snapshot, "run_snapshot", interrupted)
    res = run("snapshot", "--duration", "1")
    assert res.exit_code == 130
    assert "Traceback" not in res.output


# -- doctor ----------------------------------------------------------------------------------

def test_doctor_failing_blocking_check_exits_1_with_its_fix(run, monkeypatch):
    checks = [
        Check("kernel", True, "6.18.44", blocking=False),
        Check("btf", False, "/sys/kernel/btf/vmlinux missing",
              "use a kernel built with CONFIG_DEBUG_INFO_BTF=y"),
        Check("tracefs", True, "mounted at /sys/kernel/tracing"),
        Check("kprobes", False, "not available (CONFIG_KPROBES unset)", blocking=False),
    ]
    monkeypatch.setattr(collector.commands.doctor, "run_checks", lambda: checks)
    res = run("doctor")
    assert res.exit_code == 1
    lines = res.stdout.splitlines()
    fail = [line for line in lines if line.startswith("FAIL")]
    assert fail == ["FAIL btf      /sys/kernel/btf/vmlinux missing"
                    "  -> fix: use a kernel built with CONFIG_DEBUG_INFO_BTF=y"]
    assert any(line.startswith("ok   kernel") for line in lines)
    assert any(line.startswith("note kprobes") for line in lines)
    assert lines[-1] == "probes cannot run: fix the FAIL lines above"
    assert "Traceback" not in res.output


def test_doctor_all_ok_exits_0(run, monkeypatch):
    checks = [Check("kernel", True, "6.18.44", blocking=False),
              Check("privileges", True, "root"),
              Check("kprobes", False, "not available", "n/a", blocking=False)]
    monkeypatch.setattr(collector.commands.doctor, "run_checks", lambda: checks)
    res = run("doctor")
    assert res.exit_code == 0, res.output
    assert res.stdout.splitlines()[-1] == "probes can run"
    assert "FAIL" not in res.stdout
    assert "note kprobes" in res.stdout and "-> fix: n/a" in res.stdout


# -- examples and short flags in every command ---------------------------------------

@pytest.mark.parametrize("name", sorted(main.commands))
def test_every_help_ends_with_examples_of_its_own_command(run, name):
    res = run(name, "--help")
    assert res.exit_code == 0, res.output
    examples = res.stdout.split("\n  Examples:\n", 1)[1].strip("\n").split("\n\n")[0]
    lines = [line.split()[:3] for line in examples.splitlines() if line.strip()]
    assert lines and all(w[:2] == ["surgewatch", name] or w[:3] == ["sudo", "surgewatch", name]
                         or w[:2] == ["sudo", "systemctl"] for w in lines), examples


def test_short_flags_reach_record_tail_plot_and_run(run, monkeypatch):
    import collector.commands.profile_file as profile_file
    import collector.commands.plot as plot
    import collector.commands.record as record
    import collector.commands.run as run_mod
    import collector.commands.tail as tail

    seen = {}
    monkeypatch.setattr(record, "record_from",
                        lambda source, duration, since: seen.setdefault("record", duration)
                        and {"services": {}, "duration_s": duration})
    monkeypatch.setattr(profile_file, "write_profile", lambda doc, out: None)
    monkeypatch.setattr(tail, "run_tail", lambda source, **kw: seen.setdefault("tail", kw) and 0)

    class Drawn:
        ends, alerts = [1.0, 2.0], []
    monkeypatch.setattr(plot, "plot", lambda s, o, top, scale, since, until:
                        seen.setdefault("plot", top) and Drawn())
    monkeypatch.setattr(run_mod, "run_daemon", lambda path, ov, argv: seen.setdefault(
        "run", (path, ov.interval)) and 0)

    assert run("record", "--from", "x.msgpack", "-d", "30", "-o", "p.json").exit_code == 0
    assert run("tail", "x.msgpack", "-s", "nginx*", "-t", "reset,alert").exit_code == 0
    assert run("plot", "x.msgpack", "-n", "3", "-o", "x.html").exit_code == 0
    assert run("run", "-c", "/etc/sw.toml", "-i", "5").exit_code == 0
    assert seen["record"] == 30.0 and seen["plot"] == 3 and seen["run"] == ("/etc/sw.toml", 5.0)
    assert seen["tail"]["services"] == ("nginx*",)
    assert set(seen["tail"]["types"]) == {"reset", "alert"}


def test_record_short_interval_longer_than_duration_is_a_usage_error(run):
    res = run("record", "-d", "1", "-i", "2", "-o", "p.json")
    assert res.exit_code == 2 and "--interval 2.0 is longer than --duration 1.0" in res.stderr


def test_tail_default_directory_missing_says_where_it_comes_from(run, tmp_path):
    cfg = tmp_path / "sw.toml"
    cfg.write_text(f'[outputs.segments]\ndir = "{tmp_path}/segs"\n')
    res = run("tail", "--config", str(cfg))
    assert res.exit_code == 2
    assert stderr_lines(res) == [
        f"surgewatch: error: {tmp_path}/segs: no such directory: `surgewatch run` writes its "
        "segments there (sudo systemctl start surgewatch); or give SOURCE, or --socket for "
        "the live stream"]
