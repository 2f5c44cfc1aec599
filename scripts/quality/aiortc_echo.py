#!/usr/bin/env python3
"""A reference echo engine written with aiortc, for side-by-side speech-quality runs.

It serves the same WHIP-shaped endpoint as botmedia's media endpoint, on 127.0.0.1 only:
  POST   {mpUri}/sessions/{id}             body: SDP offer (ICE complete) -> 201 + SDP answer
                                           (ICE complete), Location of the leg
  DELETE {mpUri}/sessions/{id}/legs/{leg}  ends the leg
and prints one JSON line like examples/media_echo's blob ({"mpUri": ..., "mpMediaSessionId": ...})
on stdout when it is ready. Every received audio frame is sent straight back: aiortc's own
jitter buffer and decoder on the way in, its Opus encoder (libopus through PyAV) on the way
out, at --bitrate (96 kb/s by default, what issue 12's reference measured).

Run it with the measurement venv: `$(scripts/quality/pyenv.sh) scripts/quality/aiortc_echo.py`.
Options: --port (0 picks one), --bitrate BITS, --seconds N (stop after N s).
"""

import argparse
import asyncio
import json
import signal
import sys
import uuid

BASE = "/MediaProcessor"


def restrict_ice_to_loopback():
    """aioice gathers on every interface except loopback; gather on 127.0.0.1 only."""
    import aioice.ice

    def loopback_only(use_ipv4=True, use_ipv6=False):
        return ["127.0.0.1"] if use_ipv4 else []

    aioice.ice.get_host_addresses = loopback_only


def set_opus_bitrate(bitrate):
    """aiortc fixes its Opus encoder's bitrate (96 kb/s in aiortc 1.16); set it to `bitrate`.

    The encoder's PyAV codec context opens on the first frame, so its bit_rate can still be
    changed right after construction.
    """
    import aiortc.codecs
    import aiortc.codecs.opus as opus

    base = opus.OpusEncoder
    probe = base()
    if not hasattr(probe, "codec") or not hasattr(probe.codec, "bit_rate"):
        sys.exit("aiortc_echo: this aiortc's OpusEncoder has no PyAV codec to set the bitrate of")
    if probe.codec.bit_rate == bitrate:
        return

    class RateOpusEncoder(base):
        def __init__(self):
            super().__init__()
            self.codec.bit_rate = bitrate

    # get_encoder() looks the class up in the codecs package at call time.
    aiortc.codecs.OpusEncoder = RateOpusEncoder


class Engine:
    def __init__(self, session_id):
        from aiortc import RTCPeerConnection, RTCSessionDescription

        self.RTCPeerConnection = RTCPeerConnection
        self.RTCSessionDescription = RTCSessionDescription
        self.session_id = session_id
        self.legs = {}
        self.frames = 0

    async def open_leg(self, offer_sdp):
        pc = self.RTCPeerConnection()
        leg_id = uuid.uuid4().hex

        @pc.on("track")
        def on_track(track):
            if track.kind == "audio":
                # The remote track yields decoded frames; sending it encodes them again.
                pc.addTrack(track)

        @pc.on("connectionstatechange")
        async def on_state():
            if pc.connectionState in ("failed", "closed"):
                await self.close_leg(leg_id)

        await pc.setRemoteDescription(self.RTCSessionDescription(sdp=offer_sdp, type="offer"))
        answer = await pc.createAnswer()
        # aiortc gathers every candidate before setLocalDescription returns.
        await pc.setLocalDescription(answer)
        self.legs[leg_id] = pc
        return leg_id, pc.localDescription.sdp

    async def close_leg(self, leg_id):
        pc = self.legs.pop(leg_id, None)
        if pc is None:
            return False
        await pc.close()
        return True

    async def close_all(self):
        for leg_id in list(self.legs):
            await self.close_leg(leg_id)

    async def route(self, method, path, headers, body):
        session_path = f"{BASE}/sessions/{self.session_id}"
        if method == "POST" and path == session_path:
            if not headers.get("content-type", "").startswith("application/sdp"):
                return 415, {}, b""
            if self.legs:
                return 409, {}, b""
            try:
                leg_id, answer = await self.open_leg(body.decode("utf-8"))
            except Exception as e:  # a bad offer: the client's fault
                print(f"aiortc_echo: offer refused: {e}", file=sys.stderr)
                return 400, {}, b""
            return (
                201,
                {"Content-Type": "application/sdp", "Location": f"{session_path}/legs/{leg_id}"},
                answer.encode("utf-8"),
            )
        if method == "DELETE" and path.startswith(f"{session_path}/legs/"):
            leg_id = path.rsplit("/", 1)[1]
            return (200 if await self.close_leg(leg_id) else 404), {}, b""
        if path.startswith(f"{BASE}/sessions/"):
            return (404 if method in ("POST", "DELETE") else 405), {}, b""
        return 404, {}, b""


REASONS = {200: "OK", 201: "Created", 400: "Bad Request", 404: "Not Found",
           405: "Method Not Allowed", 409: "Conflict", 415: "Unsupported Media Type",
           500: "Internal Server Error"}


async def serve_http(engine, reader, writer):
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        lines = head.decode("latin-1").split("\r\n")
        method, target, _ = lines[0].split(" ", 2)
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                k, v = line.split(":", 1)
                headers[k.strip().lower()] = v.strip()
        length = int(headers.get("content-length", "0"))
        if length > 1 << 20:
            raise ValueError("body too large")
        body = await asyncio.wait_for(reader.readexactly(length), 10) if length else b""
        try:
            status, extra, payload = await engine.route(method, target.split("?", 1)[0], headers, body)
        except Exception as e:
            print(f"aiortc_echo: {method} failed: {e}", file=sys.stderr)
            status, extra, payload = 500, {}, b""
        out = [f"HTTP/1.1 {status} {REASONS.get(status, '')}",
               f"Content-Length: {len(payload)}", "Connection: close"]
        out += [f"{k}: {v}" for k, v in extra.items()]
        writer.write(("\r\n".join(out) + "\r\n\r\n").encode("latin-1") + payload)
        await writer.drain()
    except (asyncio.IncompleteReadError, asyncio.TimeoutError, ValueError, ConnectionError):
        pass
    finally:
        writer.close()


async def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, default=0, help="HTTP port on 127.0.0.1 (0: any free one)")
    ap.add_argument("--bitrate", type=int, default=96000,
                    help="Opus bitrate of the echo, bits/s (96000; try 24000 or 32000)")
    ap.add_argument("--seconds", type=float, help="stop after this many seconds")
    args = ap.parse_args()

    restrict_ice_to_loopback()
    set_opus_bitrate(args.bitrate)
    engine = Engine(str(uuid.uuid4()))
    server = await asyncio.start_server(lambda r, w: serve_http(engine, r, w), "127.0.0.1", args.port)
    port = server.sockets[0].getsockname()[1]
    blob = {"mpUri": f"http://127.0.0.1:{port}{BASE}", "mpMediaSessionId": engine.session_id,
            "engine": "aiortc", "opusBitrate": args.bitrate}
    print(json.dumps(blob), flush=True)
    print(f"aiortc echo ready; the service posts its SDP offer to {blob['mpUri']}/sessions/<mpMediaSessionId>",
          file=sys.stderr, flush=True)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        if args.seconds is not None:
            await asyncio.wait_for(stop.wait(), args.seconds)
        else:
            await stop.wait()
    except asyncio.TimeoutError:
        pass
    server.close()
    await engine.close_all()


if __name__ == "__main__":
    asyncio.run(main())
