#!/usr/bin/env bash
# deps.sh -- install the Debian packages SmartPark needs, only when one is missing.
set -euo pipefail
pkgs=(nats-server libnats-dev libpq-dev postgresql libhiredis-dev redis-server
      libcjson-dev libjwt-dev libcivetweb-dev libprotobuf-c-dev protobuf-c-compiler
      check libargon2-dev libssl-dev uuid-dev libcurl4-openssl-dev pkg-config cmake
      gcc make clang libclang-rt-14-dev clang-tidy curl xxd nodejs nginx-light
      postgresql-15-partman)
# Debian's npm conflicts with a nodejs that bundles its own npm (NodeSource's): only when missing
command -v npm >/dev/null 2>&1 || pkgs+=(npm)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "deps: installing ${missing[*]}"
sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
