#!/usr/bin/env python3
"""A UDP relay that impairs one direction of a WebRTC call's media.

It sits between a browser and an engine on 127.0.0.1 with two sockets:

  browser <-> [browser side]  relay  [engine side] <-> engine

The browser is told (in the answer) that the engine is at the browser side's port, the engine
is told (in the offer) that the browser is at the engine side's port, so every packet of the
call (STUN, DTLS, RTP, RTCP) goes through the relay and neither peer learns the other's real
address: ICE cannot bypass it. Packets from the browser to the engine that are RTP (RFC 7983
demultiplexing: first byte 128-191, RTCP packet types 192-223 excluded) are impaired:

  --loss P      average loss, percent. With --burst 1 (default) each packet is lost
                independently; with --burst B > 1 a Gilbert-Elliott channel loses whole bursts
                of B packets on average (with the loss rate L = P/100: good -> bad with
                p = L/(B (1 - L)), bad -> good with 1/B, every packet lost in the bad state),
                keeping the average at L.
  --jitter-ms J each packet is held for a uniform random 0..J ms, independently, so packets
                overtake one another (reordering) as on a real jittery path.

STUN, DTLS and RTCP in both directions, and everything from the engine to the browser, pass
untouched and at once. A seeded random generator makes a run repeatable.

Used by chromium_far_end.py (imported: Relay), or on its own:

  relay.py --engine 127.0.0.1:PORT [--browser 127.0.0.1:PORT] [--loss P --burst B
           --jitter-ms J --seed S] [--seconds N]

prints {"browser_side": PORT, "engine_side": PORT} and relays until N seconds or SIGTERM, then
prints its counters as one JSON line.
"""

import argparse
import heapq
import json
import random
import selectors
import signal
import socket
import sys
import threading
import time


def is_rtp(packet):
    """RTP (not RTCP) by RFC 7983 / RFC 5761: version 2 and a payload type outside 64-95."""
    if len(packet) < 12 or not 128 <= packet[0] <= 191:
        return False
    return not 192 <= packet[1] <= 223


class Impairment:
    """Seeded loss (independent or Gilbert-Elliott bursts) and per-packet delay."""

    def __init__(self, loss=0.0, burst=1.0, jitter_ms=0.0, seed=1):
        if not 0.0 <= loss < 1.0:
            raise ValueError("loss must be in [0, 1)")
        if burst < 1.0:
            raise ValueError("burst (mean burst length in packets) must be >= 1")
        if jitter_ms < 0:
            raise ValueError("jitter must be >= 0")
        self.loss = loss
        self.burst = burst
        self.jitter_s = jitter_ms / 1000.0
        self.rng = random.Random(seed)
        self.bad = False
        if burst > 1.0 and loss > 0.0:
            self.to_good = 1.0 / burst
            self.to_bad = loss * self.to_good / (1.0 - loss)
        else:
            self.to_good = self.to_bad = None

    def lost(self):
        """Whether the next packet is lost."""
        if self.loss <= 0.0:
            return False
        if self.to_bad is None:
            return self.rng.random() < self.loss
        if self.bad:
            if self.rng.random() < self.to_good:
                self.bad = False
        elif self.rng.random() < self.to_bad:
            self.bad = True
        return self.bad

    def delay(self):
        """How long to hold the next packet, in seconds."""
        return self.rng.uniform(0.0, self.jitter_s) if self.jitter_s > 0 else 0.0


class Relay:
    """The relay: two sockets on 127.0.0.1 and a thread forwarding between them."""

    def __init__(self, engine_addr, browser_addr=None, impairment=None):
        self.engine_addr = engine_addr
        # Where the browser is: given (from its offer), then the last source seen.
        self.browser_addr = browser_addr
        self.impairment = impairment or Impairment()
        self.browser_side = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.engine_side = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for s in (self.browser_side, self.engine_side):
            s.bind(("127.0.0.1", 0))
            s.setblocking(False)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self.counters = {
            "to_engine_rtp": 0,
            "to_engine_rtp_lost": 0,
            "to_engine_rtp_delayed": 0,
            "to_engine_other": 0,
            "to_browser": 0,
            "to_browser_dropped_no_browser": 0,
            "reordered": 0,
            "max_burst": 0,
        }
        self._burst = 0
        self._last_seq = None
        self._stop = threading.Event()
        self._thread = None

    @property
    def browser_side_port(self):
        """The port the browser must send to (the engine's candidate in the answer)."""
        return self.browser_side.getsockname()[1]

    @property
    def engine_side_port(self):
        """The port the engine must send to (the browser's candidate in the offer)."""
        return self.engine_side.getsockname()[1]

    def start(self):
        """Relays on a background thread until stop()."""
        self._thread = threading.Thread(target=self._run, name="relay", daemon=True)
        self._thread.start()
        return self

    def stop(self):
        """Stops the thread, closes the sockets and returns the counters."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.browser_side.close()
        self.engine_side.close()
        return dict(self.counters)

    def _from_browser(self, packet, queue, now):
        c = self.counters
        if not is_rtp(packet):
            c["to_engine_other"] += 1
            self._send(self.engine_side, packet, self.engine_addr)
            return
        c["to_engine_rtp"] += 1
        if self.impairment.lost():
            c["to_engine_rtp_lost"] += 1
            self._burst += 1
            c["max_burst"] = max(c["max_burst"], self._burst)
            return
        self._burst = 0
        hold = self.impairment.delay()
        if hold <= 0:
            self._forward_rtp(packet)
        else:
            c["to_engine_rtp_delayed"] += 1
            heapq.heappush(queue, (now + hold, c["to_engine_rtp"], packet))

    def _forward_rtp(self, packet):
        seq = int.from_bytes(packet[2:4], "big")
        if self._last_seq is not None and ((seq - self._last_seq) & 0xFFFF) > 0x8000:
            self.counters["reordered"] += 1
        else:
            self._last_seq = seq
        self._send(self.engine_side, packet, self.engine_addr)

    @staticmethod
    def _send(sock, packet, addr):
        try:
            sock.sendto(packet, addr)
        except (BlockingIOError, ConnectionRefusedError, OSError):
            pass

    def _run(self):
        sel = selectors.DefaultSelector()
        sel.register(self.browser_side, selectors.EVENT_READ, "browser")
        sel.register(self.engine_side, selectors.EVENT_READ, "engine")
        queue = []  # (due, order, packet): delayed RTP towards the engine
        while not self._stop.is_set():
            now = time.monotonic()
            timeout = 0.05
            if queue:
                timeout = max(0.0, min(timeout, queue[0][0] - now))
            for key, _ in sel.select(timeout):
                sock = key.fileobj
                for _ in range(64):
                    try:
                        packet, src = sock.recvfrom(65536)
                    except (BlockingIOError, ConnectionRefusedError, OSError):
                        break
                    if key.data == "browser":
                        self.browser_addr = src
                        self._from_browser(packet, queue, time.monotonic())
                    elif src == self.engine_addr or self.engine_addr is None:
                        if self.browser_addr is None:
                            self.counters["to_browser_dropped_no_browser"] += 1
                        else:
                            self.counters["to_browser"] += 1
                            self._send(self.browser_side, packet, self.browser_addr)
            now = time.monotonic()
            while queue and queue[0][0] <= now:
                _, _, packet = heapq.heappop(queue)
                self._forward_rtp(packet)
        sel.close()


def parse_addr(text):
    host, _, port = text.rpartition(":")
    return (host or "127.0.0.1", int(port))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--engine", required=True, help="HOST:PORT of the engine's media socket")
    ap.add_argument("--browser", help="HOST:PORT of the browser's media socket (else learnt)")
    ap.add_argument("--loss", type=float, default=0.0, help="percent")
    ap.add_argument("--burst", type=float, default=1.0)
    ap.add_argument("--jitter-ms", type=float, default=0.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--seconds", type=float, default=3600.0)
    a = ap.parse_args()
    relay = Relay(
        parse_addr(a.engine),
        parse_addr(a.browser) if a.browser else None,
        Impairment(a.loss / 100.0, a.burst, a.jitter_ms, a.seed),
    ).start()
    print(json.dumps({"browser_side": relay.browser_side_port, "engine_side": relay.engine_side_port}), flush=True)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    done.wait(a.seconds)
    print(json.dumps(relay.stop()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
