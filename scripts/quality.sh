#!/usr/bin/env bash
# Speech quality of echo engines, side by side: botmedia's examples/media_echo and an aiortc
# reference engine (scripts/quality/aiortc_echo.py), each called by independent far ends
# that send spoken sentences (scripts/quality/make_speech.sh) and record the echo:
#   webrtc-rs  crates/quality-peer's speech-peer (48 kHz Opus, 96 kb/s, FEC; seeded loss,
#              bursts and jitter on the way to the engine; echo placed on the engine's clock)
#   chromium   scripts/quality/chromium_far_end.py (headless Chromium; run with the engine in
#              a fresh network namespace), when that file and Chromium are there
# under the conditions clean, 5/10/15 % random loss, bursts (10 % in bursts of 3 packets on
# average) and 40 ms jitter (each packet delayed 0..40 ms, so they reorder). Each echo is
# scored by scripts/quality/score.py (PESQ-WB, STOI, per-window delay track). Prints a
# markdown table on stdout; progress goes to stderr.
#
# Usage: scripts/quality.sh [--quick] [--stress] [--runs N] [--seconds S] [--ref-bitrate B]
#                           [--no-chromium] [--keep DIR] [--only COND[,COND]]
#                           [--far-end webrtc-rs|chromium] [--engine botmedia|aiortc-ref]
#   --quick        clean and 10 % loss only, one run each
#   --stress       every call is made quiet and again under load: two busy processes at normal
#                  priority and a parallel `cargo build` of the workspace into a fresh target
#                  dir under /tmp (issue 12 item 5); the table adds the delay's change against
#                  the quiet call and its drift over the call
#   --runs N       calls per cell (the table shows medians, and min-max of PESQ and STOI)
#   --seconds S    send only the first S seconds of the 17 s sample
#   --ref-bitrate  the aiortc engine's Opus bitrate (96000; try 24000 or 32000)
#   --no-chromium  skip the Chromium far end
#   --keep DIR     keep every WAV and JSON in DIR (default: a temp dir, removed)
#   --only C,..    only these conditions (clean loss5 loss10 loss15 bursts jitter40), e.g.
#                  `--only bursts --far-end chromium --engine botmedia` runs one cell
#   --far-end F    only this far end (webrtc-rs or chromium)
#   --engine E     only this engine (botmedia or aiortc-ref)
# Everything binds 127.0.0.1. Every process this script starts, it stops.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
quality=$repo/scripts/quality
target=${CARGO_TARGET_DIR:-$repo/target}
log() { echo "quality: $*" >&2; }

# ---------------------------------------------------------------------------------------------
# Process bookkeeping: everything started in the background is recorded and stopped on exit.
pids=()
groups=()
stop_pid() { # PID [SIGNAL]: ask, wait up to 5 s, then kill
    local pid=$1 sig=${2:-TERM} i
    kill -0 "$pid" 2>/dev/null || return 0
    kill -"$sig" "$pid" 2>/dev/null || true
    for i in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}
stop_group() { # PGID: the whole process group (a cargo build and its rustc children)
    local pgid=$1 i
    kill -TERM -- "-$pgid" 2>/dev/null || return 0
    for i in $(seq 50); do kill -0 -- "-$pgid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL -- "-$pgid" 2>/dev/null || true
    wait "$pgid" 2>/dev/null || true
}
cleanup() {
    local p
    for p in "${pids[@]}"; do stop_pid "$p"; done
    for p in "${groups[@]}"; do stop_group "$p"; done
    pids=()
    groups=()
    if [[ -n ${work:-} && -z ${keep:-} ]]; then rm -rf "$work"; fi
    if [[ -n ${stress_dir:-} ]]; then rm -rf "$stress_dir"; fi
}

# Starts an engine in the background writing its blob to $2; sets $engine_pid; waits for the
# blob and sets $session_url.
start_engine() { # ENGINE BLOBFILE ERRFILE
    local engine=$1 blob=$2 err=$3 i
    case $engine in
        botmedia) "$target/release/examples/media_echo" >"$blob" 2>"$err" & ;;
        aiortc-ref) "$py" "$quality/aiortc_echo.py" --bitrate "$ref_bitrate" >"$blob" 2>"$err" & ;;
        *) log "unknown engine $engine"; return 1 ;;
    esac
    engine_pid=$!
    pids+=("$engine_pid")
    session_url=
    for i in $(seq 300); do
        if [[ -s $blob ]] && session_url=$("$py" -c '
import json, sys
b = json.loads(open(sys.argv[1]).readline())
print(b["mpUri"] + "/sessions/" + b["mpMediaSessionId"])' "$blob" 2>/dev/null); then
            return 0
        fi
        kill -0 "$engine_pid" 2>/dev/null || break
        sleep 0.1
    done
    log "$engine did not print its blob; its stderr:"; sed 's/^/    /' "$err" >&2
    return 1
}

stop_engine() {
    # media_echo ends on Ctrl-C (SIGINT); the aiortc engine on SIGINT or SIGTERM.
    stop_pid "$engine_pid" INT
    local kept=() p
    for p in "${pids[@]}"; do [[ $p == "$engine_pid" ]] || kept+=("$p"); done
    pids=("${kept[@]}")
}

condition_args() { # CONDITION -> far-end impairment options
    case $1 in
        clean) echo "" ;;
        loss5) echo "--loss 5" ;;
        loss10) echo "--loss 10" ;;
        loss15) echo "--loss 15" ;;
        bursts) echo "--loss 10 --burst 3" ;;
        jitter40) echo "--jitter-ms 40" ;;
        *) log "unknown condition $1"; return 1 ;;
    esac
}

# One call: engine up, far end calls it, engine down. Writes DIR/{blob,engine.err,far.json,
# far.err,echo16k.wav}. Runs in the current namespace.
one_call() { # ENGINE FAREND CONDITION SEED DIR
    local engine=$1 far=$2 cond=$3 seed=$4 dir=$5 args rc=0
    args=$(condition_args "$cond")
    mkdir -p "$dir"
    start_engine "$engine" "$dir/blob" "$dir/engine.err" || return 1
    # shellcheck disable=SC2086 # the condition's options are words
    case $far in
        webrtc-rs)
            timeout 120 "$target/release/speech-peer" --url "$session_url" \
                --input "$mic" --output "$dir/echo16k.wav" --seed "$seed" $args \
                >"$dir/far.json" 2>"$dir/far.err" || rc=$?
            ;;
        chromium)
            # With the reference it also scores the echo against Chromium's own stretching:
            # engine_max_step_ms, the steps inside speech Chromium's jitter buffer does not
            # explain.
            timeout 180 "$py" "$quality/chromium_far_end.py" --url "$session_url" \
                --input "$mic" --output "$dir/echo16k.wav" --seconds "$record_s" --seed "$seed" \
                --reference "$reference" $args >"$dir/far.json" 2>"$dir/far.err" || rc=$?
            ;;
    esac
    stop_engine
    if [[ $rc -ne 0 ]]; then
        log "$far -> $engine ($cond) failed ($rc):"; tail -n 5 "$dir/far.err" | sed 's/^/    /' >&2
    fi
    return "$rc"
}

# ---------------------------------------------------------------------------------------------
# Hidden entry point: one call inside a fresh network namespace (for Chromium).
if [[ ${1:-} == __netns_call ]]; then
    shift
    ip link set lo up
    py=$1 target=$2 mic=$3 record_s=$4 ref_bitrate=$5 reference=$6
    shift 6
    trap cleanup EXIT
    trap 'exit 130' INT TERM
    one_call "$@"
    exit $?
fi

quick= stress= runs=1 seconds= ref_bitrate=96000 chromium=1 keep= only= only_far= only_engine=
while [[ $# -gt 0 ]]; do
    case $1 in
        --quick) quick=1 ;;
        --stress) stress=1 ;;
        --runs) runs=${2:?--runs N}; shift ;;
        --seconds) seconds=${2:?--seconds S}; shift ;;
        --ref-bitrate) ref_bitrate=${2:?--ref-bitrate B}; shift ;;
        --no-chromium) chromium= ;;
        --keep) keep=${2:?--keep DIR}; shift ;;
        --only) only=${2:?--only COND[,COND]}; shift ;;
        --far-end) only_far=${2:?--far-end webrtc-rs|chromium}; shift ;;
        --engine) only_engine=${2:?--engine botmedia|aiortc-ref}; shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 0 ;;
        *) log "unknown option $1 (--help)"; exit 2 ;;
    esac
    shift
done
[[ -n $quick ]] && runs=1
if [[ -n $only ]]; then
    IFS=, read -r -a only_list <<<"$only"
    for c in "${only_list[@]}"; do condition_args "$c" >/dev/null || exit 2; done
fi
case $only_far in ''|webrtc-rs|chromium) ;; *) log "unknown far end $only_far"; exit 2 ;; esac
case $only_engine in ''|botmedia|aiortc-ref) ;; *) log "unknown engine $only_engine"; exit 2 ;; esac

trap cleanup EXIT
trap 'exit 130' INT TERM
if [[ -n $keep ]]; then mkdir -p "$keep"; work=$(cd "$keep" && pwd); else work=$(mktemp -d /tmp/botmedia-quality.XXXXXX); fi

log "building media_echo and speech-peer (release)"
# One invocation, so both share one feature resolution (two would build the stack twice).
(cd "$repo" && cargo build --release -p botmedia --example media_echo -p quality-peer --bin speech-peer >&2)
py=$("$quality/pyenv.sh")
"$quality/make_speech.sh" "$work/speech" >&2
mic=$work/speech/speech48k.wav
reference=$work/speech/speech16k.wav
if [[ -n $seconds ]]; then
    sox "$mic" "$work/speech/cut48k.wav" trim 0 "$seconds"
    sox "$reference" "$work/speech/cut16k.wav" trim 0 "$seconds"
    mic=$work/speech/cut48k.wav
    reference=$work/speech/cut16k.wav
fi
speech_s=$(soxi -D "$mic")
# Chromium records a fixed time from connect: the speech, the loop delay and a margin.
record_s=$(awk -v s="$speech_s" 'BEGIN { printf "%.1f", s + 1.5 }')

conditions=(clean loss5 loss10 loss15 bursts jitter40)
[[ -n $quick ]] && conditions=(clean loss10)
if [[ -n $only ]]; then IFS=, read -r -a conditions <<<"$only"; fi
engines=(botmedia aiortc-ref)
[[ -n $only_engine ]] && engines=("$only_engine")
[[ $only_far == webrtc-rs ]] && chromium=
far_ends=(webrtc-rs)
[[ $only_far == chromium ]] && far_ends=()
if [[ -n $chromium ]]; then
    if [[ ! -f $quality/chromium_far_end.py ]]; then
        log "no scripts/quality/chromium_far_end.py yet: the Chromium far end is skipped"
        chromium_note="Chromium far end skipped: scripts/quality/chromium_far_end.py is missing."
    elif ! command -v "${BOTMEDIA_CHROMIUM:-chromium}" >/dev/null; then
        chromium_note="Chromium far end skipped: no chromium on PATH."
    elif ! unshare -n true 2>/dev/null; then
        chromium_note="Chromium far end skipped: cannot create a network namespace (unshare -n needs root)."
    else
        far_ends+=(chromium)
    fi
else
    chromium_note="Chromium far end skipped (--no-chromium)."
fi
if [[ ${#far_ends[@]} -eq 0 ]]; then log "${chromium_note:-no far end to run}"; exit 1; fi
loads=(quiet)
[[ -n $stress ]] && loads=(quiet stress)

# Load for --stress: two busy loops and a workspace build from scratch in its own target dir.
stress_dir=
start_stress() {
    local p
    for p in 1 2; do
        sh -c 'while :; do :; done' &
        pids+=("$!")
        stress_busy+=("$!")
    done
    stress_dir=$(mktemp -d /tmp/botmedia-stress-target.XXXXXX)
    setsid cargo build --workspace --offline --manifest-path "$repo/Cargo.toml" \
        --target-dir "$stress_dir" >/dev/null 2>&1 &
    stress_build=$!
    groups+=("$stress_build")
    # Let the build get going before the call starts.
    sleep 3
}
stop_stress() {
    local p kept=()
    for p in "${stress_busy[@]}"; do stop_pid "$p"; done
    stop_group "$stress_build"
    for p in "${pids[@]}"; do [[ " ${stress_busy[*]} " == *" $p "* ]] || kept+=("$p"); done
    pids=("${kept[@]}")
    kept=()
    for p in "${groups[@]}"; do [[ $p == "$stress_build" ]] || kept+=("$p"); done
    groups=("${kept[@]}")
    stress_busy=()
    rm -rf "$stress_dir"
    stress_dir=
}

results=$work/results.jsonl
: >"$results"
total=$(( ${#far_ends[@]} * ${#conditions[@]} * ${#engines[@]} * ${#loads[@]} * runs ))
n=0
for far in "${far_ends[@]}"; do
    for cond in "${conditions[@]}"; do
        for run in $(seq "$runs"); do
            for load in "${loads[@]}"; do
                for engine in "${engines[@]}"; do
                    n=$((n + 1))
                    dir=$work/$far/$cond/$engine/$load-$run
                    log "[$n/$total] $far -> $engine, $cond, $load, run $run"
                    stress_busy=()
                    [[ $load == stress ]] && start_stress
                    ok=1
                    if [[ $far == chromium ]]; then
                        unshare -n bash "$0" __netns_call "$py" "$target" "$mic" "$record_s" \
                            "$ref_bitrate" "$reference" "$engine" "$far" "$cond" "$run" "$dir" || ok=
                    else
                        one_call "$engine" "$far" "$cond" "$run" "$dir" || ok=
                    fi
                    [[ $load == stress ]] && stop_stress
                    score='{"error": "the call failed"}'
                    if [[ -n $ok ]]; then
                        score=$("$py" "$quality/score.py" "$reference" "$dir/echo16k.wav" --json \
                            2>"$dir/score.err" || true)
                        [[ -n $score ]] || score='{"error": "score.py failed"}'
                    fi
                    far_json=$(tail -n 1 "$dir/far.json" 2>/dev/null || true)
                    "$py" -c '
import json, sys
far, engine, cond, load, run, score, farj = sys.argv[1:8]
try:
    farj = json.loads(farj)
except ValueError:
    farj = {}
print(json.dumps({"far": far, "engine": engine, "condition": cond, "load": load,
                  "run": int(run), "score": json.loads(score), "far_end": farj}))
' "$far" "$engine" "$cond" "$load" "$run" "$score" "$far_json" >>"$results"
                done
            done
        done
    done
done

# ---------------------------------------------------------------------------------------------
# The table.
"$py" - "$results" "$ref_bitrate" "$speech_s" "${chromium_note:-}" <<'EOF'
import json, statistics, sys

path, ref_bitrate, speech_s, note = sys.argv[1:5]
rows = [json.loads(l) for l in open(path) if l.strip()]
ORDER = ["clean", "loss5", "loss10", "loss15", "bursts", "jitter40"]
LABEL = {"clean": "clean", "loss5": "5 % loss", "loss10": "10 % loss", "loss15": "15 % loss",
         "bursts": "10 % loss, bursts of 3", "jitter40": "0-40 ms jitter"}


def med(v):
    v = [x for x in v if x is not None]
    return statistics.median(v) if v else None


def fmt(x, d=2):
    return "-" if x is None else f"{x:.{d}f}"


def span(v, d):
    v = [x for x in v if x is not None]
    if not v:
        return "-"
    if len(v) == 1:
        return f"{v[0]:.{d}f}"
    return f"{statistics.median(v):.{d}f} ({min(v):.{d}f}-{max(v):.{d}f})"


def engine_step(row):
    """Chromium far end: the largest step inside speech its own jitter buffer does not explain."""
    score = row["far_end"].get("score") or {}
    return score.get("engine_max_step_ms")


def drift(score):
    """Delay of the last three speech windows minus the first three's (ms)."""
    t = [w["delay_ms"] for w in score.get("track", [])]
    if len(t) < 6:
        return None
    return statistics.median(t[-3:]) - statistics.median(t[:3])


cells = {}
for r in rows:
    cells.setdefault((r["far"], r["condition"], r["engine"], r["load"]), []).append(r)

stress = any(r["load"] == "stress" for r in rows)
head = ["far end", "condition", "engine", "PESQ-WB", "STOI", "delay ms", "max step ms",
        "engine's max step ms", "steps > 5 ms", "drift ms", "gaps ms", "late sends"]
if stress:
    head += ["stressed delay ms", "vs quiet ms", "stressed drift ms", "stressed step ms",
             "queue growth ms"]
print("| " + " | ".join(head) + " |")
print("|" + "---|" * len(head))
keys = sorted({(f, c, e) for (f, c, e, _) in cells},
              key=lambda k: (k[0] != "webrtc-rs", k[0], ORDER.index(k[1]), k[2] != "botmedia", k[2]))
failed = 0
for f, c, e in keys:
    quiet = cells.get((f, c, e, "quiet"), [])
    sc = [r["score"] for r in quiet if "error" not in r["score"]]
    failed += len(quiet) - len(sc)
    cols = [f, LABEL.get(c, c), e if e != "aiortc-ref" else f"aiortc-ref ({int(ref_bitrate) // 1000} kb/s)",
            span([s.get("pesq_wb") for s in sc], 2), span([s.get("stoi") for s in sc], 3),
            fmt(med([s.get("delay_ms") for s in sc]), 1), fmt(med([s.get("max_step_ms") for s in sc]), 1),
            fmt(med([engine_step(r) for r in quiet]), 1),
            fmt(med([s.get("steps_over_5ms") for s in sc]), 0), fmt(med([drift(s) for s in sc]), 1),
            fmt(med([r["far_end"].get("concealed_ms") for r in quiet]), 0),
            fmt(med([r["far_end"].get("send_late") for r in quiet]), 0)]
    if stress:
        st = cells.get((f, c, e, "stress"), [])
        ss = [r["score"] for r in st if "error" not in r["score"]]
        failed += len(st) - len(ss)
        qd, sd = med([s.get("delay_ms") for s in sc]), med([s.get("delay_ms") for s in ss])
        cols += [fmt(sd, 1), fmt(None if qd is None or sd is None else sd - qd, 1),
                 fmt(med([drift(s) for s in ss]), 1), fmt(med([s.get("max_step_ms") for s in ss]), 1),
                 fmt(med([r["far_end"].get("transit_excess_growth_ms") for r in st]), 1)]
    print("| " + " | ".join(cols) + " |")
print()
print(f"Speech: {float(speech_s):.1f} s of espeak-ng Harvard sentences, sent as 48 kHz Opus at 96 kb/s "
      "(webrtc-rs far end: in-band FEC on). Loss, bursts and jitter apply to what the far end sends "
      "towards the engine, seeded (run r uses seed r, the same for both engines). PESQ-WB and STOI: "
      "median (min-max) over runs; delay: median of the per-window delay inside speech; max step: "
      "the largest delay change between neighbouring speech windows; drift: last three speech "
      "windows' delay minus the first three's; engine's max step: with the Chromium far end, "
      "the largest step that Chromium's own jitter buffer (its getStats counters) does not explain; gaps: output time the engine did not send "
      "(concealed by the far end's PLC; webrtc-rs far end only); late sends: packets the "
      "webrtc-rs far end itself sent over 5 ms after their due time (of ~50 a second): when "
      "not near 0 the machine was too busy for the figures to mean much.")
try:
    with open("/proc/loadavg") as f:
        print(f"Load average at the end: {' '.join(f.read().split()[:3])} "
              f"(on {__import__('os').cpu_count()} cores).")
except OSError:
    pass
if stress:
    print("Stressed: the same call while two busy processes run at normal priority and a workspace "
          "`cargo build` runs from scratch in its own target dir; vs quiet: stressed delay minus "
          "quiet delay; queue growth: change of the echo packets' transit (arrival against their "
          "RTP timestamps) from the first 2 s to the last 2 s, i.e. delay that built up outside "
          "the engine's clock (webrtc-rs far end). Issue 12's target: within 20 ms of quiet, "
          "nothing accumulating.")
if note:
    print(note)
if failed:
    print(f"{failed} call(s) failed or could not be scored: see the logs in the work dir.")
EOF
[[ -n $keep ]] && log "results kept in $work"
exit 0
