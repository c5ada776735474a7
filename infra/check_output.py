#!/usr/bin/env python3
"""Opens a vemo output with pylance and pyarrow, the way a notebook user would, and checks it.

Usage: python3 infra/check_output.py OUTPUT_DIR [EXPECTED_ROWS [TEXT_DIM]]

Prints the row count, the embedding columns (caption and image, with the tower and exit
from each field's metadata) and, for every item, whether a nearest-neighbour query with its
caption embedding returns the item itself first. Exits 1 if any check fails: a row count
other than EXPECTED_ROWS, a `text_emb_e6` width other than TEXT_DIM (default 384,
vemo-mini's), an item that is not its own nearest neighbour, a Parquet embeddings table that
does not hold a row per item and column. Needs `pip install pylance pyarrow`.
"""
import json
import os
import sys

os.environ.setdefault("LANCE_LOG", "error")
import lance  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402


def main(out: str, expected_rows: int | None, text_dim: int = 384) -> int:
    items = lance.dataset(f"{out}/items.lance")
    table = items.to_table()
    emb_cols = [f.name for f in items.schema if "_emb_e" in f.name or "_feat_e" in f.name]
    dims = {c: items.schema.field(c).type.list_size for c in emb_cols}
    towers = {
        c: (items.schema.field(c).metadata or {}).get(b"vemo.tower", b"").decode()
        for c in emb_cols
    }
    self_first = 0
    for row in table.to_pylist():
        hit = items.to_table(
            nearest={"column": "text_emb_e6", "q": row["text_emb_e6"], "k": 1},
            columns=["id"],
        )
        self_first += hit["id"][0].as_py() == row["id"]
    parquet_rows = pq.read_table(f"{out}/parquet/embeddings").num_rows
    report = {
        "rows": table.num_rows,
        "embedding_columns": dims,
        "towers": towers,
        "schema_version": (items.schema.metadata or {}).get(b"vemo.schema_version", b"").decode(),
        "self_first": self_first,
        "parquet_embedding_rows": parquet_rows,
        "versions": [v["version"] for v in items.versions()],
    }
    print(json.dumps(report))
    ok = (
        dims.get("text_emb_e6") == text_dim
        and self_first == table.num_rows
        and parquet_rows == table.num_rows * len(emb_cols)
        and (expected_rows is None or table.num_rows == expected_rows)
    )
    return 0 if ok else 1


if __name__ == "__main__":
    rows = int(sys.argv[2]) if len(sys.argv) > 2 else None
    sys.exit(main(sys.argv[1], rows, *(int(a) for a in sys.argv[3:4])))
