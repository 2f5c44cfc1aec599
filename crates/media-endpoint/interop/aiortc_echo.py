"""Interop check with an independent WebRTC stack (aiortc) playing the calling service.

Posts an offer to a media endpoint session URL (printed by the `echo_endpoint` example),
sends a chirp for a few seconds, records what comes back, and reports the echo's
correlation with what was sent and its delay. Optional, manual: needs `pip install aiortc
aiohttp numpy`.

    cargo run -p media-endpoint --example echo_endpoint -- 127.0.0.1:8445 30 &
    python aiortc_echo.py http://127.0.0.1:8445/MediaProcessor/sessions/<id>
"""

import asyncio
import fractions
import sys
import time

import aiohttp
import numpy as np
from aiortc import MediaStreamTrack, RTCPeerConnection, RTCSessionDescription
from av import AudioFrame

RATE = 48_000
FRAME = 960
SECONDS = 4.0


def chirp(n, f0=200.0, f1=2000.0):
    t = np.arange(n) / RATE
    total = n / RATE
    return 0.5 * np.sin(2 * np.pi * (f0 * t + (f1 - f0) * t * t / (2 * total)))


class ChirpTrack(MediaStreamTrack):
    kind = "audio"

    def __init__(self, signal):
        super().__init__()
        self.signal = (signal * 32767).astype(np.int16)
        self.pts = 0
        self.start = None

    async def recv(self):
        if self.start is None:
            self.start = time.time()
        wait = self.start + self.pts / RATE - time.time()
        if wait > 0:
            await asyncio.sleep(wait)
        chunk = self.signal[self.pts : self.pts + FRAME]
        if len(chunk) < FRAME:
            chunk = np.zeros(FRAME, dtype=np.int16)
        frame = AudioFrame(format="s16", layout="mono", samples=FRAME)
        frame.planes[0].update(chunk.tobytes())
        frame.sample_rate = RATE
        frame.pts = self.pts
        frame.time_base = fractions.Fraction(1, RATE)
        self.pts += FRAME
        return frame


async def main(url):
    signal = chirp(int(RATE * SECONDS))
    pc = RTCPeerConnection()
    received = []
    first_rx = []

    @pc.on("track")
    def on_track(track):
        async def pump():
            while True:
                try:
                    frame = await track.recv()
                except Exception:
                    return
                pcm = frame.to_ndarray()
                channels = len(frame.layout.channels)
                mono = pcm.reshape(-1, channels)[:, 0] if pcm.ndim == 2 else pcm
                if not first_rx:
                    first_rx.append(time.time())
                received.append(mono.astype(np.float64) / 32768.0)

        asyncio.ensure_future(pump())

    pc.addTrack(ChirpTrack(signal))
    await pc.setLocalDescription(await pc.createOffer())
    async with aiohttp.ClientSession() as http:
        async with http.post(
            url, data=pc.localDescription.sdp, headers={"Content-Type": "application/sdp"}
        ) as r:
            body = await r.text()
            print("POST", r.status, "Location:", r.headers.get("Location"))
            if r.status != 201:
                print(body)
                return 1
    print("answer:\n" + body)
    await pc.setRemoteDescription(RTCSessionDescription(sdp=body, type="answer"))
    await asyncio.sleep(SECONDS + 1.5)
    await pc.close()

    rx = np.concatenate(received) if received else np.zeros(0)
    print(f"received {len(rx) / RATE:.2f} s of audio")
    if len(rx) < RATE * 2:
        print("FAIL: too little audio came back")
        return 1
    # Cross-correlate a 100 ms window of the sent signal against what came back.
    best = (0.0, 0)
    for start in (int(RATE * 1.0), int(RATE * 2.0)):
        ref = signal[start : start + RATE // 2]
        corr = np.correlate(rx, ref, mode="valid")
        norms = np.sqrt(np.convolve(rx * rx, np.ones(len(ref)), mode="valid")) * np.linalg.norm(ref)
        c = corr / np.maximum(norms, 1e-9)
        i = int(np.argmax(c))
        print(f"segment at {start / RATE:.1f} s: correlation {c[i]:.3f} at received offset {i / RATE:.3f} s")
        best = max(best, (float(c[i]), i))
    print("PASS" if best[0] > 0.9 else "FAIL", f"best correlation {best[0]:.3f}")
    return 0 if best[0] > 0.9 else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1])))
