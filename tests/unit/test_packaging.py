"""Packaging (issue 10): ``pip install lcmftn`` is the pure library; ``[cluster]`` adds Ray/MLflow/S3.

Checks pyproject.toml against the code: every third-party module imported by ``lcmftn/``
(outside ``lcmftn/integrations``) is a base dependency, and no cluster package is one.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CLUSTER = {"ray", "mlflow", "boto3"}
# import name -> distribution name, where they differ
DIST_OF = {"cv2": "opencv-python-headless", "yaml": "pyyaml"}
# imported lazily for an opt-in feature only, deliberately not a dependency
OPTIONAL = {"torchvision"}  # losses.vgg_weights="torchvision": downloads ImageNet VGG-19 weights


def _project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _names(reqs: list[str]) -> set[str]:
    return {re.split(r"[\s\[<>=!~;]", r, maxsplit=1)[0].lower() for r in reqs}


def _third_party_imports(folder: Path, skip: Path) -> dict[str, str]:
    """{top-level module: first file importing it} over ``folder`` except ``skip``."""
    found: dict[str, str] = {}
    for path in sorted(folder.rglob("*.py")):
        if skip in path.parents:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                mods = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                mods = [node.module]
            else:
                continue
            for m in mods:
                top = m.split(".")[0]
                if top not in sys.stdlib_module_names and top not in ("lcmftn", "__future__"):
                    found.setdefault(top, str(path.relative_to(ROOT)))
    return found


def test_license_is_spdx_and_setuptools_supports_it():
    data = _project()
    assert data["project"]["license"] == "Apache-2.0"  # a PEP 639 SPDX string, not a table
    req = [r for r in data["build-system"]["requires"] if r.startswith("setuptools")]
    assert req and re.fullmatch(r"setuptools>=(\d+)", req[0]) and int(req[0].split(">=")[1]) >= 77


def test_base_install_is_the_pure_library():
    data = _project()
    base = _names(data["project"]["dependencies"])
    extras = data["project"]["optional-dependencies"]
    assert not base & CLUSTER, f"base dependencies pull cluster packages: {sorted(base & CLUSTER)}"
    assert CLUSTER <= _names(extras["cluster"])
    assert "lcmftn" in _names(extras["test"]) and any("[cluster]" in r for r in extras["test"])
    assert "playwright" in _names(extras["test"])
    imports = _third_party_imports(ROOT / "lcmftn", ROOT / "lcmftn" / "integrations")
    assert "torch" in imports and "cv2" in imports  # the scan itself works
    missing = {m: f for m, f in imports.items() if DIST_OF.get(m, m).lower() not in base and m not in OPTIONAL}
    assert not missing, f"lcmftn/ imports modules that are not base dependencies: {missing}"
    cluster_used = {m for m in imports if m in CLUSTER or m == "botocore"}
    assert not cluster_used, f"pure library imports {cluster_used} outside lcmftn/integrations"


def test_makefile_installs_cluster_and_test_extras():
    assert "-e '.[cluster,test]'" in (ROOT / "Makefile").read_text()
