#!/usr/bin/env python3
"""Writes the scenes, word crops and golden outputs for the PP-OCRv6 small detector and
recognizer ports (ONNX -> candle).

Reference implementation: rapidocr==3.10.0 with its bundled ONNX models
`models/PP-OCRv6_det_small.onnx` and `models/PP-OCRv6_rec_small.onnx` (the wheel's defaults,
config.yaml: Det limit_side_len 736, limit_type min, mean = std = 0.5, DBPostProcess with
thresh 0.3, box_thresh 0.5, max_candidates 1000, unclip_ratio 1.6, use_dilation True,
score_mode fast; Rec rec_img_shape [3, 48, 320], rec_batch_num 6; Global text_score 0.5,
min_side_len 30, max_side_len 2000, use_vertical_padding with min_height 30 and
width_height_ratio 8), run through rapidocr's own objects (`TextDetector`, `DetPreProcess`,
`DBPostProcess`, `TextRecognizer.resize_norm_img`, `CTCLabelDecode`) and onnxruntime on CPU.
Pinned: rapidocr==3.10.0, onnxruntime==1.32.0, onnx==1.23.2, opencv-python-headless==5.1.0.95
(`cv2.resize` INTER_LINEAR, `cv2.findContours`, `cv2.minAreaRect`), numpy==2.4.6,
Pillow==13.0.0, scikit-image==0.26.0, shapely==2.2.0, pyclipper==1.4.0.

Channel order: rapidocr hands a numpy array to the models as it is, and it treats every
3-channel array as BGR (a path or a PIL image is converted RGB->BGR by its LoadImage). So the
models see **BGR** planes: input channel 0 is blue. Every image here is written as a PNG
fixture and read back with `cv2.imread(path, cv2.IMREAD_COLOR)` (BGR; a grey PNG becomes three
equal planes), so the Rust test sees the very same pixels (decode to RGB, then swap to BGR).

Scenes (models/tests/fixtures/ppocr/): `page.png`, scikit-image's `data.page()` (grey, BSD);
`scene.png`, 400x300, coloured words drawn with Pillow's default font on a light background
("OPEN 24H", "Parking", and "EXIT" rotated 25 degrees), colours chosen so that swapped channels
show; `strip.png`, 480x40, one line of text whose aspect ratio (12 > 8) makes rapidocr's
`apply_vertical_padding` add 40 black rows above and below before detection.

Per scene (`scenes[]`): the detector's input tensor (shape, sum, mean), the probability map (1x1xHxW:
shape, sum, mean, and the map sampled every 8th row and column from (0, 0), rounded to 1e-4,
flattened row-major, with the grid's shape), and the boxes (4 points, clockwise from the top
left, int) and box scores of DBPostProcess after `TextDetector.sorted_boxes`, each score kept
with its own box (rapidocr itself reorders the boxes but not the scores: see
`scores_as_rapidocr_returns`), in the coordinates of the detector's input image and mapped back
to the original image (`map_boxes_to_original`); `global_preprocess` says what rapidocr's
resize_image_within_bounds / apply_vertical_padding did. `rapidocr`: the whole pipeline,
`RapidOCR()(img, use_cls=False)`, boxes (float, original coordinates), texts, scores, and the
same without the text_score filter (`text_score=0`).

Word crops (models/tests/fixtures/ppocr/rec_*.png): three cut from page.png (crops of
golden_recognizer.py), one whole line of page.png (380x25: its input is wider than 320, and
ceil(48 * w / h) = 730 > int(48 * w / h) = 729 shows the clamp of the resized width), and two
words rendered in colour. Each is run alone (batch 1) through
`TextRecognizer.resize_norm_img(img, max(320 / 48, w / h))` and the ONNX session: the input
width, the output shape (steps x 18710), per step the argmax index and its probability, the
probability of index 0 (the CTC blank) and the top 5 (index, probability), rounded to 1e-5;
the text and score of `CTCLabelDecode` (greedy, repeats merged, blanks dropped, score = mean
of the kept steps' max probabilities rounded to 1e-5).

Numerics the port has to repeat (rapidocr 3.10 code, checked): DetPreProcess scales by
ratio = 736 / min(h, w) only when min(h, w) < 736 (limit_type min; else ratio 1), then
resize_h = int(h * ratio), resize_w = int(w * ratio), each snapped to round(v / 32) * 32 with
Python's round (half to even), and cv2.resize to that size (INTER_LINEAR); it normalises as
float32(float32(p) * float32(1/255)) - 0.5) / 0.5, the subtraction in float64 (the mean array is
float64), cast back to float32. DB boxes are mapped back with np.round(x / map_w * src_w)
(half to even), clipped to [0, src_w], then order_points_clockwise and clipped to src - 1.
The recognizer resizes a crop to height 48 and width min(ceil(48 * w / h), int(48 *
max_wh_ratio)) (cv2.resize INTER_LINEAR), scales to (p / 255 - 0.5) / 0.5 in float32, and pads
on the right with 0.0 to int(48 * max_wh_ratio); the model's output is already softmaxed
(rows sum to 1 within 1.1e-6). In the whole pipeline (not here) rapidocr sorts a scene's line
crops by w / h and recognises them in batches of 6, each padded to the widest ratio of its
batch (at least 320 / 48), so a crop's output there can differ slightly from batch 1.

Classes: the ONNX metadata_props key `character`, split into lines (`str.splitlines`, 18708
entries), then CTCLabelDecode appends " " (always: rapidocr 3.10 has no use_space_char switch)
and inserts "blank" at index 0: 18710 classes. The JSON's `characters` is that final list, blank
and space included, so that class i of the model output is `characters[i]`.

Usage: python3 infra/models/golden_ppocr.py [RAPIDOCR_MODELS_DIR] \
    models/tests/fixtures/ppocr models/tests/golden/ppocr.json
(RAPIDOCR_MODELS_DIR defaults to the installed rapidocr package's models/ folder.)
"""
import json
import math
import os
import sys
from importlib.metadata import version

import cv2
import numpy as np
import onnxruntime
import PIL
import pyclipper
import shapely
import skimage
import skimage.data
from PIL import Image, ImageDraw, ImageFont
from rapidocr import RapidOCR
from rapidocr.ch_ppocr_det import TextDetector
from rapidocr.ch_ppocr_rec import TextRecInput
from rapidocr.utils.process_img import (apply_vertical_padding, map_boxes_to_original,
                                        resize_image_within_bounds)

STRIDE = 8
TOP_K = 5
SAMPLE_CROPS = [
    ("region_based", (3, 5, 140, 37)),
    ("segmentation", (142, 5, 295, 37)),
    ("histogram", (3, 119, 76, 140)),
    ("line_extreme", (1, 97, 381, 122)),  # a whole line: wider than 320 at height 48
]
# (name, word, RGB ink, RGB paper)
RENDERED = [("open_24h", "OPEN 24H", (150, 20, 20), (250, 240, 200)),
            ("parking", "Parking", (20, 40, 140), (235, 235, 235))]


def rgb_to_bgr(rgb: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(rgb[:, :, ::-1])


def render_scene() -> np.ndarray:
    im = Image.new("RGB", (400, 300), (240, 236, 220))
    draw = ImageDraw.Draw(im)
    draw.text((30, 40), "OPEN 24H", fill=(150, 20, 20), font=ImageFont.load_default(size=44))
    draw.text((40, 140), "Parking", fill=(20, 40, 140), font=ImageFont.load_default(size=40))
    font = ImageFont.load_default(size=34)
    left, top, right, bottom = font.getbbox("EXIT")
    layer = Image.new("RGBA", (right - left + 8, bottom - top + 8), (0, 0, 0, 0))
    ImageDraw.Draw(layer).text((4 - left, 4 - top), "EXIT", fill=(10, 110, 40, 255), font=font)
    layer = layer.rotate(25, resample=Image.BICUBIC, expand=True)
    im.paste(layer, (250, 170), layer)
    return np.array(im)


def render_strip() -> np.ndarray:
    im = Image.new("RGB", (480, 40), (255, 255, 255))
    font = ImageFont.load_default(size=26)
    ImageDraw.Draw(im).text((12, 6), "SALE 50% OFF TODAY", fill=(0, 0, 0), font=font)
    return np.array(im)


def render_word(word, ink, paper) -> np.ndarray:
    font = ImageFont.load_default(size=36)
    left, top, right, bottom = font.getbbox(word)
    im = Image.new("RGB", (right - left + 16, bottom - top + 16), paper)
    ImageDraw.Draw(im).text((8 - left, 8 - top), word, fill=ink, font=font)
    return np.array(im)


def write_fixtures(fixtures: str):
    """Writes the PNGs; returns ([(scene name, path)], [(crop name, path)])."""
    os.makedirs(fixtures, exist_ok=True)
    page = skimage.data.page()
    scenes = [("page", page), ("scene", rgb_to_bgr(render_scene())),
              ("strip", rgb_to_bgr(render_strip()))]
    crops = [(name, page[y0:y1, x0:x1]) for name, (x0, y0, x1, y1) in SAMPLE_CROPS]
    crops += [(name, rgb_to_bgr(render_word(w, ink, paper))) for name, w, ink, paper in RENDERED]
    scene_paths, crop_paths = [], []
    for name, img in scenes:
        path = os.path.join(fixtures, f"{name}.png")
        cv2.imwrite(path, img)
        scene_paths.append((name, path))
    for name, img in crops:
        path = os.path.join(fixtures, f"rec_{name}.png")
        cv2.imwrite(path, img)
        crop_paths.append((name, path))
    return scene_paths, crop_paths


def read_bgr(path: str) -> np.ndarray:
    img = cv2.imread(path, cv2.IMREAD_COLOR)
    assert img is not None and img.ndim == 3 and img.shape[2] == 3, path
    return img


def sort_order(boxes: np.ndarray) -> np.ndarray:
    """The permutation TextDetector.sorted_boxes applies (same code, returning indices)."""
    y = boxes[:, 0, 1]
    y_order = np.argsort(y, kind="stable")
    line_ids = np.concatenate([[0], np.cumsum((np.diff(y[y_order]) >= 10).astype(np.int32))])
    return y_order[np.lexsort((boxes[y_order][:, 0, 0], line_ids))]


def r(v, digits):
    return round(float(v), digits)


def detect(engine: RapidOCR, name: str, ori: np.ndarray) -> dict:
    det: TextDetector = engine._load_det_model()
    # RapidOCR.__call__ -> preprocess_img -> detect_and_crop, by hand.
    img, op_record = engine.preprocess_img(ori)
    img, op_record = apply_vertical_padding(img, op_record, engine.width_height_ratio,
                                            engine.min_height)
    ratio_h, ratio_w = op_record["preprocess"]["ratio_h"], op_record["preprocess"]["ratio_w"]
    changed = {"resized": (ratio_h, ratio_w) != (1.0, 1.0), "ratio_h": ratio_h,
               "ratio_w": ratio_w, "vertical_padding_top_bottom": op_record["padding_1"]["top"],
               "detector_input_hw": list(img.shape[:2])}
    x = det.get_preprocess()(img)
    prob = det.session(x)
    boxes, scores = det.postprocess_op(prob, img.shape[:2])
    order = sort_order(boxes)
    sorted_boxes = det.sorted_boxes(boxes)
    assert np.array_equal(sorted_boxes, boxes[order])
    # What TextDetector.__call__ returns: sorted boxes, scores in the contour order.
    full = det(img)
    assert np.array_equal(full.boxes, sorted_boxes) and list(full.scores) == list(scores)
    mapped = map_boxes_to_original(sorted_boxes.astype(np.float32).copy(), op_record,
                                   ori.shape[0], ori.shape[1])
    m = prob[0, 0].astype(np.float64)
    grid = m[::STRIDE, ::STRIDE]
    out = {
        "name": name, "height": ori.shape[0], "width": ori.shape[1],
        "global_preprocess": changed,
        "input": {"shape": list(x.shape), "sum": float(x.astype(np.float64).sum()),
                  "mean": float(x.astype(np.float64).mean()),
                  "first_pixel_bgr": [r(v, 6) for v in x[0, :, 0, 0]]},
        "prob": {"shape": list(prob.shape), "sum": float(m.sum()), "mean": float(m.mean()),
                 "max": float(m.max()), "grid_shape": list(grid.shape),
                 "grid": [r(v, 4) for v in grid.flatten()]},
        "boxes_input": [b.astype(int).tolist() for b in sorted_boxes],
        "boxes": [b.tolist() for b in mapped],
        "scores": [r(scores[i], 6) for i in order],
        "scores_as_rapidocr_returns": [r(s, 6) for s in scores],
    }
    print(f"{name}: input {list(x.shape)}, map sum {m.sum():.3f}, {len(sorted_boxes)} boxes, "
          f"preprocess {changed}")
    return out


def pipeline(engine: RapidOCR, ori: np.ndarray) -> dict:
    res = engine(ori, use_cls=False, text_score=0.0)
    unfiltered = {"texts": list(res.txts or []), "scores": [float(s) for s in res.scores or []]}
    res = engine(ori, use_cls=False, text_score=0.5)
    out = {"boxes": [] if res.boxes is None else np.asarray(res.boxes).tolist(),
           "texts": list(res.txts or []), "scores": [float(s) for s in res.scores or []],
           "unfiltered": unfiltered}
    print("   rapidocr:", list(zip(out["texts"], out["scores"])))
    return out


def recognize(engine: RapidOCR, name: str, img: np.ndarray) -> dict:
    rec = engine._load_rec_model()
    _, imgH, imgW = rec.rec_image_shape
    h, w = img.shape[:2]
    max_wh_ratio = max(imgW / imgH, w / h)
    x = rec.resize_norm_img(img, max_wh_ratio)[np.newaxis].astype(np.float32)
    probs = rec.session(x)
    [(text, score)], _ = rec.postprocess_op(probs, False, wh_ratio_list=[w / h],
                                            max_wh_ratio=max_wh_ratio)
    # The same crop through TextRecognizer.__call__ (batch of one) must agree.
    whole = rec(TextRecInput(img=[img]))
    assert whole.txts[0] == text and whole.scores[0] == score
    p = probs[0].astype(np.float64)
    arg = p.argmax(axis=1)
    top = np.argsort(-p, axis=1, kind="stable")[:, :TOP_K]
    resized_w = min(int(math.ceil(imgH * w / h)), int(imgH * max_wh_ratio))
    out = {
        "name": name, "height": h, "width": w,
        "max_wh_ratio": max_wh_ratio, "resized_width": resized_w,
        "input_shape": list(x.shape), "input_sum": float(x.astype(np.float64).sum()),
        "output_shape": list(probs.shape),
        "argmax": arg.tolist(),
        "argmax_prob": [r(p[t, a], 5) for t, a in enumerate(arg)],
        "blank_prob": [r(v, 5) for v in p[:, 0]],
        "top5": [[[int(i), r(p[t, i], 5)] for i in top[t]] for t in range(p.shape[0])],
        "row_sum_max_error": float(np.abs(p.sum(axis=1) - 1).max()),
        "text": text, "score": float(score),
    }
    print(f"rec {name}: {text!r} {score} ({w}x{h} -> {list(x.shape)}, out {list(probs.shape)})")
    return out


def main(models: str, fixtures: str, out: str) -> None:
    params = {"Global.log_level": "error"}
    if models:
        params["Global.model_root_dir"] = models
    engine = RapidOCR(params=params)
    scene_paths, crop_paths = write_fixtures(fixtures)
    scenes = []
    for name, path in scene_paths:
        img = read_bgr(path)
        entry = detect(engine, name, img)
        entry["rapidocr"] = pipeline(engine, img)
        entry["fixture"] = os.path.basename(path)
        scenes.append(entry)
    crops = []
    for name, path in crop_paths:
        entry = recognize(engine, name, read_bgr(path))
        entry["fixture"] = os.path.basename(path)
        crops.append(entry)
    rec = engine._load_rec_model()
    characters = list(rec.postprocess_op.character)
    raw = rec.session.get_character_list()
    assert characters == ["blank"] + raw + [" "]
    cfg = engine.cfg
    golden = {
        "source": "infra/models/golden_ppocr.py",
        "versions": {"rapidocr": version("rapidocr"),
                     "onnxruntime": onnxruntime.__version__, "opencv": cv2.__version__,
                     "numpy": np.__version__, "pillow": PIL.__version__,
                     "scikit-image": skimage.__version__, "shapely": shapely.__version__,
                     "pyclipper": pyclipper.__version__,
                     "models": "rapidocr 3.10.0 wheel: PP-OCRv6_det_small.onnx, "
                               "PP-OCRv6_rec_small.onnx"},
        "channel_order": "BGR",
        "det_params": {"limit_side_len": cfg.Det.limit_side_len,
                       "limit_type": str(cfg.Det.limit_type), "mean": list(cfg.Det.mean),
                       "std": list(cfg.Det.std), "thresh": cfg.Det.thresh,
                       "box_thresh": cfg.Det.box_thresh, "max_candidates": cfg.Det.max_candidates,
                       "unclip_ratio": cfg.Det.unclip_ratio, "use_dilation": cfg.Det.use_dilation,
                       "score_mode": str(cfg.Det.score_mode), "min_size": 3},
        "global_params": {"text_score": cfg.Global.text_score,
                          "min_side_len": cfg.Global.min_side_len,
                          "max_side_len": cfg.Global.max_side_len,
                          "min_height": cfg.Global.min_height,
                          "width_height_ratio": cfg.Global.width_height_ratio},
        "rec_params": {"rec_img_shape": list(cfg.Rec.rec_img_shape),
                       "rec_batch_num": cfg.Rec.rec_batch_num},
        "grid_stride": STRIDE,
        "classes": len(characters),
        "class_rule": "characters = ['blank'] + metadata_props['character'].splitlines() + "
                      "[' ']; index 0 is the CTC blank; no use_space_char switch in rapidocr "
                      "3.10 (the space is always appended)",
        "dict_entries": len(raw),
        "characters": characters,
        "scenes": scenes,
        "crops": crops,
    }
    with open(out, "w", encoding="utf-8") as f:
        json.dump(golden, f, ensure_ascii=False)
    print(f"wrote {out}: {os.path.getsize(out)} bytes")


if __name__ == "__main__":
    args = sys.argv[1:]
    if len(args) == 2:
        args = [""] + args
    main(args[0], args[1], args[2])
