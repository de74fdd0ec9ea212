"""Command line: parses arguments and wires objects; the work, and what it prints, happens
in collector/commands/ (each --help's Examples: collector/commands/examples.py). Each command
imports its module when it runs, so that a process carries only its own command's code
(the daemon's RSS and start-up time)."""
import sys

import click

from collector import __version__, config
from collector.commands import examples
from collector.errors import BadInput, SurgewatchError


def _fail(err):
    click.echo(f"surgewatch: error: {err}", err=True)
    sys.exit(err.exit_code)


class _Group(click.Group):
    """Turns SurgewatchError into one line and its exit code, never a traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except SurgewatchError as e:
            _fail(e)
        except KeyboardInterrupt:
            sys.exit(130)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(version=__version__, prog_name="surgewatch")
def main():
    """surgewatch: per-service log-write rates and TCP resets, from kernel probes.

    Exit codes: 0 ok, 1 failure (doctor: problems found), 2 bad usage or environment
    (missing privileges, tracefs, headers, bad input).
    """


@main.command(epilog=examples.DOCTOR)
def doctor():
    """Check kernel, BTF, tracefs, headers, tracepoints and privileges."""
    from collector.commands.doctor import run_doctor

    sys.exit(run_doctor())


def _rules_option(f):
    f = click.option("--log-dir", "log_dirs", multiple=True, metavar="DIR",
                     help="Directory whose files are logs (repeatable; default /var/log/).")(f)
    f = click.option("--log-glob", "log_globs", multiple=True, metavar="PATTERN",
                     help="File name pattern of logs (repeatable; default *.log, *.log.[0-9]*).")(f)
    f = click.option("--journald-socket", "journald_sockets", multiple=True, metavar="PATH",
                     help="Listening socket whose stream clients log "
                          "(repeatable; default /run/systemd/journal/stdout).")(f)
    return f


def _settings(log_dirs, log_globs, journald_sockets, config_path=None):
    """The config file's settings (default path; missing = defaults) with the flags
    applied through the one Overrides path, as `run` does."""
    flags = config.Overrides(log_dirs=tuple(log_dirs), log_globs=tuple(log_globs),
                             journald_sockets=tuple(journald_sockets))
    return flags.apply(config.load(config_path))


@main.command(epilog=examples.SNAPSHOT)
@click.argument("interval_arg", metavar="[INTERVAL]", required=False,
                type=click.FloatRange(min=0.05))
@click.argument("count", required=False, type=click.IntRange(min=1))
@click.option("-d", "--duration", default=None, type=click.FloatRange(min=0.1),
              help="Seconds to watch.  [default: 10; INTERVAL x COUNT when COUNT is given]")
@click.option("-i", "--interval", default=None, type=click.FloatRange(min=0.05),
              help="Seconds between kernel map drains (and refreshes).  [default: 1]")
@click.option("-n", "--top", default=20, show_default=True, type=click.IntRange(min=1),
              help="Rows to show; the rest are folded into (others).")
@click.option("-s", "--service", "services", multiple=True, metavar="PATTERN",
              help="Only services matching PATTERN (glob on the whole name, as tail; "
                   "repeatable).")
@click.option("-p", "--pid", "pids", multiple=True, type=click.IntRange(min=1), metavar="PID",
              help="Only log writes of PID (repeatable); resets: those of its service.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of the table.")
@click.option("--msgpack", "msgpack_path", type=click.Path(dir_okay=False), metavar="FILE",
              help="Also write the stream records (docs/stream.md, unfiltered) to FILE.")
@click.option("--resets", "resets_view", is_flag=True,
              help="Show TCP resets in detail: services, peers, states, kinds, reasons, "
                   "idle-before-reset histogram, open connections.")
@click.option("--idle-threshold", default=300.0, show_default=True,
              type=click.FloatRange(min=0), metavar="SECONDS",
              help="Flag open connections idle at least this long as at risk of an idle reset.")
@_rules_option
def snapshot(interval_arg, count, duration, interval, top, services, pids, as_json,
             msgpack_path, resets_view, idle_threshold, log_dirs, log_globs, journald_sockets):
    """Watch the host for a while; show which services write their logs, how fast, and
    which send or receive TCP resets.

    On a terminal: a live view (rate now beside the window average, resets, alerting
    rows marked), then the final table. Piped or redirected: the final table only.
    """
    from collector.commands.snapshot import run_snapshot
    from collector.aggregate.selection import Selection

    if interval_arg is not None and interval is not None:
        raise click.UsageError("the interval is given twice (INTERVAL and -i/--interval): "
                               "keep one")
    if count is not None and duration is not None:
        raise click.UsageError("COUNT and -d/--duration both set the length: keep one")
    interval = interval_arg if interval_arg is not None else (interval or 1.0)
    if count is not None:
        duration = interval * count
    duration = 10.0 if duration is None else duration
    cfg = _settings(log_dirs, log_globs, journald_sockets)
    if interval > duration:
        raise click.BadParameter(f"--interval {interval} is longer than --duration {duration}",
                                 param_hint="--interval")
    run_snapshot(duration=duration, interval=interval, top=top, as_json=as_json,
                 msgpack_path=msgpack_path, rules=cfg.log_rules, argv=sys.argv,
                 resets_view=resets_view, idle_threshold=idle_threshold, probes=cfg.probes,
                 selection=Selection(tuple(services), tuple(pids)), alerts=cfg.alerts,
                 capacity=cfg.capacity)


@main.command("run", epilog=examples.RUN)
@click.option("-c", "--config", "config_path", type=click.Path(dir_okay=False), metavar="FILE",
              help="TOML config (default /etc/surgewatch/surgewatch.toml; missing = defaults).")
@click.option("-i", "--interval", type=click.FloatRange(min=0.05, max=3600), default=None,
              help="Seconds between kernel map drains (overrides the config; default 1).")
@click.option("--format", "fmt", type=click.Choice(["auto", "msgpack", "json", "none"]),
              default=None, help="Records on stdout: msgpack stream, JSON lines, or none; "
              "default auto: the msgpack stream into a pipe or file, none on a terminal.")
@click.option("--segments-dir", metavar="DIR", default=None,
              help="Segment store directory (default /var/lib/surgewatch).")
@click.option("--no-segments", is_flag=True, help="Do not write segment files.")
@click.option("--socket", "socket_path", metavar="PATH", default=None,
              help="Stream socket for subscribers (default /run/surgewatch/stream.sock).")
@click.option("--no-socket", is_flag=True, help="No stream socket.")
@click.option("--prometheus", "prometheus_listen", metavar="HOST:PORT", default=None,
              help="Serve Prometheus /metrics here (default 127.0.0.1:9477).")
@click.option("--no-prometheus", is_flag=True, help="No Prometheus endpoint.")
@click.option("--no-resets", is_flag=True, help="Do not load the TCP reset probe.")
@_rules_option
def run_cmd(config_path, interval, fmt, segments_dir, no_segments, socket_path, no_socket,
            prometheus_listen, no_prometheus, no_resets, log_dirs, log_globs,
            journald_sockets):
    """Run the collector until SIGTERM/SIGINT; SIGHUP reloads the config."""
    from collector.commands.run import run_daemon

    overrides = config.Overrides(interval=interval, format=fmt, segments_dir=segments_dir,
                          no_segments=no_segments, log_dirs=tuple(log_dirs),
                          log_globs=tuple(log_globs), journald_sockets=tuple(journald_sockets),
                          socket_path=socket_path, no_socket=no_socket,
                          prometheus_listen=prometheus_listen, no_prometheus=no_prometheus,
                          no_resets=no_resets)
    sys.exit(run_daemon(config_path, overrides, argv=sys.argv))


@main.command("tail", epilog=examples.TAIL)
@click.argument("source", required=False, metavar="[SOURCE]")
@click.option("--json", "as_json", is_flag=True, default=None,
              help="JSON lines (default when stdout is not a terminal).")
@click.option("-f", "--follow", is_flag=True, help="Keep waiting for new records.")
@click.option("--since", metavar="WHEN",
              help="Only records from then on: 30s, 10m, 2h, 1d ago, unix seconds, or ISO time.")
@click.option("-s", "--service", "services", multiple=True, metavar="PATTERN",
              help="Only records (rate, reset, alert) of services matching PATTERN "
                   "(glob, repeatable).")
@click.option("-p", "--pid", "pids", multiple=True, type=click.IntRange(min=1), metavar="PID",
              help="Only records (rate, reset, alert) naming PID (repeatable): a rate record "
                   "with it among the service's pids, its resets, alerts with it on top.")
@click.option("-t", "--type", "types", multiple=True, metavar="TYPE[,TYPE]",
              help="Only records of these types: meta, rate, stats, reset, alert, dropped "
                   "(repeatable; with stats, healthy intervals get a line too).")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), metavar="FILE",
              help="Config whose segment directory is the default SOURCE.")
@click.option("--socket", "from_socket", is_flag=True,
              help="Read the live stream of the running daemon from its socket "
                   "(SOURCE, else the configured outputs.socket.path).")
@click.option("-v", "--verbose", is_flag=True,
              help="A line for every reset (in a terminal a service's resets of one "
                   "interval get one line: count, peers, interval; JSON is never folded).")
def tail_cmd(source, as_json, follow, since, services, pids, types, config_path, from_socket,
             verbose):
    """Show records from a segment directory, a stream file, the daemon's stream socket
    or - (stdin).

    SOURCE defaults to the configured segment directory (/var/lib/surgewatch); with
    --socket, to the configured socket (/run/surgewatch/stream.sock).
    """
    from collector.commands.tail import default_source, parse_since, parse_types, run_tail

    types = parse_types(types)
    if source is None:
        source = default_source(config.load(config_path), from_socket)
    sys.exit(run_tail(source, as_json=as_json, follow=follow,
                      since=parse_since(since) if since else None, services=services,
                      socket=from_socket, types=types, pids=pids, verbose=verbose))


@main.command("record", epilog=examples.RECORD)
@click.option("-o", "--output", "output", required=True, metavar="PROFILE",
              help="Profile file to write (JSON, docs/detection.md; - for stdout).")
@click.option("-d", "--duration", type=click.FloatRange(min=0.1), default=None, metavar="S",
              help="Seconds to watch live (default 60); with --from: the last S seconds.")
@click.option("-i", "--interval", default=1.0, show_default=True,
              type=click.FloatRange(min=0.05), help="Seconds between kernel map drains (live).")
@click.option("--from", "source", metavar="SEGMENTS_DIR_OR_FILE", default=None,
              help="Profile stored records (segment directory or stream file) instead of "
                   "watching the host.")
@click.option("--since", metavar="WHEN", help="With --from: only records from then on.")
@click.option("--from-prometheus", "prom_url", metavar="URL", default=None,
              help="Profile a fleet from the Prometheus server at URL (per service across "
                   "hosts: fleet total, per-host median and p95).")
@click.option("--match", metavar="SELECTOR", default="{}", show_default=True,
              help="With --from-prometheus: the label selector of the hosts, e.g. "
                   "'{env=\"prod\"}'.")
@click.option("--range", "prom_range", metavar="DURATION", default="24h", show_default=True,
              help="With --from-prometheus: how far back from --end (90m, 24h, 7d).")
@click.option("--step", metavar="DURATION", default=None,
              help="With --from-prometheus: the rate resolution (default 60s; at least "
                   "twice the scrape interval).")
@click.option("--end", metavar="WHEN", default=None,
              help="With --from-prometheus: the end of the range (default now; as --since).")
@click.option("--bearer-token-file", metavar="FILE", default=None,
              help="With --from-prometheus: send the token in FILE (Authorization: Bearer).")
@click.option("--ca-file", metavar="FILE", default=None,
              help="With --from-prometheus: trust the CA certificates in FILE (PEM) for https.")
@_rules_option
def record_cmd(output, duration, interval, source, since, prom_url, match, prom_range, step,
               end, bearer_token_file, ca_file, log_dirs, log_globs, journald_sockets):
    """Record a profile: per-service rates and their spread over a window."""
    from collector.commands.profile_file import write_profile
    from collector.commands.record import record_from, record_live, written_note
    from collector.commands.tail import parse_since

    prom_only = {"--match": match != "{}", "--range": prom_range != "24h", "--step": step,
                 "--end": end, "--bearer-token-file": bearer_token_file, "--ca-file": ca_file}
    if prom_url is not None:
        from collector.commands.record import parse_duration, record_from_prometheus

        if source is not None or since or duration is not None:
            raise click.BadParameter("not with --from, --since or --duration",
                                     param_hint="--from-prometheus")
        doc = record_from_prometheus(
            prom_url, match=match, range_s=parse_duration(prom_range, "--range"),
            step=parse_duration(step, "--step") if step else None,
            end=_when(end, "--end") if end else None,
            bearer_token_file=bearer_token_file, ca_file=ca_file)
    elif any(prom_only.values()):
        flag = next(k for k, v in prom_only.items() if v)
        raise click.BadParameter("only with --from-prometheus", param_hint=flag)
    elif source is not None:
        doc = record_from(source, duration=duration,
                          since=parse_since(since) if since else None)
    else:
        if since:
            raise click.BadParameter("only with --from", param_hint="--since")
        duration = 60.0 if duration is None else duration
        if interval > duration:
            raise click.BadParameter(f"--interval {interval} is longer than --duration "
                                     f"{duration}", param_hint="--interval")
        cfg = _settings(log_dirs, log_globs, journald_sockets)
        doc = record_live(duration, interval, cfg.log_rules, argv=sys.argv, probes=cfg.probes)
    write_profile(doc, output)
    if output != "-":
        click.echo(written_note(doc, output), err=True)


def _when(text, flag):
    from collector.commands.tail import parse_since

    try:
        return parse_since(text)
    except BadInput as e:
        raise BadInput(str(e).replace("--since", flag, 1)) from None


@main.command("compare", epilog=examples.COMPARE)
@click.argument("baseline", metavar="BASELINE")
@click.argument("current", metavar="CURRENT")
@click.option("--max-ratio", default=3.0, show_default=True, type=click.FloatRange(min=1.0),
              help="Fail when a service's rate is more than this many times its baseline.")
@click.option("--min-rate", default=10.0, show_default=True, type=click.FloatRange(min=0),
              help="Rates (log writes/s, resets/s) at or below this never fail.")
@click.option("--min-bytes-rate", default=10240.0, show_default=True,
              type=click.FloatRange(min=0), help="The same for log bytes/s.")
@click.option("--stat", type=click.Choice(["mean", "median", "p90", "max"]), default="mean",
              show_default=True, help="Which rate of each profile to compare.")
@click.option("--basis", type=click.Choice(["auto", "absolute", "per-connection"]),
              default="auto", show_default=True,
              help="auto: per connection where both profiles measured load (enough "
              "connections), else absolute rates; or force one (docs/detection.md).")
@click.option("--min-conns", default=100, show_default=True, type=click.IntRange(min=1),
              help="Connections a service needs in the current profile to be judged per "
              "connection.")
@click.option("-s", "--service", "services", multiple=True, metavar="PATTERN",
              help="Only services matching PATTERN (glob on the whole name, repeatable); "
              "one matching no service is an error.")
@click.option("--json", "as_json", is_flag=True, help="JSON instead of the table.")
def compare_cmd(baseline, current, max_ratio, min_rate, min_bytes_rate, stat, basis,
                min_conns, services, as_json):
    """Compare two profiles (services by name): exit 0 within the limits, 1 when a service
    exceeds them, 2 on bad input."""
    from collector.commands.compare import run_compare

    sys.exit(run_compare(baseline, current, max_ratio=max_ratio, min_rate=min_rate,
                         min_bytes_rate=min_bytes_rate, stat=stat, as_json=as_json,
                         basis=basis.replace("-", "_"), min_conns=min_conns,
                         services=services))


@main.command("plot", epilog=examples.PLOT)
@click.argument("source", metavar="SOURCE")
@click.option("-o", "--output", "output", required=True, metavar="FILE",
              help="FILE.png or FILE.svg (matplotlib: the plot extra), or FILE.html "
                   "(self-contained, nothing to install).")
@click.option("-n", "--top", default=6, show_default=True, type=click.IntRange(min=1),
              help="Services drawn per panel; the rest are summed as (others).")
@click.option("--scale", type=click.Choice(["auto", "linear", "log"]), default="auto",
              show_default=True,
              help="Y axis of the rate panels; auto: log when a panel's values span more "
                   "than 100x.")
@click.option("--since", metavar="WHEN",
              help="Draw the records from then on (10m, 2h, 1d ago; unix seconds; "
                   "2026-01-31T14:05). Default: the newest run, back to a longer gap.")
@click.option("--until", metavar="WHEN", help="Draw the records up to then (as --since).")
def plot_cmd(source, output, top, scale, since, until):
    """Draw log writes/s, resets sent/s and received/s per service over time, and the idle
    time before each reset, from a segment directory or a stream file, with alert spans
    shaded and labelled."""
    from collector.commands.plot import plot, report

    series = plot(source, output, top=top, scale=scale,
                  since=_when(since, "--since") if since else None,
                  until=_when(until, "--until") if until else None)
    for line in report(series, output):
        click.echo(line, err=True)


if __name__ == "__main__":
    main()
