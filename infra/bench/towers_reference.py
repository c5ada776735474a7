"""PyTorch's figures for `vemo bench --torch-reference`: each of vemo-mini's towers and the
image preprocessing, timed the way a Python user runs them, on the inputs vemo bench times.

Pinned: torch 2.15.0 (CPU), transformers 4.57.1, efficientnet-lite-pytorch 0.1.0, pillow.
Models from the pulled bundle's folder (no hub download), as infra/bench/python_reference.py:
- caption encoder: transformers' BertModel on the bundle's MiniLM (exit 6: all 6 layers,
  exit 3: the first 3), masked mean pooling, L2-normalised; the captions vemo bench encodes.
- image tower: EfficientNet-Lite0 logits -> softmax(/2) @ ConSE class embeddings (exit 7).
- preprocessing: PIL decode -> RGB -> bicubic short side 256 -> centre crop 224 -> (x-127)/128
  as a tensor, one photo after another on one thread (what one DataLoader worker does).
Prints one JSON object: {"torch": version, "threads": n, "captions_per_s": {"EXIT": {"BATCH": r}},
"images_per_s": {"BATCH": r}, "photos_per_s_per_thread": r}.

Usage: python3 infra/bench/towers_reference.py --bundle DIR --photos DIR [--captions 512]
           [--batch-sizes 32] [--threads N]
"""
import argparse
import io
import json
import os
import time

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file


def captions(n):
    colours, things = ["red", "small", "old", "shiny"], ["cup", "bicycle", "dog", "book", "lamp"]
    return [f"A photo number {i} of a {colours[i % 4]} {things[i % 5]} on a wooden table in the "
            "morning light." for i in range(n)]


def preprocess(data, resize=256, crop=224):
    image = Image.open(io.BytesIO(data)).convert("RGB")
    w, h = image.size
    scale = resize / min(w, h)
    nw, nh = max(crop, round(w * scale)), max(crop, round(h * scale))
    image = image.resize((nw, nh), Image.BICUBIC)
    left, top = (nw - crop) // 2, (nh - crop) // 2
    image = image.crop((left, top, left + crop, top + crop))
    x = torch.from_numpy(np.asarray(image, dtype=np.float32).copy()).permute(2, 0, 1)
    return (x - 127.0) / 128.0


def rate(items, run, seconds=2.0):
    """Items/s of `run` after one warm-up call, repeated for at least `seconds`."""
    run()
    start, calls = time.time(), 0
    while calls == 0 or time.time() - start < seconds:
        run()
        calls += 1
    return items * calls / (time.time() - start)


def caption_rates(bundle, texts, batches):
    from transformers import BertModel, PreTrainedTokenizerFast

    tokenizer = PreTrainedTokenizerFast(tokenizer_file=f"{bundle}/text/tokenizer.json")
    tokenizer.pad_token = "[PAD]"
    out = {}
    for exit_ in (6, 3):
        model = BertModel.from_pretrained(f"{bundle}/text").eval()
        model.encoder.layer = model.encoder.layer[:exit_]

        def encode(batch_size):
            for i in range(0, len(texts), batch_size):
                batch = tokenizer(texts[i : i + batch_size], padding=True, truncation=True,
                                  max_length=256, return_tensors="pt")
                hidden = model(**batch).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).float()
                torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)

        with torch.inference_mode():
            out[str(exit_)] = {str(b): rate(len(texts), lambda: encode(b)) for b in batches}
    return out


def image_rates(bundle, crops, batches):
    from efficientnet_lite_pytorch import EfficientNet

    model = EfficientNet.from_name("efficientnet-lite0")
    model.load_state_dict(load_file(f"{bundle}/image/efficientnet_lite0.safetensors"))
    model.eval()
    classes = next(iter(load_file(f"{bundle}/image/conse_classes.safetensors").values()))
    out = {}
    with torch.inference_mode():
        for b in batches:
            x = torch.stack([crops[i % len(crops)] for i in range(b)])

            def encode():
                probs = torch.softmax(model(x) / 2.0, dim=-1)
                torch.nn.functional.normalize(probs @ classes, dim=-1)

            out[str(b)] = rate(b, encode)
    return out


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bundle", required=True)
    parser.add_argument("--photos", required=True)
    parser.add_argument("--captions", type=int, default=512)
    parser.add_argument("--batch-sizes", default="32")
    parser.add_argument("--image-batch-sizes", default="16")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    names = sorted(n for n in os.listdir(args.photos) if n.lower().endswith((".jpg", ".jpeg")))
    photos = [open(os.path.join(args.photos, n), "rb").read() for n in names]
    per_thread = rate(len(photos), lambda: [preprocess(p) for p in photos])
    crops = [preprocess(p) for p in photos[:16]]
    batches = [int(b) for b in args.batch_sizes.split(",")]
    print(json.dumps({
        "torch": torch.__version__,
        "threads": args.threads,
        "captions_per_s": caption_rates(args.bundle, captions(args.captions), batches),
        "images_per_s": image_rates(args.bundle, crops,
                                    [int(b) for b in args.image_batch_sizes.split(",")]),
        "photos_per_s_per_thread": per_thread,
    }))


if __name__ == "__main__":
    main()
