#!/usr/bin/env python3
"""Fires CONCURRENCY failed logins at once, each on its own connection, ROUNDS rounds
in a row, and counts the answers. Standard library only (asyncio, raw HTTP/1.1), so it needs no install.

    login_flood.py http://127.0.0.1:18301 500 4
"""
import asyncio
import collections
import json
import sys
import time
from urllib.parse import urlsplit


async def one(host, port, n, counts):
    body = json.dumps({"username": f"flood-{n}", "password": "wrong-password"}).encode()
    head = (
        f"POST /api/login HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    try:
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(head + body)
        await writer.drain()
        status = (await asyncio.wait_for(reader.readline(), 120)).split(b" ")[1].decode()
        writer.close()
    except Exception as e:  # noqa: BLE001 - a benchmark reports every failure kind
        status = type(e).__name__
    counts[status] += 1


async def main():
    url, concurrency, rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    parts = urlsplit(url)
    counts = collections.Counter()
    start = time.monotonic()
    for r in range(rounds):
        await asyncio.gather(
            *(one(parts.hostname, parts.port, r * concurrency + i, counts) for i in range(concurrency))
        )
    took = time.monotonic() - start
    print(f"{rounds} x {concurrency} concurrent failed logins in {took:.1f} s: "
          + ", ".join(f"{k}: {v}" for k, v in sorted(counts.items())))


asyncio.run(main())
