#!/usr/bin/env bash
# Creates or updates the Python venv the quality measurements use and prints the absolute
# path of its python on stdout (everything else goes to stderr), e.g.
#   py=$(scripts/quality/pyenv.sh) && "$py" scripts/quality/score.py ref.wav deg.wav
# The venv lives at ${BOTMEDIA_PYENV:-<repo>/target/quality-venv}. The requirements are
# (re)installed only when requirements.txt changed since the last successful install (a stamp
# file in the venv holds its hash), so a second run takes well under a second.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
venv=${BOTMEDIA_PYENV:-$repo/target/quality-venv}
req=$here/requirements.txt
stamp=$venv/.requirements.sha256
log() { echo "pyenv: $*" >&2; }

want=$(sha256sum "$req" | cut -d' ' -f1)
if [[ -x $venv/bin/python && -f $stamp && $(cat "$stamp") == "$want" ]]; then
    echo "$venv/bin/python"
    exit 0
fi

# Debian ships venv's ensurepip separately (python3-venv); we run as root, so install it.
if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
    log "installing python3-venv"
    if ! { apt-get install -y -qq python3-venv >/dev/null 2>&1 \
        || { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq python3-venv >/dev/null 2>&1; }; }; then
        log "could not install python3-venv (apt-get install python3-venv)"
        exit 2
    fi
fi
# pesq compiles C: it needs the Python headers and a compiler.
if [[ ! -f $(python3 -c 'import sysconfig; print(sysconfig.get_paths()["include"])')/Python.h ]]; then
    log "installing python3-dev"
    apt-get install -y -qq python3-dev build-essential >/dev/null 2>&1 \
        || { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq python3-dev build-essential >/dev/null 2>&1; } \
        || { log "could not install python3-dev"; exit 2; }
fi
# soundfile loads libsndfile through cffi; the wheel bundles it on x86_64/aarch64, so nothing
# to do here.

if [[ ! -x $venv/bin/python ]]; then
    log "creating $venv"
    mkdir -p "$(dirname "$venv")"
    python3 -m venv "$venv" >&2
fi
pip=("$venv/bin/python" -m pip --disable-pip-version-check -q)
log "installing $(basename "$req") (first run takes a few minutes)"
"${pip[@]}" install --upgrade pip wheel setuptools >&2
# Everything but pesq first: pesq's build imports numpy and cython from the venv itself.
grep -vE '^\s*(#|$)' "$req" | grep -viE '^pesq\b' > "$venv/.requirements-no-pesq.txt"
"${pip[@]}" install -r "$venv/.requirements-no-pesq.txt" >&2
"${pip[@]}" install --no-build-isolation "$(grep -iE '^pesq\b' "$req")" >&2
"$venv/bin/python" -c 'import numpy, scipy, soundfile, pesq, pystoi' >&2
echo "$want" > "$stamp"
echo "$venv/bin/python"
