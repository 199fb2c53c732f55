"""Bounded load test of the web API on loopback.

Starts ``retinascreen serve`` as a subprocess on a free port (its own temporary instance folder
and SQLite database), then C concurrent clients each upload N photographs through
``POST /api/v1/screenings``. Prints throughput, p50/p99 latency and the error count, and always
stops the server. Stops by itself: every request has a timeout and the whole run a deadline.

    python bench/load.py                       # 8 clients x 50 uploads, demo model
    python bench/load.py --model runs/x --clients 4 --requests 20 --workers 2
    python bench/load.py --tiny                # a tiny untrained 64 px model (no demo model needed)
    python bench/load.py --requests 15 --src before=/tmp/old/src --src after=src --rounds 2
                                               # two source trees side by side, alternating

``--src NAME=DIR`` serves from the package in DIR (PYTHONPATH) instead of the installed one;
given several times, the runs alternate (``--rounds`` each) and a table compares them.
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

PASSWORD = "load-test-password"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def tiny_model(folder: Path) -> Path:
    """A tiny untrained mini_xception at 64 px with a model card (for runs without a demo model)."""
    from retinascreen.models.build import build_model
    from retinascreen.models.modelcard import ModelCard, write_card

    path = folder / "tiny.keras"
    build_model("mini_xception", "wise-srnet", size=64, widths=(8, 16)).save(path)
    write_card(
        path,
        ModelCard(
            name="tiny-load-test",
            version="0",
            backbone="mini_xception",
            head="wise-srnet",
            input_size=64,
            preprocessing={"size": 64},
            synthetic=True,
        ),
    )
    return path


def photos(n: int, size: int) -> list[bytes]:
    """``n`` synthetic fundus photographs as PNG bytes."""
    from PIL import Image

    from retinascreen.synthetic import generate

    out = []
    for seed in range(n):
        buffer = io.BytesIO()
        Image.fromarray(generate(seed, size=size).image).save(buffer, format="PNG")
        out.append(buffer.getvalue())
    return out


def request(
    port: int,
    method: str,
    path: str,
    body: bytes = b"",
    headers: dict | None = None,
    timeout: float = 60.0,
) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def wait_healthy(port: int, process: subprocess.Popen, deadline: float) -> None:
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"server exited with status {process.returncode}")
        try:
            if request(port, "GET", "/healthz", timeout=5)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.5)
    raise SystemExit("server did not become healthy in time")


def multipart(data: bytes, boundary: str = "retinascreen-load") -> tuple[bytes, str]:
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="eye.png"\r\n'
            "Content-Type: image/png\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, f"multipart/form-data; boundary={boundary}"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def server_env(src: str | None) -> dict[str, str]:
    """The server's environment: PYTHONPATH=src first when a source tree is named."""
    env = dict(os.environ)
    if src:
        env["PYTHONPATH"] = os.pathsep.join(
            [str(Path(src).resolve())] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
        )
    return env


def run(args: argparse.Namespace, src: str | None = None) -> dict:
    work = Path(tempfile.mkdtemp(prefix="retinascreen-load-"))
    model = args.model or (str(tiny_model(work)) if args.tiny else None)
    instance = work / "instance"
    env = server_env(src)
    subprocess.run(  # the account, made by the served tree's own code
        [
            sys.executable,
            "-c",
            "import sys; from retinascreen.web.accounts import create_admin; "
            "create_admin('loadtest', sys.argv[1], instance=sys.argv[2])",
            PASSWORD,
            str(instance),
        ],
        env=env,
        check=True,
    )
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "retinascreen",
        "serve",
        "--port",
        str(port),
        "--workers",
        str(args.workers),
        "--instance",
        str(instance),
    ]
    if model:
        command += ["--model", model]
    log = open(work / "server.log", "w")  # noqa: SIM115 - closed in finally
    server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + args.max_seconds
    try:
        started = time.monotonic()
        wait_healthy(port, server, deadline)
        print(
            f"server up in {time.monotonic() - started:.1f}s on port {port} "
            f"({args.workers} workers, model {model or 'demo'})",
            flush=True,
        )
        status, body = request(
            port,
            "POST",
            "/api/v1/tokens",
            json.dumps({"username": "loadtest", "password": PASSWORD}).encode(),
            {"Content-Type": "application/json"},
        )
        if status != 201:
            raise SystemExit(f"token request failed: {status} {body[:200]!r}")
        token = json.loads(body)["token"]
        images = [multipart(p) for p in photos(8, args.image_size)]
        latencies: list[float] = []
        errors: list[str] = []
        lock = threading.Lock()

        def client(index: int) -> None:
            for i in range(args.requests):
                if time.monotonic() > deadline:
                    with lock:
                        errors.append("deadline")
                    continue
                body, content_type = images[(index + i) % len(images)]
                t0 = time.perf_counter()
                try:
                    status, reply = request(
                        port,
                        "POST",
                        "/api/v1/screenings",
                        body,
                        {
                            "Authorization": f"Bearer {token}",
                            "Content-Type": content_type,
                        },
                        timeout=args.request_timeout,
                    )
                    ok = status == 201
                    problem = f"{status} {reply[:120]!r}"
                except OSError as exc:
                    ok, problem = False, f"{type(exc).__name__}: {exc}"
                elapsed = time.perf_counter() - t0
                with lock:
                    if ok:
                        latencies.append(elapsed)
                    else:
                        errors.append(problem)

        t0 = time.perf_counter()
        with ThreadPoolExecutor(args.clients) as pool:
            list(pool.map(client, range(args.clients)))
        wall = time.perf_counter() - t0
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()
    result = {
        "clients": args.clients,
        "requests_per_client": args.requests,
        "workers": args.workers,
        "image_size": args.image_size,
        "ok": len(latencies),
        "errors": len(errors),
        "seconds": round(wall, 2),
        "throughput_per_s": round(len(latencies) / wall, 2),
        "p50_ms": round(1000 * percentile(latencies, 50), 1),
        "p99_ms": round(1000 * percentile(latencies, 99), 1),
        "cpu_count": os.cpu_count(),
    }
    print(
        f"{result['ok']} uploads in {wall:.1f}s: {result['throughput_per_s']} screenings/s, "
        f"p50 {result['p50_ms']} ms, p99 {result['p99_ms']} ms, {len(errors)} errors"
    )
    if errors:
        print("first errors:", *errors[:3], sep="\n  ")
    print(json.dumps(result))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="model for the server (default: the demo model)")
    parser.add_argument("--tiny", action="store_true", help="use a tiny untrained model")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=50, help="uploads per client")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--image-size", type=int, default=512)
    parser.add_argument("--request-timeout", type=float, default=120.0)
    parser.add_argument(
        "--max-seconds", type=float, default=900.0, help="deadline for the whole run"
    )
    parser.add_argument(
        "--src",
        action="append",
        default=[],
        metavar="NAME=DIR",
        help="serve the package found in DIR (repeat to compare source trees side by side)",
    )
    parser.add_argument("--rounds", type=int, default=1, help="runs per --src, alternating")
    args = parser.parse_args()
    if not args.src:
        result = run(args)
        sys.exit(1 if result["errors"] else 0)
    trees = [item.split("=", 1) if "=" in item else (item, item) for item in args.src]
    results: dict[str, list[dict]] = {name: [] for name, _ in trees}
    for round_ in range(args.rounds):
        for name, src in trees:
            print(f"-- {name} ({src}), round {round_ + 1}", flush=True)
            results[name].append(run(args, src))
    print("\n| tree | round | screenings/s | p50 ms | p99 ms | errors |\n|---|---|---|---|---|---|")
    for name, runs in results.items():
        for i, r in enumerate(runs, 1):
            print(
                f"| {name} | {i} | {r['throughput_per_s']} | {r['p50_ms']} | {r['p99_ms']} | "
                f"{r['errors']} |"
            )
    print(json.dumps(results))
    sys.exit(1 if any(r["errors"] for runs in results.values() for r in runs) else 0)


if __name__ == "__main__":
    main()
