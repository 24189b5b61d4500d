"""The cluster files are valid before anyone pays for a cloud node.

Cloud launcher configs go through the same preparation and JSON-schema validation as `ray up`
(``prepare_config`` then ``validate_config`` from the installed Ray). KubeRay manifests are
checked against the fields of KubeRay's v1 API (v1.5.1, the first with ``authOptions``) and,
where ``kubernetes-validate`` is installed, their pod templates against Kubernetes' own schema.
The image, the configs and the venv must agree on Ray and Python versions, and no cluster file
may carry a secret.
"""

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import ray
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

REPO = Path(__file__).resolve().parents[1]
CLUSTER = REPO / "cluster"
CLOUD_CONFIGS = [CLUSTER / "aws.yaml", CLUSTER / "gcp.yaml"]
RAYCLUSTER = CLUSTER / "kuberay" / "raycluster.yaml"
RAYJOB = CLUSTER / "kuberay" / "rayjob.yaml"
PY_TAG = f"py{sys.version_info.major}{sys.version_info.minor}"
IMAGE_TAG = f"ray{ray.__version__}-{PY_TAG}"

# Fields of KubeRay's ray.io/v1 API types at v1.5.1 (ray-operator/apis/ray/v1/*_types.go).
RAYCLUSTER_SPEC_FIELDS = set(
    (
        "authOptions suspend managedBy autoscalerOptions headServiceAnnotations "
        "enableInTreeAutoscaling gcsFaultToleranceOptions headGroupSpec rayVersion "
        "workerGroupSpecs"
    ).split()
)
HEAD_GROUP_FIELDS = set(
    "template headService enableIngress resources labels rayStartParams serviceType".split()
)
WORKER_GROUP_FIELDS = set(
    (
        "suspend groupName replicas minReplicas maxReplicas idleTimeoutSeconds resources "
        "labels rayStartParams template scaleStrategy numOfHosts"
    ).split()
)
RAYJOB_SPEC_FIELDS = set(
    (
        "activeDeadlineSeconds backoffLimit rayClusterSpec submitterPodTemplate metadata "
        "clusterSelector submitterConfig managedBy deletionStrategy entrypoint runtimeEnvYAML "
        "jobId submissionMode entrypointResources entrypointNumCpus entrypointNumGpus "
        "ttlSecondsAfterFinished shutdownAfterJobFinishes suspend"
    ).split()
)
SUBMISSION_MODES = {"K8sJobMode", "HTTPMode", "InteractiveMode", "SidecarMode"}

# What a leaked secret looks like: a password in a URL; a literal value given to a password or
# token as a quoted string, a shell/env assignment or a YAML key; a Ray token (64 hex digits);
# an AWS access key; a private key.
SECRET_KEY = r"(password|passwd|pgpassword|secret|auth_token|token)"
SECRET_PATTERNS = [
    re.compile(r"[a-z][a-z0-9+.-]*://[^\s/:@'\"]+:[^\s/@'\"$]+@", re.IGNORECASE),
    re.compile(SECRET_KEY + r"\s*[:=]\s*[\"'][^\"'\s$]{6,}[\"']", re.IGNORECASE),
    re.compile(SECRET_KEY + r"=[^\s\"'$(]{6,}", re.IGNORECASE),
    re.compile(r"^\s*" + SECRET_KEY + r":\s+[^\s\"'$#{]{6,}\s*$", re.IGNORECASE | re.MULTILINE),
    re.compile(r"\b[0-9a-f]{64}\b"),
    re.compile(r"\bAKIA[0-9A-Z]{16}\b"),
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
]


def load_yaml(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def kube_docs(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def kube_doc(path: Path, kind: str) -> dict:
    (doc,) = [doc for doc in kube_docs(path) if doc["kind"] == kind]
    return doc


def ray_cluster_spec(path: Path) -> dict:
    if path == RAYJOB:
        return kube_doc(path, "RayJob")["spec"]["rayClusterSpec"]
    return kube_doc(path, "RayCluster")["spec"]


def pod_templates(spec: dict) -> dict[str, dict]:
    templates = {"head": spec["headGroupSpec"]["template"]}
    for group in spec["workerGroupSpecs"]:
        templates[group["groupName"]] = group["template"]
    return templates


def secret_leaks(text: str) -> list[str]:
    return [m.group(0) for pattern in SECRET_PATTERNS for m in pattern.finditer(text)]


def env_names(container: dict) -> set[str]:
    return {var["name"] for var in container.get("env", [])}


# -- cluster launcher (AWS, GCP) -----------------------------------------------------------


@pytest.mark.parametrize("path", CLOUD_CONFIGS, ids=lambda p: p.name)
def test_cloud_config_passes_ray_up_validation(path):
    validate_config(prepare_config(load_yaml(path)))


def test_ray_up_validation_rejects_an_unknown_node_type_field():
    config = load_yaml(CLOUD_CONFIGS[0])
    config["available_node_types"]["cpu_worker"]["min_worker"] = 1
    with pytest.raises(jsonschema.ValidationError, match="min_worker"):
        validate_config(prepare_config(config))


@pytest.mark.parametrize("path", CLOUD_CONFIGS, ids=lambda p: p.name)
def test_cloud_config_autoscales_cpu_workers_and_offers_an_optional_gpu_worker(path):
    config = load_yaml(path)
    workers = {
        name: node
        for name, node in config["available_node_types"].items()
        if name != config["head_node_type"]
    }
    cpu = [n for n in workers.values() if n["resources"].get("GPU", 0) == 0]
    gpu = [n for n in workers.values() if n["resources"].get("GPU", 0) >= 1]
    assert cpu and all(n["max_workers"] > n.get("min_workers", 0) for n in cpu)
    assert gpu and all(n.get("min_workers", 0) == 0 for n in gpu)
    assert all(n["docker"]["worker_image"].endswith("-cu128") for n in gpu)


@pytest.mark.parametrize("path", CLOUD_CONFIGS, ids=lambda p: p.name)
def test_cloud_dashboard_binds_loopback_and_no_rule_opens_it(path):
    config = load_yaml(path)
    head_start = " ".join(config["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head_start
    assert "0.0.0.0" not in path.read_text()
    assert "8265" not in yaml.safe_dump(config["provider"])


@pytest.mark.parametrize("path", CLOUD_CONFIGS, ids=lambda p: p.name)
def test_cloud_nodes_start_with_token_auth_and_the_shared_token(path):
    config = load_yaml(path)
    for commands in (config["head_start_ray_commands"], config["worker_start_ray_commands"]):
        start = next(c for c in commands if "ray start" in c)
        assert "export RAY_AUTH_MODE=token;" in start
    assert config["file_mounts"]["~/.ray/auth_token"] == "~/.ray/auth_token"


@pytest.mark.parametrize("path", CLOUD_CONFIGS, ids=lambda p: p.name)
def test_cloud_database_url_reaches_only_the_head(path):
    config = load_yaml(path)
    assert "MARIO_SWEEPS_DB_URL" in " ".join(config["head_start_ray_commands"])
    for key in ("worker_start_ray_commands", "setup_commands", "worker_setup_commands"):
        assert "MARIO_SWEEPS_DB_URL" not in " ".join(config.get(key, []))
    assert any("db_url_secret.py" in c for c in config["head_setup_commands"])


@pytest.mark.parametrize("path", CLOUD_CONFIGS, ids=lambda p: p.name)
def test_cloud_nodes_mount_and_install_this_repo(path):
    config = load_yaml(path)
    assert config["file_mounts"]["~/mario-sweeps"] == "."
    assert any("pip install" in c and "~/mario-sweeps" in c for c in config["setup_commands"])


@pytest.mark.parametrize("path", CLOUD_CONFIGS, ids=lambda p: p.name)
def test_cloud_images_match_the_installed_ray_and_python(path):
    config = load_yaml(path)
    images = [config["docker"]["image"]] + [
        node["docker"]["worker_image"]
        for node in config["available_node_types"].values()
        if "docker" in node
    ]
    assert all(IMAGE_TAG in image for image in images), images


# -- KubeRay -------------------------------------------------------------------------------


def test_kuberay_manifests_hold_the_expected_kinds():
    assert {d["kind"] for d in kube_docs(RAYCLUSTER)} == {"PersistentVolumeClaim", "RayCluster"}
    assert {d["kind"] for d in kube_docs(RAYJOB)} == {"PersistentVolumeClaim", "RayJob"}
    for path in (RAYCLUSTER, RAYJOB):
        for doc in kube_docs(path):
            assert doc["metadata"]["name"]
            expected = "v1" if doc["kind"] == "PersistentVolumeClaim" else "ray.io/v1"
            assert doc["apiVersion"] == expected


@pytest.mark.parametrize("path", [RAYCLUSTER, RAYJOB], ids=lambda p: p.name)
def test_kuberay_cluster_spec_uses_only_kuberay_fields(path):
    spec = ray_cluster_spec(path)
    assert set(spec) <= RAYCLUSTER_SPEC_FIELDS
    assert set(spec["headGroupSpec"]) <= HEAD_GROUP_FIELDS
    for group in spec["workerGroupSpecs"]:
        assert set(group) <= WORKER_GROUP_FIELDS, group["groupName"]
    assert set(spec["autoscalerOptions"]) <= {"idleTimeoutSeconds", "upscalingMode", "resources"}


@pytest.mark.parametrize("path", [RAYCLUSTER, RAYJOB], ids=lambda p: p.name)
def test_kuberay_cluster_has_token_auth_and_the_installed_ray_version(path):
    spec = ray_cluster_spec(path)
    assert spec["authOptions"] == {"mode": "token"}
    assert spec["rayVersion"] == ray.__version__
    for template in pod_templates(spec).values():
        for container in template["spec"]["containers"]:
            assert IMAGE_TAG in container["image"]


@pytest.mark.parametrize("path", [RAYCLUSTER, RAYJOB], ids=lambda p: p.name)
def test_kuberay_worker_groups_autoscale_within_their_bounds(path):
    spec = ray_cluster_spec(path)
    assert spec["enableInTreeAutoscaling"] is True
    assert isinstance(spec["headGroupSpec"]["rayStartParams"], dict)
    groups = {g["groupName"]: g for g in spec["workerGroupSpecs"]}
    for group in groups.values():
        assert isinstance(group["rayStartParams"], dict)
        assert 0 <= group["minReplicas"] <= group.get("replicas", 0) <= group["maxReplicas"]
    (gpu_container,) = groups["gpu"]["template"]["spec"]["containers"]
    assert gpu_container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert groups["gpu"]["minReplicas"] == 0


@pytest.mark.parametrize("path", [RAYCLUSTER, RAYJOB], ids=lambda p: p.name)
def test_kuberay_database_url_comes_from_a_secret_on_the_head_only(path):
    templates = pod_templates(ray_cluster_spec(path))
    (head,) = templates.pop("head")["spec"]["containers"]
    (db_url,) = [v for v in head["env"] if v["name"] == "MARIO_SWEEPS_DB_URL"]
    ref = db_url["valueFrom"]["secretKeyRef"]
    assert (ref["name"], ref["key"], ref["optional"]) == ("mario-sweeps-db", "url", True)
    for template in templates.values():
        for container in template["spec"]["containers"]:
            assert not env_names(container) & {"MARIO_SWEEPS_DB_URL", "PGPASSWORD"}


def test_rayjob_submits_the_sweep_and_cleans_up():
    spec = kube_doc(RAYJOB, "RayJob")["spec"]
    assert set(spec) <= RAYJOB_SPEC_FIELDS
    assert spec["entrypoint"].startswith("python sweeps/ppo_lr_entropy.py")
    assert spec["submissionMode"] in SUBMISSION_MODES
    assert yaml.safe_load(spec["runtimeEnvYAML"]) == {"working_dir": "/home/ray/mario-sweeps"}
    assert spec["shutdownAfterJobFinishes"] is True


@pytest.mark.parametrize("path", [RAYCLUSTER, RAYJOB], ids=lambda p: p.name)
def test_kuberay_pod_templates_mount_only_declared_volumes(path):
    for name, template in pod_templates(ray_cluster_spec(path)).items():
        volumes = {v["name"] for v in template["spec"].get("volumes", [])}
        for container in template["spec"]["containers"]:
            assert container["name"] and container["image"], name
            mounts = {m["name"] for m in container.get("volumeMounts", [])}
            assert mounts <= volumes, (name, mounts - volumes)
            for var in container.get("env", []):
                assert ("value" in var) != ("valueFrom" in var), (name, var["name"])


@pytest.mark.parametrize("path", [RAYCLUSTER, RAYJOB], ids=lambda p: p.name)
def test_kuberay_pod_templates_are_valid_kubernetes_pod_templates(path):
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    version = kubernetes_validate.latest_version()
    for name, template in pod_templates(ray_cluster_spec(path)).items():
        pod_template = {
            "apiVersion": "v1",
            "kind": "PodTemplate",
            "metadata": {"name": name},
            "template": template,
        }
        kubernetes_validate.validate(pod_template, version, strict=True)
    for doc in kube_docs(path):
        if doc["apiVersion"] == "v1":
            kubernetes_validate.validate(doc, version, strict=True)


# -- image ---------------------------------------------------------------------------------


def test_dockerfile_base_image_matches_the_installed_ray_and_python():
    text = (CLUSTER / "Dockerfile").read_text()
    (base,) = re.findall(r"^ARG RAY_IMAGE=(\S+)$", text, re.MULTILINE)
    assert base == f"rayproject/ray:{ray.__version__}-{PY_TAG}-cpu"
    assert re.search(r"^FROM \$\{RAY_IMAGE\}$", text, re.MULTILINE)
    assert PY_TAG == "py313"
    assert f"rayproject/ray:{ray.__version__}-{PY_TAG}-cu128" in text


# -- secrets -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "leak",
    [
        "postgresql://sweeps:hunter22@db.internal/sweeps",
        "PGPASSWORD=hunter22",
        'password: "hunter22"',
        "auth_token: 0123456789abcdef",
        "RAY_AUTH_TOKEN=0123456789abcdef",
        "secret: 'hunter22'",
        "9f" * 32,
        "AKIAABCDEFGHIJKLMNOP",
    ],
)
def test_secret_scan_finds_a_planted_secret(leak):
    assert secret_leaks(f"config:\n  {leak}\n")


def test_cluster_files_hold_no_secrets():
    paths = [p for p in CLUSTER.rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    paths.append(REPO / "docs" / "cluster.md")
    leaks = {str(p.relative_to(REPO)): secret_leaks(p.read_text()) for p in paths}
    assert not {path: found for path, found in leaks.items() if found}


# -- local cluster script and the secret helper ---------------------------------------------


def test_local_cluster_script_is_valid_bash():
    subprocess.run(["bash", "-n", str(CLUSTER / "local_cluster.sh")], check=True)


def test_local_cluster_env_points_clients_at_the_cluster_token(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "MARIO_CLUSTER_DIR": str(tmp_path), "HOME": str(tmp_path)}
    out = subprocess.run(
        ["bash", str(CLUSTER / "local_cluster.sh"), "env"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "export RAY_AUTH_MODE=token" in out
    assert f"export RAY_AUTH_TOKEN_PATH={tmp_path}/auth_token" in out


def test_local_cluster_down_without_a_cluster_stops_nothing(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "MARIO_CLUSTER_DIR": str(tmp_path), "HOME": str(tmp_path)}
    done = subprocess.run(
        ["bash", str(CLUSTER / "local_cluster.sh"), "down"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0
    assert "nothing to stop" in done.stderr


@pytest.fixture
def db_url_secret():
    spec = importlib.util.spec_from_file_location("db_url_secret", CLUSTER / "db_url_secret.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_secret_url_is_stored_without_its_password(db_url_secret, monkeypatch, tmp_path):
    monkeypatch.setattr(
        db_url_secret, "_fetch_aws", lambda *_: "postgresql://sweeps:p%3Ass@db.internal/results"
    )
    args = ["aws", "--secret", "s", "--state-dir", str(tmp_path), "--pgpass", str(tmp_path / "pp")]
    assert db_url_secret.main(args) == 0
    assert (tmp_path / "db_url").read_text() == "postgresql://sweeps@db.internal/results"
    assert (tmp_path / "pp").read_text() == "db.internal:5432:results:sweeps:p\\:ss\n"
    assert (tmp_path / "db_url").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "pp").stat().st_mode & 0o777 == 0o600


def test_secret_rotation_replaces_the_pgpass_line(db_url_secret, monkeypatch, tmp_path):
    pgpass = tmp_path / "pp"
    pgpass.write_text("other:5432:db:user:keep\n")
    args = ["aws", "--secret", "s", "--state-dir", str(tmp_path), "--pgpass", str(pgpass)]
    for password in ("old", "new"):
        url = f"postgresql://sweeps:{password}@db.internal/results"
        monkeypatch.setattr(db_url_secret, "_fetch_aws", lambda *_, url=url: url)
        assert db_url_secret.main(args) == 0
    assert pgpass.read_text() == "other:5432:db:user:keep\ndb.internal:5432:results:sweeps:new\n"


def test_missing_secret_falls_back_to_the_embedded_database(db_url_secret, monkeypatch, tmp_path):
    (tmp_path / "db_url").write_text("postgresql://stale@db.internal/results")
    monkeypatch.setattr(db_url_secret, "_fetch_gcp", lambda *_: None)
    assert db_url_secret.main(["gcp", "--secret", "s", "--state-dir", str(tmp_path)]) == 0
    assert not (tmp_path / "db_url").exists()


def test_secret_that_is_not_a_postgres_url_fails_setup(db_url_secret, monkeypatch, tmp_path):
    monkeypatch.setattr(db_url_secret, "_fetch_aws", lambda *_: "mysql://sweeps@db/results")
    assert db_url_secret.main(["aws", "--secret", "s", "--state-dir", str(tmp_path)]) == 1
    assert not (tmp_path / "db_url").exists()
