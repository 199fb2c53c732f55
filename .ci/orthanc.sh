#!/usr/bin/env bash
# Install (Debian's orthanc + orthanc-dicomweb) and start a throw-away Orthanc PACS for the
# integration tests and for trying `retinascreen pacs`: DICOMweb on a free loopback port, no
# DICOM listener, its data in a temporary folder. Idempotent: a running one is reused.
# Prints the DICOMweb URL and writes it to $ORTHANC_HOME/url (tests read it there or $ORTHANC_URL).
# Stop it with: kill "$(cat "${TMPDIR:-/tmp}/retinascreen-orthanc/pid")"
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
home="${ORTHANC_HOME:-${TMPDIR:-/tmp}/retinascreen-orthanc}"
mkdir -p "$home"
answers() { # whether a DICOMweb root answers QIDO-RS (python3, as curl may be missing)
  python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1] + "/studies", timeout=3)' "$1" 2>/dev/null
}
if [ -f "$home/pid" ] && kill -0 "$(cat "$home/pid")" 2>/dev/null && [ -f "$home/url" ] &&
  answers "$(cat "$home/url")"; then
  cat "$home/url"
  exit 0
fi
plugin=/usr/share/orthanc/plugins/libOrthancDicomWeb.so
if ! command -v Orthanc >/dev/null 2>&1 || [ ! -e "$plugin" ]; then
  apt-get update -qq
  apt-get install -y -qq orthanc orthanc-dicomweb >/dev/null
fi
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
data=$(mktemp -d "$home/data.XXXXXX")
cat >"$home/orthanc.json" <<JSON
{
  "Name": "retinascreen-test",
  "StorageDirectory": "$data",
  "IndexDirectory": "$data",
  "HttpPort": $port,
  "HttpBindAddress": "127.0.0.1",
  "RemoteAccessAllowed": false,
  "AuthenticationEnabled": false,
  "DicomServerEnabled": false,
  "Plugins": ["$plugin"],
  "DicomWeb": {"Enable": true, "Root": "/dicom-web/", "Host": "127.0.0.1:$port", "Ssl": false}
}
JSON
nohup Orthanc "$home/orthanc.json" >"$home/orthanc.log" 2>&1 &
echo $! >"$home/pid"
url="http://127.0.0.1:$port/dicom-web"
for _ in $(seq 1 60); do
  if answers "$url"; then
    echo "$url" >"$home/url"
    echo "$url"
    exit 0
  fi
  kill -0 "$(cat "$home/pid")" 2>/dev/null || break
  sleep 0.5
done
echo "Orthanc did not start; see $home/orthanc.log" >&2
tail -20 "$home/orthanc.log" >&2 || true
exit 1
