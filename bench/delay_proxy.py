#!/usr/bin/env python3
"""A WAN between this machine and the lab hosts: every TCP connection to ADDRESS... gets RTT ms of
round-trip time, for benchmarks of what an nr run costs when its hosts are not next door (the lab's
bridge answers in ~0.05 ms: there, work that overlaps network waits shows no gain).

iptables' nat OUTPUT chain redirects connections to each ADDRESS (any port: SSH, Redis, the NodePorts)
to this proxy (rules commented ``nr-bench-delay-PID``); the proxy reads the original destination
(SO_ORIGINAL_DST), waits one RTT (the TCP handshake the redirect made local), connects there itself
(its own connections carry a firewall mark the rules skip), then passes every chunk on RTT/2 after
it arrived, in order, in both directions. Bandwidth is not limited. Needs root. Prints ``ready`` once
the rules are in; removes them when stopped (SIGTERM, SIGINT), and at start those of proxies that
died without removing theirs.

    bench/delay_proxy.py --rtt 20 198.18.0.11 198.18.0.12 198.18.0.13
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import socket
import struct
import subprocess
import time

MARK = 0x6E72  # "nr": the proxy's own upstream connections, which the redirect skips
SO_ORIGINAL_DST = 80  # linux/netfilter_ipv4.h
COMMENT = "nr-bench-delay-"


def iptables(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["iptables", "-w", "-t", "nat", *args], capture_output=True, text=True, check=check)


def rules(address: str, port: int, pid: int) -> list[str]:
    return [
        "OUTPUT", "-p", "tcp", "-d", address, "-m", "mark", "!", "--mark", str(MARK),
        "-m", "comment", "--comment", f"{COMMENT}{pid}", "-j", "REDIRECT", "--to-ports", str(port),
    ]  # fmt: skip


def remove_rules(only_pid: int | None = None) -> None:
    """Our rules: those of ``only_pid``, else those of every proxy that is no longer running."""
    for line in iptables("-S", "OUTPUT").stdout.splitlines():
        if COMMENT not in line:
            continue
        pid = int(line.split(COMMENT, 1)[1].split()[0].strip('"'))
        if (only_pid is None and not os.path.exists(f"/proc/{pid}")) or pid == only_pid:
            iptables("-D", *line.split()[1:], check=False)


def original_destination(sock: socket.socket) -> tuple[str, int]:
    raw = sock.getsockopt(socket.SOL_IP, SO_ORIGINAL_DST, 16)
    port, packed = struct.unpack_from("!2xH4s", raw)
    return socket.inet_ntoa(packed), port


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
    """Every chunk ``delay`` s after it was read, in order; EOF passed on after the last one."""
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def read() -> None:
        while chunk := await reader.read(65536):
            queue.put_nowait((time.monotonic() + delay, chunk))
        queue.put_nowait((time.monotonic() + delay, b""))

    task = asyncio.create_task(read())
    try:
        while True:
            due, chunk = await queue.get()
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            if not chunk:
                with contextlib.suppress(OSError):
                    writer.write_eof()
                return
            writer.write(chunk)
            await writer.drain()
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, OSError):
            await task


async def relay(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter, rtt: float) -> None:
    sock = client_w.get_extra_info("socket")
    try:
        host, port = original_destination(sock)
        await asyncio.sleep(rtt)  # the handshake with the far end
        upstream = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        upstream.setsockopt(socket.SOL_SOCKET, socket.SO_MARK, MARK)
        upstream.setblocking(False)
        await asyncio.get_running_loop().sock_connect(upstream, (host, port))
        up_r, up_w = await asyncio.open_connection(sock=upstream)
    except OSError:
        client_w.close()
        return
    try:
        await asyncio.gather(pipe(client_r, up_w, rtt / 2), pipe(up_r, client_w, rtt / 2))
    except OSError:
        pass
    finally:
        for w in (client_w, up_w):
            w.close()


async def serve(addresses: list[str], rtt: float) -> None:
    tasks: set[asyncio.Task[None]] = set()

    async def accepted(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        tasks.add(task)
        try:
            await relay(r, w, rtt)
        except asyncio.CancelledError:  # stopped: end quietly (asyncio logs a handler that was cancelled)
            w.close()
        finally:
            tasks.discard(task)

    server = await asyncio.start_server(accepted, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    remove_rules()
    try:
        for address in addresses:
            iptables("-I", *rules(address, port, os.getpid()))
        print("ready", flush=True)
        await stop.wait()
    finally:
        remove_rules(os.getpid())
        server.close()
        for task in list(tasks):
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("addresses", nargs="+", help="the lab hosts' addresses")
    ap.add_argument("--rtt", type=float, required=True, help="round-trip time to add, in ms")
    args = ap.parse_args()
    asyncio.run(serve(args.addresses, args.rtt / 1000))


if __name__ == "__main__":
    main()
