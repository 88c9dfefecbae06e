#!/usr/bin/env bash
# Wheels for bench/gpu_acceptance.py, downloaded here (the GPU machine reaches no package index) into bench/wheels/
# (ignored by git; pass it with the device tool's `carry`). The GPU machine has torch, transformers, peft, lightning
# and accelerate; this fetches the rest of what train.py, relevance register and predict.py import, for its Python
# (PYVER, default 3.11), without the packages it already has. Keep the folder under the 64 MiB the tool carries:
# `du -sh bench/wheels` after.
set -euo pipefail
cd "$(dirname "$0")/.."
PYVER="${PYVER:-3.11}"
mkdir -p bench/wheels
pip download -q --dest bench/wheels --only-binary=:all: --python-version "$PYVER" --no-deps \
  hydra-core==1.4.0rc3 omegaconf==2.4.1rc1 antlr4-python3-runtime==4.9.3 hydra-optuna-sweeper==1.4.0rc3 \
  mlflow==3.17.2 mlflow-skinny==3.17.2 mlflow-tracing==3.17.2 optuna==5.0.0 alembic sqlalchemy colorlog \
  graphene graphql-core graphql-relay flask gunicorn cachetools databricks-sdk opentelemetry-api \
  opentelemetry-sdk opentelemetry-proto opentelemetry-semantic-conventions sqlparse gitpython gitdb smmap \
  cloudpickle docker mako blinker itsdangerous werkzeug markdown fastapi starlette uvicorn pydantic pydantic-core \
  filelock==4.2.11 psutil==7.2.2 scikit-learn==1.9.1 faiss-cpu==1.15.1 threadpoolctl joblib
du -sh bench/wheels
