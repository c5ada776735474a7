#!/usr/bin/env bash
# A local S3 API server for tests and trials: moto's server (pip `moto[server]`), which honours
# conditional puts (If-None-Match: *), so Lance's commits on it are safe. Prints the exports
# that point vemo (and infra/stores/objects.py) at it, then serves until killed.
#   infra/stores/s3-server.sh [PORT]     (default 9000)
set -euo pipefail
port="${1:-9000}"
python3 -c "import moto.server" 2>/dev/null || python3 -m pip install --quiet "moto[server]==5.2.1"
cat >&2 <<ENV
export AWS_ENDPOINT_URL=http://127.0.0.1:$port AWS_ALLOW_HTTP=true AWS_REGION=us-east-1
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test
ENV
exec python3 -m moto.server -H 127.0.0.1 -p "$port"
