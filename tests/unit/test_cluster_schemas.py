"""The declarative files are checked for real: ``cluster/kuberay/*.yaml`` against the KubeRay
CRDs' openAPIV3Schema (ray.io/v1, from ../shared/schemas/kuberay) with jsonschema, STRICT
(unknown fields are errors, as ``kubectl apply --validate=strict`` would say), and the core
Kubernetes objects in ``infra/k8s/`` against Kubernetes' own schemas (``kubernetes-validate``,
which ships them offline). Each validator is shown to reject a broken copy."""

from __future__ import annotations

import copy
import os
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
# ../shared next to the checkout; LCMFTN_SHARED_DIR points elsewhere (e.g. from a git worktree)
SCHEMAS = Path(os.environ.get("LCMFTN_SHARED_DIR") or ROOT.parent / "shared") / "schemas" / "kuberay"
KUBERAY_FILES = sorted((ROOT / "cluster" / "kuberay").glob("*.yaml"))
K8S_FILES = sorted((ROOT / "infra" / "k8s").glob("*.yaml"))
K8S_VERSION = "1.30"


def _docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _strict(schema):
    """additionalProperties: false wherever an object lists its properties and does not
    preserve unknown fields (structural CRD schemas otherwise prune unknown fields silently)."""
    if isinstance(schema, list):
        return [_strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _strict(v) for k, v in schema.items()}
    if "properties" in out and "additionalProperties" not in out and not out.get("x-kubernetes-preserve-unknown-fields"):
        out["additionalProperties"] = False
    return out


@pytest.fixture(scope="module")
def crd_validators():
    jsonschema = pytest.importorskip("jsonschema")
    if not SCHEMAS.is_dir():
        pytest.skip(f"{SCHEMAS} is absent")
    out = {}
    for f in SCHEMAS.glob("*.yaml"):
        crd = yaml.load(f.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # large files
        for version in crd["spec"]["versions"]:
            if version["name"] == "v1":
                schema = _strict(version["schema"]["openAPIV3Schema"])
                out[(f"{crd['spec']['group']}/v1", crd["spec"]["names"]["kind"])] = jsonschema.Draft7Validator(schema)
    assert {k for _, k in out} >= {"RayCluster", "RayJob"}
    return out


def _crd_errors(validators, doc: dict) -> list[str]:
    key = (doc.get("apiVersion"), doc.get("kind"))
    assert key in validators, f"no CRD schema for {key}"
    return [f"{'.'.join(map(str, e.path))}: {e.message[:160]}" for e in validators[key].iter_errors(doc)]


@pytest.mark.parametrize("path", KUBERAY_FILES, ids=lambda p: p.name)
def test_kuberay_specs_match_the_crds(crd_validators, path):
    for doc in _docs(path):
        assert not _crd_errors(crd_validators, doc), f"{path.name}: {_crd_errors(crd_validators, doc)[:5]}"


def test_crd_validation_rejects_typos_and_wrong_types(crd_validators):
    job = _docs(ROOT / "cluster" / "kuberay" / "rayjob-train.yaml")[0]
    typo = copy.deepcopy(job)
    typo["spec"]["entrypont"] = typo["spec"].pop("entrypoint")
    assert any("entrypont" in e for e in _crd_errors(crd_validators, typo))
    cluster = _docs(ROOT / "cluster" / "kuberay" / "raycluster.yaml")[0]
    bad = copy.deepcopy(cluster)
    bad["spec"]["workerGroupSpecs"][0]["replicas"] = "two"
    assert any("replicas" in e for e in _crd_errors(crd_validators, bad))


@pytest.fixture(scope="module")
def kv():
    return pytest.importorskip("kubernetes_validate")


@pytest.mark.parametrize("path", K8S_FILES, ids=lambda p: p.name)
def test_core_kubernetes_objects_match_the_schemas(kv, path):
    for doc in _docs(path):
        kv.validate(doc, K8S_VERSION, strict=True)  # raises ValidationError naming the field


def test_kubernetes_validation_rejects_broken_objects(kv):
    deployment = next(d for d in _docs(ROOT / "infra" / "k8s" / "mlflow-server.yaml") if d["kind"] == "Deployment")
    bad = copy.deepcopy(deployment)
    bad["spec"]["replicas"] = "one"
    with pytest.raises(kv.ValidationError):
        kv.validate(bad, K8S_VERSION, strict=True)
    typo = copy.deepcopy(deployment)
    typo["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    with pytest.raises(kv.ValidationError):
        kv.validate(typo, K8S_VERSION, strict=True)
