#!/usr/bin/env bash
# Set up a fresh Debian machine (Node 20 already installed) for busguard:
# system packages with apt-get, only those missing (idempotent), then the npm
# packages from the committed lock file. Run as root, or as a user with sudo.
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(
  mosquitto mosquitto-clients socat
  gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good
  gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly gstreamer1.0-libav
  ffmpeg libimage-exiftool-perl iproute2
  python3 make g++ gcc
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  echo "setup: system packages already installed"
fi

node -e 'const [a,b]=process.versions.node.split(".").map(Number); if (a<20||(a===20&&b<17)) { console.error("setup: Node >= 20.17 needed, found "+process.versions.node); process.exit(1) }'

# better-sqlite3 and sqlite3 compile from source here (no prebuilt binaries reachable): ~2 min.
if [ -f node_modules/.package-lock.json ] && cmp -s package-lock.json node_modules/.busguard-lock 2>/dev/null; then
  echo "setup: node_modules matches package-lock.json"
else
  npm ci --no-audit --no-fund
  cp package-lock.json node_modules/.busguard-lock
fi
echo "setup: done"
