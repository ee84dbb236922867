"""Offline checks of deploy/k8s: a tiny kustomize renders each overlay, then assertions catch the
mistakes a cluster would only reveal at deploy time (a selector that matches nothing, a typo in an
OPSAT_* key, a probe on the wrong port, a topic name the code never uses...).

The loader supports exactly what the overlays use (resources, namespace, images, replicas, patches with
strategic merge); any other kustomization field fails the test instead of being silently ignored.
When `kustomize` or `kubectl` is on PATH, a test also compares the loader with the real thing.
"""

from __future__ import annotations

import copy
import importlib
import os
import re
import shutil
import subprocess
from pathlib import Path
from unittest import mock
from urllib.parse import urlparse

import pytest
import yaml

from opsat.common.settings import ServiceSettings

REPO = Path(__file__).resolve().parents[3]
K8S = REPO / "deploy" / "k8s"
OVERLAYS = sorted(p.name for p in (K8S / "overlays").iterdir() if p.is_dir())

POD_KINDS = {"Deployment", "Job"}
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition"}
DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


def settings_class(service: str) -> type[ServiceSettings]:
    """The service's own subclass (opsat.<service>.settings) when it has one: it may add OPSAT_* fields."""
    try:
        module = importlib.import_module(f"opsat.{service}.settings")
    except ModuleNotFoundError:
        return ServiceSettings
    subclasses = [c for c in vars(module).values()
                  if isinstance(c, type) and issubclass(c, ServiceSettings) and c is not ServiceSettings]
    return subclasses[0] if len(subclasses) == 1 else ServiceSettings


def known_settings(service: str) -> set[str]:
    return {f"OPSAT_{name.upper()}" for name in settings_class(service).model_fields}


def topics_the_worker_creates(service: str, settings: ServiceSettings) -> dict[str, int]:
    """{topic: partitions} that `opsat-<service> worker` creates at start (from the service's description)."""
    return importlib.import_module(f"opsat.{service}.service").SERVICE.topics(settings)


# --- a small kustomize ---------------------------------------------------------------------------------

SUPPORTED_FIELDS = {"apiVersion", "kind", "resources", "namespace", "images", "replicas", "patches"}
# Strategic-merge keys of the built-in kinds we patch; lists elsewhere (and in custom resources) are replaced.
MERGE_KEYS = {"containers": "name", "initContainers": "name", "env": "name", "volumes": "name",
              "volumeMounts": "mountPath", "ports": "containerPort"}
BUILTIN_GROUPS = {"", "apps", "batch", "policy", "autoscaling", "networking.k8s.io"}


def group_of(obj: dict) -> str:
    api = obj["apiVersion"]
    return api.split("/")[0] if "/" in api else ""


def obj_id(obj: dict) -> tuple[str, str, str]:
    return obj["kind"], obj["metadata"].get("namespace", ""), obj["metadata"]["name"]


def read_kustomization(folder: Path) -> dict:
    return yaml.safe_load((folder / "kustomization.yaml").read_text())


def read_docs(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def strategic_merge(base: dict, patch: dict, builtin: bool) -> None:
    for key, value in patch.items():
        if value is None:
            base.pop(key, None)
        elif isinstance(value, dict) and isinstance(base.get(key), dict):
            strategic_merge(base[key], value, builtin)
        elif builtin and key in MERGE_KEYS and isinstance(value, list) and isinstance(base.get(key), list):
            merge_key = MERGE_KEYS[key]
            by_key = {item[merge_key]: item for item in base[key]}
            for item in value:
                if item[merge_key] in by_key:
                    strategic_merge(by_key[item[merge_key]], item, builtin)
                else:
                    base[key].append(copy.deepcopy(item))
        else:
            base[key] = copy.deepcopy(value)


def apply_patch(objs: list[dict], folder: Path, entry: dict) -> None:
    assert set(entry) <= {"path", "target"}, f"{folder}: unsupported patch form {entry}"
    for patch in read_docs(folder / entry["path"]):
        # Without a target the patch names its resource; a target's name is a regex, as in kustomize.
        target = entry.get("target") or {"kind": patch["kind"], "name": re.escape(patch["metadata"]["name"])}
        assert set(target) <= {"group", "kind", "name"}, f"{folder}: unsupported patch target {target}"
        hits = [o for o in objs
                if o["kind"] == target["kind"]
                and ("name" not in target or re.fullmatch(target["name"], o["metadata"]["name"]))
                and ("group" not in target or group_of(o) == target["group"])]
        assert hits, f"{folder / entry['path']}: patch matches no resource ({target})"
        body = {k: v for k, v in patch.items() if k not in ("apiVersion", "kind")}
        body["metadata"] = {k: v for k, v in patch["metadata"].items() if k not in ("name", "namespace")}
        for obj in hits:
            strategic_merge(obj, body, group_of(obj) in BUILTIN_GROUPS)


def pod_spec(obj: dict) -> dict:
    return obj["spec"]["template"]["spec"]


def containers(obj: dict) -> list[dict]:
    spec = pod_spec(obj)
    return spec.get("initContainers", []) + spec["containers"]


def split_image(image: str) -> tuple[str, str | None]:
    """Split "registry:5000/app:1.2" into ("registry:5000/app", "1.2"); a digest counts as no tag."""
    name, sep, tag = image.split("@")[0].rpartition(":")
    return (name, tag) if sep and "/" not in tag else (image.split("@")[0], None)


def set_image(obj: dict, entry: dict) -> None:
    for container in containers(obj):
        name, tag = split_image(container["image"])
        if name == entry["name"]:
            new, tag = entry.get("newName", name), entry.get("newTag", tag)
            container["image"] = f"{new}@{entry['digest']}" if "digest" in entry else f"{new}:{tag}" if tag else new


def build(folder: Path) -> list[dict]:
    """Render a kustomization folder: what `kustomize build` would print, for the features we use."""
    kust = read_kustomization(folder)
    unsupported = set(kust) - SUPPORTED_FIELDS
    assert not unsupported, f"{folder}: the test loader does not support {unsupported}; extend it"
    objs: list[dict] = []
    for entry in kust.get("resources", []):
        path = folder / entry
        objs += build(path) if path.is_dir() else copy.deepcopy(read_docs(path))
    for entry in kust.get("patches", []):
        apply_patch(objs, folder, entry)
    if namespace := kust.get("namespace"):
        for obj in objs:
            if obj["kind"] not in CLUSTER_SCOPED:
                obj["metadata"]["namespace"] = namespace
    for entry in kust.get("replicas", []):
        hits = [o for o in objs if o["kind"] == "Deployment" and o["metadata"]["name"] == entry["name"]]
        assert hits, f"{folder}: replicas entry {entry['name']} matches no Deployment"
        for obj in hits:
            obj["spec"]["replicas"] = entry["count"]
    for entry in kust.get("images", []):
        for obj in objs:
            if obj["kind"] in POD_KINDS:
                set_image(obj, entry)
    ids = [obj_id(o) for o in objs]
    assert len(ids) == len(set(ids)), f"{folder}: duplicate resources {sorted(i for i in ids if ids.count(i) > 1)}"
    return objs


# --- helpers over a rendered overlay ---------------------------------------------------------------------

def of_kind(objs: list[dict], kind: str) -> list[dict]:
    return [o for o in objs if o["kind"] == kind]


def one(objs: list[dict], kind: str, name: str) -> dict:
    hits = [o for o in objs if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(hits) == 1, f"expected one {kind}/{name}, found {len(hits)}"
    return hits[0]


def selects(selector: dict, labels: dict) -> bool:
    assert set(selector) <= {"matchLabels"}, f"only matchLabels selectors are checked here: {selector}"
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


def pod_labels(obj: dict) -> dict:
    return obj["spec"]["template"]["metadata"]["labels"]


def service_of(obj: dict) -> str:
    return obj["metadata"]["labels"]["app.kubernetes.io/name"]


def container_env(objs: list[dict], container: dict) -> tuple[dict[str, str], dict[str, dict]]:
    """(plain values incl. ConfigMaps pulled in with envFrom, secret references) of one container."""
    values: dict[str, str] = {}
    for source in container.get("envFrom", []):
        assert set(source) == {"configMapRef"}, f"{container['name']}: only configMapRef envFrom: {source}"
        values.update(one(objs, "ConfigMap", source["configMapRef"]["name"])["data"])
    secrets = {}
    for var in container.get("env", []):
        if "value" in var:
            values[var["name"]] = var["value"]
        else:
            ref = var["valueFrom"]
            assert set(ref) == {"secretKeyRef"}, f"{var['name']}: only secretKeyRef is expected: {ref}"
            secrets[var["name"]] = ref["secretKeyRef"]
    return values, secrets


def settings_from(values: dict[str, str], service: str | None = None) -> ServiceSettings:
    """Build the settings exactly as the service would from this environment (no other OPSAT_* leaks in)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPSAT_")} | values
    # A dev-mode key lives in the Secret, which the manifests do not hold: stand in for it.
    env.setdefault("OPSAT_AUTH_DEV_KEY", "stand-in-for-the-secret-" + "0" * 40)
    with mock.patch.dict(os.environ, env, clear=True):
        return settings_class(service)() if service else ServiceSettings()


def port_number(container: dict, port: int | str) -> int:
    if isinstance(port, int):
        return port
    named = {p["name"]: p["containerPort"] for p in container.get("ports", []) if "name" in p}
    assert port in named, f"{container['name']}: no port named {port!r}"
    return named[port]


def dockerfile_uid() -> int:
    users = re.findall(r"^USER\s+(\S+)", (REPO / "Dockerfile").read_text(), re.M)
    return int(users[-1].split(":")[0])


@pytest.fixture(scope="module", params=OVERLAYS)
def overlay(request) -> tuple[str, list[dict]]:
    return request.param, build(K8S / "overlays" / request.param)


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict]]:
    return {name: build(K8S / "overlays" / name) for name in OVERLAYS}


# --- files -----------------------------------------------------------------------------------------------

def all_kustomizations() -> list[Path]:
    return sorted(p.parent for p in K8S.rglob("kustomization.yaml"))


def test_overlays_dev_and_prod_exist():
    assert {"dev", "prod"} <= set(OVERLAYS)


@pytest.mark.parametrize("folder", all_kustomizations(), ids=lambda p: str(p.relative_to(K8S)))
def test_every_referenced_file_exists_and_parses(folder: Path):
    kust = read_kustomization(folder)
    for entry in kust.get("resources", []):
        path = folder / entry
        assert path.exists(), f"{folder}: resource {entry} does not exist"
        if path.is_dir():
            assert (path / "kustomization.yaml").exists(), f"{path}: folder without kustomization.yaml"
        else:
            for doc in read_docs(path):
                assert {"apiVersion", "kind", "metadata"} <= set(doc), f"{path}: not a Kubernetes object"
                assert doc["metadata"].get("name"), f"{path}: {doc['kind']} without a name"
    for entry in kust.get("patches", []):
        assert (folder / entry["path"]).is_file(), f"{folder}: patch {entry['path']} does not exist"


def test_no_yaml_file_is_left_out_of_a_kustomization():
    # A manifest that nobody lists is never deployed: the classic "added a file, forgot the list".
    listed = set()
    for folder in all_kustomizations():
        listed.add(folder / "kustomization.yaml")
        kust = read_kustomization(folder)
        listed |= {(folder / e).resolve() for e in kust.get("resources", [])}
        listed |= {(folder / e["path"]).resolve() for e in kust.get("patches", [])}
    orphans = [p for p in K8S.rglob("*.yaml") if p.resolve() not in listed and p.name != "kustomization.yaml"]
    assert not orphans, f"not referenced by any kustomization.yaml: {orphans}"


def test_base_is_namespace_agnostic():
    for obj in build(K8S / "base"):
        assert "namespace" not in obj["metadata"], f"{obj_id(obj)}: namespaces belong in the overlays"


def test_overlay_namespace_object_matches_namespace_field(overlay):
    name, objs = overlay
    namespace = read_kustomization(K8S / "overlays" / name)["namespace"]
    assert [o["metadata"]["name"] for o in of_kind(objs, "Namespace")] == [namespace]


def real_kustomize() -> list[str] | None:
    if shutil.which("kustomize"):
        return ["kustomize", "build"]
    if shutil.which("kubectl"):
        return ["kubectl", "kustomize"]
    return None


def test_loader_renders_what_real_kustomize_renders(overlay):
    """kubectl ships with this project's machine image; the loader above must agree with it exactly."""
    name, objs = overlay
    command = real_kustomize()
    assert command is not None, "install kubectl (or kustomize) to check the overlays with the real renderer"
    out = subprocess.run([*command, str(K8S / "overlays" / name)],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    expected = {obj_id(o): o for o in yaml.safe_load_all(out) if o}
    assert {obj_id(o): o for o in objs} == expected


# --- workloads -------------------------------------------------------------------------------------------

def test_deployments_have_probes_resources_and_a_locked_down_container(overlay):
    _, objs = overlay
    deployments = of_kind(objs, "Deployment")
    assert deployments
    for dep in deployments:
        spec = pod_spec(dep)
        for c in spec["containers"]:
            where = f"{dep['metadata']['name']}/{c['name']}"
            assert c["readinessProbe"]["httpGet"]["path"] == "/readyz", where
            assert c["livenessProbe"]["httpGet"]["path"] == "/healthz", where
            assert c["startupProbe"]["httpGet"]["path"] == "/healthz", where
            for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
                port = port_number(c, c[probe]["httpGet"]["port"])
                assert port in {p["containerPort"] for p in c["ports"]}, f"{where}: {probe} on undeclared port"
            resources = c["resources"]
            assert {"cpu", "memory"} <= set(resources["requests"]), where
            assert resources["limits"]["memory"], where


def test_pods_run_non_root_read_only_without_privileges(overlay):
    _, objs = overlay
    uid = dockerfile_uid()
    for obj in (o for o in objs if o["kind"] in POD_KINDS):
        spec = pod_spec(obj)
        pod_sc = spec.get("securityContext", {})
        assert pod_sc.get("seccompProfile", {}).get("type") == "RuntimeDefault", obj_id(obj)
        mounts_tmp = {v["name"] for v in spec.get("volumes", []) if "emptyDir" in v}
        for c in containers(obj):
            sc = {**pod_sc, **c.get("securityContext", {})}
            where = f"{obj['metadata']['name']}/{c['name']}"
            assert sc.get("runAsNonRoot") is True, where
            assert sc.get("runAsUser", uid) == uid != 0, f"{where}: uid differs from the image's USER {uid}"
            assert sc.get("readOnlyRootFilesystem") is True, where
            assert sc.get("allowPrivilegeEscalation") is False, where
            assert sc.get("capabilities", {}).get("drop") == ["ALL"], where
            # Read-only root: /tmp must be a writable emptyDir.
            assert any(m["mountPath"] == "/tmp" and m["name"] in mounts_tmp for m in c.get("volumeMounts", [])), where


def test_pods_use_a_tokenless_service_account(overlay):
    _, objs = overlay
    for obj in (o for o in objs if o["kind"] in POD_KINDS):
        spec = pod_spec(obj)
        account = one(objs, "ServiceAccount", spec["serviceAccountName"])
        assert account.get("automountServiceAccountToken") is False
        assert spec.get("automountServiceAccountToken") is False, obj_id(obj)


def test_each_component_runs_its_service_command(overlay):
    _, objs = overlay
    expected = {"api": "api", "worker": "worker", "migrate": "migrate"}
    seen = set()
    for obj in (o for o in objs if o["kind"] in POD_KINDS):
        component = pod_labels(obj)["app.kubernetes.io/component"]
        (c,) = pod_spec(obj)["containers"]
        assert c["command"] == [f"opsat-{service_of(obj)}"], obj_id(obj)
        assert c["args"] == [expected[component]], obj_id(obj)
        seen.add((service_of(obj), obj["kind"], component))
    for service in {s for s, _, _ in seen}:
        assert {(service, "Deployment", "api"), (service, "Deployment", "worker"), (service, "Job", "migrate")} <= seen


def test_migrate_job_runs_once_to_completion(overlay):
    _, objs = overlay
    for job in of_kind(objs, "Job"):
        assert pod_spec(job)["containers"][0]["args"] == ["migrate"]
        assert pod_spec(job)["restartPolicy"] in {"Never", "OnFailure"}
        assert job["spec"].get("ttlSecondsAfterFinished") is not None, "an immutable Job must go before the next apply"


# --- configuration ---------------------------------------------------------------------------------------

def test_env_keys_are_known_settings_with_valid_values(overlay):
    _, objs = overlay
    for obj in (o for o in objs if o["kind"] in POD_KINDS):
        for c in containers(obj):
            values, secrets = container_env(objs, c)
            where = f"{obj['metadata']['name']}/{c['name']}"
            unknown = (set(values) | set(secrets)) - known_settings(service_of(obj))
            assert not unknown, f"{where}: not fields of the service's settings (typo?): {sorted(unknown)}"
            settings = settings_from(values, service_of(obj))  # raises on a value the service would reject
            assert settings.service_name == service_of(obj), where
            assert settings.http_host == "0.0.0.0", f"{where}: must listen on all interfaces in a pod"
            ports = {p["containerPort"] for p in c.get("ports", [])}
            component = pod_labels(obj)["app.kubernetes.io/component"]
            if component == "api":
                assert ports == {settings.http_port}, where
            if component == "worker":
                assert ports == {settings.worker_port}, where


def test_secrets_are_referenced_never_stored(overlay):
    _, objs = overlay
    assert not [o for o in of_kind(objs, "Secret") if o.get("data") or o.get("stringData")]
    for obj in (o for o in objs if o["kind"] in POD_KINDS):
        _, secrets = container_env(objs, pod_spec(obj)["containers"][0])
        assert "OPSAT_DATABASE_URL" in secrets, obj_id(obj)
        for name, ref in secrets.items():
            assert ref["name"] == f"{service_of(obj)}-secrets" and ref["key"] == name, (obj_id(obj), ref)
            assert not ref.get("optional"), f"{name}: a missing secret must stop the pod, not use a default"
    for obj in of_kind(objs, "ConfigMap"):
        assert not {"OPSAT_DATABASE_URL", "OPSAT_AUTH_DEV_KEY"} & set(obj["data"]), "secret in a ConfigMap"


# --- selectors and scaling -------------------------------------------------------------------------------

def test_services_pdbs_and_network_policies_select_existing_pods(overlay):
    _, objs = overlay
    pods = [o for o in objs if o["kind"] in POD_KINDS]
    deployments = of_kind(objs, "Deployment")
    for svc in of_kind(objs, "Service"):
        targets = [d for d in deployments if selects({"matchLabels": svc["spec"]["selector"]}, pod_labels(d))]
        assert targets, f"Service {svc['metadata']['name']} selects no Deployment"
        for port in svc["spec"]["ports"]:
            for dep in targets:  # a named targetPort must exist in the pods it selects
                port_number(pod_spec(dep)["containers"][0], port["targetPort"])
    for pdb in of_kind(objs, "PodDisruptionBudget"):
        assert [d for d in deployments if selects(pdb["spec"]["selector"], pod_labels(d))], pdb["metadata"]["name"]
    for policy in of_kind(objs, "NetworkPolicy"):
        assert [p for p in pods if selects(policy["spec"]["podSelector"], pod_labels(p))], policy["metadata"]["name"]
    for dep in deployments:
        assert selects(dep["spec"]["selector"], pod_labels(dep)), f"{dep['metadata']['name']}: selector vs template"


def test_every_deployment_has_a_pdb_that_never_blocks_a_drain(overlay):
    _, objs = overlay
    for dep in of_kind(objs, "Deployment"):
        pdbs = [p for p in of_kind(objs, "PodDisruptionBudget") if selects(p["spec"]["selector"], pod_labels(dep))]
        assert len(pdbs) == 1, dep["metadata"]["name"]
        spec = pdbs[0]["spec"]
        if "minAvailable" in spec:
            assert spec["minAvailable"] < dep["spec"]["replicas"], "minAvailable >= replicas blocks every eviction"
        else:
            assert spec["maxUnavailable"] >= 1


def test_hpa_targets_the_api_with_cpu_requests(overlay):
    _, objs = overlay
    hpas = of_kind(objs, "HorizontalPodAutoscaler")
    apis = {d["metadata"]["name"] for d in of_kind(objs, "Deployment")
            if pod_labels(d)["app.kubernetes.io/component"] == "api"}
    assert {h["spec"]["scaleTargetRef"]["name"] for h in hpas} >= apis
    for hpa in hpas:
        spec = hpa["spec"]
        dep = one(objs, spec["scaleTargetRef"]["kind"], spec["scaleTargetRef"]["name"])
        assert 1 <= spec["minReplicas"] <= dep["spec"]["replicas"] <= spec["maxReplicas"], hpa["metadata"]["name"]
        assert "cpu" in [m["resource"]["name"] for m in spec["metrics"]]
        for c in pod_spec(dep)["containers"]:  # CPU utilisation is measured against the request
            assert "cpu" in c["resources"]["requests"], dep["metadata"]["name"]


# --- network policies ------------------------------------------------------------------------------------

def allowed_ports(objs: list[dict], pod: dict, direction: str) -> list[tuple[int, list[dict]]]:
    """(port, peers) opened for this pod's labels by all policies of a direction ('ingress'/'egress')."""
    rules = []
    for policy in of_kind(objs, "NetworkPolicy"):
        spec = policy["spec"]
        if direction.capitalize() in spec["policyTypes"] and selects(spec["podSelector"], pod_labels(pod)):
            for rule in spec.get(direction, []):
                peers = rule.get("to" if direction == "egress" else "from", [])
                rules += [(p["port"], peers) for p in rule.get("ports", [])]
    return rules


def test_ingress_is_only_the_http_port(overlay):
    _, objs = overlay
    for dep in of_kind(objs, "Deployment"):
        ports = {p for p, _ in allowed_ports(objs, dep, "ingress")}
        declared = {p["containerPort"] for p in pod_spec(dep)["containers"][0]["ports"]}
        assert ports == declared, f"{dep['metadata']['name']}: ingress {ports} vs container ports {declared}"


def test_egress_reaches_own_database_kafka_and_dns(overlay):
    _, objs = overlay
    kafka_names = {k["metadata"]["name"] for k in of_kind(objs, "Kafka")}
    for pod in (o for o in objs if o["kind"] in POD_KINDS):
        rules = allowed_ports(objs, pod, "egress")
        db_peers = [peer for port, peers in rules if port == 5432 for peer in peers]
        db_clusters = {peer["podSelector"]["matchLabels"].get("cnpg.io/cluster") for peer in db_peers}
        assert db_clusters == {f"{service_of(pod)}-db"}, f"{obj_id(pod)}: egress to its own database only"
        one(objs, "Cluster", f"{service_of(pod)}-db")
        kafka_peers = [peer for port, peers in rules if port == 9092 for peer in peers]
        assert {p["podSelector"]["matchLabels"]["strimzi.io/cluster"] for p in kafka_peers} <= kafka_names
        assert kafka_peers, obj_id(pod)
        assert {53} <= {port for port, _ in rules}, f"{obj_id(pod)}: no DNS"


def test_oidc_api_may_fetch_the_jwks(overlay):
    _, objs = overlay
    for dep in of_kind(objs, "Deployment"):
        values, _ = container_env(objs, pod_spec(dep)["containers"][0])
        settings = settings_from(values)
        if settings.auth_mode == "oidc" and pod_labels(dep)["app.kubernetes.io/component"] == "api":
            jwks = urlparse(settings.auth_jwks_url)
            assert jwks.scheme == "https" and settings.auth_issuer.startswith("https://")
            assert 443 in {port for port, _ in allowed_ports(objs, dep, "egress")}, "JWKS fetch is blocked"


# --- Kafka (Strimzi) and PostgreSQL (CloudNativePG) ------------------------------------------------------

def test_topics_are_the_ones_the_worker_needs(overlay):
    _, objs = overlay
    topics = {t["spec"].get("topicName", t["metadata"]["name"]): t for t in of_kind(objs, "KafkaTopic")}
    expected: dict[str, int] = {}
    for service in {service_of(d) for d in of_kind(objs, "Deployment")}:
        settings = settings_from(one(objs, "ConfigMap", f"{service}-config")["data"], service)
        assert settings.topic(service) == ServiceSettings().topic(service), "topic namespace differs from default"
        expected |= topics_the_worker_creates(service, settings)
        events = topics[settings.topic(service)]["spec"]
        # Projections are rebuilt by replaying: the events must never expire nor be compacted by key.
        assert int(events["config"]["retention.ms"]) == -1
        assert "compact" not in str(events["config"].get("cleanup.policy", "delete"))
    # Same names and partition counts: whoever creates a topic first (Strimzi or the worker), it is right.
    assert {name: t["spec"]["partitions"] for name, t in topics.items()} == expected
    for topic in topics.values():
        assert DNS_SUBDOMAIN.fullmatch(topic["metadata"]["name"]), f"{topic['metadata']['name']}: invalid name"


def test_topics_fit_the_kafka_cluster(overlay):
    _, objs = overlay
    kafkas = {k["metadata"]["name"]: k for k in of_kind(objs, "Kafka")}
    pools = of_kind(objs, "KafkaNodePool")
    for pool in pools:
        assert pool["metadata"]["labels"]["strimzi.io/cluster"] in kafkas
    for name, kafka in kafkas.items():
        mine = [p for p in pools if p["metadata"]["labels"]["strimzi.io/cluster"] == name]
        brokers = sum(p["spec"]["replicas"] for p in mine if "broker" in p["spec"]["roles"])
        controllers = sum(p["spec"]["replicas"] for p in mine if "controller" in p["spec"]["roles"])
        assert brokers >= 1 and controllers % 2 == 1, f"{name}: KRaft needs brokers and an odd controller quorum"
        config = kafka["spec"]["kafka"]["config"]
        assert int(config["min.insync.replicas"]) <= int(config["default.replication.factor"]) <= brokers
        assert int(config["offsets.topic.replication.factor"]) <= brokers
        for topic in of_kind(objs, "KafkaTopic"):
            if topic["metadata"]["labels"]["strimzi.io/cluster"] != name:
                continue
            replicas = topic["spec"]["replicas"]
            min_isr = int(topic["spec"].get("config", {}).get("min.insync.replicas", config["min.insync.replicas"]))
            assert replicas <= brokers, f"{topic['metadata']['name']}: {replicas} replicas, {brokers} brokers"
            # acks=all with min ISR == replicas (> 1) stops all writes when a single broker restarts.
            assert min_isr <= replicas and (replicas == 1 or min_isr < replicas), topic["metadata"]["name"]
    assert {t["metadata"]["labels"]["strimzi.io/cluster"] for t in of_kind(objs, "KafkaTopic")} <= set(kafkas)


def test_kafka_bootstrap_points_at_a_plain_listener(overlay):
    _, objs = overlay
    for configmap in of_kind(objs, "ConfigMap"):
        host, port = settings_from(configmap["data"]).kafka_bootstrap.split(":")
        cluster = host.removesuffix("-kafka-bootstrap")
        listeners = one(objs, "Kafka", cluster)["spec"]["kafka"]["listeners"]
        assert [lst for lst in listeners if lst["port"] == int(port) and lst["tls"] is False], configmap["metadata"]


def test_each_service_has_its_own_database(overlay):
    _, objs = overlay
    clusters = {c["metadata"]["name"]: c for c in of_kind(objs, "Cluster")}
    for service in {service_of(d) for d in of_kind(objs, "Deployment")}:
        initdb = clusters[f"{service}-db"]["spec"]["bootstrap"]["initdb"]
        assert initdb["database"] == service and initdb["owner"] == service


def test_kafka_and_postgres_versions_match_compose():
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]
    objs = build(K8S / "base")
    (kafka,) = of_kind(objs, "Kafka")
    assert compose["kafka"]["image"] == f"apache/kafka:{kafka['spec']['kafka']['version']}"
    for cluster in of_kind(objs, "Cluster"):
        major = cluster["spec"]["imageName"].rsplit(":", 1)[1].split(".")[0]
        assert compose["postgres"]["image"] == f"postgres:{major}"


# --- production ------------------------------------------------------------------------------------------

def test_prod_uses_oidc_a_pinned_image_and_more_replicas(rendered):
    prod, dev = rendered["prod"], rendered["dev"]
    for configmap in of_kind(prod, "ConfigMap"):
        settings = settings_from(configmap["data"])
        assert (settings.environment, settings.auth_mode) == ("prod", "oidc")
        assert settings.auth_jwks_url
    for obj in (o for o in prod if o["kind"] in POD_KINDS):
        for c in containers(obj):
            name, _, tag = c["image"].rpartition(":")
            assert "/" in name, f"{c['image']}: prod pulls from a registry"
            assert tag and tag not in {"latest", "dev"}, f"{c['image']}: pin an immutable tag"
    for dep in of_kind(prod, "Deployment"):
        assert dep["spec"]["replicas"] > one(dev, "Deployment", dep["metadata"]["name"])["spec"]["replicas"]


def test_workers_do_not_outnumber_partitions(overlay):
    # Every worker joins the same consumer groups: replicas beyond the partition count sit idle.
    _, objs = overlay
    for dep in of_kind(objs, "Deployment"):
        if pod_labels(dep)["app.kubernetes.io/component"] == "worker":
            topic = ServiceSettings().topic(service_of(dep))
            (events,) = [t for t in of_kind(objs, "KafkaTopic") if t["spec"]["topicName"] == topic]
            assert dep["spec"]["replicas"] <= events["spec"]["partitions"], dep["metadata"]["name"]
