#!/usr/bin/env python3
"""Reference figures of RapidOCR 3.10.0 (PP-OCRv6 small detector and recognizer, ONNX) on the
ICDAR 2015 data of `../shared/data/icdar2015`, for the candle port to be compared with.

Pinned: rapidocr==3.10.0 with the models of its wheel (PP-OCRv6_det_small.onnx,
PP-OCRv6_rec_small.onnx, ch_ppocr_mobile_v2.0_cls_mobile.onnx), onnxruntime==1.32.0 (CPU),
opencv-python-headless==5.1.0.95, numpy==2.4.6, Pillow==13.0.0, shapely==2.2.0,
pyclipper==1.4.0. Everything is rapidocr's config.yaml default (angle classifier on, text_score
0.5, ...) except the onnxruntime thread count, set to `--threads` (default 2, this machine's
cores), and `--no-cls`, which turns the angle classifier off.

Scenes: `RapidOCR()(path)` on each image of DIR/images that has a DIR/gt/gt_<stem>.txt, in
numeric order (the first `--scenes N`; all by default). rapidocr reads a path with PIL (EXIF
orientation applied) and converts RGB to BGR. Its output is one box per text *line* (it does
not split lines into words), written as is.

Crops: the first `--crops N` lines of CROPS/gt.txt. `--crop-mode recognizer` (default): the
crop, read with cv2.imread (BGR), goes alone (batch 1) to rapidocr's TextRecognizer, the path
`RapidOCR()(img, use_det=False, use_cls=False)` takes minus its Global preprocess.
`--crop-mode rapidocr`: `RapidOCR()(path, use_det=False, use_cls=False)` itself, whose Global
preprocess (resize_image_within_bounds) first scales a crop whose short side is under 30 px to
sides rounded to multiples of 32, which changes its aspect ratio. Neither path applies
text_score: without a detector rapidocr returns the recognizer's output unfiltered.

Speed: scenes/s and crops/s are whole-loop wall time (image reading included) after one
warm-up call on the first item, model loading excluded.

Figures computed here:
- crop accuracy as `vemo eval spotting` computes it: the transcription of gt.txt (BOM
  stripped, split at the first ", ", quotes removed, \\" and \\\\ unescaped) equals the text
  read, both lower-cased (nothing else normalised: punctuation and spaces count).
- image-level word recall and precision. A word is a whitespace-separated token with its
  leading and trailing non-alphanumeric characters (str.isalnum, Unicode) stripped, then
  lower-cased; inner punctuation stays ("p.m" stays "p.m"). Words shorter than 2 characters
  after stripping are left out on both sides. Ground-truth words: the tokens of the scene's
  transcriptions other than `###`. Spotted words: the tokens of all the texts rapidocr returned
  for the scene. Recall = ground-truth words (each occurrence counted) found among the scene's
  spotted words (as a set) / all ground-truth words; precision = spotted words (each occurrence
  counted) found among the scene's ground-truth words (as a set) / all spotted words; both
  micro-averaged, i.e. counts summed over all scenes. Boxes play no part.
The ICDAR detection and end-to-end figures come from `vemo eval spotting --predictions OUT`.

Usage:
  python3 bench/rapidocr_icdar.py [--data ../shared/data/icdar2015] [--scenes N] [--crops N] \
      [--crop-mode recognizer|rapidocr] [--no-cls] [--threads 2] [--out predictions.json]
  vemo eval spotting --scenes ../shared/data/icdar2015/dev \
      --crops ../shared/data/icdar2015/train-crops --limit 500 --predictions predictions.json

The JSON has {"scenes": {"img_1": [{"polygon": [x1, y1, ..., x4, y4], "text": "..."}]},
"crops": {"word_1.png": "..."}, "scenes_per_s", "crops_per_s", "figures", "settings"} (the
format `vemo eval spotting --predictions` reads; it ignores the other keys).
"""
import argparse
import json
import os
import time
from importlib.metadata import version

import cv2
import numpy as np
from rapidocr import RapidOCR
from rapidocr.ch_ppocr_rec import TextRecInput

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_DATA = os.path.join(ROOT, "..", "shared", "data", "icdar2015")


def scene_list(root):
    images = os.path.join(root, "images")
    names = [n for n in os.listdir(images)
             if os.path.isfile(os.path.join(root, "gt", f"gt_{os.path.splitext(n)[0]}.txt"))]
    names.sort(key=lambda n: (int("".join(c for c in n if c.isdigit()) or 0), n))
    return [os.path.join(images, n) for n in names]


def read_text(path):
    with open(path, "rb") as f:
        return f.read().decode("utf-8", errors="replace").lstrip("\ufeff")


def scene_gt(path):
    """The transcriptions of a gt_img_N.txt, `###` included (as read_scene_gt reads them)."""
    texts = []
    for line in read_text(path).splitlines():
        line = line.rstrip("\r")
        if line.strip():
            texts.append(line.split(",", 8)[8])
    return texts


def unescape(text):
    out, i = [], 0
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text) and text[i + 1] in "\"\\":
            out.append(text[i + 1])
            i += 2
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def crop_gt(root):
    """[(file name, transcription)] of gt.txt, as read_crops_gt reads them."""
    rows = []
    for line in read_text(os.path.join(root, "gt.txt")).splitlines():
        line = line.rstrip("\r")
        if not line.strip():
            continue
        name, quoted = line.split(", ", 1)
        quoted = quoted.strip()
        assert quoted.startswith('"') and quoted.endswith('"'), line
        rows.append((name.strip(), unescape(quoted[1:-1])))
    return rows


def words(text):
    out = []
    for token in text.split():
        start, end = 0, len(token)
        while start < end and not token[start].isalnum():
            start += 1
        while end > start and not token[end - 1].isalnum():
            end -= 1
        word = token[start:end].lower()
        if len(word) >= 2:
            out.append(word)
    return out


def word_counts(gt_texts, spotted_texts):
    """(gt words, gt words found, spotted words, spotted words right) of one scene."""
    gt = [w for t in gt_texts if t != "###" for w in words(t)]
    spotted = [w for t in spotted_texts for w in words(t)]
    gt_set, spotted_set = set(gt), set(spotted)
    return (len(gt), sum(w in spotted_set for w in gt), len(spotted),
            sum(w in gt_set for w in spotted))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=DEFAULT_DATA, help="holds dev/ and train-crops/")
    ap.add_argument("--scenes", type=int, default=None, help="first N dev scenes (all)")
    ap.add_argument("--crops", type=int, default=500, help="first N train crops (500)")
    ap.add_argument("--crop-mode", choices=["recognizer", "rapidocr"], default="recognizer")
    ap.add_argument("--no-cls", action="store_true", help="angle classifier off")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="rapidocr_predictions.json")
    args = ap.parse_args()

    engine = RapidOCR(params={
        "Global.log_level": "error",
        "EngineConfig.onnxruntime.intra_op_num_threads": args.threads,
        "EngineConfig.onnxruntime.inter_op_num_threads": 1,
    })
    use_cls = not args.no_cls
    out = {"settings": {"rapidocr": version("rapidocr"), "onnxruntime": version("onnxruntime"),
                        "use_cls": use_cls, "threads": args.threads,
                        "crop_mode": args.crop_mode}}
    figures = {}

    if args.scenes != 0:
        dev = os.path.join(args.data, "dev")
        paths = scene_list(dev)[:args.scenes]
        engine(paths[0], use_cls=use_cls)  # warm-up; loads the models
        results, start = {}, time.perf_counter()
        for path in paths:
            results[path] = engine(path, use_cls=use_cls)
        seconds = time.perf_counter() - start
        scenes, totals = {}, np.zeros(4, dtype=np.int64)
        lines = 0
        for path, res in results.items():
            stem = os.path.splitext(os.path.basename(path))[0]
            found = []
            if res.txts:
                for box, text in zip(np.asarray(res.boxes), res.txts):
                    found.append({"polygon": [float(v) for v in np.asarray(box).flatten()],
                                  "text": text})
            scenes[stem] = found
            lines += len(found)
            gt = scene_gt(os.path.join(dev, "gt", f"gt_{stem}.txt"))
            totals += word_counts(gt, [f["text"] for f in found])
        out["scenes"] = scenes
        out["scenes_per_s"] = len(paths) / seconds
        gt_n, gt_hit, sp_n, sp_hit = (int(v) for v in totals)
        figures["scenes"] = {
            "count": len(paths), "lines": lines, "seconds": seconds,
            "scenes_per_s": len(paths) / seconds,
            "gt_words": gt_n, "gt_words_found": gt_hit, "spotted_words": sp_n,
            "spotted_words_right": sp_hit,
            "word_recall": gt_hit / max(gt_n, 1), "word_precision": sp_hit / max(sp_n, 1),
        }
        print(f"scenes: {len(paths)} in {seconds:.1f} s = {len(paths) / seconds:.3f} scenes/s "
              f"({lines} lines), cls={'on' if use_cls else 'off'}")
        print(f"  image-level words: recall {gt_hit}/{gt_n} = {gt_hit / max(gt_n, 1):.4f}, "
              f"precision {sp_hit}/{sp_n} = {sp_hit / max(sp_n, 1):.4f}")

    if args.crops:
        root = os.path.join(args.data, "train-crops")
        rows = crop_gt(root)[:args.crops]
        rec = engine._load_rec_model()

        def read(name):
            path = os.path.join(root, name)
            if args.crop_mode == "rapidocr":
                res = engine(path, use_det=False, use_cls=False)
                return res.txts[0] if res.txts else ""
            img = cv2.imread(path, cv2.IMREAD_COLOR)
            return rec(TextRecInput(img=[img])).txts[0]

        read(rows[0][0])  # warm-up
        texts, start = {}, time.perf_counter()
        for name, _ in rows:
            texts[name] = read(name)
        seconds = time.perf_counter() - start
        right = sum(gold.lower() == texts[name].lower() for name, gold in rows)
        out["crops"] = texts
        out["crops_per_s"] = len(rows) / seconds
        figures["crops"] = {"count": len(rows), "right": right, "accuracy": right / len(rows),
                            "seconds": seconds, "crops_per_s": len(rows) / seconds}
        print(f"crops: {len(rows)} in {seconds:.1f} s = {len(rows) / seconds:.2f} crops/s "
              f"({args.crop_mode})")
        print(f"  accuracy (case ignored) {right}/{len(rows)} = {right / len(rows):.4f}")

    out["figures"] = figures
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
