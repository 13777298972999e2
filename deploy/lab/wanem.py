#!/usr/bin/env python3
"""A WAN emulator in user space, for kernels without sch_netem (tc netem).

A UDP relay in front of the hub: nodes dial LISTEN, each node's datagrams go to UPSTREAM from
a socket of their own, and the answers come back the same way. Per node (by source IP), the
file CONTROL_DIR/<ip> holds "DELAY_MS LOSS_PERCENT"; both directions are delayed by DELAY_MS
and each datagram is dropped with probability LOSS_PERCENT. No file: no impairment. The files
are read again every 200 ms, so `lab.sh netem` takes effect at once.

The traffic still crosses the real veth pairs and bridges; only the delay and loss are added
here, at the hub's end of the WAN. Usage: wanem.py LISTEN_IP:PORT UPSTREAM_IP:PORT CONTROL_DIR
"""

import asyncio
import os
import random
import sys
import time

# A node has at most this many relay sockets open (a new QUIC endpoint per reconnect).
FLOWS_MAX = 4096
RELOAD_S = 0.2


def addr(text):
    host, port = text.rsplit(":", 1)
    return host, int(port)


class Impairments:
    def __init__(self, directory):
        self.directory = directory
        self.by_ip = {}
        self.loaded = 0.0

    def get(self, ip):
        now = time.monotonic()
        if now - self.loaded > RELOAD_S:
            self.loaded = now
            table = {}
            for name in os.listdir(self.directory):
                try:
                    with open(os.path.join(self.directory, name)) as f:
                        delay_ms, loss = f.read().split()
                    table[name] = (float(delay_ms) / 1000.0, float(loss) / 100.0)
                except (OSError, ValueError):
                    continue
            self.by_ip = table
        return self.by_ip.get(ip, (0.0, 0.0))


def send_impaired(loop, transport, data, dest, impairment):
    delay, loss = impairment
    if loss > 0 and random.random() < loss:
        return
    if delay > 0:
        loop.call_later(delay, transport.sendto, data, dest)
    else:
        transport.sendto(data, dest)


class Upstream(asyncio.DatagramProtocol):
    """The relay's socket towards the hub for one node; answers go back to that node."""

    def __init__(self, relay, client):
        self.relay = relay
        self.client = client
        self.transport = None
        # Datagrams that arrived while the socket was being opened.
        self.pending = []

    def connection_made(self, transport):
        self.transport = transport
        for data in self.pending:
            self.forward(data)
        self.pending = []

    def forward(self, data):
        imp = self.relay.impairments.get(self.client[0])
        send_impaired(self.relay.loop, self.transport, data, None, imp)

    def datagram_received(self, data, _src):
        imp = self.relay.impairments.get(self.client[0])
        send_impaired(self.relay.loop, self.relay.transport, data, self.client, imp)


class Relay(asyncio.DatagramProtocol):
    def __init__(self, loop, upstream, impairments):
        self.loop = loop
        self.upstream = upstream
        self.impairments = impairments
        self.flows = {}
        self.transport = None

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, client):
        flow = self.flows.get(client)
        if flow is None:
            if len(self.flows) >= FLOWS_MAX:
                return
            flow = Upstream(self, client)
            self.flows[client] = flow
            self.loop.create_task(self.open(flow))
        if flow.transport is None:
            if len(flow.pending) < 64:
                flow.pending.append(data)
            return
        flow.forward(data)

    async def open(self, flow):
        await self.loop.create_datagram_endpoint(lambda: flow, remote_addr=self.upstream)


async def main():
    listen, upstream, control = addr(sys.argv[1]), addr(sys.argv[2]), sys.argv[3]
    os.makedirs(control, exist_ok=True)
    loop = asyncio.get_running_loop()
    relay = Relay(loop, upstream, Impairments(control))
    await loop.create_datagram_endpoint(lambda: relay, local_addr=listen)
    print(f"wanem: {sys.argv[1]} -> {sys.argv[2]}, impairments in {control}", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main())
