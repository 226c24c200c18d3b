"""`ckpt catalog --format parquet --output FILE` read by the engines teams query fleets with:
pyarrow and DuckDB see the documented column types and the values `--format json` prints, and
the README's DuckDB query across two catalogs runs as written."""

from __future__ import annotations

import json
import os
import subprocess
import sysconfig
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]


def ckpt_command() -> str:
    """The `ckpt` command under test: `$CKPT_BIN` when set (a cargo-built binary), else the
    command the wheel installed into this environment (the same Rust command, in-process)."""
    explicit = os.environ.get("CKPT_BIN")
    if explicit:
        return explicit
    path = Path(sysconfig.get_path("scripts")) / "ckpt"
    assert path.exists(), path
    return str(path)


def run(*args: str) -> subprocess.CompletedProcess:
    out = subprocess.run([ckpt_command(), *args], capture_output=True, check=False, cwd=REPO)
    assert out.returncode == 0, out.stderr
    return out


def catalog_json(*args: str) -> list[dict]:
    return json.loads(run("catalog", "--no-cache", "--format", "json", *args).stdout)["checkpoints"]


def catalog_parquet(path: Path, *args: str) -> Path:
    out = run("catalog", "--no-cache", "--format", "parquet", "--output", str(path), *args)
    assert out.stdout == b""
    return path


def map_of(t: pa.DataType) -> tuple[pa.DataType, pa.DataType]:
    """A map type's (key, value) types (its values are never null: not `pa.map_`'s default)."""
    assert pa.types.is_map(t), t
    assert not t.item_field.nullable
    return t.key_type, t.item_type


def test_pyarrow_reads_the_documented_types_and_the_json_values(tmp_path: Path) -> None:
    expected = catalog_json("examples")
    f = catalog_parquet(tmp_path / "examples.parquet", "examples")
    t = pq.read_table(f)
    s = t.schema
    assert s.metadata[b"ckpt.catalog.schema_version"] == b"1"
    assert json.loads(s.metadata[b"ckpt.catalog.warnings"]) == []
    for name in ("path", "experiment", "run", "task", "format", "training_phase", "monitor", "mode",
                 "model", "hparams", "data", "modified", "security", "lightning_version", "error"):
        assert s.field(name).type == pa.string(), name
    for name in ("epoch", "global_step", "save_top_k", "params", "tensors", "size_bytes"):
        assert s.field(name).type == pa.int64(), name
    for name in ("save_last", "is_best", "is_last"):
        assert s.field(name).type == pa.bool_(), name
    assert map_of(s.field("metrics").type) == (pa.string(), pa.float64())
    for name in ("sources", "model_leaves", "hparams_leaves", "data_leaves"):
        assert map_of(s.field(name).type) == (pa.string(), pa.string()), name
    assert s.field("modified_at").type == pa.timestamp("us", tz="UTC")
    conflict = s.field("conflicts").type
    assert pa.types.is_list(conflict) and pa.types.is_struct(conflict.value_type)
    assert [conflict.value_type.field(i).name for i in range(2)] == ["field", "values"]

    rows = t.to_pylist()
    assert len(rows) == len(expected) >= 6
    for row, e in zip(rows, expected):
        for key in ("path", "experiment", "run", "task", "format", "epoch", "global_step",
                    "training_phase", "monitor", "mode", "save_top_k", "save_last", "params",
                    "tensors", "size_bytes", "modified", "is_best", "is_last", "security",
                    "lightning_version", "error"):
            assert row[key] == e[key], (key, e["path"])
        assert dict(row["metrics"]) == e["metrics"]
        assert dict(row["sources"]) == e["sources"]
        for part in ("model", "hparams", "data"):
            assert json.loads(row[part]) == e[part], (part, e["path"])
        assert row["conflicts"] == [
            {"field": c["field"], "values": [
                {"source": v["source"], "value": json.dumps(v["value"], separators=(",", ":")), "chosen": v["chosen"]}
                for v in c["values"]]}
            for c in e["conflicts"]
        ]
        if e["modified"]:
            assert row["modified_at"].isoformat().startswith(e["modified"][:19])
    # A leaf by its dotted path, without a JSON function.
    with_arch = [(r, e) for r, e in zip(rows, expected) if "architecture" in e["model"]]
    assert with_arch
    for r, e in with_arch:
        assert dict(r["model_leaves"])["architecture"] == e["model"]["architecture"]


def test_duckdb_reads_the_types_and_the_json_values(tmp_path: Path) -> None:
    expected = catalog_json("examples/lightning")
    f = catalog_parquet(tmp_path / "lightning.parquet", "examples/lightning")
    con = duckdb.connect()
    types = dict(con.execute(f"SELECT column_name, column_type FROM (DESCRIBE SELECT * FROM '{f}')").fetchall())
    assert types["path"] == "VARCHAR"
    assert types["epoch"] == "BIGINT" and types["size_bytes"] == "BIGINT"
    assert types["is_best"] == "BOOLEAN"
    assert types["metrics"] == "MAP(VARCHAR, DOUBLE)"
    assert types["sources"] == "MAP(VARCHAR, VARCHAR)"
    assert types["model_leaves"] == "MAP(VARCHAR, VARCHAR)"
    assert types["modified_at"] == "TIMESTAMP WITH TIME ZONE"
    assert types["conflicts"].startswith("STRUCT(") and types["conflicts"].endswith("[]")

    kv = dict(con.execute(f"SELECT key::VARCHAR, value::VARCHAR FROM parquet_kv_metadata('{f}')").fetchall())
    assert kv["ckpt.catalog.schema_version"] == "1"

    metric = next(iter(expected[0]["metrics"]))
    rows = con.execute(
        f"""SELECT path, epoch, global_step, metrics['{metric}'] AS m, is_best, size_bytes,
                   model->>'architecture' AS arch, len(conflicts) AS n_conflicts
            FROM '{f}' ORDER BY path"""
    ).fetchall()
    want = sorted(
        (e["path"], e["epoch"], e["global_step"], e["metrics"].get(metric), e["is_best"], e["size_bytes"],
         e["model"].get("architecture"), len(e["conflicts"]))
        for e in expected
    )
    assert rows == want


README_QUERY = """
SELECT catalog, experiment, run, epoch, metrics['val/hmean'] AS hmean, path
FROM (
  SELECT 'team-a' AS catalog, * FROM 'team-a.parquet'
  UNION ALL BY NAME
  SELECT 'team-b' AS catalog, * FROM 'team-b.parquet'
)
WHERE metrics['val/hmean'] IS NOT NULL
ORDER BY hmean DESC, path
LIMIT 5
"""


def test_the_readme_duckdb_query_across_two_catalogs(tmp_path: Path) -> None:
    # The query in the README, as written there.
    readme = (REPO / "README.md").read_text()
    assert README_QUERY.strip() in readme
    catalog_parquet(tmp_path / "team-a.parquet", "examples/lightning")
    catalog_parquet(tmp_path / "team-b.parquet", "examples/lightning_dictconfig")
    con = duckdb.connect()
    con.execute(f"SET file_search_path = '{tmp_path}'")
    rows = con.execute(README_QUERY).fetchall()
    everything = [("team-a", e) for e in catalog_json("examples/lightning")] + [
        ("team-b", e) for e in catalog_json("examples/lightning_dictconfig")
    ]
    scored = [(c, e) for c, e in everything if "val/hmean" in e["metrics"]]
    assert {c for c, _ in scored} == {"team-a", "team-b"}, "both catalogs have the metric"
    want = sorted(
        ((c, e["experiment"], e["run"], e["epoch"], e["metrics"]["val/hmean"], e["path"]) for c, e in scored),
        key=lambda r: (-r[4], r[5]),
    )[:5]
    assert rows == want
