"""docs/deploy/surgewatch-daemonset.yaml against the Kubernetes API types, offline: the
official Python client's models (Debian's python3-kubernetes) declare every field and its
type; the client's own deserialisation checks required fields. Played for real by podman:
tests/e2e/test_container_image.py."""
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
MANIFEST = ROOT / "docs" / "deploy" / "surgewatch-daemonset.yaml"
models = pytest.importorskip("kubernetes.client.models",
                             reason="python3-kubernetes is missing: make test-setup installs it")


def check_api_types(value, typ, where):
    """`value` is of the Kubernetes API type `typ` as the Python client's models declare
    it (openapi_types): every field known, every value of its type."""
    if typ.startswith("list["):
        assert isinstance(value, list), f"{where}: not a list"
        for i, v in enumerate(value):
            check_api_types(v, typ[5:-1], f"{where}[{i}]")
    elif typ.startswith("dict("):
        assert isinstance(value, dict), f"{where}: not a map"
        inner = typ[typ.index(",") + 1:-1].strip()
        for k, v in value.items():
            check_api_types(v, inner, f"{where}.{k}")
    elif typ in ("str", "int", "bool", "float"):
        want = {"str": str, "int": int, "bool": bool, "float": (int, float)}[typ]
        assert isinstance(value, want) and (typ == "bool" or not isinstance(value, bool)), \
            f"{where}: {value!r} is not {typ}"
    elif typ == "object":
        pass
    else:
        cls = getattr(models, typ)
        assert isinstance(value, dict), f"{where}: not an object ({typ})"
        fields = {json_name: attr for attr, json_name in cls.attribute_map.items()}
        for k, v in value.items():
            assert k in fields, f"{where}: {typ} has no field {k!r}"
            check_api_types(v, cls.openapi_types[fields[k]], f"{where}.{k}")


def test_the_daemonset_is_of_the_kubernetes_api_types():
    from kubernetes.client import ApiClient

    doc = yaml.safe_load(MANIFEST.read_text())
    assert (doc["apiVersion"], doc["kind"]) == ("apps/v1", "DaemonSet")
    check_api_types(doc, "V1DaemonSet", "DaemonSet")
    ds = ApiClient()._ApiClient__deserialize(doc, "V1DaemonSet")
    pod = ds.spec.template.spec
    assert pod.host_pid and pod.host_network
    (ctr,) = pod.containers
    assert ctr.security_context.privileged
    version = re.match(r"surgewatch \(([^)]+)\)",
                       (ROOT / "debian" / "changelog").read_text()).group(1)
    assert ctr.image == f"localhost/surgewatch:{version}"
    mounts = {m.mount_path for m in ctr.volume_mounts}
    assert {"/sys", "/sys/kernel/tracing", "/lib/modules", "/usr/src", "/var/lib/surgewatch",
            "/run/surgewatch", "/run/systemd/journal"} <= mounts
    assert {v.name for v in pod.volumes} == {m.name for m in ctr.volume_mounts}


@pytest.mark.parametrize("path, field, value", [
    (("spec", "template", "spec"), "hostPid", True),           # a misspelt field
    (("spec", "template", "spec"), "hostPID", "yes"),           # a value of the wrong type
    (("spec",), "selector", [{"app": "x"}]),                    # an object as a list
])
def test_the_check_finds_what_kubernetes_would_refuse(path, field, value):
    doc = yaml.safe_load(MANIFEST.read_text())
    node = doc
    for p in path:
        node = node[p]
    node[field] = value
    with pytest.raises(AssertionError):
        check_api_types(doc, "V1DaemonSet", "DaemonSet")
