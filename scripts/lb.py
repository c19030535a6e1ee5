#!/usr/bin/env python3
"""A round-robin TCP load balancer for the cluster rig (stdlib only).

    scripts/lb.py LISTEN_ADDR BACKEND[,BACKEND...]

Each accepted connection goes to the next backend that accepts a connection
(a dead ratchet instance is skipped), and bytes are copied both ways with
TCP_NODELAY on both sockets. It speaks no protocol: Restate's HTTP/2
connections to the deployment pass through it unchanged, so one deployment
URI fronts several ratchet instances. Prints `listening on ADDR` once it
listens.
"""

import asyncio
import itertools
import socket
import sys


def nodelay(writer):
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


async def pipe(reader, writer):
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


def main():
    host, port = sys.argv[1].rsplit(":", 1)
    backends = [b for b in sys.argv[2].split(",") if b]
    ring = itertools.cycle(backends)

    async def handle(client_r, client_w):
        nodelay(client_w)
        for _ in range(len(backends)):
            b_host, b_port = next(ring).rsplit(":", 1)
            try:
                back_r, back_w = await asyncio.open_connection(b_host, int(b_port))
                break
            except OSError:
                continue
        else:
            client_w.close()
            return
        nodelay(back_w)
        await asyncio.gather(pipe(client_r, back_w), pipe(back_r, client_w))

    async def serve():
        server = await asyncio.start_server(handle, host, int(port))
        addr = server.sockets[0].getsockname()
        print(f"listening on {addr[0]}:{addr[1]}", flush=True)
        async with server:
            await server.serve_forever()

    asyncio.run(serve())


if __name__ == "__main__":
    main()
