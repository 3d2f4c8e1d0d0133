#!/usr/bin/env bash
# Regenerate the committed gRPC stubs from proto/. The proto file's path
# (budgetd_client/v1/...) is the stubs' import path inside the client package.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python}
rm -f client/budgetd_client/v1/budget_pb2*.py client/budgetd_client/v1/budget_pb2*.pyi
"$python" -m grpc_tools.protoc -I proto \
  --python_out=client --pyi_out=client --grpc_python_out=client \
  proto/budgetd_client/v1/budget.proto
echo "generated client/budgetd_client/v1 from proto/"
