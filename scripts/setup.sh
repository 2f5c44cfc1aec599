#!/usr/bin/env bash
# Installs what building and testing botmedia needs on a Debian machine, skipping what is
# already there: a Rust toolchain, cargo-nextest, and the Debian packages below.
# Safe to run again; used by `make demo`, `make test` and CI.
set -euo pipefail

# Debian packages: cmake builds libopus (opus crate); ALSA headers for cpal; ca-certificates
# for HTTPS to Graph (rustls reads the system's roots even to build a client); libsoxr for the
# resampling bench's peer.
PACKAGES=(build-essential pkg-config cmake libasound2-dev libsoxr-dev ca-certificates)
# Only for the tests (--test): real browsers (tests/browser.rs: Chromium,
# tests/browser_firefox.rs: Firefox ESR) in their own network namespaces (iproute2,
# util-linux), and PulseAudio null sinks for the audio device test (tests/device.rs;
# libasound2-plugins routes ALSA's default device to PulseAudio) and Firefox's output.
# Speech for the audio-quality tests (tests/speech_*.rs): espeak-ng speaks the sample, sox
# converts it (scores come from a venv made by scripts/quality/pyenv.sh below, which installs
# python3-venv and python3-dev itself if the python3 on PATH lacks them). A Prometheus server
# and promtool scrape and lint the bot's /metrics (tests/metrics.rs).
if [ "${1:-}" = "--test" ]; then
    PACKAGES+=(chromium firefox-esr iproute2 util-linux pulseaudio pulseaudio-utils libasound2-plugins
        espeak-ng sox prometheus)
fi

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

missing=()
for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing Debian packages: ${missing[*]}"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

if ! command -v cargo >/dev/null 2>&1; then
    if [ -x "$HOME/.cargo/bin/cargo" ]; then
        export PATH="$HOME/.cargo/bin:$PATH"
    else
        echo "setup: installing the Rust toolchain with rustup"
        command -v curl >/dev/null 2>&1 || as_root apt-get install -y -qq curl ca-certificates
        curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal --component clippy,rustfmt
        export PATH="$HOME/.cargo/bin:$PATH"
    fi
fi

if [ "${1:-}" = "--test" ] && ! cargo nextest --version >/dev/null 2>&1; then
    echo "setup: installing cargo-nextest"
    cargo install cargo-nextest --locked
fi

# The speech-quality tests score with PESQ-WB and STOI in a venv under target/ (built once,
# reused while scripts/quality/requirements.txt is unchanged).
if [ "${1:-}" = "--test" ]; then
    "$(dirname "$0")/quality/pyenv.sh" >/dev/null
fi
