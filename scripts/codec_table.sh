#!/usr/bin/env bash
# The Opus settings table: speech through the engine's real pipeline (sender call -> simulated
# network -> receiver call) for every bitrate x complexity x FEC x DTX, clean and with random
# loss, each echo scored with PESQ-WB and STOI, printed as a markdown table.
#
# Usage: scripts/codec_table.sh [--quick] [--score-only] [--out DIR] [-- CODEC_SWEEP_OPTIONS...]
#   --quick   a subset for a fast check (16/24/32 kb/s, complexity 5, FEC on, DTX off)
#   --score-only  reuse OUTDIR's speech and audio from an earlier run: score and tabulate
#   --out     where the audio, results.tsv, the scores and table.md go
#             (default <repo>/target/codec-table, or <repo>/target/codec-table-quick)
#   after --, options for the sweep replace the default set, e.g.
#             -- --bitrates 16,24,32 --complexities 5 --loss 0,2,5,10,20
#             (see crates/audio-pipeline/examples/codec_sweep.rs)
# The table goes to stdout and to OUTDIR/table.md; progress to stderr.
# Scoring runs one file at a time in one process (the machine has 2 cores); a lock on OUTDIR
# keeps two runs from sharing a directory.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
quick=0
score_only=0
out=
sweep_args=()
while [[ $# -gt 0 ]]; do
    case $1 in
        --quick) quick=1; shift ;;
        --score-only) score_only=1; shift ;;
        --out) out=${2:?--out needs a directory}; shift 2 ;;
        --) shift; sweep_args=("$@"); break ;;
        *) echo "usage: codec_table.sh [--quick] [--score-only] [--out DIR] [-- SWEEP_OPTIONS...]" >&2; exit 2 ;;
    esac
done
if [[ $quick == 1 ]]; then
    out=${out:-$repo/target/codec-table-quick}
    [[ ${#sweep_args[@]} -gt 0 ]] || sweep_args=(--bitrates 16,24,32 --complexities 5 --fec on --dtx off --timing-passes 3)
else
    out=${out:-$repo/target/codec-table}
fi
mkdir -p "$out"
exec 9>"$out/.lock"
flock -n 9 || { echo "codec_table: another run is using $out" >&2; exit 2; }
log() { echo "codec_table: $*" >&2; }

ref=$out/speech/speech16k.wav
if [[ $score_only == 0 ]]; then
    log "building the sweep (release)"
    (cd "$repo" && cargo build --release -q -p audio-pipeline --example codec_sweep)
    bin=${CARGO_TARGET_DIR:-$repo/target}/release/examples/codec_sweep

    # 2 s of silence before the speech: the receiving jitter buffer settles on its delay before
    # the first word, so the table compares codec settings, not the buffer's start.
    log "making speech"
    "$repo/scripts/quality/make_speech.sh" "$out/speech" 2 >/dev/null 2>&1
    py=$("$repo/scripts/quality/pyenv.sh")

    # A fresh audio directory so a smaller sweep does not leave older files in the table.
    rm -rf "$out/audio" "$out/scores"
    mkdir -p "$out/audio" "$out/scores"
    log "sweeping ${sweep_args[*]:-(all settings)}"
    "$bin" "$ref" "$out/audio" "${sweep_args[@]}" 2>"$out/sweep.log"
else
    py=$("$repo/scripts/quality/pyenv.sh")
    [[ -f $out/audio/results.tsv && -f $ref ]] || { log "no earlier run in $out"; exit 2; }
    rm -rf "$out/scores"
    mkdir -p "$out/scores"
fi

# One python process scores every file in turn (the imports alone take seconds on a busy
# machine); one JSON line per file. score.py exits 2 if any file could not be scored: those
# lines hold {"error": ...} and the table shows "err".
files=()
while IFS=$'\t' read -r name _; do
    [[ $name == name ]] || files+=("$out/audio/$name.wav")
done <"$out/audio/results.tsv"
log "scoring ${#files[@]} files"
"$py" "$repo/scripts/quality/score.py" "$ref" "${files[@]}" --json \
    2>>"$out/scores/errors.log" >"$out/scores/all.jsonl" || true

"$py" - "$out/audio/results.tsv" "$out/scores" <<'EOF' | tee "$out/table.md"
# Joins the sweep's results.tsv with the scores into one markdown table: a row per encoder
# setting, a PESQ-WB and a STOI column per loss rate.
import csv, json, os, sys

tsv, scores = sys.argv[1], sys.argv[2]
rows = list(csv.DictReader(open(tsv), delimiter="\t"))
losses = sorted({int(r["loss_pct"]) for r in rows})
settings = {}
for r in rows:
    key = (int(r["bitrate_kbps"]), int(r["complexity"]), r["fec"], r["dtx"], r["adapt"])
    settings.setdefault(key, {})[int(r["loss_pct"])] = r

by_name = {}
with open(os.path.join(scores, "all.jsonl")) as f:
    for line in f:
        s = json.loads(line)
        by_name[os.path.basename(s["deg"])[: -len(".wav")]] = s

def score(name):
    return by_name.get(name, {"error": "no score"})

def label(loss):
    return "clean" if loss == 0 else f"{loss} % loss"

adapts = {r["adapt"] for r in rows}
head = ["kb/s", "complexity", "FEC", "DTX"]
if adapts != {"0"}:
    head.append("bitrate follows loss")
head.append("encode us (median/p99)")
for loss in losses:
    head += [f"PESQ-WB {label(loss)}", f"STOI {label(loss)}"]
worst = max(losses)
head += ["max delay step ms", "bytes/packet"]
if worst > 0:
    head.append(f"FEC rebuilt / lost at {worst} %")
print("| " + " | ".join(head) + " |")
print("|" + "|".join("---" for _ in head) + "|")
onoff = {"1": "on", "0": "off"}
for key in sorted(settings):
    by_loss = settings[key]
    first = by_loss[min(by_loss)]
    cells = [str(key[0]), str(key[1]), onoff[key[2]], onoff[key[3]]]
    if adapts != {"0"}:
        cells.append(onoff[key[4]])
    cells.append(f"{float(first['encode_median_us']):.0f} / {float(first['encode_p99_us']):.0f}")
    steps = []
    for loss in losses:
        r = by_loss.get(loss)
        s = score(r["name"]) if r else {"error": "not run"}
        if "error" in s:
            cells += ["err", "err"]
        else:
            cells += [f"{s['pesq_wb']:.2f}", f"{s['stoi']:.3f}"]
            steps.append(s["max_step_ms"])
    cells.append(f"{max(steps):.1f}" if steps else "-")
    # Bytes per packet of the clean run (the loss runs send the same packets).
    cells.append(f"{float(first['mean_bytes']):.1f}")
    if worst > 0:
        w = by_loss.get(worst)
        rebuilt = dict(kv.split("=") for kv in w["frame_sources"].split(",") if "=" in kv) if w else {}
        cells.append(f"{rebuilt.get('FecRecovered', '0')} / {w['packets_lost']}" if w else "-")
    print("| " + " | ".join(cells) + " |")
EOF
if [[ -s $out/scores/errors.log ]]; then
    log "some files could not be scored: see $out/scores/errors.log"
fi
