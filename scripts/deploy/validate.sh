#!/usr/bin/env bash
# Validates the deployment artifacts (deploy/kubernetes, the Dockerfile) with validate.py in
# a venv of its own: the Kubernetes JSON schemas (kubernetes-validate) in strict mode, and an
# operator's lint of the kustomize base and the Dockerfile. Arguments go to validate.py
# (--base DIR, --dockerfile FILE, --kubernetes-version X.Y). Exit status: validate.py's (0
# clean, 1 problems found, each printed on its own line); 2 when the venv cannot be made.
#
# The venv lives at ${BOTMEDIA_DEPLOY_VENV:-<repo>/target/deploy-venv} and is (re)installed
# only when requirements.txt changed since the last successful install (a stamp holds its
# hash), so a second run takes well under a second. Run by tests/deploy.rs (`make test`).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
venv=${BOTMEDIA_DEPLOY_VENV:-$repo/target/deploy-venv}
req=$here/requirements.txt
stamp=$venv/.requirements.sha256
log() { echo "deploy-venv: $*" >&2; }

want=$(sha256sum "$req" | cut -d' ' -f1)
if ! [[ -x $venv/bin/python && -f $stamp && $(cat "$stamp") == "$want" ]]; then
    # Several tests may start this at once: one builds the venv, the others wait for it.
    mkdir -p "$(dirname "$venv")"
    exec 9>"$venv.lock"
    flock 9
    if ! [[ -x $venv/bin/python && -f $stamp && $(cat "$stamp") == "$want" ]]; then
        # Debian ships venv's ensurepip separately (python3-venv); we run as root.
        if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
            log "installing python3-venv"
            if ! { apt-get install -y -qq python3-venv >/dev/null 2>&1 \
                || { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq python3-venv >/dev/null 2>&1; }; }; then
                log "could not install python3-venv (apt-get install python3-venv)"
                exit 2
            fi
        fi
        # validate.py reads serve.toml with tomllib (Python 3.11+, Debian bookworm's).
        if ! python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
            log "python3 is $(python3 --version 2>&1); validate.py needs 3.11 or newer"
            exit 2
        fi
        if [[ ! -x $venv/bin/python ]]; then
            log "creating $venv"
            python3 -m venv "$venv" >&2
        fi
        log "installing $(basename "$req")"
        "$venv/bin/python" -m pip --disable-pip-version-check -q install -r "$req" >&2 \
            || { log "pip install -r $req failed"; exit 2; }
        "$venv/bin/python" -c 'import yaml, kubernetes_validate' >&2
        echo "$want" > "$stamp"
    fi
    flock -u 9
    exec 9>&-
fi
exec "$venv/bin/python" "$here/validate.py" "$@"
