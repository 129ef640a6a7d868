#!/bin/sh
# Some secrets are read by the binaries only from the environment (DATABASE_URL with its
# password, BTC_RPC_PASSWORD, the watchman's WATCHMAN_BTC_RPC_PASSWORD). Set
# NAME_FILE=/run/secrets/... instead, and NAME is set here from that file, so the value is in
# neither compose.yaml nor `docker inspect`.
set -eu
for name in DATABASE_URL BTC_RPC_PASSWORD WATCHMAN_BTC_RPC_PASSWORD; do
    eval "file=\${${name}_FILE:-}"
    if [ -n "$file" ]; then
        if [ ! -r "$file" ]; then
            echo "entrypoint: ${name}_FILE=$file is not readable by uid $(id -u)" >&2
            exit 2
        fi
        value=$(cat "$file")
        export "$name=$value"
        unset "${name}_FILE"
    fi
done
exec "$@"
