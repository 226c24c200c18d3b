#!/usr/bin/env python3
"""An S3-compatible server on loopback for ckpt's object-storage tests and benchmark.

moto's S3 (its WSGI app, built as moto's own ThreadedMotoServer builds it) wrapped in a
middleware that counts every request and injects faults, so a test can ask the server itself
what ckpt fetched (no separate counting proxy) and make it fail on cue:

    python scripts/s3_server.py [--host 127.0.0.1] [--port 0]

prints ``READY http://127.0.0.1:PORT`` on stdout once it listens and exits when its stdin
closes (the test harness owns the process; a benchmark keeps a pipe open). Run it with the venv
scripts/test makes from scripts/s3-requirements.txt.

Control paths, under ``/_ckpt/`` (answered here, never passed to moto):

``GET  stats``
    ``{"GET", "LIST", "HEAD", "PUT", "OTHER", "requests", "bytes_out", "log": [[method, key,
    range, status, bytes], ...]}`` since the last reset. A LIST is a GET on a bucket (with
    ``list-type=2`` or without); its ``key`` in the log is the ``prefix`` asked for. ``bytes_out``
    counts response body bytes as they are sent. Control requests and the server's own
    requests (uploads, replacements) are not counted.
``POST reset``
    Zero the counters and the log, and drop pending faults.
``POST fail?status=503&code=SlowDown&count=N[&method=GET|LIST|HEAD|PUT|ANY][&key=K][&prefix=P]``
    Answer the next N matching requests with an S3 error document (``<Code>``, ``<RequestId>``)
    and header ``x-amz-request-id: CKPTFAULT<n>`` (n counts injected faults from 1). ``key``
    matches the object's key (for a LIST: the prefix asked for) exactly, ``prefix`` its start.
``POST die-after?requests=K``
    Serve K more data requests, then on the next one exit the whole process at once
    (``os._exit``): the client sees the connection dropped, then refused.
``POST replace-on-get?bucket=B&key=K``
    On the next GET of B/K, first overwrite the object with bytes of the same length that
    differ (a new ETag), then pass the request on: a GET carrying ``If-Match`` of the old ETag
    is answered 412 by moto.
``POST upload?bucket=B&prefix=P&dir=/abs/dir``  (or ``&file=/abs/file&key=K``)
    Create the bucket if needed and upload every file under ``dir`` to ``P/<relative path>``
    (multipart for large files), or one file to K. Answers ``{"objects": n, "bytes": total}``.
``POST copy?bucket=B&src=K1&dst=K2``
    Server-side copy of an object (the benchmark uploads one large checkpoint and copies it).
``POST max-keys?n=3``
    Set moto's page size for listings (``MOTO_S3_DEFAULT_MAX_KEYS``; ckpt sends no max-keys),
    so a small tree is listed over several pages.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import urllib.parse
from collections import Counter
from pathlib import Path

# A marker on the server's own boto3 requests (uploads, replacements): passed to moto
# untouched and uncounted.
INTERNAL_AGENT = "ckpt-s3-server-internal"

ERROR_REASONS = {
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    412: "Precondition Failed",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


class Faults:
    """Counters, log and pending faults, shared by the server's threads under one lock."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.reset()
        self.fault_seq = 0

    def reset(self) -> None:
        self.counts: Counter[str] = Counter()
        self.bytes_out = 0
        self.log: list[list] = []
        self.fail_rules: list[dict] = []
        self.die_after: int | None = None
        self.replace: set[tuple[str, str]] = set()

    def stats(self) -> dict:
        with self.lock:
            out = {k: self.counts.get(k, 0) for k in ("GET", "LIST", "HEAD", "PUT", "OTHER")}
            out["requests"] = sum(self.counts.values())
            out["bytes_out"] = self.bytes_out
            out["log"] = list(self.log)
            return out


def classify(environ: dict) -> tuple[str, str, str, str]:
    """(class, bucket, key, range) of a path-style S3 request."""
    method = environ.get("REQUEST_METHOD", "GET").upper()
    path = environ.get("PATH_INFO", "/")
    bucket, _, key = path.lstrip("/").partition("/")
    query = urllib.parse.parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
    rng = environ.get("HTTP_RANGE", "")
    if method == "GET" and not key and bucket:
        # ListObjects(V2) on the bucket (other bucket sub-resources, `?location` and the
        # like, count as OTHER).
        if "list-type" in query or not any(
            q in query for q in ("location", "versioning", "acl", "policy", "tagging", "uploads")
        ):
            return "LIST", bucket, query.get("prefix", [""])[0], rng
        return "OTHER", bucket, key, rng
    if method in ("GET", "HEAD", "PUT"):
        return method, bucket, key, rng
    return "OTHER", bucket, key, rng


def error_document(status: int, code: str, request_id: str, resource: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>Injected by scripts/s3_server.py</Message>"
        f"<Resource>{resource}</Resource><RequestId>{request_id}</RequestId></Error>"
    ).encode()


class CountingBody:
    """The response body, counted as it is sent; the log row is written when it closes."""

    def __init__(self, faults: Faults, body, row: list) -> None:
        self.faults, self.body, self.row = faults, body, row

    def __iter__(self):
        for chunk in self.body:
            n = len(chunk)
            with self.faults.lock:
                self.faults.bytes_out += n
                self.row[4] += n
            yield chunk

    def close(self) -> None:
        close = getattr(self.body, "close", None)
        if close is not None:
            close()


class Middleware:
    def __init__(self, app, faults: Faults) -> None:
        self.app = app
        self.faults = faults
        self.url = ""  # set once the server listens

    # -- the server's own S3 client ----------------------------------------------------------
    def client(self):
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.url,
            region_name="us-east-1",
            aws_access_key_id="test",
            aws_secret_access_key="test",
            config=Config(user_agent_extra=INTERNAL_AGENT, s3={"addressing_style": "path"}),
        )

    def ensure_bucket(self, c, bucket: str) -> None:
        try:
            c.head_bucket(Bucket=bucket)
        except Exception:  # noqa: BLE001 - any failure: try to create it
            c.create_bucket(Bucket=bucket)

    def upload(self, q: dict) -> dict:
        bucket = q["bucket"]
        c = self.client()
        self.ensure_bucket(c, bucket)
        prefix = q.get("prefix", "").strip("/")
        files: list[tuple[Path, str]] = []
        if "file" in q:
            files.append((Path(q["file"]), q.get("key") or Path(q["file"]).name))
        else:
            root = Path(q["dir"])
            for p in sorted(root.rglob("*")):
                if p.is_file():
                    rel = p.relative_to(root).as_posix()
                    files.append((p, f"{prefix}/{rel}" if prefix else rel))
        total = 0
        for p, key in files:
            c.upload_file(str(p), bucket, key)
            total += p.stat().st_size
        return {"objects": len(files), "bytes": total}

    def replace_now(self, bucket: str, key: str) -> None:
        c = self.client()
        body = c.get_object(Bucket=bucket, Key=key)["Body"].read()
        if body:
            changed = bytes([body[0] ^ 0xFF]) + body[1:]
        else:
            changed = b"x"
        c.put_object(Bucket=bucket, Key=key, Body=changed)

    # -- WSGI -------------------------------------------------------------------------------
    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "/")
        if path.startswith("/_ckpt/"):
            return self.control(path[len("/_ckpt/") :], environ, start_response)
        if INTERNAL_AGENT in environ.get("HTTP_USER_AGENT", ""):
            return self.app(environ, start_response)
        kind, bucket, key, rng = classify(environ)
        f = self.faults
        replace = False
        with f.lock:
            if f.die_after is not None:
                if f.die_after <= 0:
                    # Stopped mid-run: no answer, the listening socket goes with the process.
                    sys.stdout.flush()
                    os._exit(0)
                f.die_after -= 1
            f.counts[kind] += 1
            row = [kind, key, rng, 0, 0]
            f.log.append(row)
            rule = None
            for r in f.fail_rules:
                if r["count"] > 0 and matches(r, kind, key):
                    rule = r
                    break
            if rule is not None:
                rule["count"] -= 1
                f.fault_seq += 1
                request_id = f"CKPTFAULT{f.fault_seq}"
            if kind == "GET" and (bucket, key) in f.replace:
                f.replace.discard((bucket, key))
                replace = True
        if rule is not None:
            status = rule["status"]
            body = error_document(status, rule["code"], request_id, path)
            row[3] = status
            with f.lock:
                f.bytes_out += len(body)
                row[4] = len(body)
            start_response(
                f"{status} {ERROR_REASONS.get(status, 'Error')}",
                [
                    ("Content-Type", "application/xml"),
                    ("Content-Length", str(len(body))),
                    ("x-amz-request-id", request_id),
                ],
            )
            return [body] if environ.get("REQUEST_METHOD") != "HEAD" else []
        if replace:
            self.replace_now(bucket, key)

        def counting_start(status, headers, exc_info=None):
            row[3] = int(status.split(" ", 1)[0])
            return start_response(status, headers, exc_info)

        return CountingBody(f, self.app(environ, counting_start), row)

    def control(self, what: str, environ, start_response):
        q = {
            k: v[0]
            for k, v in urllib.parse.parse_qs(
                environ.get("QUERY_STRING", ""), keep_blank_values=True
            ).items()
        }
        f = self.faults
        try:
            if what == "stats":
                out = f.stats()
            elif what == "reset":
                with f.lock:
                    f.reset()
                out = {"ok": True}
            elif what == "fail":
                rule = {
                    "method": q.get("method", "ANY").upper(),
                    "status": int(q.get("status", "503")),
                    "code": q.get("code", "SlowDown"),
                    "count": int(q.get("count", "1")),
                    "key": q.get("key"),
                    "prefix": q.get("prefix"),
                }
                with f.lock:
                    f.fail_rules.append(rule)
                out = {"ok": True}
            elif what == "die-after":
                with f.lock:
                    f.die_after = int(q["requests"])
                out = {"ok": True}
            elif what == "replace-on-get":
                with f.lock:
                    f.replace.add((q["bucket"], q["key"]))
                out = {"ok": True}
            elif what == "upload":
                out = self.upload(q)
            elif what == "copy":
                self.client().copy_object(
                    Bucket=q["bucket"],
                    Key=q["dst"],
                    CopySource={"Bucket": q["bucket"], "Key": q["src"]},
                )
                out = {"ok": True}
            elif what == "max-keys":
                os.environ["MOTO_S3_DEFAULT_MAX_KEYS"] = str(int(q["n"]))
                out = {"ok": True}
            else:
                body = f"unknown control path /_ckpt/{what}\n".encode()
                start_response("404 Not Found", [("Content-Type", "text/plain")])
                return [body]
        except Exception as e:  # noqa: BLE001 - reported to the caller, server goes on
            body = f"/_ckpt/{what}: {type(e).__name__}: {e}\n".encode()
            start_response("400 Bad Request", [("Content-Type", "text/plain")])
            return [body]
        body = json.dumps(out).encode()
        start_response(
            "200 OK",
            [("Content-Type", "application/json"), ("Content-Length", str(len(body)))],
        )
        return [body]


def matches(rule: dict, kind: str, key: str) -> bool:
    if rule["method"] not in ("ANY", kind):
        return False
    if rule["key"] is not None and key != rule["key"]:
        return False
    if rule["prefix"] is not None and not key.startswith(rule["prefix"]):
        return False
    return True


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--verbose", action="store_true", help="log every request on stderr")
    args = ap.parse_args()
    # Credentials and region for moto itself (any are accepted); never the machine's own.
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "test")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "test")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")

    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import make_server

    class Handler(MotoRequestHandler):
        def log_request(self, *a, **k) -> None:
            if args.verbose:
                super().log_request(*a, **k)

    faults = Faults()
    app = Middleware(DomainDispatcherApplication(create_backend_app), faults)
    server = make_server(args.host, args.port, app, threaded=True, request_handler=Handler)
    host, port = server.server_address[:2]
    app.url = f"http://{host}:{port}"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print(f"READY {app.url}", flush=True)
    # Until whoever started us closes our stdin (or dies).
    try:
        while sys.stdin.buffer.read(1 << 16):
            pass
    except KeyboardInterrupt:
        pass
    os._exit(0)


if __name__ == "__main__":
    main()
