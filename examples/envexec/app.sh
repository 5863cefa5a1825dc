#!/bin/sh
# A tiny 12-factor "app" for the envexec example: it reads its configuration
# from the environment only, prints it, and serves until stopped. envexec
# restarts it with a new environment when the keys in Consul change.
echo "  app $$ up: GREETING='${GREETING:-}' PORT=${PORT:-} DB_HOST=${DB_HOST:-}"
trap 'echo "  app $$ stopping (SIGINT)"; exit 0' INT
trap 'echo "  app $$ stopping (SIGTERM)"; exit 0' TERM
trap 'echo "  app $$ got SIGHUP"' HUP
while :; do sleep 1; done 2>/dev/null # (no "Terminated" line when the group is stopped)
