"""Each command's `Examples:` epilog for its --help (a unit test checks every command has
one, naming only itself). Apart from collector/cli.py so that it reads as the options."""

DOCTOR = """Examples:

\b
  sudo surgewatch doctor              every check, exit 1 when one FAILs
  sudo surgewatch doctor | grep -v '^ok'    only what is missing or noted
"""

SNAPSHOT = """Examples:

\b
  surgewatch snapshot                 live view for 10 s, then the final table
  surgewatch snapshot 1 30            30 intervals of 1 s (as bcc's filetop)
  surgewatch snapshot -d 60 -n 10     one minute, the 10 loudest rows
  surgewatch snapshot -s 'nginx*' -s haproxy.service    only these services
  surgewatch snapshot -p 4242         only the log writes of pid 4242
  surgewatch snapshot | grep app      a pipe gets the final text table
  surgewatch snapshot --json | jq .   JSON instead
  surgewatch snapshot --resets        resets in detail: peers, states, idle times

\b
Live view keys: q quit (the final table follows), s cycle the sort (now,
avg, bytes, resets, name), / filter services (text: names containing it;
with * ? [: a glob), r resets detail, p pause. NO_COLOR=1: no colour;
alerting rows are marked "!" either way.
"""

RUN = """Examples:

\b
  sudo systemctl enable --now surgewatch    the daemon as installed (make install)
  sudo surgewatch run -c /etc/surgewatch/surgewatch.toml
  sudo surgewatch run                  as the unit: segments, socket, /metrics; stdout quiet
  sudo surgewatch run | surgewatch tail -      piped: the msgpack stream on stdout too
  sudo surgewatch run --format json --no-segments | jq .   JSON lines, nothing stored
  sudo surgewatch run -i 5 --prometheus 127.0.0.1:9478     drain every 5 s, other port
"""

TAIL = """Examples:

\b
  surgewatch tail                     the stored records, one line each
  surgewatch tail -f -t alert         alerts as they open and close
  surgewatch tail -f -v -t reset      every reset, one line each (not folded)
  surgewatch tail -t reset,alert -s 'nginx*'   resets and alerts of nginx
  surgewatch tail -p 4242 --since 1h  the last hour's records naming pid 4242
  surgewatch tail --since 10m --type stats    every interval's own health, last 10 min
  surgewatch tail --socket            the running daemon's live stream
  surgewatch tail --json | jq .       JSON lines (the default when piped)
"""

RECORD = """Examples:

\b
  sudo surgewatch record -d 300 -o test.json        watch this host for 5 minutes
  surgewatch record --from /var/lib/surgewatch -d 3600 -o prod.json   the last hour stored
  surgewatch record --from run.msgpack --since 10m -o - | jq .services
  surgewatch record --from-prometheus http://prom:9090 --match '{env="prod"}' --range 24h -o prod.json
"""

COMPARE = """Examples:

\b
  surgewatch compare prod.json test.json          exit 1 when a service got 3x louder
  surgewatch compare prod.json test.json --max-ratio 5 --min-rate 50
  surgewatch compare prod.json test.json --json   rows with status matched/new/gone
  surgewatch compare prod.json test.json --basis absolute   rates, not per connection
  surgewatch compare prod.json test.json -s 'app*'   gate only app* on a shared host
"""

PLOT = """Examples:

\b
  surgewatch plot /var/lib/surgewatch -o last.png    the newest run stored
  surgewatch plot /var/lib/surgewatch -o day.png --since 1d --until 2h
  surgewatch plot run.msgpack -o run.html            no matplotlib needed
  surgewatch plot run.msgpack -o run.svg -n 8 --scale linear
"""
