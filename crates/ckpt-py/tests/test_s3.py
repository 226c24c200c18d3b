"""``import ckpt`` on objects in a bucket: the same answers as for the files, against a real
S3-compatible server on loopback (moto behind scripts/s3_server.py, the Rust tests' server).

The server runs from the interpreter ``CKPT_S3_PYTHON`` names (its own small venv, which
``scripts/test`` makes and passes on); without it these tests are skipped, which only a run of
pytest by hand does.
"""

from __future__ import annotations

import os
import subprocess
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

import ckpt

ROOT = Path(__file__).resolve().parents[3]
S3_PYTHON = os.environ.get("CKPT_S3_PYTHON")
BUCKET = "ckpt-py"
LIGHTNING = "examples/lightning/checkpoints/last.ckpt"

pytestmark = pytest.mark.skipif(
    not S3_PYTHON, reason="needs CKPT_S3_PYTHON (scripts/test sets it)"
)


def url(rel: str) -> str:
    return f"s3://{BUCKET}/{rel}"


@pytest.fixture(scope="module")
def bucket():
    """A server with the repository's examples/ uploaded under the same keys, and the process
    environment pointed at it (credentials static: no metadata service is ever asked)."""
    proc = subprocess.Popen(
        [S3_PYTHON, str(ROOT / "scripts/s3_server.py")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline().strip()
        assert line.startswith("READY "), line
        endpoint = line.split()[1]
        q = urllib.parse.urlencode(
            {"bucket": BUCKET, "prefix": "examples", "dir": str(ROOT / "examples")}
        )
        req = urllib.request.Request(f"{endpoint}/_ckpt/upload?{q}", method="POST")
        with urllib.request.urlopen(req, timeout=120) as r:
            assert r.status == 200
        saved = {k: os.environ.get(k) for k in _ENV}
        os.environ.update(
            {
                "AWS_ACCESS_KEY_ID": "test",
                "AWS_SECRET_ACCESS_KEY": "test",
                "AWS_REGION": "us-east-1",
                "AWS_ENDPOINT_URL": endpoint,
                "AWS_ALLOW_HTTP": "true",
            }
        )
        yield endpoint
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    finally:
        proc.kill()
        proc.wait()


_ENV = [
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_REGION",
    "AWS_ENDPOINT_URL",
    "AWS_ALLOW_HTTP",
]


def test_load_of_an_object_equals_load_of_the_file(bucket):
    torch = pytest.importorskip("torch")
    remote = ckpt.load(url(LIGHTNING))
    local = ckpt.load(str(ROOT / LIGHTNING))
    assert list(remote) == list(local)
    assert list(remote["state_dict"]) == list(local["state_dict"])
    for k, v in local["state_dict"].items():
        assert torch.equal(remote["state_dict"][k], v), k
    assert remote["epoch"] == local["epoch"]
    assert remote["hyper_parameters"] == local["hyper_parameters"]


def test_open_scan_inspect_and_catalog_of_a_bucket(bucket):
    ck = ckpt.open(url(LIGHTNING))
    assert sorted(ck.keys()) == sorted(ckpt.open(str(ROOT / LIGHTNING)).keys())
    [v] = ckpt.scan(url(LIGHTNING))
    assert v.path == url(LIGHTNING)
    assert v.safe
    remote = ckpt.inspect(url(LIGHTNING))
    local = ckpt.inspect(str(ROOT / LIGHTNING))
    for k in ("format", "keys", "epoch", "global_step", "callbacks"):
        assert remote[k] == local[k], k
    cat = ckpt.catalog(url("examples"), no_cache=True)
    here = ckpt.catalog(str(ROOT / "examples"), no_cache=True)
    assert len(cat) == len(here) > 0
    prefix = str(ROOT) + "/"
    assert sorted(e["path"].replace(f"s3://{BUCKET}/", "") for e in cat) == sorted(
        e["path"].replace(prefix, "") for e in here
    )


def test_a_missing_object_names_its_url(bucket):
    with pytest.raises(Exception) as e:
        ckpt.load(url("examples/nothing-here.ckpt"))
    assert url("examples/nothing-here.ckpt") in str(e.value)
