"""CLIP's byte-pair tokenizer, built offline from the vocabulary shipped in the package.

The EOT position of each class prompt decides which text-transformer row becomes the class
embedding, so the vocabulary must be exactly the one the released checkpoints used.
"""

from __future__ import annotations

import functools
import gzip

import torch

from anomalyclip.assets import asset_path
from anomalyclip.clip_config import CONTEXT_LENGTH
SOT_TOKEN = "<|startoftext|>"
EOT_TOKEN = "<|endoftext|>"


def _byte_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible map from bytes to printable unicode characters."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    chars = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(printable, (chr(c) for c in chars)))


@functools.lru_cache(maxsize=1)
def clip_tokenizer():
    """A `transformers.CLIPTokenizer` equal to CLIP's reference tokenizer (49408 tokens)."""
    from transformers import CLIPTokenizer

    with gzip.open(asset_path("bpe_simple_vocab_16e6.txt.gz"), "rt", encoding="utf-8") as f:
        lines = f.read().split("\n")
    merges = [tuple(line.split()) for line in lines[1 : 49152 - 256 - 2 + 1]]
    base = list(_byte_to_unicode().values())
    tokens = base + [t + "</w>" for t in base] + ["".join(m) for m in merges] + [SOT_TOKEN, EOT_TOKEN]
    vocab = {t: i for i, t in enumerate(tokens)}
    return CLIPTokenizer(vocab=vocab, merges=merges)


def tokenize(texts: list[str], context_length: int = CONTEXT_LENGTH) -> torch.Tensor:
    """Token ids `(len(texts), context_length)`: SOT, tokens, EOT, then zeros (CLIP's padding)."""
    tok = clip_tokenizer()
    out = torch.zeros(len(texts), context_length, dtype=torch.long)
    for i, text in enumerate(texts):
        ids = tok(text, add_special_tokens=True)["input_ids"]
        if len(ids) > context_length:
            raise ValueError(f"text {text!r} is longer than {context_length} tokens")
        out[i, : len(ids)] = torch.tensor(ids)
    return out


def class_prompts(class_names: list[str], n_ctx: int) -> list[str]:
    """`"X X ... X <name>."` per class, `_` read as a space (METHOD §2)."""
    prefix = " ".join(["X"] * n_ctx)
    return [f"{prefix} {name.replace('_', ' ')}." for name in class_names]
