"""/healthz latency while N clients send request bodies at one byte a second.

Starts ``retinascreen serve`` (2 workers, a tiny untrained model, SQLite in a temporary folder),
opens N slow clients posting to ``/api/v1/screenings`` and times GET /healthz meanwhile.

    python bench/slow_clients.py                 # today's settings (16 threads, 30 s body timeout)
    python bench/slow_clients.py --before        # the old settings (4 threads, no body timeout)
    python bench/slow_clients.py --clients 40 --seconds 40
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.helpers.live_server import SlowClient, healthz_latency, live_server  # noqa: E402
from tests.helpers.models import make_model, save_model  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=12)
    parser.add_argument("--seconds", type=float, default=20, help="how long clients trickle")
    parser.add_argument("--before", action="store_true", help="old settings: 4 threads, no limit")
    args = parser.parse_args()
    server_args = ["--threads", "4", "--body-timeout", "0"] if args.before else []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        with live_server(
            folder, save_model(make_model(), folder / "tiny.keras"), args=server_args
        ) as server:
            token = server.token()
            baseline = [healthz_latency(server.port) for _ in range(5)]
            clients = [SlowClient(server.port, token, args.seconds) for _ in range(args.clients)]
            for client in clients:
                client.start()
            time.sleep(2)
            latencies = []
            end = time.monotonic() + args.seconds - 4
            while time.monotonic() < end:
                latencies.append(healthz_latency(server.port, timeout=10))
                time.sleep(0.5)
            for client in clients:
                client.join(args.seconds + 10)
    answered = [c.status for c in clients if c.status is not None]
    settings = "before (4 threads, no body timeout)" if args.before else "after (defaults)"
    print(f"settings: {settings}; {args.clients} clients at 1 byte/s for {args.seconds:.0f} s")
    print(f"/healthz alone: median {statistics.median(baseline) * 1000:.0f} ms")
    print(
        f"/healthz with slow clients: median {statistics.median(latencies) * 1000:.0f} ms, "
        f"max {max(latencies) * 1000:.0f} ms over {len(latencies)} requests "
        f"(10 s = no answer)"
    )
    print(f"slow clients answered: {len(answered)} ({sorted(set(answered))})")


if __name__ == "__main__":
    main()
