#!/usr/bin/env python3
"""Bucket chores for the object-store tests and for trying vemo against local servers.

    objects.py mkbucket s3://BUCKET | az://CONTAINER
    objects.py upload DIR URI          # every file below DIR, under URI's prefix
    objects.py download URI DIR        # every object below URI's prefix

s3:// goes through boto3 with the usual AWS_* variables (AWS_ENDPOINT_URL for a local server);
az:// through azure-storage-blob, with AZURE_STORAGE_CONNECTION_STRING, or Azurite's
well-known development account when AZURE_STORAGE_USE_EMULATOR=true (AZURE_STORAGE_BLOB_URL
for another endpoint).
"""
import os
import sys
from pathlib import Path

# Azurite's published development account (not a secret).
AZURITE = ("DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey="
           "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;"
           "BlobEndpoint={};")


def split(uri):
    scheme, _, rest = uri.partition("://")
    assert scheme in ("s3", "az"), f"not an s3:// or az:// URI: {uri}"
    bucket, _, prefix = rest.partition("/")
    return scheme, bucket, prefix.strip("/")


class S3:
    def __init__(self, bucket):
        import boto3
        self.s3 = boto3.client("s3", endpoint_url=os.environ.get("AWS_ENDPOINT_URL"),
                               region_name=os.environ.get("AWS_REGION", "us-east-1"))
        self.bucket = bucket

    def create(self):
        self.s3.create_bucket(Bucket=self.bucket)

    def put(self, key, path):
        self.s3.upload_file(str(path), self.bucket, key)

    def keys(self, prefix):
        pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        return [o["Key"] for page in pages for o in page.get("Contents", [])]

    def get(self, key, path):
        self.s3.download_file(self.bucket, key, str(path))


class Azure:
    def __init__(self, container):
        from azure.storage.blob import BlobServiceClient
        conn = os.environ.get("AZURE_STORAGE_CONNECTION_STRING") or AZURITE.format(
            os.environ.get("AZURE_STORAGE_BLOB_URL", "http://127.0.0.1:10000/devstoreaccount1"))
        self.service = BlobServiceClient.from_connection_string(conn)
        self.container = self.service.get_container_client(container)

    def create(self):
        self.container.create_container()

    def put(self, key, path):
        self.container.upload_blob(key, Path(path).read_bytes(), overwrite=True)

    def keys(self, prefix):
        return [b.name for b in self.container.list_blobs(name_starts_with=prefix)]

    def get(self, key, path):
        Path(path).write_bytes(self.container.download_blob(key).readall())


def store(uri):
    scheme, bucket, prefix = split(uri)
    return (S3 if scheme == "s3" else Azure)(bucket), prefix


def main(argv):
    if argv[:1] == ["mkbucket"] and len(argv) == 2:
        store(argv[1])[0].create()
    elif argv[:1] == ["upload"] and len(argv) == 3:
        target, prefix = store(argv[2])
        root = Path(argv[1])
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            target.put(f"{prefix}/{path.relative_to(root).as_posix()}", path)
    elif argv[:1] == ["download"] and len(argv) == 3:
        source, prefix = store(argv[1])
        for key in source.keys(prefix + "/"):
            path = Path(argv[2]) / key[len(prefix) + 1:]
            path.parent.mkdir(parents=True, exist_ok=True)
            source.get(key, path)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
