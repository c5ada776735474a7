#!/usr/bin/env python3
"""Writes a vemo manifest (.jsonl) as WebDataset shards in the layout img2dataset writes:
NNNNN.tar holding KEY.jpg (or .png), KEY.json ({"key": ID, "caption": ..., "url": ...}) and
KEY.txt (the caption), members in sorted order as webdataset's TarWriter writes them, plus
NNNNN_stats.json beside each tar (which readers must ignore). KEY is the sample's 9-digit
number. A manifest row whose image file is missing gives a sample without an image.

    make_webdataset.py MANIFEST.jsonl OUT_DIR SAMPLES_PER_TAR
    make_webdataset.py --damage OUT_DIR      # truncate 00001.tar inside an image; break the
                                             # header of an image in 00002.tar; prints JSON

Used by tests/tests/webdataset.rs (Python's standard library only)."""
import io, json, os, sys, tarfile


def add(tar, name, data):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = 0
    tar.addfile(info, io.BytesIO(data))


def write(manifest, out, per_tar):
    folder = os.path.dirname(os.path.abspath(manifest))
    rows = [json.loads(l) for l in open(manifest) if l.strip()]
    os.makedirs(out, exist_ok=True)
    for shard in range(0, len(rows), per_tar):
        number = shard // per_tar
        with tarfile.open(os.path.join(out, f"{number:05d}.tar"), "w", format=tarfile.USTAR_FORMAT) as tar:
            for i, row in enumerate(rows[shard:shard + per_tar]):
                key = f"{number:05d}{i:04d}"
                path = os.path.join(folder, row["image"])
                members = {"json": json.dumps({"key": row["id"], "caption": row.get("caption"), "url": row["image"]}).encode()}
                if os.path.isfile(path):
                    members[os.path.splitext(path)[1].lstrip(".")] = open(path, "rb").read()
                if row.get("caption") is not None:
                    members["txt"] = row["caption"].encode()
                for ext in sorted(members):
                    add(tar, f"{key}.{ext}", members[ext])
        with open(os.path.join(out, f"{number:05d}_stats.json"), "w") as f:
            json.dump({"count": len(rows[shard:shard + per_tar])}, f)


def damage(out):
    """Cuts 00001.tar in the middle of its third image; overwrites the header of the second
    image of 00002.tar with garbage. Prints what a reader should report."""
    def images(path):
        with tarfile.open(path) as tar:
            return [m for m in tar.getmembers() if m.name.endswith((".jpg", ".png"))]
    cut = images(os.path.join(out, "00001.tar"))[2]
    with open(os.path.join(out, "00001.tar"), "r+b") as f:
        f.truncate(cut.offset_data + cut.size // 2)
    path = os.path.join(out, "00002.tar")
    broken = images(path)[1]
    with tarfile.open(path) as tar:
        data = tar.extractfile(f"{broken.name.split('.')[0]}.json").read()
    with open(path, "r+b") as f:
        f.seek(broken.offset)
        f.write(b"\x5a" * 512)
    print(json.dumps({
        "truncated_id": "00001/" + cut.name.split(".")[0],
        "headless_id": json.loads(data)["key"],
        "damaged_id": f"00002@{broken.offset}",
    }))


if __name__ == "__main__":
    if sys.argv[1] == "--damage":
        damage(sys.argv[2])
    else:
        write(sys.argv[1], sys.argv[2], int(sys.argv[3]))
