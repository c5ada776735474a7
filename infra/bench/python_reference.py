#!/usr/bin/env python3
"""The Python pipeline a user would run instead of `vemo index`, for side-by-side speed runs.

Pinned: torch==2.15.0 (run on the CPU), transformers==4.57.1, efficientnet-lite-pytorch==0.1.0,
rapidocr==3.10.0 with onnxruntime==1.32.0, pylance==14.0.2, pyarrow, Pillow, safetensors.

The same models as vemo-mini, read from the pulled bundle's folder (no hub downloads):
- semantic: the caption tower (MiniLM-L6, all 6 layers, mean pooling, L2-normalised) through
  transformers' BertModel in batches of 32; the image tower (EfficientNet-Lite0 of
  efficientnet-lite-pytorch with the bundle's weights) on a torch DataLoader whose workers
  decode with Pillow (short side 256, bicubic; centre crop 224; (pixel - 127) / 128), batch
  32, and the bundle's ConSE table (softmax at the bundle's temperature over all classes,
  times the centred class embeddings, L2-normalised).
- spotting: RapidOCR 3.10 (PP-OCRv6 small on onnxruntime, angle classifier off, as vemo),
  after the semantic task's embeddings, since a vemo job with the spotting task writes those too.
- all (semantic, entities, spotting): also a token classifier over the captions and over the
  spotted texts, as vemo's entity task reads both. vemo's NER branch (3 shared layers, 3 tuned
  copies, case features) has no transformers class, so this is transformers'
  BertForTokenClassification of the text tower's shape (6 layers, 9 tags) on the tower's
  weights with an untrained head: the same work, not the same entities.
Rows (id, caption embedding, image embedding, spotted text) go to a Lance dataset via pylance.

Usage: python3 infra/bench/python_reference.py --manifest M.jsonl --bundle DIR --out OUT.lance
           --task semantic|spotting|all [--threads 2] [--workers 2]
Prints `items/s` (model loading excluded) for the tool that compares.
"""
import argparse
import json
import time

import lance
import numpy as np
import pyarrow as pa
import torch
from PIL import Image
from safetensors.torch import load_file


def read_manifest(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


class Crops(torch.utils.data.Dataset):
    """EfficientNet-Lite's preprocessing, as vemo's `classifier_input` does it."""

    def __init__(self, rows, resize=256, crop=224):
        self.rows, self.resize, self.crop = rows, resize, crop

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, i):
        image = Image.open(self.rows[i]["image"]).convert("RGB")
        w, h = image.size
        scale = self.resize / min(w, h)
        nw, nh = max(self.crop, round(w * scale)), max(self.crop, round(h * scale))
        image = image.resize((nw, nh), Image.BICUBIC)
        left, top = (nw - self.crop) // 2, (nh - self.crop) // 2
        image = image.crop((left, top, left + self.crop, top + self.crop))
        x = torch.from_numpy(np.asarray(image, dtype=np.float32).copy()).permute(2, 0, 1)
        return (x - 127.0) / 128.0


def semantic(rows, bundle, workers):
    from efficientnet_lite_pytorch import EfficientNet
    from transformers import BertModel, PreTrainedTokenizerFast

    tokenizer = PreTrainedTokenizerFast(tokenizer_file=f"{bundle}/text/tokenizer.json")
    tokenizer.pad_token = "[PAD]"
    text = BertModel.from_pretrained(f"{bundle}/text").eval()
    image = EfficientNet.from_name("efficientnet-lite0")
    image.load_state_dict(load_file(f"{bundle}/image/efficientnet_lite0.safetensors"))
    image.eval()
    classes = next(iter(load_file(f"{bundle}/image/conse_classes.safetensors").values()))
    temperature = 2.0
    start = time.time()
    captions = []
    with torch.inference_mode():
        texts = [r["caption"] for r in rows]
        for i in range(0, len(texts), 32):
            batch = tokenizer(texts[i : i + 32], padding=True, truncation=True, max_length=256,
                              return_tensors="pt")
            hidden = text(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).float()
            pooled = (hidden * mask).sum(1) / mask.sum(1)
            captions.append(torch.nn.functional.normalize(pooled, dim=-1))
        loader = torch.utils.data.DataLoader(Crops(rows), batch_size=32, num_workers=workers)
        images = []
        for x in loader:
            probs = torch.softmax(image(x) / temperature, dim=-1)
            images.append(torch.nn.functional.normalize(probs @ classes, dim=-1))
    caption_emb, image_emb = torch.cat(captions).numpy(), torch.cat(images).numpy()
    table = pa.table({
        "id": [r["id"] for r in rows],
        "text_emb_e6": pa.FixedSizeListArray.from_arrays(pa.array(caption_emb.ravel()), 384),
        "image_emb_e7": pa.FixedSizeListArray.from_arrays(pa.array(image_emb.ravel()), 384),
    })
    return table, time.time() - start


def spotting(rows, threads):
    from rapidocr import RapidOCR

    engine = RapidOCR(params={
        "Global.log_level": "error",
        "EngineConfig.onnxruntime.intra_op_num_threads": threads,
        "EngineConfig.onnxruntime.inter_op_num_threads": 1,
    })
    start = time.time()
    texts = []
    for r in rows:
        result = engine(r["image"], use_cls=False)
        texts.append(" ".join(result.txts or ()) if result is not None else "")
    return pa.table({"id": [r["id"] for r in rows], "spotted_text": texts}), time.time() - start


def entities(texts, bundle):
    from transformers import BertConfig, BertForTokenClassification, PreTrainedTokenizerFast

    tokenizer = PreTrainedTokenizerFast(tokenizer_file=f"{bundle}/text/tokenizer.json")
    tokenizer.pad_token = "[PAD]"
    config = BertConfig.from_pretrained(f"{bundle}/text", num_labels=9)
    model = BertForTokenClassification.from_pretrained(f"{bundle}/text", config=config).eval()
    start = time.time()
    counts = []
    with torch.inference_mode():
        for i in range(0, len(texts), 32):
            batch = tokenizer(texts[i : i + 32], padding=True, truncation=True, max_length=256,
                              return_tensors="pt")
            tags = model(**batch).logits.argmax(-1)
            counts.extend(((tags > 0) & (batch["attention_mask"] > 0)).sum(1).tolist())
    return counts, time.time() - start


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--manifest", required=True)
    parser.add_argument("--bundle", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--task", choices=["semantic", "spotting", "all"], required=True)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = read_manifest(args.manifest)
    table, seconds = semantic(rows, args.bundle, args.workers)
    if args.task in ("spotting", "all"):
        spotted, more = spotting(rows, args.threads)
        table, seconds = table.append_column("spotted_text", spotted["spotted_text"]), seconds + more
    if args.task == "all":
        texts = [r["caption"] for r in rows] + spotted["spotted_text"].to_pylist()
        counts, more = entities(texts, args.bundle)
        table = table.append_column("entity_tokens", pa.array(counts[: len(rows)]))
        seconds += more
    lance.write_dataset(table, args.out, mode="overwrite")
    print(f"{len(rows)} items in {seconds:.1f} s = {len(rows) / seconds:.2f} items/s")


if __name__ == "__main__":
    main()
