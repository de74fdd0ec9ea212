"""The live view's keys, as a state machine (no terminal)."""
from collector.views.live_state import ViewState


def test_sort_cycles_through_every_order_and_back():
    st = ViewState()
    seen = [st.sort]
    for _ in range(5):
        assert st.feed("s")
        seen.append(st.sort)
    assert seen == ["now", "avg", "bytes", "resets", "name", "now"]


def test_filter_applies_while_typing_enter_keeps_esc_restores():
    st = ViewState()
    st.feed("/ngx")
    assert (st.editing, st.pattern, st.filter) == ("ngx", "ngx", "")
    st.feed("\x7fi\r")
    assert (st.editing, st.pattern) == (None, "ngi")
    st.feed("/web\x1b")
    assert (st.editing, st.pattern) == (None, "ngi")
    st.feed("/\n")                                       # an empty filter: everything
    assert st.pattern == ""


def test_keys_typed_into_the_filter_are_not_commands():
    st = ViewState()
    st.feed("/qsrp")
    assert (st.quit, st.sort, st.detail, st.paused, st.pattern) == (False, "now", False,
                                                                    False, "qsrp")


def test_pause_detail_quit_and_unknown_keys():
    st = ViewState()
    assert not st.feed("x\x01")
    st.feed("p")
    st.feed("r")
    assert (st.paused, st.detail, st.quit) == (True, True, False)
    st.feed("pr")
    assert (st.paused, st.detail) == (False, False)
    st.feed("q")
    assert st.quit
