"""Counts in snapshot's sentences agree with their number ("1 write", "2 writes")."""
from collector.aggregate.resets import ResetWindow
from collector.commands.snapshot import _loss_note
from collector.views.resets_view import render_resets
from collector.views.text import plural


def test_plural():
    assert [plural(n, "write") for n in (0, 1, 2)] == ["0 writes", "1 write", "2 writes"]
    assert plural(1, "entry", "entries") == "1 entry" and plural(3, "entry", "entries") == \
        "3 entries"


def test_loss_note_singular_and_plural(capsys):
    _loss_note({"unresolved_writes": 1, "lost_writes": 2, "lost_events": 1})
    assert capsys.readouterr().err == (
        "surgewatch: note: 1 write by processes gone before their files could be "
        "identified, 2 writes not counted (kernel map full), 1 open event lost\n")



def test_loss_note_names_only_what_was_lost(capsys):
    _loss_note({"unresolved_writes": 4, "lost_writes": 0, "lost_events": 0})
    assert capsys.readouterr().err == (
        "surgewatch: note: 4 writes by processes gone before their files could be identified\n")
    _loss_note({"unresolved_writes": 0, "lost_writes": 0, "lost_events": 0})
    assert capsys.readouterr().err == ""

def test_reset_events_lost_singular():
    w = ResetWindow()
    w.add_interval({}, 1.0, events_lost=1)
    assert render_resets(w).splitlines()[1] == (
        "  (1 reset event lost: peers incomplete; counts exact)")


def test_resets_json_names_every_idle_bucket():
    from collector.aggregate.resets import ServiceResets
    from collector.views.resets_view import resets_json

    w = ResetWindow()
    h = [0] * 24
    h[12] = 3
    w.add_interval({"lb": ServiceResets("lb", sent=3, idle_hist=h)}, 1.0)
    doc = resets_json(w)
    assert len(doc["idle_buckets"]) == 24 == len(doc["idle_hist"])
    assert doc["idle_buckets"][12] == {"bucket": 12, "lo_ms": 2048, "hi_ms": 4096,
                                       "label": "2.05s-4.1s"}
    assert len(resets_json(ResetWindow())["idle_buckets"]) == 24     # none yet: still named
