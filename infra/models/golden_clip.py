#!/usr/bin/env python3
"""Writes the tiny CLIP checkpoint and golden outputs that models/tests/clip_parity.rs checks.

Reference implementation: Hugging Face transformers' `CLIPModel` (models/clip/modeling_clip.py),
eager attention, eval mode, float32 on CPU. The model is a small `CLIPConfig` (text: vocab 99,
hidden 32, 2 layers, 4 heads, quick_gelu; vision: 32x32 images, 8x8 patches, hidden 32,
3 layers, 4 heads, gelu; projection 16) with seeded random weights: transformers' own init,
then every tensor perturbed by seeded noise so that LayerNorm scales and biases are not 1 and 0.

Pinned versions (the files in models/tests/golden/clip_tiny/ were produced with exactly
these; the script refuses to run under others):
    pip install torch==2.15.0 transformers==5.24.0 safetensors==0.8.0

Usage: python3 infra/models/golden_clip.py [OUT_DIR]
OUT_DIR defaults to models/tests/golden/clip_tiny. Writes there:
  config.json        model.config.to_json_file (Hugging Face layout, non-default fields only)
  model.safetensors  the state dict (contiguous float32), Hugging Face tensor names
  expected.json      inputs (input_ids, pixel_values) and expected outputs:
    text_features        model.get_text_features(input_ids).pooler_output, (2, 16)
    text_features_eos2   the same with text eos_token_id set to 2 (the legacy argmax pooling)
    image_features       model.get_image_features(pixel_values).pooler_output, (2, 16)
    text_exits[L]        text hidden_states[L] at the EOS position -> final_layer_norm ->
                         text_projection, L = 0..=2
    image_exits[L]       vision hidden_states[L][:, 0] -> post_layernorm -> visual_projection,
                         L = 0..=3
"""
import json
import os
import sys

import safetensors
import safetensors.torch
import torch
import transformers
from transformers import CLIPConfig, CLIPModel

PINNED = {"torch": "2.15.0", "transformers": "5.24.0"}
SEED = 20261101
EOS = 49  # not 2, and not the largest id: pooling must take the first EOS, not argmax(ids)

TEXT = dict(
    vocab_size=99,
    hidden_size=32,
    intermediate_size=37,
    num_hidden_layers=2,
    num_attention_heads=4,
    max_position_embeddings=16,
    hidden_act="quick_gelu",
    projection_dim=16,
    bos_token_id=0,
    eos_token_id=EOS,
    pad_token_id=EOS,
)
VISION = dict(
    image_size=32,
    patch_size=8,
    num_channels=3,
    hidden_size=32,
    intermediate_size=37,
    num_hidden_layers=3,
    num_attention_heads=4,
    hidden_act="gelu",
    projection_dim=16,
)
# Two sequences of equal length. The first holds ids above EOS before its EOS (argmax(ids)
# would pick position 3), then EOS padding; the second ends on its only EOS.
INPUT_IDS = [
    [0, 17, 88, 97, 5, EOS, EOS, EOS, EOS],
    [0, 3, 41, 12, 60, 7, 22, 31, EOS],
]


def check_versions() -> dict:
    found = {
        "torch": torch.__version__.split("+")[0],
        "transformers": transformers.__version__,
    }
    for name, want in PINNED.items():
        if found[name] != want:
            sys.exit(f"golden_clip.py is pinned to {name}=={want}, found {found[name]}")
    found["safetensors"] = safetensors.__version__
    return found


def rows(t: torch.Tensor) -> list:
    return [[float(v) for v in row] for row in t.detach().to(torch.float32)]


def main(out_dir: str) -> None:
    versions = check_versions()
    torch.manual_seed(SEED)
    config = CLIPConfig(text_config=TEXT, vision_config=VISION, projection_dim=16)
    config._attn_implementation = "eager"
    model = CLIPModel(config).to(torch.float32).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))

    input_ids = torch.tensor(INPUT_IDS, dtype=torch.long)
    # Multiples of 1/64 in [-2, 2]: exact in float32 and in JSON.
    pixel_values = torch.randint(-128, 129, (2, 3, 32, 32)).to(torch.float32) / 64.0

    with torch.no_grad():
        text_features = model.get_text_features(input_ids=input_ids).pooler_output
        image_features = model.get_image_features(pixel_values=pixel_values).pooler_output

        text_out = model.text_model(input_ids=input_ids, output_hidden_states=True)
        text_hidden = text_out.hidden_states
        assert len(text_hidden) == TEXT["num_hidden_layers"] + 1, len(text_hidden)
        eos_pos = (input_ids == EOS).int().argmax(dim=-1)
        assert eos_pos.tolist() == [5, 8], eos_pos
        batch = torch.arange(input_ids.shape[0])
        text_exits = [
            model.text_projection(model.text_model.final_layer_norm(h[batch, eos_pos]))
            for h in text_hidden
        ]

        vision_out = model.vision_model(pixel_values=pixel_values, output_hidden_states=True)
        vision_hidden = vision_out.hidden_states
        assert len(vision_hidden) == VISION["num_hidden_layers"] + 1, len(vision_hidden)
        assert torch.equal(vision_hidden[-1], vision_out.last_hidden_state)
        image_exits = [
            model.visual_projection(model.vision_model.post_layernorm(h[:, 0]))
            for h in vision_hidden
        ]

        # The deepest exits are the features themselves.
        assert torch.allclose(text_exits[-1], text_features, atol=1e-6)
        assert torch.allclose(image_exits[-1], image_features, atol=1e-6)

        model.text_model.eos_token_id = 2
        text_features_eos2 = model.get_text_features(input_ids=input_ids).pooler_output
        model.text_model.eos_token_id = EOS
        # argmax(ids) picks position 3 in the first row: a different vector.
        assert not torch.allclose(text_features_eos2[0], text_features[0])

    os.makedirs(out_dir, exist_ok=True)
    model.config.to_json_file(os.path.join(out_dir, "config.json"))
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    safetensors.torch.save_file(state, os.path.join(out_dir, "model.safetensors"))
    expected = {
        "source": "infra/models/golden_clip.py",
        "versions": versions,
        "seed": SEED,
        "attn_implementation": "eager",
        "input_ids": INPUT_IDS,
        "pixel_values_shape": list(pixel_values.shape),
        "pixel_values": [float(v) for v in pixel_values.flatten()],
        "text_features": rows(text_features),
        "text_features_eos2": rows(text_features_eos2),
        "image_features": rows(image_features),
        "text_exits": [rows(t) for t in text_exits],
        "image_exits": [rows(t) for t in image_exits],
    }
    with open(os.path.join(out_dir, "expected.json"), "w") as f:
        json.dump(expected, f)
        f.write("\n")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "models/tests/golden/clip_tiny")
