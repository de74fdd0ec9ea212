"""docs/surgewatch.8 (the man page `make install` installs) describes every command and
every option of collector/cli.py, each in its command's section, and renders cleanly."""
import re
import shutil
import subprocess
from pathlib import Path

import click
import pytest

from tests.support.cli import cli_runner
from collector.cli import main

PAGE = Path(__file__).resolve().parents[2] / "docs" / "surgewatch.8"


def sections():
    """{command: its .SS section as plain text (roff escapes undone)}."""
    text = re.sub(r"\\f[BIRP]", "", PAGE.read_text()).replace("\\-", "-")
    commands = text.split("\n.SH COMMANDS\n", 1)[1].split("\n.SH ", 1)[0]
    return {m.group(1): m.group(2) for m in
            re.finditer(r"^\.SS (\S+)\n(.*?)(?=^\.SS |\Z)", commands, re.DOTALL | re.MULTILINE)}


def test_every_command_has_a_section():
    assert set(sections()) == set(main.commands)


@pytest.mark.parametrize("name", sorted(main.commands))
def test_every_option_is_in_its_commands_section(name):
    body = sections()[name]
    missing = [o for p in main.commands[name].params if isinstance(p, click.Option)
               for o in p.opts if not re.search(rf"(?<![\w-]){re.escape(o)}(?![\w-])", body)]
    assert missing == [], f"docs/surgewatch.8, section {name}: describe {missing}"


def test_renders_without_warnings():
    groff = shutil.which("groff")
    if groff is None:
        pytest.skip("groff not installed (Debian's groff-base, with man-db)")
    res = subprocess.run([groff, "-man", "-Tutf8", "-ww", "-z", str(PAGE)],
                         capture_output=True, text=True, check=False, timeout=60)
    assert (res.returncode, res.stderr) == (0, "")


@pytest.mark.parametrize(("words", "cword", "want"), [
    ("surgewatch sn", 1, "plain,snapshot"),
    ("surgewatch run --no-s", 2, "plain,--no-segments\nplain,--no-socket"),
])
def test_bash_completion_completes_commands_and_options(words, cword, want):
    """What the script from `_SURGEWATCH_COMPLETE=bash_source surgewatch` (README.md;
    `make install` installs it) asks the command for."""
    res = cli_runner().invoke(main, [], prog_name="surgewatch", env={
        "_SURGEWATCH_COMPLETE": "bash_complete", "COMP_WORDS": words,
        "COMP_CWORD": str(cword)})
    assert res.exit_code == 0, res.output
    assert res.stdout.strip() == want


def test_run_names_the_bounds_a_local_user_meets():
    """The settings and metrics of docs/reliability.md "Hostile local user" are in run's
    section (docs/operations.md has them all; the man page the ones an operator meets)."""
    from collector.config.schema import PrometheusConfig, SocketConfig

    body = sections()["run"]
    prometheus = ["outputs.prometheus.max_connections", "request_timeout_s"]
    socket = ["outputs.socket.max_subscribers", "max_subscribers_per_uid", "stall_timeout_s"]
    for cls, names in ((PrometheusConfig, prometheus), (SocketConfig, socket)):
        for key in names:
            assert hasattr(cls, key.rsplit(".", 1)[-1]), key
    keys = prometheus + socket
    metrics = ["surgewatch_prometheus_connections",
               "surgewatch_prometheus_connections_dropped_total",
               "surgewatch_host_resource_errors_total"]
    missing = [w for w in keys + metrics if not re.search(rf"(?<![\w.]){re.escape(w)}(?!\w)",
                                                         body)]
    assert missing == [], f"docs/surgewatch.8, section run: name {missing}"


def plain_section(name):
    text = re.sub(r"\\f[BIRP]", "", PAGE.read_text()).replace("\\-", "-")
    return text.split(f"\n.SH {name}\n", 1)[1].split("\n.SH ", 1)[0]


def config_tables():
    """{table name ("" for the top level): its part of CONFIGURATION}, from .SS "[name]"."""
    parts = re.split(r'^\.SS "?(.*?)"?$', plain_section("CONFIGURATION"), flags=re.M)
    return {(h[1:-1] if h.startswith("[") else ""): body
            for h, body in zip(parts[1::2], parts[2::2])}


def test_configuration_names_every_config_key_in_its_table():
    """Every key `run` reads (the schema, collector/config/schema.py, as
    docs/operations.md's config block is checked against it) under its own table."""
    from tests.unit.test_operations_doc import expected_keys

    tables = config_tables()
    missing = []
    for key in sorted(expected_keys()):
        table, _, name = key.rpartition(".")
        # on an item's tag line (.B/.BR), as a word
        if not re.search(rf"^\.BR? .*(?<![\w.]){re.escape(name)}(?!\w)",
                         tables.get(table, ""), re.M):
            missing.append(key)
    assert missing == [], f"docs/surgewatch.8, CONFIGURATION: describe {missing}"
    assert "capacity" in tables          # user keys only, none by default


def test_environment_names_no_color_and_the_test_seams():
    from collector.config.flags import ENV_SEAMS

    body = plain_section("ENVIRONMENT")
    missing = [v for v in ("NO_COLOR", "JOURNAL_STREAM", *ENV_SEAMS) if v not in body]
    assert missing == [], f"docs/surgewatch.8, ENVIRONMENT: describe {missing}"
