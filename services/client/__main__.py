"""``aeroalpes-client --target HOST:PORT [--timeout S]``: create a reservation through the adapter,
read it back, print both as JSON; exit 0 only when they match."""

from __future__ import annotations

import argparse
import json
import sys

from services.client.roundtrip import roundtrip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="aeroalpes-client", description=__doc__)
    parser.add_argument("--target", required=True, help="adapter address, HOST:PORT")
    parser.add_argument("--timeout", type=float, default=10.0, help="deadline of each RPC, seconds")
    parser.add_argument("--wait", action="store_true", help="wait for the adapter to become reachable")
    args = parser.parse_args(argv)
    result = roundtrip(args.target, args.timeout, wait_for_ready=args.wait)
    print(json.dumps({"created": result.created, "fetched": result.fetched}, indent=2, ensure_ascii=False))
    print(("OK: " if result.ok else "FAILED: ") + result.message, file=sys.stderr)
    sys.exit(0 if result.ok else 1)


if __name__ == "__main__":
    main()
