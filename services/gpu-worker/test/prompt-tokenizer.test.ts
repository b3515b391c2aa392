import t from 'tap';
import { tinyClipTokenizerFiles } from '../src/bundles/tiny-tokenizer.ts';
import { clipTokenizerJson, createPromptTokenizer, parseMerges } from '../src/runtime/tokenizer.ts';

const SPEC = { max_length: 77, bos_token: '<|startoftext|>', eos_token: '<|endoftext|>', pad_token: '<|endoftext|>' };
const files = tinyClipTokenizerFiles();
const vocab = JSON.parse(files.vocabJson) as Record<string, number>;
const merges = parseMerges(files.mergesTxt);
const tok = createPromptTokenizer({ kind: 'vocab_merges', vocab, merges }, SPEC);
const name = Object.fromEntries(Object.entries(vocab).map(([k, v]) => [v, k]));
const BOS = vocab['<|startoftext|>'] as number;
const EOS = vocab['<|endoftext|>'] as number;

t.test('the tiny vocabulary has CLIP\'s layout', async (t) => {
  t.equal(files.vocabSize, Object.keys(vocab).length);
  t.equal(vocab['!'], 0, 'byte symbols first, "!" at 0 as in CLIP');
  t.equal(vocab['a</w>'], 320, '"a</w>" at 320 as in CLIP');
  t.equal(BOS, files.vocabSize - 2);
  t.equal(EOS, files.vocabSize - 1);
  t.match(files.mergesTxt, /^#version: 0.2\n/);
});

t.test('prompts are lower-cased, whitespace-cleaned, wrapped in start/end and padded with end', async (t) => {
  const e = tok.encode('A  Photo of a\tPERSON, smiling!');
  t.equal(e.ids.length, 77);
  const words = Array.from(e.ids.subarray(0, 10), (i) => name[i]);
  t.same(words, ['<|startoftext|>', 'a</w>', 'photo</w>', 'of</w>', 'a</w>', 'person</w>', ',</w>', 'smiling</w>', '!</w>', '<|endoftext|>']);
  t.equal(e.count, 10);
  t.notOk(e.truncated);
  t.ok(e.ids.subarray(10).every((i) => i === EOS), 'padded with <|endoftext|>');
});

t.test('words outside the vocabulary fall back to byte symbols, never to unknown', async (t) => {
  const e = tok.encode('zebra');
  t.same(Array.from(e.ids.subarray(0, 7), (i) => name[i]), ['<|startoftext|>', 'z', 'e', 'b', 'r', 'a</w>', '<|endoftext|>']);
  const u = tok.encode('café');
  t.equal(u.ids[0], BOS);
  t.ok(u.count > 3, 'non-ASCII text encodes to bytes');
});

t.test('long prompts truncate to 77 keeping start and end tokens', async (t) => {
  const e = tok.encode('photo '.repeat(100));
  t.equal(e.count, 102);
  t.ok(e.truncated);
  t.equal(e.ids[0], BOS);
  t.equal(e.ids[76], EOS);
  t.equal(name[e.ids[75] as number], 'photo</w>');
  const empty = tok.encode('');
  t.same(Array.from(empty.ids.subarray(0, 3)), [BOS, EOS, EOS], 'the empty prompt is start, end, padding');
  t.equal(empty.count, 2);
});

t.test('a tokenizer.json built from the same files encodes identically', async (t) => {
  const json = JSON.parse(JSON.stringify(clipTokenizerJson(vocab, merges, SPEC)));
  const fromJson = createPromptTokenizer({ kind: 'tokenizer_json', json }, SPEC);
  for (const prompt of ['a portrait of an old man with glasses', 'RED hat,  blue   light', 'x'.repeat(300)]) {
    t.same(Array.from(fromJson.encode(prompt).ids), Array.from(tok.encode(prompt).ids), prompt.slice(0, 30));
  }
});
