#!/usr/bin/env bash
# Installs, from Debian packages, the language toolchains of SPEC §3 that
# runbox's sandbox runs. Idempotent: installs only what is missing.
set -euo pipefail
packages=(python3 nodejs gcc g++ libc6-dev golang-go openjdk-17-jdk-headless rustc bash procps)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
