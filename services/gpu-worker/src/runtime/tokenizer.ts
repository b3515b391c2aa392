// Prompt tokenisation with @huggingface/tokenizers. Bundles ship either a tokenizer.json or the
// vocab.json + merges.txt pair of Stable Diffusion exports; the pair is described to the library
// as the CLIP tokenizer.json that transformers builds from the same files.

import { Tokenizer } from '@huggingface/tokenizers';
import type { TokenizerSpec } from '@diffid/shared/bundle';

/** Token ids of one prompt, padded and truncated to the encoder's length. */
export interface PromptTokens {
  ids: Int32Array;
  /** Tokens the prompt produced before truncation, start and end tokens included. */
  count: number;
  truncated: boolean;
}

export interface PromptTokenizer {
  readonly maxLength: number;
  readonly vocabSize: number;
  encode(prompt: string): PromptTokens;
}

/** The source files of a tokenizer, already read. */
export type TokenizerSource = { kind: 'tokenizer_json'; json: unknown } | { kind: 'vocab_merges'; vocab: Record<string, number>; merges: string[] };

/** Parses merges.txt: one "left right" pair a line, after an optional "#version" header. */
export function parseMerges(text: string): string[] {
  return text
    .split('\n')
    .map((l) => l.replace(/\r$/, ''))
    .filter((l, i) => l.length > 0 && !(i === 0 && l.startsWith('#version')));
}

/** The tokenizer.json equivalent of CLIP's vocab.json + merges.txt. */
export function clipTokenizerJson(vocab: Record<string, number>, merges: string[], spec: Pick<TokenizerSpec, 'bos_token' | 'eos_token'>): object {
  const bos = vocab[spec.bos_token];
  const eos = vocab[spec.eos_token];
  if (bos === undefined || eos === undefined) {
    throw new Error(`vocab.json lacks the start or end token (${spec.bos_token}, ${spec.eos_token})`);
  }
  const special = (id: number, content: string) => ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: true, special: true });
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: [special(bos, spec.bos_token), special(eos, spec.eos_token)],
    normalizer: {
      type: 'Sequence',
      normalizers: [{ type: 'NFC' }, { type: 'Replace', pattern: { Regex: '\\s+' }, content: ' ' }, { type: 'Lowercase' }],
    },
    pre_tokenizer: {
      type: 'Sequence',
      pretokenizers: [
        {
          type: 'Split',
          pattern: { Regex: "<\\|startoftext\\|>|<\\|endoftext\\|>|'s|'t|'re|'ve|'m|'ll|'d|[\\p{L}]+|[\\p{N}]|[^\\s\\p{L}\\p{N}]+" },
          behavior: 'Removed',
          invert: true,
        },
        { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: false },
      ],
    },
    post_processor: {
      type: 'RobertaProcessing',
      sep: [spec.eos_token, eos],
      cls: [spec.bos_token, bos],
      trim_offsets: false,
      add_prefix_space: false,
    },
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: spec.eos_token,
      continuing_subword_prefix: '',
      end_of_word_suffix: '</w>',
      fuse_unk: false,
      byte_fallback: false,
      vocab,
      merges,
    },
  };
}

/**
 * A tokenizer that pads with `pad_token` to `max_length` and truncates keeping the start and end
 * tokens, as Stable Diffusion's pipeline calls CLIPTokenizer.
 */
export function createPromptTokenizer(source: TokenizerSource, spec: TokenizerSpec): PromptTokenizer {
  const json = source.kind === 'tokenizer_json' ? source.json : clipTokenizerJson(source.vocab, source.merges, spec);
  const tokenizer = new Tokenizer(json as object, { model_max_length: spec.max_length, clean_up_tokenization_spaces: true });
  const idOf = (token: string): number => {
    const id = tokenizer.token_to_id(token);
    if (id === undefined) throw new Error(`the tokenizer has no token "${token}"`);
    return id;
  };
  const bos = idOf(spec.bos_token);
  const eos = idOf(spec.eos_token);
  const pad = idOf(spec.pad_token);
  const vocabSize = tokenizer.get_vocab(true).size;
  const maxLength = spec.max_length;
  return {
    maxLength,
    vocabSize,
    encode(prompt: string): PromptTokens {
      const raw = tokenizer.encode(prompt, { add_special_tokens: true }).ids;
      // Some tokenizer.json files carry no post-processor; add the start and end tokens then.
      const withSpecials = raw[0] === bos ? raw : [bos, ...raw, eos];
      const truncated = withSpecials.length > maxLength;
      const kept = truncated ? [...withSpecials.slice(0, maxLength - 1), eos] : withSpecials;
      const ids = new Int32Array(maxLength).fill(pad);
      ids.set(kept);
      return { ids, count: withSpecials.length, truncated };
    },
  };
}
