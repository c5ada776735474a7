#!/usr/bin/env python3
"""Bucket chores for the S3 tests and for trying vemo against a local S3 server (boto3).

    objects.py mkbucket BUCKET
    objects.py upload DIR s3://BUCKET/PREFIX       # every file below DIR
    objects.py download s3://BUCKET/PREFIX DIR     # every object below PREFIX

The endpoint and credentials come from the environment, as for vemo: AWS_ENDPOINT_URL,
AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION.
"""
import os
import sys
from pathlib import Path

import boto3


def client():
    return boto3.client(
        "s3",
        endpoint_url=os.environ.get("AWS_ENDPOINT_URL"),
        region_name=os.environ.get("AWS_REGION", "us-east-1"),
    )


def split(uri):
    assert uri.startswith("s3://"), f"not an s3:// URI: {uri}"
    bucket, _, prefix = uri[5:].partition("/")
    return bucket, prefix.strip("/")


def main(argv):
    s3 = client()
    if argv[:1] == ["mkbucket"] and len(argv) == 2:
        s3.create_bucket(Bucket=argv[1])
    elif argv[:1] == ["upload"] and len(argv) == 3:
        bucket, prefix = split(argv[2])
        root = Path(argv[1])
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            s3.upload_file(str(path), bucket, f"{prefix}/{path.relative_to(root).as_posix()}")
    elif argv[:1] == ["download"] and len(argv) == 3:
        bucket, prefix = split(argv[1])
        pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "/")
        for page in pages:
            for obj in page.get("Contents", []):
                target = Path(argv[2]) / obj["Key"][len(prefix) + 1 :]
                target.parent.mkdir(parents=True, exist_ok=True)
                s3.download_file(bucket, obj["Key"], str(target))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
