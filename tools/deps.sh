#!/usr/bin/env bash
# deps.sh installs what `make test` needs beyond Go, node, python3 and apt,
# skipping whatever is already there: redis-server, chromium and prometheus
# (Debian packages), moto (the AWS emulator, in a virtualenv under the user's
# cache so a fresh clone reuses it) and the npm packages pinned in
# package-lock.json. Without root it installs nothing of the system's and
# prints the one command that would; the tests then skip with the reason
# locally and fail when CI is set.
set -euo pipefail
cd "$(dirname "$0")/.."

venv="${SHIPBOT_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/shipbot/venv}"
moto_spec='moto[server]==5.2.1'

has() { command -v "$1" >/dev/null 2>&1; }
has_chromium() { has chromium || has chromium-browser || has google-chrome; }

as_root=""
if [ "$(id -u)" != 0 ]; then
  if has sudo && sudo -n true 2>/dev/null; then as_root="sudo -n"; else as_root="none"; fi
fi

apt_pkgs=()
has redis-server || apt_pkgs+=(redis-server)
has_chromium || apt_pkgs+=(chromium)
has prometheus || apt_pkgs+=(prometheus)
need_moto=1
{ has moto_server || [ -x "$venv/bin/moto_server" ]; } && need_moto=0
# A Debian python3 needs python3-venv for the virtualenv moto goes into.
if [ "$need_moto" = 1 ] && ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
  apt_pkgs+=(python3-venv)
fi

if [ "${#apt_pkgs[@]}" -gt 0 ]; then
  if [ "$as_root" = none ]; then
    echo "make test: missing ${apt_pkgs[*]}; install them with:" >&2
    echo "  sudo apt-get update && sudo apt-get install -y --no-install-recommends ${apt_pkgs[*]}" >&2
  else
    echo "--- installing ${apt_pkgs[*]} (apt)"
    $as_root apt-get update -qq
    # No service of these packages is used: the tests start their own
    # redis-server and prometheus on free ports.
    DEBIAN_FRONTEND=noninteractive $as_root apt-get install -y -qq --no-install-recommends "${apt_pkgs[@]}" >/dev/null
  fi
fi

if [ "$need_moto" = 1 ]; then
  if python3 -c 'import ensurepip, venv' 2>/dev/null; then
    echo "--- installing $moto_spec into $venv"
    mkdir -p "$(dirname "$venv")"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "$moto_spec"
  else
    echo "make test: moto is missing; install it with:" >&2
    echo "  sudo apt-get install -y python3-venv && python3 -m venv $venv && $venv/bin/pip install '$moto_spec'" >&2
  fi
fi

if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "--- installing the npm packages the tests read (npm ci)"
  npm ci --no-audit --no-fund --loglevel=error
fi
