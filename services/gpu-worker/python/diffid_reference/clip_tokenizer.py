"""A CLIP-format BPE vocabulary with CLIP's exact size and special-token ids, made up locally.

SD 1.5's text encoder has an embedding table of 49 408 rows: 256 byte symbols, the same 256 with
the end-of-word mark ``</w>``, 48 894 merges, then ``<|startoftext|>`` = 49406 and
``<|endoftext|>`` = 49407 (openai/clip-vit-large-patch14's vocab.json). CLIP's own files are not
in this repository and cannot be fetched here, so ``clip_bpe_files`` builds files of that shape:

* ids 0-255: the GPT-2/CLIP byte symbols in CLIP's order; 256-511: the same with ``</w>``;
* then merges: first the prompt words of ``WORDS`` (each merging left to right into one
  ``word</w>`` token — the scheme of services/gpu-worker/src/bundles/tiny-tokenizer.ts), then
  filler merges of lowercase letters (two-letter pieces, then three-letter ones, ...) in a fixed
  order until there are exactly ``MERGES`` of them;
* the two special tokens last, at 49406 and 49407.

Every id a prompt can produce is below 49 408 and the special tokens have CLIP's ids, so a real
CLIP tokenizer's ids are in the same range as this one's and the full-size text encoder's whole
table is reachable. The words are not CLIP's: ids do not mean what they mean in CLIP (the weights
are random anyway).
"""
from __future__ import annotations

import itertools
import json
import string
from pathlib import Path

VOCAB_SIZE = 49408
BOS, EOS = "<|startoftext|>", "<|endoftext|>"
#: 49408 - 512 byte symbols - 2 special tokens: CLIP ViT-L/14's merges.txt has exactly this many.
MERGES = VOCAB_SIZE - 512 - 2
MAX_LENGTH = 77

#: Prompt words that tokenize to one token each (tiny-tokenizer.ts's list and a few more).
WORDS = (
    "a", "photo", "of", "person", "portrait", "face", "smiling", "man", "woman", "with", "glasses",
    "beard", "young", "old", "hair", "in", "the", "studio", "light", "red", "blue", "hat",
    "an", "and", "on", "at", "close", "up", "headshot", "picture", "painting", "wearing", "black",
    "white", "green", "dark", "long", "short", "background", "outdoors", "looking", "camera",
)


def byte_symbols() -> list[str]:
    """GPT-2/CLIP's reversible byte -> printable character table, in the vocabulary's order."""
    printable = list(range(0x21, 0x7F)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    symbols = [chr(b) for b in printable]
    n = 0
    for b in range(256):
        if b not in printable:
            symbols.append(chr(256 + n))
            n += 1
    return symbols


def clip_bpe_files(words: tuple[str, ...] = WORDS) -> tuple[dict[str, int], list[str]]:
    """(vocab {token: id}, merges ["left right", ...]) of exactly VOCAB_SIZE tokens."""
    symbols = byte_symbols()
    vocab: list[str] = symbols + [f"{s}</w>" for s in symbols]
    known = set(vocab)
    merges: list[str] = []

    def merge(left: str, right: str) -> str:
        merged = left + right
        if merged not in known and len(merges) < MERGES:
            merges.append(f"{left} {right}")
            vocab.append(merged)
            known.add(merged)
        return merged

    for word in words:
        if len(word) < 2:
            continue
        left = word[0]
        for i in range(1, len(word)):
            right = word[i] + ("</w>" if i == len(word) - 1 else "")
            left = merge(left, right)
    # Filler: lowercase pieces of growing length, each extended by a letter, whole-word forms too.
    letters = string.ascii_lowercase
    pieces = list(letters)
    while len(merges) < MERGES:
        longer = []
        for piece, c in itertools.product(pieces, letters):
            if len(merges) >= MERGES:
                break
            merge(piece, f"{c}</w>")
            longer.append(merge(piece, c))
        pieces = longer
    vocab += [BOS, EOS]
    if len(vocab) != VOCAB_SIZE or vocab.index(BOS) != 49406:
        raise AssertionError(f"vocabulary of {len(vocab)} tokens; expected {VOCAB_SIZE} with {BOS} at 49406")
    return {tok: i for i, tok in enumerate(vocab)}, merges


def write_tokenizer(folder: Path) -> dict:
    """diffusers' tokenizer/ folder: vocab.json, merges.txt, special_tokens_map.json, tokenizer_config.json."""
    vocab, merges = clip_bpe_files()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False) + "\n", encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    special = {"bos_token": BOS, "eos_token": EOS, "pad_token": EOS, "unk_token": EOS}
    (folder / "special_tokens_map.json").write_text(json.dumps(special, indent=2) + "\n")
    config = {"tokenizer_class": "CLIPTokenizer", "model_max_length": MAX_LENGTH, "do_lower_case": True, "errors": "replace", **special}
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")
    return {"vocab_size": len(vocab), "merges": len(merges), "bos": vocab[BOS], "eos": vocab[EOS]}
