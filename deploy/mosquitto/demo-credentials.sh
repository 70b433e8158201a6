#!/bin/sh
# One-shot set-up of MQTT credentials for the docker-compose demo, run by the
# `mqtt-credentials` service in the eclipse-mosquitto image before the broker
# starts. Production brokers get their credentials from
# `lobbywatch device provision` instead; nothing here is committed.
#
# * a random password for the collector (user `collector`, which the
#   production ACL lets read lobbywatch/v1/#) and for the simulator (user
#   `simulator`, added below: writes lobbywatch/v1/#, standing in for every
#   edge box), written to /clients/<user>.password for those containers;
# * /broker/passwd (hashed with mosquitto_passwd) and /broker/acl: the
#   production ACL (firmware_config/mosquitto/acl.template) plus the
#   simulator's block.
# Idempotent: existing passwords are kept across `docker compose up` runs.
set -eu
umask 077
# Folders as mounted by deploy/docker-compose.yml; overridable so that
# tests/test_deploy_compose.py can run this script outside a container.
BROKER_DIR="${BROKER_DIR:-/broker}"
CLIENTS_DIR="${CLIENTS_DIR:-/clients}"
ACL_IN="${ACL_IN:-/input/acl}"
BROKER_OWNER="${BROKER_OWNER:-mosquitto:mosquitto}"  # the broker image's user
CLIENT_OWNER="${CLIENT_OWNER:-10001:10001}"          # the lobbywatch image's user
mkdir -p "$BROKER_DIR" "$CLIENTS_DIR"
for user in collector simulator; do
  f="$CLIENTS_DIR/${user}.password"
  if [ ! -s "$f" ]; then
    # 32 random bytes, base64 without newlines or '/' (safe in any client).
    head -c 32 /dev/urandom | base64 | tr -d '\n/+=' > "$f"
  fi
done
: > "$BROKER_DIR/passwd"
mosquitto_passwd -b "$BROKER_DIR/passwd" collector "$(cat "$CLIENTS_DIR/collector.password")"
mosquitto_passwd -b "$BROKER_DIR/passwd" simulator "$(cat "$CLIENTS_DIR/simulator.password")"
{
  cat "$ACL_IN"
  printf '\n# --- docker-compose demo users (deploy/mosquitto/demo-credentials.sh) ---\n'
  printf 'user simulator\ntopic write lobbywatch/v1/#\n'
} > "$BROKER_DIR/acl"
chown -R "$BROKER_OWNER" "$BROKER_DIR"
chmod 0700 "$BROKER_DIR"
chmod 0600 "$BROKER_DIR/passwd" "$BROKER_DIR/acl"
chown -R "$CLIENT_OWNER" "$CLIENTS_DIR"
echo "mqtt-credentials: demo credentials ready"
