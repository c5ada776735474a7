#!/usr/bin/env python3
"""Completes the tiny CLIP checkpoint into a Hugging Face CLIP folder and writes the golden
outputs that models/tests/clip_bundle_parity.rs checks through a vemo bundle.

Reads models/tests/golden/clip_tiny/{config.json,model.safetensors} (written by
golden_clip.py, left unchanged) and writes beside them:
  tokenizer.json        a `tokenizers` WordLevel tokenizer over the tiny config's 99 ids:
                        lowercase, whitespace/punctuation split, "<|startoftext|> $A
                        <|endoftext|>" (ids 0 and 49, the config's bos/eos/pad ids), [UNK] 1
  image_a.png           32x32 RGB: a seeded noisy colour gradient
  image_b.png           32x32 RGB: a red disc on a blue background
  expected_bundle.json  the sentences, their token ids (unpadded, truncated to 16 tokens, the
                        config's max_position_embeddings), and L2-normalised embeddings:
    text[L]   sentences tokenized by tokenizer.json, padded to the longest with the pad id 49,
              attention mask given, through CLIPModel.text_model (eager attention):
              hidden_states[L] at the first EOS -> final_layer_norm -> text_projection ->
              normalise; L = 2 is get_text_features. L in {1, 2}.
    image[L]  the PNGs as float pixels / 255, normalised by CLIP's mean/std per channel, through
              CLIPModel.vision_model: hidden_states[L][:, 0] -> post_layernorm ->
              visual_projection -> normalise; L = 3 is get_image_features. L in {1, 3}.

Pinned versions (the script refuses to run under others; the files were produced with these):
    pip install torch==2.15.0 transformers==5.24.0 tokenizers==0.23.3 safetensors==0.8.0 \
        pillow==13.0.0 numpy==2.4.6

Usage: python3 infra/models/golden_clip_bundle.py [DIR]   (default models/tests/golden/clip_tiny)
"""
import json
import os
import sys

import numpy as np
import PIL
import tokenizers
import torch
import transformers
from PIL import Image
from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
from tokenizers.models import WordLevel
from transformers import CLIPModel

PINNED = {
    "torch": "2.15.0",
    "transformers": "5.24.0",
    "tokenizers": "0.23.3",
    "pillow": "13.0.0",
    "numpy": "2.4.6",
}
SEED = 20261127
BOS, EOS, UNK = 0, 49, 1
MAX_TOKENS = 16
MEAN = [0.48145466, 0.4578275, 0.40821073]
STD = [0.26862954, 0.26130258, 0.27577711]
WORDS = (
    "a an the of on in with and is at photo picture small large red green blue yellow black "
    "white orange purple circle square horizontal vertical stripe background cat dog sits "
    "runs tree house car . , sky over under two three big little grey brown pink bright dark "
    "near far old new sun moon water field road city man woman child bird fish boat train "
    "plane table chair window door street park beach mountain river snow rain light night "
    "day morning evening"
).split()
SENTENCES = [
    "A red circle.",
    "A small blue square on a white background, near a tree.",
    # 19 words and a full stop: truncated to 14 tokens between BOS and EOS.
    "Two old men and a little dog sit at a table in the park on a bright morning near the river .",
]


def check_versions() -> dict:
    found = {
        "torch": torch.__version__.split("+")[0],
        "transformers": transformers.__version__,
        "tokenizers": tokenizers.__version__,
        "pillow": PIL.__version__,
        "numpy": np.__version__,
    }
    for name, want in PINNED.items():
        if found[name] != want:
            sys.exit(f"golden_clip_bundle.py is pinned to {name}=={want}, found {found[name]}")
    return found


def make_tokenizer(vocab_size: int) -> Tokenizer:
    vocab = {"<|startoftext|>": BOS, "[UNK]": UNK, "<|endoftext|>": EOS}
    free = (i for i in range(vocab_size) if i not in vocab.values())
    for word in WORDS:
        vocab[word] = next(free)
    assert len(vocab) <= vocab_size, len(vocab)
    tok = Tokenizer(WordLevel(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.Sequence([normalizers.NFC(), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(
        single="<|startoftext|> $A <|endoftext|>",
        special_tokens=[("<|startoftext|>", BOS), ("<|endoftext|>", EOS)],
    )
    tok.add_special_tokens(["<|startoftext|>", "<|endoftext|>"])
    return tok


def make_images() -> list:
    rng = np.random.default_rng(SEED)
    y, x = np.mgrid[0:32, 0:32]
    a = np.stack([x * 8, y * 8, (x + y) * 4], axis=-1) + rng.integers(-20, 21, (32, 32, 3))
    b = np.zeros((32, 32, 3))
    b[...] = [30, 60, 220]
    b[(x - 15.5) ** 2 + (y - 15.5) ** 2 < 100] = [220, 30, 30]
    return [np.clip(img, 0, 255).astype(np.uint8) for img in (a, b)]


def normalised(t: torch.Tensor) -> list:
    t = torch.nn.functional.normalize(t.to(torch.float32), dim=-1)
    return [[float(v) for v in row] for row in t]


def main(out_dir: str) -> None:
    versions = check_versions()
    model = CLIPModel.from_pretrained(out_dir, attn_implementation="eager")
    model = model.to(torch.float32).eval()
    text_cfg = model.config.text_config
    assert (text_cfg.bos_token_id, text_cfg.eos_token_id, text_cfg.pad_token_id) == (BOS, EOS, EOS)
    assert text_cfg.max_position_embeddings == MAX_TOKENS

    tok = make_tokenizer(text_cfg.vocab_size)
    tok.save(os.path.join(out_dir, "tokenizer.json"))
    tok = Tokenizer.from_file(os.path.join(out_dir, "tokenizer.json"))
    tok.enable_truncation(MAX_TOKENS)
    ids = [e.ids for e in tok.encode_batch(SENTENCES)]
    assert all(row[0] == BOS and row[-1] == EOS and EOS not in row[:-1] for row in ids), ids
    assert len(ids[2]) == MAX_TOKENS, ids[2]
    assert UNK not in ids[0] + ids[1], ids
    tok.enable_padding(pad_id=EOS, pad_token="<|endoftext|>")
    padded = tok.encode_batch(SENTENCES)
    input_ids = torch.tensor([e.ids for e in padded])
    mask = torch.tensor([e.attention_mask for e in padded])

    images = make_images()
    for name, img in zip(["image_a.png", "image_b.png"], images):
        Image.fromarray(img, "RGB").save(os.path.join(out_dir, name))
    reread = [np.asarray(Image.open(os.path.join(out_dir, n)).convert("RGB")) for n in
              ["image_a.png", "image_b.png"]]
    assert all(np.array_equal(a, b) for a, b in zip(images, reread))
    pixels = torch.tensor(np.stack(reread), dtype=torch.float32).permute(0, 3, 1, 2) / 255.0
    mean = torch.tensor(MEAN, dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(STD, dtype=torch.float32).view(1, 3, 1, 1)
    pixel_values = (pixels - mean) / std

    with torch.no_grad():
        out = model.text_model(input_ids=input_ids, attention_mask=mask, output_hidden_states=True)
        eos_pos = (input_ids == EOS).int().argmax(dim=-1)
        rows = torch.arange(input_ids.shape[0])
        text = {
            layer: model.text_projection(
                model.text_model.final_layer_norm(out.hidden_states[layer][rows, eos_pos])
            )
            for layer in (1, 2)
        }
        features = model.get_text_features(input_ids=input_ids, attention_mask=mask).pooler_output
        assert torch.allclose(text[2], features, atol=1e-6)
        # Padding does not change a sentence's features.
        for i, row in enumerate(ids):
            alone = model.get_text_features(input_ids=torch.tensor([row])).pooler_output
            assert torch.allclose(alone[0], features[i], atol=1e-5)

        vout = model.vision_model(pixel_values=pixel_values, output_hidden_states=True)
        image = {
            layer: model.visual_projection(
                model.vision_model.post_layernorm(vout.hidden_states[layer][:, 0])
            )
            for layer in (1, 3)
        }
        image_features = model.get_image_features(pixel_values=pixel_values).pooler_output
        assert torch.allclose(image[3], image_features, atol=1e-6)

    expected = {
        "source": "infra/models/golden_clip_bundle.py",
        "versions": versions,
        "seed": SEED,
        "sentences": SENTENCES,
        "token_ids": ids,
        "images": ["image_a.png", "image_b.png"],
        "mean": MEAN,
        "std": STD,
        "text": {str(k): normalised(v) for k, v in text.items()},
        "image": {str(k): normalised(v) for k, v in image.items()},
    }
    with open(os.path.join(out_dir, "expected_bundle.json"), "w") as f:
        json.dump(expected, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "models/tests/golden/clip_tiny")
