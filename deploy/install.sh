#!/usr/bin/env bash
# Install or update mani on one host, from this checkout. Idempotent: run it again after every
# `git pull`; it never replaces the environment file or the secret key.
#
#   sudo deploy/install.sh
#
# The layout (the same in deploy/*.service and docs/):
#   /opt/mani/.venv            the virtual environment (mani, mani-console)
#   /etc/mani/mani.env         settings for the units and for admins' shells (root:mani 0640)
#   /etc/mani/secret.key       the key for secrets at rest (root:mani 0640: User=mani reads it)
#   /var/lib/mani              the data directory (mani:mani 0750)
#   /etc/systemd/system/mani-worker.service, mani-serve.service
#   /usr/local/bin/mani, mani-console   links into the virtual environment
#
# Knobs, for tests and unusual hosts:
#   MANI_PREFIX=/tmp/root   install under a scratch root; no system user is created, the files
#                           belong to the user running the script, systemd is not told
#   MANI_PYTHON=python3.11  the interpreter for the virtual environment
#   MANI_PIP_ARGS="..."     extra arguments for pip (e.g. --no-index --find-links DIR)
#   MANI_PACKAGE=PATH       what pip installs: this checkout by default, or a built wheel
set -euo pipefail

PREFIX="${MANI_PREFIX:-}"
SOURCE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${MANI_PYTHON:-$(command -v python3.11 || command -v python3)}"
PACKAGE="${MANI_PACKAGE:-$SOURCE}"
read -r -a PIP_ARGS <<< "${MANI_PIP_ARGS:-}"

APP_DIR="$PREFIX/opt/mani"
VENV="$APP_DIR/.venv"
ETC_DIR="$PREFIX/etc/mani"
ENV_FILE="$ETC_DIR/mani.env"
KEY_FILE="$ETC_DIR/secret.key"
DATA_DIR="$PREFIX/var/lib/mani"
UNIT_DIR="$PREFIX/etc/systemd/system"
BIN_DIR="$PREFIX/usr/local/bin"

log() { printf 'install.sh: %s\n' "$*"; }

if [ -z "$PREFIX" ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "install.sh: run it as root (sudo), or set MANI_PREFIX to install under a scratch root" >&2
    exit 2
  fi
  USER_NAME=mani
  GROUP_NAME=mani
  ADMIN_USER=root
  if ! getent group "$GROUP_NAME" >/dev/null; then
    groupadd --system "$GROUP_NAME"
    log "created the group $GROUP_NAME"
  fi
  if ! getent passwd "$USER_NAME" >/dev/null; then
    useradd --system --gid "$GROUP_NAME" --home-dir /var/lib/mani --no-create-home \
      --shell /usr/sbin/nologin --comment "mani bulk email" "$USER_NAME"
    log "created the system user $USER_NAME"
  fi
else
  # A scratch root: everything belongs to whoever runs the script.
  USER_NAME="$(id -un)"
  GROUP_NAME="$(id -gn)"
  ADMIN_USER="$USER_NAME"
fi

# Folders: the code is root's, the data is mani's, the settings are readable by mani only.
install -d -m 0755 "$APP_DIR" "$UNIT_DIR" "$BIN_DIR"
install -d -m 0750 -o "$USER_NAME" -g "$GROUP_NAME" "$DATA_DIR"
install -d -m 0750 -o "$ADMIN_USER" -g "$GROUP_NAME" "$ETC_DIR"

# The virtual environment, made once; mani itself is (re)installed every run.
if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
  log "created $VENV"
fi
"$VENV/bin/pip" install --quiet --disable-pip-version-check ${PIP_ARGS[@]+"${PIP_ARGS[@]}"} "$PACKAGE"
log "installed mani $("$VENV/bin/python" -c 'from importlib.metadata import version; print(version("mani"))') into $VENV"
ln -sfn "$VENV/bin/mani" "$BIN_DIR/mani"
ln -sfn "$VENV/bin/mani-console" "$BIN_DIR/mani-console"

# The environment file: written once from the example, then the admin's.
FIRST_ENV=0
if [ ! -e "$ENV_FILE" ]; then
  install -m 0640 -o "$ADMIN_USER" -g "$GROUP_NAME" "$SOURCE/deploy/mani.env.example" "$ENV_FILE"
  FIRST_ENV=1
else
  chown "$ADMIN_USER:$GROUP_NAME" "$ENV_FILE"
  chmod 0640 "$ENV_FILE"
fi

# Run a mani command as the service user, with the environment file (quoted values: a shell
# reads it as systemd does).
as_service() {
  local command=("$VENV/bin/mani" "$@")
  if [ -n "$PREFIX" ]; then
    # The file names the real paths; under a scratch root, this install's paths win.
    command=(env MANI_SECRET_KEY_FILE="$KEY_FILE" MANI_DATA_DIR="$DATA_DIR" "${command[@]}")
  fi
  if [ "$(id -un)" != "$USER_NAME" ]; then
    command=(runuser -u "$USER_NAME" -- "${command[@]}")
  fi
  (
    set -a
    # shellcheck source=/dev/null
    . "$ENV_FILE"
    set +a
    "${command[@]}"
  )
}

# The key for secrets at rest: made once, never replaced (that would orphan every secret).
if [ ! -e "$KEY_FILE" ]; then
  "$VENV/bin/mani" keys generate --path "$KEY_FILE" >/dev/null
  log "wrote a new key to $KEY_FILE: copy it to every other host of this install"
fi
chown "$ADMIN_USER:$GROUP_NAME" "$KEY_FILE"
chmod 0640 "$KEY_FILE"

# The units, as they are in deploy/ (they name the paths above).
for unit in mani-worker.service mani-serve.service; do
  install -m 0644 "$SOURCE/deploy/$unit" "$UNIT_DIR/$unit"
done
log "installed the units into $UNIT_DIR"

# The schema: safe to run again, and on every host (alembic takes the newest revision).
if [ "$FIRST_ENV" = 1 ]; then
  log "wrote $ENV_FILE from deploy/mani.env.example: set the database, Redis and mail there,"
  log "then run this script again (it then runs \`mani db upgrade\`)"
  exit 0
fi
as_service db upgrade
log "database schema up to date"

if [ -z "$PREFIX" ] && [ -d /run/systemd/system ]; then
  systemctl daemon-reload
  log "next: systemctl enable --now mani-worker mani-serve   (after editing $ENV_FILE)"
fi
