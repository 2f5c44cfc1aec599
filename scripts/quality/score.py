#!/usr/bin/env python3
"""Scores an echo of speech against the speech that was sent.

Usage: score.py REF.wav DEG.wav [DEG2.wav ...] [--json] [--window-ms 400] [--hop-ms 200]

REF is what was sent, DEG what came back (a recording that holds REF delayed by anything from
0 to 2 s, possibly with a delay that changes over time, codec damage and concealed losses).
Both are read at any rate and channel count and turned into 16 kHz mono float.

Steps:
1. Coarse delay: the lag (0..--max-delay-ms) that maximises the normalised cross-correlation
   of the whole of DEG against the whole of REF.
2. Speech windows: REF is cut into windows (--window-ms long, every --hop-ms); a window holds
   speech when at least a fifth of its 10 ms frames are louder than the speech level (the 95th
   percentile of the frame levels) minus 30 dB.
3. Local delay: for each speech window, the lag within +-60 ms (--search-ms) of the coarse
   delay that maximises the normalised cross-correlation of that stretch of REF with DEG, to
   the sample.
4. Aligned echo: every window's share of the timeline (half a hop either side of its centre)
   is taken from DEG at that window's delay (a silent window borrows the delay of the nearest
   speech window); neighbouring pieces are joined with 10 ms linear cross-fades.
5. Scores on equal lengths: PESQ-WB (ITU-T P.862.2, package `pesq`) and STOI (`pystoi`).

A delay that changes inside speech is what a jitter buffer that drops or inserts audio does
to a phrase; it lowers intelligibility. Speech runs are separated by silences longer than
150 ms; `max_step_ms` is the largest change of delay between consecutive speech windows of one
run and `steps_over_5ms` counts such changes above 5 ms. Changes across a silence are free.

Exit status: 0 scored, 2 unreadable or too short input, no correlation, or a scorer failure.
"""

import argparse
import json
import math
import sys

import numpy as np
from scipy import signal

RATE = 16000
FRAME = RATE // 100  # 10 ms frames for the speech detector
SPEECH_BELOW_LEVEL_DB = 30.0  # a frame is speech when within this of the speech level
WINDOW_SPEECH_FRACTION = 0.2  # a window is speech when this share of its frames are speech
RUN_GAP_S = 0.150  # a silence longer than this separates two speech runs
CROSSFADE_S = 0.010
MIN_CORR = 0.3  # below this a window (or the whole echo) is "not correlated"
STEP_REPORT_MS = 5.0


class ScoreError(Exception):
    """Input that cannot be scored; the message says why."""


def load(path):
    """Reads a sound file as 16 kHz mono float64 in [-1, 1]."""
    import soundfile

    try:
        data, rate = soundfile.read(path, dtype="float64", always_2d=True)
    except Exception as exc:  # soundfile raises several types (RuntimeError, LibsndfileError)
        raise ScoreError(f"cannot read {path}: {exc}") from exc
    mono = data.mean(axis=1)
    if rate != RATE:
        g = math.gcd(int(rate), RATE)
        mono = signal.resample_poly(mono, RATE // g, int(rate) // g)
    return mono


def normalised_xcorr(x, y):
    """Normalised cross-correlation of a short x against a longer y.

    Returns c where c[k] = <x, y[k:k+len(x)]> / (|x| |y[k:k+len(x)]|) for every k with the
    whole of x inside y. A silent stretch of y gives 0.
    """
    n = len(x)
    raw = signal.correlate(y, x, mode="valid", method="fft")
    energy = np.concatenate(([0.0], np.cumsum(y * y)))
    local = energy[n:] - energy[:-n]
    denom = np.sqrt(np.maximum(local, 0.0) * np.dot(x, x))
    out = np.zeros_like(raw)
    ok = denom > 1e-12
    out[ok] = raw[ok] / denom[ok]
    return out


def coarse_delay(ref, deg, max_lag):
    """Whole-signal delay of deg against ref in samples (0..max_lag) and its correlation.

    The correlation at each lag is normalised by the energies of the overlapping parts, so that
    long lags (less overlap) are not penalised.
    """
    max_lag = min(max_lag, len(deg) - 1)
    # full[k + len(ref) - 1] = sum_n deg[n + k] * ref[n]
    full = signal.correlate(deg, ref, mode="full", method="fft")
    lags = np.arange(0, max_lag + 1)
    raw = full[lags + len(ref) - 1]
    ref_e = np.concatenate(([0.0], np.cumsum(ref * ref)))
    deg_e = np.concatenate(([0.0], np.cumsum(deg * deg)))
    # Overlap for lag k: ref[0:m], deg[k:k+m] with m = min(len(ref), len(deg) - k).
    m = np.minimum(len(ref), len(deg) - lags)
    denom = np.sqrt(ref_e[m] * (deg_e[lags + m] - deg_e[lags]))
    norm = np.where(denom > 1e-12, raw / np.maximum(denom, 1e-12), 0.0)
    best = int(np.argmax(norm))
    return best, float(norm[best])


def speech_frames(ref):
    """Boolean per 10 ms frame of ref: does it hold speech (relative to the speech level)."""
    count = len(ref) // FRAME
    frames = ref[: count * FRAME].reshape(count, FRAME)
    level_db = 10.0 * np.log10(np.mean(frames * frames, axis=1) + 1e-20)
    speech_level = np.percentile(level_db, 95)
    return level_db > speech_level - SPEECH_BELOW_LEVEL_DB


def silence_gaps(is_speech):
    """(start_s, end_s) of every run of non-speech frames longer than RUN_GAP_S."""
    gaps = []
    start = None
    for i, s in enumerate(list(is_speech) + [True]):
        if not s and start is None:
            start = i
        elif s and start is not None:
            if (i - start) * FRAME / RATE > RUN_GAP_S:
                gaps.append((start * FRAME / RATE, i * FRAME / RATE))
            start = None
    return gaps


def local_delays(ref, deg, windows, coarse, search):
    """Best delay (samples) and normalised correlation of each (start, length) window."""
    pad = search + 1
    # Zero padding so that every candidate stretch of deg exists.
    padded = np.concatenate((np.zeros(pad), deg, np.zeros(coarse + search + len(ref) + pad)))
    out = []
    for start, length in windows:
        x = ref[start : start + length]
        lo = start + coarse - search  # first candidate start in deg
        seg = padded[lo + pad : lo + pad + length + 2 * search]
        c = normalised_xcorr(x, seg)
        k = int(np.argmax(c))
        out.append((coarse - search + k, float(c[k])))
    return out


def build_aligned(deg, length, centres, delays):
    """Echo aligned to ref: around each window centre, deg read at that window's delay.

    The boundaries sit half way between consecutive centres; a change of delay at a boundary
    is a linear cross-fade of CROSSFADE_S between the two readings.
    """
    fade = int(CROSSFADE_S * RATE)
    half = fade // 2
    margin = max(abs(d) for d in delays) + fade + 1
    padded = np.concatenate((np.zeros(margin), deg, np.zeros(length + margin)))

    def read(a, b, d):  # deg[n + d] for n in [a, b)
        return padded[a + d + margin : b + d + margin]

    bounds = [0] + [(centres[i] + centres[i + 1]) // 2 for i in range(len(centres) - 1)] + [length]
    out = np.zeros(length)
    for i, d in enumerate(delays):
        a, b = bounds[i], bounds[i + 1]
        # Piece i owns [a, b); it fades in over [a - half, a + half) unless it is the first
        # piece or has the same delay as the piece before (then nothing to fade).
        lo = a - half if i > 0 else a
        hi = b + half if i < len(delays) - 1 else b
        lo, hi = max(lo, 0), min(hi, length)
        if lo >= hi:
            continue
        n = np.arange(lo, hi)
        w = np.ones(hi - lo)
        if i > 0:
            w = np.minimum(w, np.clip((n - (a - half) + 0.5) / fade, 0.0, 1.0))
        if i < len(delays) - 1:
            w = np.minimum(w, np.clip(((b + half) - n - 0.5) / fade, 0.0, 1.0))
        out[lo:hi] += w * read(lo, hi, d)
    return out


def score(ref, deg, window_ms, hop_ms, max_delay_ms, search_ms):
    """Everything the report holds, as a dict."""
    win = int(window_ms * RATE / 1000)
    hop = int(hop_ms * RATE / 1000)
    if win <= 0 or hop <= 0:
        raise ScoreError("window and hop must be positive")
    if len(ref) < max(win, RATE):
        raise ScoreError(f"reference too short ({len(ref) / RATE:.2f} s, need at least 1 s)")
    if len(deg) < win:
        raise ScoreError(f"degraded file too short ({len(deg) / RATE:.2f} s)")
    if not np.any(ref) or not np.any(deg):
        raise ScoreError("one of the files is all silence")

    coarse, coarse_corr = coarse_delay(ref, deg, int(max_delay_ms * RATE / 1000))
    search = int(search_ms * RATE / 1000)

    is_speech = speech_frames(ref)
    gaps = silence_gaps(is_speech)
    starts = list(range(0, len(ref) - win + 1, hop))
    windows = []  # (start, is_speech)
    for s in starts:
        f = is_speech[s // FRAME : (s + win) // FRAME]
        windows.append((s, f.size > 0 and f.mean() >= WINDOW_SPEECH_FRACTION))
    speech_idx = [i for i, (_, sp) in enumerate(windows) if sp]
    if not speech_idx:
        raise ScoreError("no speech found in the reference")

    found = local_delays(ref, deg, [(windows[i][0], win) for i in speech_idx], coarse, search)
    track = []  # one entry per speech window
    run = 0
    prev_centre = None
    for i, (delay, corr) in zip(speech_idx, found):
        centre = (windows[i][0] + win / 2) / RATE
        if prev_centre is not None and any(g0 < centre and g1 > prev_centre for g0, g1 in gaps):
            run += 1
        prev_centre = centre
        track.append(
            {
                "time_s": round(centre, 3),
                "delay_ms": round(delay * 1000 / RATE, 3),
                "corr": round(corr, 4),
                "run": run,
                "_delay": delay,
            }
        )
    good = [t for t in track if t["corr"] >= MIN_CORR]
    if not good or np.median([t["corr"] for t in track]) < MIN_CORR:
        raise ScoreError(
            f"no correlation between the files (coarse delay {coarse * 1000 / RATE:.1f} ms at "
            f"corr {coarse_corr:.2f}; median window corr "
            f"{np.median([t['corr'] for t in track]):.2f} < {MIN_CORR})"
        )

    # Delay changes between consecutive well-correlated speech windows of one run.
    steps = []
    spans = []
    for r in sorted({t["run"] for t in good}):
        ds = [t["delay_ms"] for t in good if t["run"] == r]
        steps += [abs(b - a) for a, b in zip(ds, ds[1:])]
        spans.append(max(ds) - min(ds))

    # Every window (speech or not) gets a delay for the alignment: its own if it is a
    # well-correlated speech window, else that of the nearest such window.
    good_centres = np.array([t["time_s"] for t in good])
    good_delays = [t["_delay"] for t in good]
    centres, delays = [], []
    for s, _ in windows:
        c = s + win // 2
        centres.append(c)
        delays.append(good_delays[int(np.argmin(np.abs(good_centres - c / RATE)))])
    aligned = build_aligned(deg, len(ref), centres, delays)

    from pesq import pesq
    from pystoi import stoi

    try:
        pesq_wb = float(pesq(RATE, ref, aligned, "wb"))
    except Exception as exc:  # pesq raises its own error types (e.g. NoUtterancesError)
        raise ScoreError(f"PESQ failed: {exc}") from exc
    stoi_v = float(stoi(ref, aligned, RATE, extended=False))

    delays_ms = np.array([t["delay_ms"] for t in good])
    for t in track:
        del t["_delay"]
    return {
        "pesq_wb": round(pesq_wb, 3),
        "stoi": round(stoi_v, 4),
        "delay_ms": round(float(np.median(delays_ms)), 3),
        "delay_p05_ms": round(float(np.percentile(delays_ms, 5)), 3),
        "delay_p95_ms": round(float(np.percentile(delays_ms, 95)), 3),
        "coarse_delay_ms": round(coarse * 1000 / RATE, 3),
        "coarse_corr": round(coarse_corr, 4),
        "max_step_ms": round(max(steps), 3) if steps else 0.0,
        "steps_over_5ms": int(sum(1 for s in steps if s > STEP_REPORT_MS)),
        "max_run_span_ms": round(max(spans), 3),
        "speech_windows": len(track),
        "uncorrelated_windows": len(track) - len(good),
        "speech_runs": len({t["run"] for t in track}),
        "window_ms": window_ms,
        "hop_ms": hop_ms,
        "track": track,
    }


def print_human(r):
    print(f"PESQ-WB {r['pesq_wb']:.2f}   STOI {r['stoi']:.3f}")
    print(
        f"delay {r['delay_ms']:.1f} ms median (p05 {r['delay_p05_ms']:.1f}, "
        f"p95 {r['delay_p95_ms']:.1f}; coarse {r['coarse_delay_ms']:.1f} ms at corr "
        f"{r['coarse_corr']:.2f})"
    )
    print(
        f"delay changes inside speech: largest step {r['max_step_ms']:.1f} ms, "
        f"{r['steps_over_5ms']} over {STEP_REPORT_MS:.0f} ms, largest span within a run "
        f"{r['max_run_span_ms']:.1f} ms ({r['speech_windows']} speech windows in "
        f"{r['speech_runs']} runs, {r['uncorrelated_windows']} below corr {MIN_CORR})"
    )
    print("  time_s  delay_ms   corr  run")
    for t in r["track"]:
        print(f"  {t['time_s']:6.2f}  {t['delay_ms']:8.2f}  {t['corr']:5.3f}  {t['run']:3d}")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("ref", help="reference WAV (what was sent)")
    p.add_argument("deg", nargs="+", help="degraded WAV (the echo that came back); several "
                   "are scored one after the other in one process (saves the imports)")
    p.add_argument("--json", action="store_true",
                   help="print one JSON object per DEG, one a line (with \"deg\": path when "
                   "several are given)")
    p.add_argument("--window-ms", type=float, default=400.0)
    p.add_argument("--hop-ms", type=float, default=200.0)
    p.add_argument("--max-delay-ms", type=float, default=2000.0, help="coarse search 0..this")
    p.add_argument("--search-ms", type=float, default=60.0, help="local search +- this")
    a = p.parse_args()
    several = len(a.deg) > 1
    status = 0
    ref = None
    for deg in a.deg:
        try:
            if ref is None:
                ref = load(a.ref)
            result = score(ref, load(deg), a.window_ms, a.hop_ms, a.max_delay_ms, a.search_ms)
        except ScoreError as exc:
            if a.json:
                print(json.dumps({"deg": deg, "error": str(exc)} if several else {"error": str(exc)}),
                      flush=True)
            print(f"score.py: {deg if several else ''}{': ' if several else ''}{exc}", file=sys.stderr)
            status = 2
            continue
        if a.json:
            print(json.dumps({"deg": deg, **result} if several else result), flush=True)
        else:
            if several:
                print(f"== {deg}")
            print_human(result)
    return status


if __name__ == "__main__":
    sys.exit(main())
