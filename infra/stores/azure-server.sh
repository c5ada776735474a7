#!/usr/bin/env bash
# A local Azure Blob server for tests and trials: Azurite (npm `azurite`), which honours
# conditional puts (If-None-Match: *), so Lance's commits on it are safe. Prints the exports
# that point vemo (and infra/stores/objects.py) at it, then serves until killed.
#   infra/stores/azure-server.sh [PORT] [DATA_DIR]    (default 10000, a temporary folder)
set -euo pipefail
port="${1:-10000}"
data="${2:-$(mktemp -d)}"
command -v azurite-blob >/dev/null || npm install --global --silent azurite@3.37.0
cat >&2 <<ENV
export AZURE_STORAGE_USE_EMULATOR=true AZURE_STORAGE_ACCOUNT_NAME=devstoreaccount1
export AZURE_STORAGE_BLOB_URL=http://127.0.0.1:$port/devstoreaccount1   # objects.py only
ENV
exec azurite-blob --blobHost 127.0.0.1 --blobPort "$port" --location "$data" --skipApiVersionCheck
