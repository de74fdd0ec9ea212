"""Container naming (collector/host/containers.py) on recorded and documented file trees:
podman's containers.json/images.json recorded from podman 4.3.1, docker's config.v2.json
and kubelet's /var/log/containers links in their documented formats."""
import json
import os
import shutil
import time
from pathlib import Path

import pytest

from collector.host.containers import (ContainerInfo, ContainerNames, parse_docker_config,
                                       parse_k8s_log_link, parse_podman_containers,
                                       parse_podman_images)

FIXTURES = Path(__file__).parent / "fixtures" / "containers"
PODMAN_WEB = "a16ba8e6dcfe40b703ae0b3ce2cb125bcf0af486e6b4d173c3d3d314c7eab0c3"
PODMAN_BYID = "178865984f898f7e4db6e46ab18ab0e4c5d8d3818555414349320c0c70827ee3"
PODMAN_IMAGE_ID = "c2e786cbdea1e3b3c88a3b5d037502769f309d2f31543d89e18a8161bd033e60"
DOCKER = "9f3c2b1a0e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c8b7a6f5e4d3c2b"
K8S_NGINX = "4b8e0f6a2c9d1e3f5a7b9c0d2e4f6a8b0c1d3e5f7a9b1c3d5e7f9a0b2c4d6e8f"
K8S_SHIPPER = "d1c2b3a4958677869a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f708192a3b4c5"
POD_DIR = "/var/log/pods/shop_web-7d4b9c6f5-x2k9p_8a3f1c52-6d0e-4b7a-9c21-5e4f3a2b1c0d"
UNKNOWN = "0" * 64


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def names(tree, **kw):
    return ContainerNames(root=str(FIXTURES / tree), **kw)


# -- podman (recorded) ------------------------------------------------------------------

def test_podman_name_and_image_from_recorded_store():
    info = names("podman").lookup(PODMAN_WEB)
    assert info == ContainerInfo(PODMAN_WEB, "sw-fixture-web", "localhost/sw-explore-img:a1b2",
                                 "podman")


def test_podman_container_created_by_image_id_still_names_the_image():
    assert names("podman").lookup(PODMAN_BYID).image == "localhost/sw-explore-img:a1b2"


def test_podman_image_from_images_json_when_metadata_has_none():
    text = (FIXTURES / "podman/var/lib/containers/storage/overlay-containers/containers.json"
            ).read_text()
    entries = json.loads(text)
    for e in entries:
        e["metadata"] = "{}"
    parsed = parse_podman_containers(json.dumps(entries))
    assert parsed[PODMAN_WEB] == ("sw-fixture-web", None, PODMAN_IMAGE_ID)
    images = parse_podman_images(
        (FIXTURES / "podman/var/lib/containers/storage/overlay-images/images.json").read_text())
    assert images == {PODMAN_IMAGE_ID: "localhost/sw-explore-img:a1b2"}


def test_podman_store_read_again_when_it_changes(tmp_path):
    shutil.copytree(FIXTURES / "podman", tmp_path, dirs_exist_ok=True)
    clock = Clock()
    lookup = ContainerNames(root=str(tmp_path), clock=clock, retry_s=10)
    assert lookup.lookup(UNKNOWN).source == "id"
    store = tmp_path / "var/lib/containers/storage/overlay-containers/containers.json"
    entries = json.loads(store.read_text())
    entries.append(dict(entries[0], id=UNKNOWN, names=["late"]))
    store.write_text(json.dumps(entries))
    clock.t = 9.9
    assert lookup.lookup(UNKNOWN).name == UNKNOWN[:12]      # not retried yet
    clock.t = 10.0
    assert lookup.lookup(UNKNOWN).name == "late"


@pytest.mark.parametrize("text", ["", "{", "{}", "[1, null]", '[{"id": 5}]',
                                  '[{"id": "x", "names": []}]',
                                  '[{"id": "x", "names": ["n"], "metadata": "{"}]'])
def test_podman_malformed_store(text):
    parsed = parse_podman_containers(text)
    assert parsed in ({}, {"x": ("n", None, None)})


# -- docker (documented format) -----------------------------------------------------------

def test_docker_name_image_and_log_path():
    info = names("docker").lookup(DOCKER)
    assert info == ContainerInfo(DOCKER, "shop-web", "nginx:1.25", "docker",
                                 f"/var/lib/docker/containers/{DOCKER}/{DOCKER}-json.log")


@pytest.mark.parametrize("doc", [
    "not json", "[]", json.dumps({"ID": "other", "Name": "/x"}), json.dumps({"ID": DOCKER}),
])
def test_docker_config_that_does_not_name_this_container(doc):
    assert parse_docker_config(doc, DOCKER) is None


def test_docker_image_falls_back_to_the_image_id():
    doc = json.dumps({"ID": DOCKER, "Name": "/a", "Image": "sha256:ab", "Config": None})
    assert parse_docker_config(doc, DOCKER).image == "sha256:ab"


# -- Kubernetes (kubelet's links) --------------------------------------------------------

@pytest.mark.parametrize("filename, expected", [
    (f"web-7d4b9c6f5-x2k9p_shop_nginx-{K8S_NGINX}.log",
     ("shop", "web-7d4b9c6f5-x2k9p", "nginx", K8S_NGINX)),
    (f"coredns-5d78c9869d-4xq7z_kube-system_coredns-{K8S_NGINX}.log",
     ("kube-system", "coredns-5d78c9869d-4xq7z", "coredns", K8S_NGINX)),
    (f"p_ns_my-side-car-{K8S_NGINX}.log", ("ns", "p", "my-side-car", K8S_NGINX)),
    (f"p_ns_c-{K8S_NGINX[:63]}.log", None),
    (f"p_ns_c-{K8S_NGINX}.txt", None),
    (f"ns_c-{K8S_NGINX}.log", None),
    ("README", None),
])
def test_k8s_link_names(filename, expected):
    assert parse_k8s_log_link(filename) == expected


def test_k8s_namespace_pod_container_and_pod_log():
    lookup = names("k8s")
    assert lookup.lookup(K8S_NGINX) == ContainerInfo(
        K8S_NGINX, "shop/web-7d4b9c6f5-x2k9p/nginx", None, "kubernetes",
        f"{POD_DIR}/nginx/0.log")
    assert lookup.lookup(K8S_SHIPPER).name == "shop/web-7d4b9c6f5-x2k9p/log-shipper"
    assert lookup.lookup(K8S_SHIPPER).log_path == f"{POD_DIR}/log-shipper/2.log"


def test_k8s_wins_over_docker_and_takes_its_image(tmp_path):
    # dockershim: docker runs the pod's containers, kubelet made the link
    shutil.copytree(FIXTURES / "docker", tmp_path, dirs_exist_ok=True)
    links = tmp_path / "var/log/containers"
    links.mkdir(parents=True)
    (links / f"api-0_prod_api-{DOCKER}.log").symlink_to("/var/log/pods/prod_api-0_u/api/0.log")
    info = ContainerNames(root=str(tmp_path)).lookup(DOCKER)
    assert (info.name, info.image, info.source) == ("prod/api-0/api", "nginx:1.25", "kubernetes")


def test_k8s_link_made_after_the_first_lookup(tmp_path):
    links = tmp_path / "var/log/containers"
    links.mkdir(parents=True)
    clock = Clock()
    lookup = ContainerNames(root=str(tmp_path), clock=clock, retry_s=5)
    assert lookup.lookup(K8S_NGINX) == ContainerInfo(K8S_NGINX, K8S_NGINX[:12], None, "id")
    (links / f"p_ns_c-{K8S_NGINX}.log").symlink_to("/var/log/pods/ns_p_u/c/0.log")
    clock.t = 5
    assert lookup.lookup(K8S_NGINX).name == "ns/p/c"


def test_k8s_link_made_within_the_directorys_mtime_tick(tmp_path):
    # a coarse file-system clock: the link's creation leaves the directory's mtime as it was
    links = tmp_path / "var/log/containers"
    links.mkdir(parents=True)
    tick = links.stat().st_mtime_ns
    clock = Clock()
    lookup = ContainerNames(root=str(tmp_path), clock=clock, retry_s=5)
    assert lookup.lookup(K8S_NGINX).source == "id"
    (links / f"p_ns_c-{K8S_NGINX}.log").symlink_to("/var/log/pods/ns_p_u/c/0.log")
    os.utime(links, ns=(tick, tick))
    clock.t = 5
    assert lookup.lookup(K8S_NGINX).name == "ns/p/c"


def test_an_old_unchanged_k8s_directory_is_not_listed_again(tmp_path, monkeypatch):
    links = tmp_path / "var/log/containers"
    links.mkdir(parents=True)
    old = time.time_ns() - 3600 * 10**9
    os.utime(links, ns=(old, old))
    clock = Clock()
    lookup = ContainerNames(root=str(tmp_path), clock=clock, retry_s=5)
    assert lookup.lookup(K8S_NGINX).source == "id"
    listed = []
    real = os.listdir
    monkeypatch.setattr(os, "listdir", lambda p: listed.append(p) or real(p))
    clock.t = 5
    assert lookup.lookup(K8S_NGINX).source == "id"
    assert listed == []


# -- fallback and cache ------------------------------------------------------------------

def test_unknown_container_is_its_short_id(tmp_path):
    assert ContainerNames(root=str(tmp_path)).lookup(UNKNOWN) == \
        ContainerInfo(UNKNOWN, "000000000000", None, "id")


def test_found_names_are_cached_and_looked_up_by_name(tmp_path):
    shutil.copytree(FIXTURES / "docker", tmp_path, dirs_exist_ok=True)
    lookup = ContainerNames(root=str(tmp_path))
    assert lookup.lookup(DOCKER).name == "shop-web"
    shutil.rmtree(tmp_path / "var")                 # the container was removed
    assert lookup.lookup(DOCKER).name == "shop-web"
    assert lookup.by_name("shop-web").image == "nginx:1.25"
    assert lookup.by_name("000000000000") is None


def test_cache_is_bounded(tmp_path):
    lookup = ContainerNames(root=str(tmp_path), max_entries=2)
    for i in range(5):
        lookup.lookup(f"{i:064x}")
    assert len(lookup._cache) == 2
