"""[capacity] in the config file: "path glob" = lines/s, checked like every other table."""
import os

import pytest

from collector import config
from collector.errors import EXIT_USAGE, BadInput


def load(tmp_path, text):
    p = tmp_path / "sw.toml"
    p.write_text(text)
    os.chmod(p, 0o644)
    return config.load(str(p)), str(p)


def test_capacity_globs_in_file_order(tmp_path):
    cfg, _ = load(tmp_path, '[capacity]\n"/var/log/app/*.log" = 5000\n'
                            '"journald:*" = 2.5\n"syslog:/dev/log" = 100\n')
    assert cfg.capacity == (("/var/log/app/*.log", 5000.0), ("journald:*", 2.5),
                            ("syslog:/dev/log", 100.0))


def test_no_capacity_by_default(tmp_path):
    cfg, _ = load(tmp_path, "interval = 1\n")
    assert cfg.capacity == ()
    cfg, _ = load(tmp_path, "[capacity]\n")
    assert cfg.capacity == ()


@pytest.mark.parametrize("text, reason", [
    ("capacity = 5", 'capacity: expected a table of "path glob" = lines/s, got an integer'),
    ('[capacity]\n"app.log" = 5',
     'capacity."app.log": not a path glob: start it with / (a file), or with a channel '
     'such as journald: or syslog:'),
    ('[capacity]\n"" = 5', 'capacity."": not a path glob: start it with / (a file), or '
                           'with a channel such as journald: or syslog:'),
    ('[capacity]\n"/a/*" = "fast"', 'capacity."/a/*": expected a number of lines/s, got a '
                                    'string'),
    ('[capacity]\n"/a/*" = true', 'capacity."/a/*": expected a number of lines/s, got a '
                                  'boolean'),
    ('[capacity]\n"/a/*" = 0', 'capacity."/a/*": must be a number of lines/s above 0 (at '
                               'most 1e12), got 0'),
    ('[capacity]\n"/a/*" = -3.5', 'capacity."/a/*": must be a number of lines/s above 0 '
                                  '(at most 1e12), got -3.5'),
    ('[capacity]\n"/a/*" = inf', 'capacity."/a/*": must be a number of lines/s above 0 (at '
                                 'most 1e12), got inf'),
    ('[capacity]\n"/a/*" = [1]', 'capacity."/a/*": expected a number of lines/s, got an '
                                 'array'),
    ('[capacity.x]\ny = 1', 'capacity."x": not a path glob: start it with / (a file), or '
                            'with a channel such as journald: or syslog:'),
])
def test_bad_capacity_is_one_line(tmp_path, text, reason):
    with pytest.raises(BadInput) as e:
        load(tmp_path, text)
    path = str(tmp_path / "sw.toml")
    assert str(e.value) == f"{path}: {reason}"
    assert "\n" not in str(e.value) and e.value.exit_code == EXIT_USAGE


def test_too_many_globs(tmp_path):
    text = "[capacity]\n" + "".join(f'"/a/{i}/*" = 1\n' for i in range(257))
    with pytest.raises(BadInput) as e:
        load(tmp_path, text)
    assert str(e.value).endswith("capacity: 257 globs; at most 256")
