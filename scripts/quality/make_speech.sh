#!/usr/bin/env bash
# Makes the speech sample the quality measurements use: Harvard sentences spoken by
# espeak-ng (Debian's espeak-ng), with leading and trailing silence, as
#   DIR/speech16k.wav  16 kHz mono 16-bit (the reference the echo is scored against)
#   DIR/speech48k.wav  48 kHz mono 16-bit (what a far end sends: Chromium's fake microphone,
#                      the webrtc-rs peer's 48 kHz Opus encoder)
# Usage: make_speech.sh DIR [LEAD_SECONDS]   (LEAD_SECONDS of silence before speech, default 0.5)
set -euo pipefail
dir=${1:?usage: make_speech.sh DIR [LEAD_SECONDS]}
lead=${2:-0.5}
mkdir -p "$dir"
for tool in espeak-ng sox; do
    command -v "$tool" >/dev/null || { echo "make_speech: $tool is missing (apt-get install espeak-ng sox)" >&2; exit 2; }
done
text="The birch canoe slid on the smooth planks. Glue the sheet to the dark blue background. \
It's easy to tell the depth of a well. These days a chicken leg is a rare dish. \
Rice is often served in round bowls. The juice of lemons makes fine punch."
raw=$(mktemp --suffix=.wav)
trap 'rm -f "$raw"' EXIT
espeak-ng -v en-us -s 150 -w "$raw" "$text"
# Normalise to -3 dBFS peak so both directions keep headroom, pad with silence. No dither
# (-D): sox's is random, so every run made a slightly different reference and scores of the
# same settings moved by up to 0.03 PESQ between runs.
sox -D "$raw" -r 16000 -c 1 -b 16 "$dir/speech16k.wav" norm -3 pad "$lead" 0.5
sox -D "$raw" -r 48000 -c 1 -b 16 "$dir/speech48k.wav" norm -3 pad "$lead" 0.5
