# Shared by scripts/demo and scripts/test: a virtualenv in .venv with postroom installed.
# Usage: source scripts/_bootstrap.sh; ensure_venv EXTRA
set -euo pipefail

PYTHON=${PYTHON:-python3}

is_root() { [ "$(id -u)" = 0 ]; }

apt_install() {
  # Install Debian packages without starting their system services (we start our own, on free ports).
  local created_policy=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    created_policy=yes
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
  [ -n "$created_policy" ] && rm -f /usr/sbin/policy-rc.d
  return 0
}

check_python() {
  if ! command -v "$PYTHON" >/dev/null; then
    echo "postroom needs Python 3.11 or newer: install python3 (or set PYTHON=/path/to/python3.11)" >&2
    exit 1
  fi
  if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    echo "postroom needs Python 3.11 or newer; $PYTHON is $("$PYTHON" --version 2>&1)" >&2
    exit 1
  fi
  if ! "$PYTHON" -c 'import venv, ensurepip' 2>/dev/null; then
    if is_root && command -v apt-get >/dev/null; then
      apt_install python3-venv
    else
      echo "Python's venv module is missing: install it (Debian/Ubuntu: sudo apt-get install python3-venv)" >&2
      exit 1
    fi
  fi
}

ensure_venv() {
  local extra=$1
  check_python
  if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
  fi
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -c constraints-dev.txt -e ".[${extra}]" 2>&1 \
    | { grep -v "^WARNING: Location" || true; }
}
