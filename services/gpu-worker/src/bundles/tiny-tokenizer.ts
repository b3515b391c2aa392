// A small but real CLIP-format vocabulary (vocab.json + merges.txt): the 256 byte symbols, their
// end-of-word forms, merges for a few prompt words, then the special tokens — the same layout as
// openai/clip-vit-large-patch14, so the same loader reads both.

import type { TokenizerSpec } from '@diffid/shared/bundle';

/** GPT-2/CLIP's reversible byte → printable character table, in the vocabulary's order. */
function byteSymbols(): string[] {
  const printable: number[] = [];
  for (let b = 0x21; b <= 0x7e; b++) printable.push(b);
  for (let b = 0xa1; b <= 0xac; b++) printable.push(b);
  for (let b = 0xae; b <= 0xff; b++) printable.push(b);
  const symbols = printable.map((b) => String.fromCodePoint(b));
  let n = 0;
  for (let b = 0; b < 256; b++) {
    if (!printable.includes(b)) symbols.push(String.fromCodePoint(256 + n++));
  }
  return symbols;
}

/** Words the tiny vocabulary holds whole; anything else falls back to byte symbols. */
export const TINY_WORDS = [
  'a', 'photo', 'of', 'person', 'portrait', 'face', 'smiling', 'man', 'woman', 'with', 'glasses',
  'beard', 'young', 'old', 'hair', 'in', 'the', 'studio', 'light', 'red', 'blue', 'hat',
];

export interface TokenizerFiles {
  vocabJson: string;
  mergesTxt: string;
  vocabSize: number;
}

/** Builds vocab.json and merges.txt; each word merges left to right into one `word</w>` token. */
export function tinyClipTokenizerFiles(words: readonly string[] = TINY_WORDS): TokenizerFiles {
  const bytes = byteSymbols();
  const vocab: string[] = [...bytes, ...bytes.map((s) => `${s}</w>`)];
  const merges: string[] = [];
  const known = new Set(vocab);
  for (const word of words) {
    const chars = [...word];
    let left = chars[0] as string;
    if (chars.length === 1) continue;
    for (let i = 1; i < chars.length; i++) {
      const right = i === chars.length - 1 ? `${chars[i]}</w>` : (chars[i] as string);
      const merged = left + right;
      if (!known.has(merged)) {
        merges.push(`${left} ${right}`);
        vocab.push(merged);
        known.add(merged);
      }
      left = merged;
    }
  }
  vocab.push(CLIP_SPECIAL_TOKENS.bos_token, CLIP_SPECIAL_TOKENS.eos_token);
  const ids: Record<string, number> = {};
  vocab.forEach((tok, i) => {
    ids[tok] = i;
  });
  return {
    vocabJson: `${JSON.stringify(ids)}\n`,
    mergesTxt: `#version: 0.2\n${merges.join('\n')}\n`,
    vocabSize: vocab.length,
  };
}

/** CLIP's special tokens as SD 1.5's tokenizer names them (the end token also pads). */
export const CLIP_SPECIAL_TOKENS = { bos_token: '<|startoftext|>', eos_token: '<|endoftext|>', pad_token: '<|endoftext|>' } as const;

/** The tokenizer files as bundle entries, and the manifest's tokenizer section naming them. */
export function tinyTokenizerBundlePart(files: TokenizerFiles, maxLength: number): { files: Array<[string, Uint8Array]>; spec: TokenizerSpec } {
  const enc = new TextEncoder();
  return {
    files: [
      ['tokenizer/vocab.json', enc.encode(files.vocabJson)],
      ['tokenizer/merges.txt', enc.encode(files.mergesTxt)],
    ],
    spec: {
      vocab: { file: 'tokenizer/vocab.json', sha256: '' },
      merges: { file: 'tokenizer/merges.txt', sha256: '' },
      max_length: maxLength,
      ...CLIP_SPECIAL_TOKENS,
    },
  };
}
