"""One module per command: run, snapshot, gate (record/compare), tail, plot, doctor.
A command parses nothing (collector/cli.py does) and assembles no pipeline by hand."""
