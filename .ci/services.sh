#!/usr/bin/env bash
# Install and start the real services the test suite uses: PostgreSQL (Debian), chromium and
# Orthanc with DICOMweb (Debian's orthanc + orthanc-dicomweb, started by .ci/orthanc.sh).
# Idempotent; run as root (CI and developer machines here are root).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
need=()
command -v pg_ctlcluster >/dev/null 2>&1 || need+=(postgresql)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq
  apt-get install -y -qq "${need[@]}" >/dev/null
fi
ver=$(ls /usr/lib/postgresql | sort -V | tail -1)
cluster=$(pg_lsclusters -h | awk '{print $2}' | head -1)
[ -n "$cluster" ] || { pg_createcluster "$ver" main >/dev/null; cluster=main; }
pg_ctlcluster "$ver" "$cluster" start 2>/dev/null || true
for i in $(seq 1 30); do pg_isready -q -h 127.0.0.1 && break; sleep 1; done
su postgres -c "psql -qtAc \"SELECT 1 FROM pg_roles WHERE rolname='retinascreen'\"" | grep -q 1 ||
  su postgres -c "psql -qc \"CREATE ROLE retinascreen LOGIN PASSWORD 'retinascreen' CREATEDB\""
su postgres -c "psql -qtAc \"SELECT 1 FROM pg_database WHERE datname='retinascreen_test'\"" | grep -q 1 ||
  su postgres -c "createdb -O retinascreen retinascreen_test"
echo "PostgreSQL $ver ready: postgresql+psycopg://retinascreen:retinascreen@127.0.0.1:5432/retinascreen_test"
# Orthanc (installed by orthanc.sh if missing): its failure leaves PostgreSQL and chromium up.
if orthanc_url=$(bash "$(dirname "$0")/orthanc.sh"); then
  echo "Orthanc DICOMweb ready: $orthanc_url"
else
  echo "warning: could not start Orthanc; the PACS tests will be skipped (and fail in CI)" >&2
fi
