#!/usr/bin/env python3
"""Headless Chromium as the far end of a speech echo call.

  chromium_far_end.py --url SESSION_URL --input speech48k.wav --output echo16k.wav
                      --seconds N [--loss P --burst B --jitter-ms J --seed S]
                      [--reference speech16k.wav] [--bitrate BPS]
                      [--local-output sent16k.wav] [--keep DIR] [--verbose]

SESSION_URL is the engine's `{mpUri}/sessions/{mpMediaSessionId}`. The driver serves a page
(chromium_far_end.html) on 127.0.0.1 and starts headless Chromium (its own process group, a
fresh profile) with the input WAV (48 kHz) as its fake microphone. The page offers Opus and
hands its offer (ICE gathering complete) to this driver, which POSTs it to SESSION_URL and
gives the answer back with Opus set to mono at --bitrate (maxaveragebitrate, default 96000:
what Chromium then sends at). Once connected the page starts recording, opens the microphone
(the file plays once from its start) and records N seconds of what it sends and what it
receives in one AudioWorklet (one clock for both), posts both, has the driver DELETE the
leg's Location, closes and posts its getStats() figures. The driver kills the browser and
writes:

  --output        the echo as 16 kHz mono 16-bit WAV, placed on the input file's timeline:
                  sample 0 is the moment the file's sample 0 was sent, so the delay a scorer
                  finds against the input (score.py speech16k.wav echo16k.wav) is the loop
                  delay: Chromium's encoder and sender, the path, the engine, the path back,
                  Chromium's jitter buffer and decoder (up to 10 ms off: WebAudio's microphone
                  path may shift by a buffer at its start).
  --local-output  (optional) what the microphone sent, same timeline.

and prints one JSON line: concealed_samples and total_samples (Chromium's inbound-rtp
counters for the engine's stream over the whole call, 48 kHz samples), jitter_buffer_ms (its
average jitterBufferDelay / jitterBufferEmittedCount), packets_lost, loop_delay_ms (the echo
against what was sent, one cross-correlation over the recording), send_kbps, the codecs, the
candidate pair, a per-second timeline of Chromium's jitter buffer, chromium_stretch_ms (how
much Chromium's own jitter buffer lengthened the echo: samples inserted minus removed by
time-stretching; its concealment is not counted, on loopback that is the engine's lateness), and the relay's counters when impairing. With --reference it also scores the echo
with score.py ("score": PESQ-WB, STOI, delay, max_step_ms) and adds engine_max_step_ms: the
delay steps inside speech that Chromium's own stretching (its getStats counters, sampled every
100 ms) does not explain, i.e. the steps the engine made. An echo too damaged
to score gives "score": {"error": ...}.

With --loss/--burst/--jitter-ms the call goes through relay.py: the offer given to the engine
and the answer given to Chromium name the relay's two ports instead of each other's, and the
relay impairs Chromium's RTP towards the engine (--loss P percent, seeded; --burst B packets
on average, Gilbert-Elliott; --jitter-ms J: each packet held 0..J ms, so they reorder);
everything else passes untouched.

Chromium offers loopback candidates only in a network namespace where `lo` is the only
interface up (with --allow-loopback-in-peer-connection); run the engine and this driver in
one, e.g.  unshare -n sh -c 'ip link set lo up; ENGINE & chromium_far_end.py ...'.
Exit status: 0 done, 1 the call failed, 2 the environment is wrong (Chromium missing, not in
a loopback-only namespace, no candidates).
"""

import argparse
import fcntl
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import wave
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
from scipy import signal as sps

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.dont_write_bytecode = True  # no __pycache__ in the source tree
from relay import Impairment, Relay  # noqa: E402

PAGE = HERE / "chromium_far_end.html"
RATE = 48000


class EnvironmentProblem(Exception):
    """The machine or namespace cannot run the call (exit status 2)."""


def fail_env(message):
    raise EnvironmentProblem(message)


# ---------------------------------------------------------------------------------------------
# The environment


def interfaces_up():
    """Names of this network namespace's interfaces that are up."""
    names = []
    with open("/proc/self/net/dev") as f:
        for line in f.readlines()[2:]:
            names.append(line.split(":", 1)[0].strip())
    up = []
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        for name in names:
            req = struct.pack("16sH14s", name.encode()[:15], 0, b"")
            try:
                flags = struct.unpack("16sH14s", fcntl.ioctl(s.fileno(), 0x8913, req))[1]  # SIOCGIFFLAGS
            except OSError:
                continue
            if flags & 1:  # IFF_UP
                up.append(name)
    finally:
        s.close()
    return up


def check_namespace():
    up = interfaces_up()
    hint = (
        "run the engine and this driver in a network namespace with only `lo` up, e.g. "
        "unshare -n sh -c 'ip link set lo up; ...' (Chromium gathers no loopback candidates "
        "otherwise)"
    )
    if "lo" not in up:
        fail_env(f"`lo` is not up in this network namespace: {hint}")
    others = [n for n in up if n != "lo"]
    if others:
        fail_env(f"interfaces other than `lo` are up ({', '.join(others)}): {hint}")


def find_chromium():
    prog = os.environ.get("BOTMEDIA_CHROMIUM", "chromium")
    path = shutil.which(prog)
    if not path:
        fail_env(f"{prog} not found: install the Debian package `chromium` (scripts/setup.sh --test does)")
    return path


# ---------------------------------------------------------------------------------------------
# Audio files


def read_wav(path):
    """(mono float32 samples in -1..1, rate)."""
    with wave.open(str(path), "rb") as w:
        rate, ch, width, n = w.getframerate(), w.getnchannels(), w.getsampwidth(), w.getnframes()
        raw = w.readframes(n)
    if width != 2:
        raise ValueError(f"{path}: {8 * width}-bit samples; 16-bit expected")
    x = np.frombuffer(raw, dtype="<i2").reshape(-1, ch)[:, 0].astype(np.float32) / 32768.0
    return x, rate


def write_wav16k(path, x48):
    x = sps.resample_poly(np.asarray(x48, dtype=np.float64), 1, 3)
    pcm = np.clip(np.round(x * 32767.0), -32768, 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(pcm.tobytes())


def locate(local, source):
    """Where the file `source` sits in the microphone recording `local`: p such that
    local[i] == source[i + p], from the loudest second of the recording. Returns
    (p, normalised correlation of that second)."""
    win = RATE
    if len(local) < 2 * win:
        return None, 0.0
    energy = np.convolve(local.astype(np.float64) ** 2, np.ones(win // 10), "valid")[:: win // 10]
    a = int(np.argmax(energy[: max(1, len(energy) - 10)])) * (win // 10)
    seg = local[a : a + win].astype(np.float64)
    if np.sum(seg**2) < 1e-6:
        return None, 0.0
    c = sps.correlate(source.astype(np.float64), seg, mode="valid", method="fft")
    b = int(np.argmax(c))
    ref = source[b : b + win].astype(np.float64)
    match = float(c[b] / (np.linalg.norm(seg) * np.linalg.norm(ref) + 1e-12))
    return b - a, match


def loop_delay(local16, remote16, max_ms=1500):
    """The echo's delay behind what was sent (ms) and the normalised correlation at it."""
    n = min(len(local16), len(remote16))
    a, b = local16[:n].astype(np.float64), remote16[:n].astype(np.float64)
    if np.sum(a**2) < 1e-9 or np.sum(b**2) < 1e-9:
        return None, 0.0
    c = sps.correlate(b, a, mode="full", method="fft")
    zero = n - 1
    lags = c[zero : zero + int(max_ms * 16)]
    k = int(np.argmax(lags))
    # Normalise by the overlapping parts' energies.
    norm = np.linalg.norm(a[: n - k]) * np.linalg.norm(b[k:]) + 1e-12
    return k / 16.0, float(lags[k] / norm)


# ---------------------------------------------------------------------------------------------
# SDP


def opus_pt(sdp):
    m = re.search(r"^a=rtpmap:(\d+) opus/48000", sdp, re.M | re.I)
    return m.group(1) if m else None


def set_opus_params(sdp, params):
    """Sets `params` (dict) in the Opus fmtp line, adding the line if there is none."""
    pt = opus_pt(sdp)
    if pt is None:
        return sdp
    nl = "\r\n" if "\r\n" in sdp else "\n"
    lines = sdp.split(nl)
    fmtp = f"a=fmtp:{pt} "
    for i, line in enumerate(lines):
        if line.startswith(fmtp):
            kv = dict(p.split("=", 1) if "=" in p else (p, "") for p in line[len(fmtp) :].split(";") if p)
            kv.update(params)
            lines[i] = fmtp + ";".join(f"{k}={v}" for k, v in kv.items())
            return nl.join(lines)
    for i, line in enumerate(lines):
        if line.lower().startswith(f"a=rtpmap:{pt} opus/"):
            lines.insert(i + 1, fmtp + ";".join(f"{k}={v}" for k, v in params.items()))
            break
    return nl.join(lines)


CANDIDATE = re.compile(r"^a=candidate:(\S+) (\d+) (\S+) (\d+) (\S+) (\d+) typ (\S+)(.*)$")


def loopback_candidate(sdp):
    """The first UDP 127.0.0.1 component-1 candidate: (line, port), or (None, None)."""
    for line in sdp.splitlines():
        m = CANDIDATE.match(line)
        if m and m.group(2) == "1" and m.group(3).lower() == "udp" and m.group(5) == "127.0.0.1":
            return line, int(m.group(6))
    return None, None


def only_candidate(sdp, port):
    """The SDP with its candidates replaced by its first UDP 127.0.0.1 one, moved to `port`."""
    line, _ = loopback_candidate(sdp)
    m = CANDIDATE.match(line)
    new = f"a=candidate:{m.group(1)} 1 {m.group(3)} {m.group(4)} 127.0.0.1 {port} typ {m.group(7)}{m.group(8)}"
    nl = "\r\n" if "\r\n" in sdp else "\n"
    out, placed = [], False
    for ln in sdp.split(nl):
        if ln.startswith("a=candidate:"):
            if not placed:
                out.append(new)
                placed = True
            continue
        out.append(ln)
    return nl.join(out)


# ---------------------------------------------------------------------------------------------
# The page's server and the call


class Call:
    """What the page and the engine told the driver."""

    def __init__(self, session_url, bitrate, relay):
        self.session_url = session_url
        self.bitrate = bitrate
        self.relay = relay
        self.location = None
        self.deleted = None
        self.offer_sdp = None
        self.answer = None
        self.report = None
        self.pcm = {}
        self.env_problem = None
        self.reported = threading.Event()
        self.log = []

    def offer(self, offer):
        """POSTs the page's offer to the engine; returns (status, body) for the page."""
        self.offer_sdp = offer
        line, port = loopback_candidate(offer)
        if line is None:
            self.env_problem = (
                "Chromium's offer has no UDP 127.0.0.1 candidate: run in a network namespace "
                "with only `lo` up (unshare -n), Chromium needs --allow-loopback-in-peer-connection"
            )
            self.reported.set()
            return 409, self.env_problem
        if self.relay is not None:
            self.relay.browser_addr = ("127.0.0.1", port)
            offer = only_candidate(offer, self.relay.engine_side_port)
        req = urllib.request.Request(
            self.session_url, data=offer.encode(), method="POST", headers={"content-type": "application/sdp"}
        )
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(req, timeout=15) as r:
                status, answer = r.status, r.read().decode()
                location = r.headers.get("location")
        except urllib.error.HTTPError as e:
            return e.code, f"the engine answered {e.code}: {e.read().decode(errors='replace')}"
        except OSError as e:
            return 502, f"POST {self.session_url}: {e}"
        if status != 201:
            return 502, f"the engine answered {status}: {answer}"
        self.location = urllib.parse.urljoin(self.session_url, location) if location else None
        self.answer = answer
        answer = set_opus_params(answer, {"stereo": "0", "maxaveragebitrate": str(self.bitrate)})
        if self.relay is not None:
            line, engine_port = loopback_candidate(answer)
            if line is None:
                return 502, "the engine's answer has no UDP 127.0.0.1 candidate to relay"
            self.relay.engine_addr = ("127.0.0.1", engine_port)
            answer = only_candidate(answer, self.relay.browser_side_port)
            self.relay.start()
        return 201, answer

    def delete(self):
        """DELETEs the leg's Location (once); returns the status, None when there is none."""
        if not self.location or self.deleted is not None:
            return self.deleted
        self.deleted = self._delete()
        return self.deleted

    def _delete(self):
        req = urllib.request.Request(self.location, method="DELETE")
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(req, timeout=5) as r:
                return r.status
        except urllib.error.HTTPError as e:
            return e.code
        except OSError:
            return None


def serve(call, page):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_):
            pass

        def reply(self, status, body, ctype="text/plain"):
            data = body.encode() if isinstance(body, str) else body
            self.send_response(status)
            self.send_header("content-type", ctype)
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            if self.path.split("?")[0] == "/":
                self.reply(200, page, "text/html; charset=utf-8")
            else:
                self.reply(404, "not found")

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            path = self.path.split("?")[0]
            if path == "/offer":
                status, text = call.offer(body.decode())
                self.reply(status, text, "application/sdp" if status == 201 else "text/plain")
            elif path == "/log":
                call.log.append(body.decode(errors="replace"))
                self.reply(200, "")
            elif path.startswith("/pcm/"):
                call.pcm[path[5:]] = np.frombuffer(body, dtype="<f4").copy()
                self.reply(200, "")
            elif path == "/hangup":
                self.reply(200, str(call.delete() or 0))
            elif path == "/report":
                call.report = json.loads(body)
                self.reply(200, "")
                call.reported.set()
            else:
                self.reply(404, "not found")

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="page-server", daemon=True).start()
    return server


def launch_chromium(chromium, url, speech, work):
    """Headless Chromium on `url` in its own process group; its output goes to work/chromium.log."""
    args = [
        chromium,
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-quic",
        "--no-first-run",
        "--autoplay-policy=no-user-gesture-required",
        "--allow-loopback-in-peer-connection",
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
        "--disable-features=WebRtcHideLocalIpsWithMdns",
        "--use-fake-device-for-media-stream",
        "--use-fake-ui-for-media-stream",
        # %noloop: the file plays once (then silence) from when the page opens the microphone.
        f"--use-file-for-fake-audio-capture={speech}%noloop",
        "--enable-logging=stderr",
        "--v=0",
        f"--user-data-dir={work / 'profile'}",
        url,
    ]
    log = open(work / "chromium.log", "wb")
    try:
        return subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
    finally:
        log.close()


def kill_group(proc):
    if proc is None:
        return
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass
    # Children re-parented elsewhere: wait (bounded) until the group is empty.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)


def stat_figures(report):
    end = report.get("atEnd") or {}
    start = report.get("atConnect") or {}
    emitted = end.get("jitterBufferEmittedCount") or 0
    sec = report.get("seconds") or 0
    sent = (end.get("bytesSent") or 0) - (start.get("bytesSent") or 0)
    span = ((end.get("atMs") or 0) - (start.get("atMs") or 0)) / 1000.0
    out = {
        "concealed_samples": end.get("concealedSamples"),
        "total_samples": end.get("totalSamplesReceived"),
        "silent_concealed_samples": end.get("silentConcealedSamples"),
        "concealment_events": end.get("concealmentEvents"),
        "inserted_for_deceleration": end.get("insertedSamplesForDeceleration"),
        "removed_for_acceleration": end.get("removedSamplesForAcceleration"),
        "jitter_buffer_ms": round(1000.0 * end["jitterBufferDelay"] / emitted, 1) if emitted else None,
        "jitter_buffer_target_ms": round(1000.0 * end["jitterBufferTargetDelay"] / emitted, 1)
        if emitted and end.get("jitterBufferTargetDelay") is not None
        else None,
        "packets_received": end.get("packetsReceived"),
        "packets_lost": end.get("packetsLost"),
        "inbound_jitter_ms": round(1000.0 * end["jitter"], 1) if end.get("jitter") is not None else None,
        "send_kbps": round(sent * 8 / span / 1000.0, 1) if span > 0 else None,
        "packets_sent": end.get("packetsSent"),
        "rtt_ms": round(1000.0 * end["rttS"], 1) if end.get("rttS") is not None else None,
        "inbound_codec": end.get("inboundCodec"),
        "outbound_codec": end.get("outboundCodec"),
        "candidate_pair": f"{end.get('localCandidate')} -> {end.get('remoteCandidate')}",
        "connect_ms": report.get("connectMs"),
        "mic_opened_ms": report.get("micOpenedMs"),
        "seconds": sec,
    }
    # What Chromium's jitter buffer did, second by second: its delay over that second and
    # the samples it concealed, removed (accelerate) and inserted (decelerate), in ms of audio.
    # A change of the echo's delay is the engine's or Chromium's: these tell which.
    timeline = []
    points = [start] + list(report.get("timeline") or []) + [end]
    for a, b in zip(points, points[1:]):
        def d(key, a=a, b=b):
            return (b.get(key) or 0) - (a.get(key) or 0)

        emitted = d("jitterBufferEmittedCount")
        timeline.append(
            {
                "at_ms": b.get("atMs"),
                "jb_ms": round(1000.0 * d("jitterBufferDelay") / emitted, 1) if emitted > 0 else None,
                "concealed_ms": round(d("concealedSamples") / 48.0, 1),
                "removed_ms": round(d("removedSamplesForAcceleration") / 48.0, 1),
                "inserted_ms": round(d("insertedSamplesForDeceleration") / 48.0, 1),
            }
        )
    out["timeline"] = timeline
    return out


def chromium_stretch(report, p):
    """How much Chromium's jitter buffer lengthened the echo's timeline by its own decision so
    far: samples it inserted (preemptive expand) minus samples it removed (accelerate), in ms,
    against the input file's timeline (ms): ([file_ms], [stretch_ms]). Concealment is not
    counted: on loopback Chromium conceals when the engine's packets come late or not at all,
    and the delay that adds is the engine's doing."""
    times, stretch = [], []
    rows = report.get("stretch") or []
    if not rows:
        return times, stretch
    _, removed0, inserted0 = (v or 0 for v in rows[0][:3])
    for row in rows:
        t, removed, inserted = (v or 0 for v in row[:3])
        times.append(t + p / 48.0)
        stretch.append(((inserted - inserted0) - (removed - removed0)) / 48.0)
    return times, stretch


def scored(reference, echo, times, stretch):
    """score.py's figures for the echo, and the delay steps with Chromium's own stretching
    taken out: what the engine did."""
    import score as scorer

    # Each window's delay is searched +-250 ms around the whole echo's (score.py's default is
    # 60 ms): an engine that drifts by more than that over a phrase is measured, not called
    # uncorrelated.
    r = scorer.score(scorer.load(str(reference)), scorer.load(str(echo)), 400.0, 200.0, 2000.0, 250.0)
    good = [t for t in r["track"] if t["corr"] >= scorer.MIN_CORR]
    if times:
        for t in good:
            # The window's echo plays at its time plus its delay.
            t["chromium_ms"] = float(np.interp(t["time_s"] * 1000.0 + t["delay_ms"], times, stretch))
            t["engine_delay_ms"] = t["delay_ms"] - t["chromium_ms"]
    # A step between two windows is the engine's by the smaller of two readings: the echo's
    # delay change, and that change less what Chromium's counters say it stretched in
    # between. (The counters are sampled every 100 ms and WebAudio's path adds its own
    # latency, so their timing is approximate: where the echo did not move, the engine did
    # not step; where Chromium stretched by what the echo moved, it was Chromium.)
    steps = []
    for run in sorted({t["run"] for t in good}):
        ws = [t for t in good if t["run"] == run]
        for a, b in zip(ws, ws[1:]):
            raw = b["delay_ms"] - a["delay_ms"]
            chromium = b.get("chromium_ms", 0.0) - a.get("chromium_ms", 0.0)
            steps.append(min(abs(raw), abs(raw - chromium)))
    out = {k: r[k] for k in ("pesq_wb", "stoi", "delay_ms", "delay_p05_ms", "delay_p95_ms", "max_step_ms",
                             "steps_over_5ms", "speech_windows", "uncorrelated_windows")}
    out["engine_max_step_ms"] = round(max(steps), 3) if steps else 0.0
    out["engine_steps_over_5ms"] = sum(1 for x in steps if x > 5.0)
    out["track"] = [
        [t["time_s"], t["delay_ms"], round(t.get("engine_delay_ms", t["delay_ms"]), 2), t["corr"], t["run"]]
        for t in r["track"]
    ]
    return out


def note(a, what):
    if a.verbose:
        print(f"chromium_far_end: {time.monotonic() - T0:7.2f} s {what}", file=sys.stderr, flush=True)


T0 = time.monotonic()


def run(a):
    chromium = find_chromium()
    check_namespace()
    speech = Path(a.input).resolve()
    source, rate = read_wav(speech)
    if rate != RATE:
        fail_env(f"{speech}: {rate} Hz; the fake microphone file must be 48 kHz")
    impair = a.loss > 0 or a.burst > 1 or a.jitter_ms > 0
    if not 0 <= a.loss < 100:
        raise ValueError("--loss is a percentage, 0 to under 100")
    relay = Relay(None, None, Impairment(a.loss / 100.0, a.burst, a.jitter_ms, a.seed)) if impair else None
    call = Call(a.url, a.bitrate, relay)
    page = PAGE.read_text()
    work = Path(tempfile.mkdtemp(prefix="chromium-far-end-"))
    server = serve(call, page)
    browser = None
    relay_counters = None
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/?seconds={a.seconds}"
        browser = launch_chromium(chromium, url, speech, work)
        note(a, "Chromium started")
        if not call.reported.wait(a.seconds + 60):
            raise RuntimeError("no report from the page within the time allowed")
        note(a, "the page reported")
        if call.env_problem:
            raise EnvironmentProblem(call.env_problem)
        deleted = call.delete()
        note(a, f"DELETE answered {deleted}")
    finally:
        kill_group(browser)
        note(a, "Chromium stopped")
        server.shutdown()
        server.server_close()
        if relay is not None:
            relay_counters = relay.stop()
        chromium_log = (work / "chromium.log").read_text(errors="replace") if (work / "chromium.log").exists() else ""
        if a.keep:
            keep = Path(a.keep)
            keep.mkdir(parents=True, exist_ok=True)
            (keep / "chromium.log").write_text(chromium_log)
            (keep / "page.log").write_text("\n".join(call.log))
            if call.report is not None:
                (keep / "report.json").write_text(json.dumps(call.report, indent=1))
            for name, sdp in (("offer.sdp", call.offer_sdp), ("answer.sdp", call.answer)):
                if sdp:
                    (keep / name).write_text(sdp)
        shutil.rmtree(work, ignore_errors=True)

    report = call.report
    if report.get("error"):
        tail = "\n".join(
            line for line in chromium_log.splitlines() if "ERROR" in line and "dbus" not in line
        )[-3000:]
        raise RuntimeError(f"the page failed: {report['error']}\npage log: {call.log}\nChromium errors:\n{tail}")
    remote, local = call.pcm.get("remote"), call.pcm.get("local")
    if remote is None or local is None:
        raise RuntimeError("the page posted no recording")

    # Put both recordings on the input file's timeline.
    p, match = locate(local, source)
    if p is None or match < 0.9:
        raise RuntimeError(
            f"the microphone recording does not match {speech} (correlation {match:.2f}): "
            "did Chromium play the file?"
        )

    note(a, f"recordings: {len(remote)} and {len(local)} samples")

    def on_file_timeline(x):
        return x[-p:] if p < 0 else np.concatenate([np.zeros(p, dtype=x.dtype), x])

    echo = on_file_timeline(remote)
    write_wav16k(a.output, echo)
    if a.local_output:
        write_wav16k(a.local_output, on_file_timeline(local))
    local16 = sps.resample_poly(local.astype(np.float64), 1, 3)
    remote16 = sps.resample_poly(remote.astype(np.float64), 1, 3)
    delay, delay_corr = loop_delay(local16, remote16)

    times, stretch = chromium_stretch(report, p)
    out = stat_figures(report)
    out["chromium_stretch_ms"] = round(stretch[-1], 1) if stretch else None
    out.update(
        {
            "loop_delay_ms": delay,
            "loop_delay_correlation": round(delay_corr, 3),
            "mic_start_ms": round(-p / 48.0, 1),
            "mic_match": round(match, 4),
            "echo_dbfs": round(10 * np.log10(np.mean(remote.astype(np.float64) ** 2) + 1e-12), 1),
            "delete_status": deleted,
            "impairment": {"loss_percent": a.loss, "burst": a.burst, "jitter_ms": a.jitter_ms, "seed": a.seed}
            if impair
            else None,
            "relay": relay_counters,
            "output": str(Path(a.output).resolve()),
        }
    )
    if a.reference:
        try:
            out["score"] = scored(a.reference, a.output, times, stretch)
        except Exception as e:  # score.py's ScoreError and the scorers' own errors
            # An echo too damaged to score is a finding, not a failure of the driver.
            out["score"] = {"error": f"scoring against {a.reference}: {e}"}
        note(a, "scored")
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", required=True, help="the engine's {mpUri}/sessions/{mpMediaSessionId}")
    ap.add_argument("--input", required=True, help="48 kHz 16-bit WAV: Chromium's microphone")
    ap.add_argument("--output", required=True, help="the echo, 16 kHz mono WAV")
    ap.add_argument("--seconds", type=float, required=True, help="how long to record from connect")
    ap.add_argument("--loss", type=float, default=0.0, help="loss of Chromium's RTP to the engine, in percent")
    ap.add_argument("--burst", type=float, default=1.0, help="mean loss burst length in packets")
    ap.add_argument("--jitter-ms", type=float, default=0.0, help="uniform 0..J ms delay per packet")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--bitrate", type=int, default=96000, help="what Chromium's Opus sends at")
    ap.add_argument("--local-output", help="also write what was sent, 16 kHz, same timeline")
    ap.add_argument(
        "--reference",
        help="score the echo against this WAV with score.py (adds \"score\": PESQ-WB, STOI, delay, "
        "steps, and engine_max_step_ms: the steps with Chromium's own jitter buffer stretching taken out)",
    )
    ap.add_argument("--keep", help="a directory for Chromium's log, the page's log and report")
    ap.add_argument("--verbose", action="store_true", help="say what happens when, on stderr")
    a = ap.parse_args()
    try:
        out = run(a)
    except EnvironmentProblem as e:
        print(f"chromium_far_end: {e}", file=sys.stderr)
        return 2
    except (RuntimeError, OSError, ValueError) as e:
        print(f"chromium_far_end: {e}", file=sys.stderr)
        return 1
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
