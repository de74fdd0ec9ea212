"""Each registered probe says its own doctor lines (Probe.checks): without tracefs only
what BTF alone tells (no program loaded, nothing needs root)."""
import os

import pytest

from collector.probes import btf as B
from collector.probes.btf import BTF
from collector.probes.checks import DoctorHost
from collector.probes.registry import probe_classes


def _readable(path):
    return os.path.exists(path) and os.access(path, os.R_OK)


def test_every_registered_probe_has_a_label_and_checks_nothing_without_btf():
    host = DoctorHost(btf=None, tracefs_root=None, privileged=False)
    for probe in probe_classes():
        assert probe.label and probe.checks(host) == []


@pytest.mark.skipif(not _readable(B.VMLINUX_BTF), reason=f"{B.VMLINUX_BTF} not readable")
def test_with_btf_only_the_struct_offsets_line():
    host = DoctorHost(btf=BTF.load(), tracefs_root=None, privileged=False)
    lines = {p.name: p.checks(host) for p in probe_classes()}
    assert [c.name for c in lines["logwrites"]] == ["struct offsets"]
    assert lines["logwrites"][0].ok, lines["logwrites"][0].detail
    assert lines["resets"] == []          # its layout check reads tracefs
