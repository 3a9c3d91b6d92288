#!/usr/bin/env bash
# Installs the daemon as a systemd service (run as root; `make install` runs it):
#   PREFIX/venv            a virtual environment with this checkout installed
#   /etc/systemd/system/reconciler.service
#   /etc/reconciler/config.hcl   the default configuration, unless one is there already
#   /etc/reconciler/token        a random API token (root and the reconciler group only),
#                                unless one is there already; the CLI finds it by itself
#   /var/lib/reconciler/tasks    where the task files live
# and the `reconciler` system user. Then: systemctl enable --now reconciler
#
# ROOT=/some/dir installs everything under that directory instead (for packaging): no user
# is created and systemd is not told.
set -euo pipefail

ROOT="${ROOT:-}"
PREFIX="${PREFIX:-/opt/reconciler}"
PYTHON="${PYTHON:-python3}"
src="$(cd "$(dirname "$0")/.." && pwd)"

"$PYTHON" -m venv "$ROOT$PREFIX/venv"
"$ROOT$PREFIX/venv/bin/python" -m pip install -q --upgrade "$src"
install -D -m 0644 "$src/README.md" "$ROOT$PREFIX/README.md"

unit="$ROOT/etc/systemd/system/reconciler.service"
install -d "$(dirname "$unit")"
sed "s|/opt/reconciler|$PREFIX|g" "$src/systemd/reconciler.service" > "$unit.tmp"
chmod 0644 "$unit.tmp"
mv "$unit.tmp" "$unit"

config="$ROOT/etc/reconciler/config.hcl"
if [ -e "$config" ]; then
    echo "kept the existing $config"
else
    install -D -m 0640 "$src/systemd/config.hcl" "$config"
fi
install -d -m 0750 "$ROOT/var/lib/reconciler/tasks"

# The API token: 256 random bits, written under umask 077 so that it is never readable by
# others, not even for a moment.
token="$ROOT/etc/reconciler/token"
if [ -e "$token" ]; then
    echo "kept the existing $token"
else
    (umask 077 && "$PYTHON" -c 'import secrets; print(secrets.token_urlsafe(32))' > "$token.tmp")
    mv "$token.tmp" "$token"
fi
chmod 0640 "$token"

if [ -z "$ROOT" ]; then
    if ! id reconciler >/dev/null 2>&1; then
        useradd --system --home-dir /var/lib/reconciler --shell /usr/sbin/nologin reconciler
    fi
    chown -R reconciler:reconciler /var/lib/reconciler
    chgrp reconciler "$config" "$token"
    systemctl daemon-reload
    echo "installed; start it with: systemctl enable --now reconciler"
else
    echo "installed under $ROOT"
fi
