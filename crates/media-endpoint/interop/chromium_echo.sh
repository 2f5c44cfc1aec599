#!/bin/sh
# Interop check with headless Chromium playing the calling service against the
# echo_endpoint example, all on loopback in a fresh network namespace (needs root for
# `unshare -n`, and Debian's `chromium`). Prints the page's RESULT lines and the
# endpoint's events.
#
#   cargo build -p media-endpoint --example echo_endpoint
#   sh crates/media-endpoint/interop/chromium_echo.sh
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
bin="$root/target/debug/examples/echo_endpoint"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

unshare -n sh -c '
  set -eu
  ip link set lo up
  RUST_LOG="${RUST_LOG:-info}" "$0" 127.0.0.1:8445 30 > "$1/endpoint.log" 2>&1 &
  endpoint=$!
  sleep 1
  url=$(grep -m1 "^http" "$1/endpoint.log")
  timeout 25 chromium --headless=new --no-sandbox --disable-gpu --disable-background-networking \
    --disable-component-update --disable-sync --disable-quic --no-first-run \
    --user-data-dir="$1/profile" --autoplay-policy=no-user-gesture-required \
    --allow-loopback-in-peer-connection --allow-file-access-from-files \
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1" \
    --disable-features=WebRtcHideLocalIpsWithMdns --enable-logging=stderr --v=0 \
    "file://$2/browser_echo.html?url=$url" 2>&1 | grep -o "RESULT.*" || true
  kill "$endpoint" 2>/dev/null || true
  wait "$endpoint" 2>/dev/null || true
  cp "$1/endpoint.log" /tmp/endpoint-last.log; grep -E "event=|leg ended" "$1/endpoint.log" | sed "s/.*INFO[^ ]* //" | cut -c1-200
' "$bin" "$work" "$here"
