#!/usr/bin/env python3
"""Secure API benchmark: signed + encrypted charges of a stored card per second through
gunicorn on PostgreSQL, next to the same charge through esipay, and where the time goes.

All on 127.0.0.1, bounded in count and time:

1. migrates the bench database (PostgreSQL ``gateway_bench`` by default, created
   when missing) and provisions a merchant with API keys, an account and a
   stored card (4242424242424242), a return URL for esipay (a local server in
   this process that answers 200);
2. starts ``gunicorn config.wsgi`` with the production settings (``--workers``
   processes of ``--threads`` threads);
3. alternates rounds of ``--duration`` seconds: secure API charges (``POST
   /billing/{uuid}/transaction``: signed, encrypted, a new orderID each, the
   answer decrypted and checked) and esipay charges (``GET /cardpay/...``: the
   same 12.50 on the same card, confirmed by the return URL, captured), from
   ``--clients`` processes of ``--concurrency`` threads each; reports each
   round's charges/s, p50 and p99, and the medians;
4. in this process, single-threaded through the same WSGI application
   (no sockets), times ``--profile-charges`` secure API charges and, inside
   them, the signature check (PLTOKEN: header, key pair, HMAC, nonce) and the
   envelope (decrypting the body, encrypting the answer): their share of a charge.

Usage:
    .venv/bin/python bench/secure_api_bench.py [--duration 10] [--rounds 3] [--clients 2]
        [--concurrency 8] [--workers 2] [--threads 4] [--database-url postgres://...] [--json]
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DEFAULT_DB = "postgres://postgres@127.0.0.1:5432/gateway_bench"
DEFAULT_BROKER = "redis://127.0.0.1:6379/0"
MASTER_KEY = "secure-api-bench-master-key-not-for-production"
CARD = "4242424242424242"


def log(*parts: object) -> None:
    print(*parts, file=sys.stderr, flush=True)


def ensure_database(url: str) -> None:
    import psycopg

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    admin = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _ReturnUrl(BaseHTTPRequestHandler):
    """esipay's return URL: the merchant says yes."""

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: object) -> None:
        pass


# --- Provisioning (Django in this process) ------------------------------------------------------


def provision(return_url: str) -> dict[str, str]:
    import django

    django.setup()
    from django.utils import timezone

    from merchants import accounts
    from merchants.credentials import api_keys_issue
    from merchants.models import Merchant
    from merchants.services import merchant_create

    name = f"Secure API bench {uuid.uuid4().hex[:8]}"
    merchant = merchant_create(name=name, allowed_ips=["127.0.0.1"], callback_url=return_url)
    Merchant.objects.filter(pk=merchant.pk).update(callback_url=return_url)
    keys = api_keys_issue(merchant=merchant)
    account = accounts.account_create(merchant=merchant, external_id="bench")
    card = accounts.stored_card_create(account=account, number=CARD, exp_month="12",
                                       exp_year=str(timezone.now().year + 3))
    return {"app_id": keys.app_id, "app_key": keys.app_key, "data_key": keys.data_key,
            "merchant_uuid": str(merchant.uuid), "account": str(account.uuid), "card": str(card.uuid),
            "year": str(card.exp_year)}


# --- Load (client processes) --------------------------------------------------------------------


def _client_process(kind: str, base_url: str, creds: dict[str, str], threads: int, duration: float,
                    run_id: str, results: multiprocessing.Queue) -> None:
    import httpx

    from clients.secure_api import SecureApiClient

    deadline = time.monotonic() + duration
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()

    def secure_loop(index: int) -> None:
        api = SecureApiClient(base_url, app_id=creds["app_id"], app_key=creds["app_key"],
                              data_key=creds["data_key"], timeout=30)
        path = f"/billing/{creds['account']}/transaction"
        n = 0
        while time.monotonic() < deadline:
            n += 1
            body = {"orderID": f"{run_id}-{os.getpid()}-{index}-{n}", "amount": "12.50", "currencyCode": "EUR",
                    "paymentInfoID": creds["card"]}
            started = time.perf_counter()
            try:
                answer = api.post(path, body)
                ok = answer.status == 200 and answer.data["paymentInfo"]["card"]["cardLastNum"] == "4242"
                problem = "" if ok else f"{answer.status} {answer.body}"
            except Exception as exc:  # noqa: BLE001 - counted and reported
                problem = repr(exc)
            elapsed = time.perf_counter() - started
            with lock:
                (errors.append(problem[:200]) if problem else latencies.append(elapsed))
        api.close()

    def esipay_loop(index: int) -> None:
        http = httpx.Client(timeout=30)
        n = 0
        while time.monotonic() < deadline:
            n += 1
            cid = f"{run_id}-{os.getpid()}-{index}-{n}"
            url = f"{base_url}/cardpay/{creds['merchant_uuid']}/{cid}/{CARD}/12/{creds['year']}/12.50"
            started = time.perf_counter()
            try:
                response = http.get(url)
                ok = response.status_code == 200 and response.json()["status"] == "captured"
                problem = "" if ok else f"{response.status_code} {response.text}"
            except Exception as exc:  # noqa: BLE001
                problem = repr(exc)
            elapsed = time.perf_counter() - started
            with lock:
                (errors.append(problem[:200]) if problem else latencies.append(elapsed))
        http.close()

    loop = secure_loop if kind == "secure" else esipay_loop
    workers = [threading.Thread(target=loop, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    results.put({"latencies": latencies, "errors": errors})


def run_round(kind: str, base_url: str, creds: dict[str, str], args: argparse.Namespace, run_id: str) -> dict:
    results: multiprocessing.Queue = multiprocessing.Queue()
    procs = [multiprocessing.Process(target=_client_process,
                                     args=(kind, base_url, creds, args.concurrency, args.duration, run_id, results))
             for _ in range(args.clients)]
    started = time.monotonic()
    for proc in procs:
        proc.start()
    collected = [results.get(timeout=args.duration + 120) for _ in procs]
    for proc in procs:
        proc.join(30)
    wall = time.monotonic() - started
    latencies = [v for c in collected for v in c["latencies"]]
    errors = [e for c in collected for e in c["errors"]]
    return {
        "kind": kind, "charges": len(latencies), "errors": len(errors), "first_errors": errors[:3],
        "per_second": len(latencies) / args.duration,
        "p50_ms": 1000 * percentile(latencies, 0.50), "p99_ms": 1000 * percentile(latencies, 0.99),
        "wall_s": wall,
    }


# --- Where the time goes (in this process) --------------------------------------------------------


_LAYERS = [  # (layer, path fragment) for the cProfile breakdown, first match wins
    ("PostgreSQL round trips (psycopg)", "/psycopg/"), ("Django ORM", "/django/db/"),
    ("DRF", "/rest_framework/"), ("Django request/response", "/django/"),
    ("client (httpx, WSGI transport)", "/httpx/"), ("client (signing, envelope)", "/clients/"),
    ("the door (payments/doors)", "/payments/doors/"), ("payment core (payments/)", "/payments/"),
    ("accounts (merchants/)", "/merchants/"), ("JSON", "simplejson"),
]


def layer_breakdown(creds: dict[str, str], charges: int) -> list[tuple[str, float]]:
    """Where one secure API charge's time goes (in this process, cProfile's own time
    by layer; cProfile slows Python down, so read the shares, not the totals)."""
    import cProfile
    import pstats

    import httpx
    from django.core.wsgi import get_wsgi_application

    from clients import secure_api as client

    api = client.SecureApiClient("http://127.0.0.1", app_id=creds["app_id"], app_key=creds["app_key"],
                                 data_key=creds["data_key"],
                                 http=httpx.Client(transport=httpx.WSGITransport(app=get_wsgi_application())))
    path = f"/billing/{creds['account']}/transaction"
    run = uuid.uuid4().hex[:8]
    profiler = cProfile.Profile()
    profiler.enable()
    for n in range(charges):
        api.post(path, {"orderID": f"layers-{run}-{n}", "amount": "12.50", "currencyCode": "EUR",
                        "paymentInfoID": creds["card"]})
    profiler.disable()
    spent: dict[str, float] = {}
    stats = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    total = 0.0
    for (filename, _line, function), (_cc, _nc, own, _cum, _callers) in stats.items():
        total += own
        name = next((layer for layer, fragment in _LAYERS if fragment in filename), None)
        if name is None:
            name = "cryptography, hashlib, hmac" if ("crypt" in filename or "hash" in function or "hmac" in function
                                                    or "AESGCM" in function) else "other (stdlib, builtins)"
        spent[name] = spent.get(name, 0.0) + own
    return sorted(((name, 100 * value / total) for name, value in spent.items()), key=lambda item: -item[1])


def profile_in_process(creds: dict[str, str], charges: int) -> dict[str, float]:
    """Single-threaded secure API charges through the WSGI app, with the signature
    check and the envelope timed where the door calls them."""
    import httpx
    from django.core.wsgi import get_wsgi_application

    from clients import secure_api as client
    from payments.doors import pltoken
    from payments.doors.secure_api import base, envelope

    spent = {"signature": 0.0, "envelope": 0.0}

    def timed(name: str, function):  # type: ignore[no-untyped-def]
        def wrapper(*a, **kw):  # type: ignore[no-untyped-def]
            started = time.perf_counter()
            try:
                return function(*a, **kw)
            finally:
                spent[name] += time.perf_counter() - started
        return wrapper

    auth_module = sys.modules["payments.doors.secure_api.auth"]
    auth_module.pltoken = type("P", (), {  # type: ignore[attr-defined]
        "verify_request": staticmethod(timed("signature", pltoken.verify_request)),
        "PltokenRefused": pltoken.PltokenRefused, "SCHEME": pltoken.SCHEME})
    base.envelope = type("E", (), {  # type: ignore[attr-defined]
        "open_envelope": staticmethod(timed("envelope", envelope.open_envelope)),
        "seal": staticmethod(timed("envelope", envelope.seal)),
        "compact_json": staticmethod(envelope.compact_json),
        "compact_json_sorted": staticmethod(envelope.compact_json_sorted),
        "parse_json": staticmethod(envelope.parse_json), "EnvelopeError": envelope.EnvelopeError})
    api = client.SecureApiClient("http://127.0.0.1", app_id=creds["app_id"], app_key=creds["app_key"],
                                 data_key=creds["data_key"],
                                 http=httpx.Client(transport=httpx.WSGITransport(app=get_wsgi_application())))
    path = f"/billing/{creds['account']}/transaction"
    run = uuid.uuid4().hex[:8]
    for n in range(20):  # warm-up
        api.post(path, {"orderID": f"warm-{run}-{n}", "amount": "12.50", "currencyCode": "EUR",
                        "paymentInfoID": creds["card"]})
    spent.update(signature=0.0, envelope=0.0)
    client_side = 0.0
    cpu_started, started = time.process_time(), time.perf_counter()
    for n in range(charges):
        body = {"orderID": f"prof-{run}-{n}", "amount": "12.50", "currencyCode": "EUR",
                "paymentInfoID": creds["card"]}
        t0 = time.perf_counter()
        sealed = client.encrypt(creds["data_key"], client.compact_json(body))
        client.authorization(app_id=creds["app_id"], app_key=creds["app_key"], method="POST",
                             uri="http://127.0.0.1" + path, body=b"data=" + sealed.encode())
        client_side += time.perf_counter() - t0
        answer = api.post(path, body)
        assert answer.status == 200, answer.body
    wall = time.perf_counter() - started
    cpu = time.process_time() - cpu_started
    # The client built each request twice (once above to time it): take one build off.
    server = (wall - client_side * 2) / charges
    crypto = _crypto_alone(creds)
    return {
        "crypto_alone_ms": 1000 * crypto, "crypto_share_percent": 100 * crypto / server,
        "charges": charges, "per_charge_ms": 1000 * server, "cpu_per_charge_ms": 1000 * (cpu / charges),
        "signature_ms": 1000 * spent["signature"] / charges, "envelope_ms": 1000 * spent["envelope"] / charges,
        "share_percent": 100 * (spent["signature"] + spent["envelope"]) / charges / server,
        "client_sign_and_encrypt_ms": 1000 * client_side / charges,
    }


def _crypto_alone(creds: dict[str, str], rounds: int = 2000) -> float:
    """Seconds of one request's cryptography alone (no database): the key pair opened
    (two AES-GCM), MD5 of the body and the HMAC of the request string, the body's
    envelope opened, the answer's sealed."""
    import base64

    from merchants.models import ApiKeyPair, Merchant
    from payments import vault
    from payments.doors import pltoken
    from payments.doors.secure_api import envelope

    pair = ApiKeyPair.objects.filter(merchant=Merchant.objects.get(app_id=creds["app_id"])).latest("created_at")
    key = base64.b64decode(creds["data_key"])
    body = envelope.compact_json({"orderID": "x" * 20, "amount": "12.50", "currencyCode": "EUR",
                                  "paymentInfoID": creds["card"]})
    sealed = envelope.seal(key, body)
    raw = b"data=" + sealed.encode()
    answer = b'{"data":{' + b'"x":"' + b"y" * 300 + b'"}}'
    uri = f"http://127.0.0.1/billing/{creds['account']}/transaction"
    started = time.perf_counter()
    for _ in range(rounds):
        app_key = base64.b64decode(vault.unseal(pair.app_key_sealed, purpose="api-app-key"))
        base64.b64decode(vault.unseal(pair.data_key_sealed, purpose="api-data-key"))
        message = pltoken.request_string(app_id=creds["app_id"], method="POST", uri=uri, timestamp="1700000000",
                                         nonce="27071fad-ad4d-4abe-b250-7a20679cd1e3", body=raw)
        pltoken.signature(app_key, message)
        envelope.open_envelope(key, sealed)
        envelope.seal(key, answer)
    return (time.perf_counter() - started) / rounds


# --- Main ---------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of each kind, alternated")
    parser.add_argument("--clients", type=int, default=2, help="client processes")
    parser.add_argument("--concurrency", type=int, default=8, help="threads per client process")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    parser.add_argument("--threads", type=int, default=4, help="threads per gunicorn worker")
    parser.add_argument("--profile-charges", type=int, default=300)
    parser.add_argument("--layers", action="store_true", help="also break a charge's time down by layer (cProfile)")
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_DB))
    parser.add_argument("--broker-url", default=os.environ.get("CELERY_BROKER_URL", DEFAULT_BROKER))
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.database_url.startswith("postgres"):
        ensure_database(args.database_url)
    var = ROOT / "var" / f"secure-api-bench-{os.getpid()}"
    env = {
        "DATABASE_URL": args.database_url, "CELERY_BROKER_URL": args.broker_url,
        "PAYMENTS_MASTER_KEY": MASTER_KEY, "PAYMENTS_ALLOW_PRIVATE_CALLBACKS": "1", "GATEWAY_VAR_DIR": str(var),
    }
    os.environ.update(env, DJANGO_SETTINGS_MODULE="config.settings.dev", DJANGO_DEBUG="0")
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v0"], cwd=ROOT, check=True)
    returns = ThreadingHTTPServer(("127.0.0.1", 0), _ReturnUrl)
    threading.Thread(target=returns.serve_forever, daemon=True).start()
    creds = provision(f"http://127.0.0.1:{returns.server_address[1]}/return")
    port = free_port()
    var.mkdir(parents=True, exist_ok=True)
    server_log = open(var / "gunicorn.log", "w")  # noqa: SIM115 - closed with the server
    server_env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(var), **env,
        "DJANGO_SETTINGS_MODULE": "config.settings.production", "DJANGO_SECRET_KEY": "secure-api-bench",
    }
    gunicorn = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "config.wsgi", "--bind", f"127.0.0.1:{port}", "--workers",
         str(args.workers), "--threads", str(args.threads), "--access-logfile", "/dev/null"],
        cwd=ROOT, env=server_env, stdout=server_log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    base_url = f"http://127.0.0.1:{port}"
    try:
        import httpx

        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"{base_url}/api/schema/", timeout=5)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline or gunicorn.poll() is not None:
                    raise SystemExit("gunicorn did not start") from None
                time.sleep(0.3)
        run_id = uuid.uuid4().hex[:8]
        rounds: list[dict] = []
        for number in range(args.rounds):
            for kind in ("secure", "esipay"):  # A/B, alternated: the machine is shared
                result = run_round(kind, base_url, creds, args, f"{run_id}{number}{kind[0]}")
                rounds.append(result)
                log(f"round {number + 1} {kind:7s} {result['per_second']:7.1f} charges/s "
                    f"p50 {result['p50_ms']:6.1f} ms p99 {result['p99_ms']:6.1f} ms errors {result['errors']}"
                    + (f" {result['first_errors']}" if result["errors"] else ""))
    finally:
        os.killpg(gunicorn.pid, signal.SIGTERM)
        gunicorn.wait(timeout=60)
        server_log.close()
        returns.shutdown()
    profile = profile_in_process(creds, args.profile_charges)
    layers = layer_breakdown(creds, min(args.profile_charges, 200)) if args.layers else []

    def median(kind: str, key: str) -> float:
        return statistics.median(r[key] for r in rounds if r["kind"] == kind)

    summary = {
        "secure": {k: median("secure", k) for k in ("per_second", "p50_ms", "p99_ms")},
        "esipay": {k: median("esipay", k) for k in ("per_second", "p50_ms", "p99_ms")},
        "errors": sum(r["errors"] for r in rounds), "rounds": rounds, "profile": profile, "layers": layers,
        "settings": {"clients": args.clients, "concurrency": args.concurrency, "workers": args.workers,
                     "threads": args.threads, "duration": args.duration},
    }
    summary["throughput_ratio"] = summary["secure"]["per_second"] / max(summary["esipay"]["per_second"], 1e-9)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"secure API: {summary['secure']['per_second']:.1f} charges/s, p50 {summary['secure']['p50_ms']:.1f} ms, "
              f"p99 {summary['secure']['p99_ms']:.1f} ms (median of {args.rounds} rounds)")
        print(f"esipay:     {summary['esipay']['per_second']:.1f} charges/s, p50 {summary['esipay']['p50_ms']:.1f} ms, "
              f"p99 {summary['esipay']['p99_ms']:.1f} ms")
        print(f"secure API / esipay throughput: {summary['throughput_ratio']:.2f}; errors: {summary['errors']}")
        print(f"in process, one thread: {profile['per_charge_ms']:.2f} ms per secure API charge, of which "
              f"signature check {profile['signature_ms']:.2f} ms + envelope {profile['envelope_ms']:.2f} ms "
              f"= {profile['share_percent']:.1f}%; the cryptography alone {profile['crypto_alone_ms']:.3f} ms "
              f"= {profile['crypto_share_percent']:.1f}%")
        for name, share in layers:
            print(f"  {share:5.1f}%  {name}")
    return 0 if summary["errors"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
