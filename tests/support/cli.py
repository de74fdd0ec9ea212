"""click's CliRunner as click 8.2 and later behave, on every click the suite runs on:
`stdout` and `stderr` apart, `output` both (what a terminal shows). Debian 12's click 8.1
mixes the streams unless told not to (mix_stderr=False), and then `output` is stdout only."""
import inspect

from click.testing import CliRunner

_CLICK_81 = "mix_stderr" in inspect.signature(CliRunner.__init__).parameters


class _Both:
    """A click 8.1 Result whose `output` is stdout, then stderr."""

    def __init__(self, result):
        self._result = result

    def __getattr__(self, name):
        return getattr(self._result, name)

    @property
    def output(self):
        return self._result.stdout + self._result.stderr


class _Runner(CliRunner):
    def invoke(self, *args, **kwargs):
        result = super().invoke(*args, **kwargs)
        return _Both(result) if _CLICK_81 else result


def cli_runner(**kwargs):
    if _CLICK_81:
        kwargs.setdefault("mix_stderr", False)
    return _Runner(**kwargs)
