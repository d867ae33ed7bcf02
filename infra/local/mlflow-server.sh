#!/usr/bin/env bash
# Start/stop a local MLflow server (sqlite + artifacts on local SeaweedFS or a folder).
#   infra/local/mlflow-server.sh start --with-seaweedfs      (foreground; Ctrl-C stops both)
#   infra/local/mlflow-server.sh start --detach               (background; folder artifacts)
#   infra/local/mlflow-server.sh stop
set -euo pipefail
cd "$(dirname "$0")/../.."
PY="${PYTHON:-.venv/bin/python}"
exec "$PY" -m infra.local.mlflow_server "$@"
