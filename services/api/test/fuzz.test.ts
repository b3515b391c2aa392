// Property-based fuzzing of every form field and of the multipart framing (fast-check): whatever
// arrives, the answer is a 2xx or a 4xx in the error envelope — never a 5xx, a hang or a crash —
// and no request stalls the event loop. The worst stall is printed for the record; a request
// fails only past a second, far above a noisy machine's jitter and far below what a super-linear
// parser does to hostile input.
import { monitorEventLoopDelay } from 'node:perf_hooks';
import fc from 'fast-check';
import t from 'tap';
import { openapiDocument } from '@diffid/shared/openapi';
import { encodeImage } from '@diffid/shared/image';
import { startStack } from './harness.ts';
import { faceFile } from './images.ts';

const FORMS = { '/generate': 'GenerateForm', '/morph': 'MorphForm', '/compare': 'CompareForm' } as const;
const STALL_LIMIT_MS = 1000;

/** Text that parsers find hard: numbers in every notation, separators, repetition, control bytes. */
const hostileText = fc.oneof(
  fc.string({ maxLength: 64 }),
  fc.constantFrom('0x10', '0b101', '1e308', '-0', 'Infinity', 'NaN', '  7  ', '+3', '.5', '1.', '１２', '9'.repeat(400), '0,'.repeat(300), '-0,'.repeat(60) + 'x'),
  fc.array(fc.constantFrom('-', '0', '.', ',', 'e', 'E', '+', ' ', '\t', '1', 'x'), { maxLength: 600 }).map((cs) => cs.join('')),
  fc.integer().map(String),
  fc.double().map(String),
  fc.stringMatching(/^[0-9,.\- ]{0,200}$/),
);

async function measure<T>(run: () => Promise<T>): Promise<{ value: T; ms: number }> {
  const h = monitorEventLoopDelay({ resolution: 5 });
  h.enable();
  try {
    return { value: await run(), ms: h.max / 1e6 };
  } finally {
    h.disable();
  }
}

t.test('fuzzed form fields: always a 2xx or an enveloped 4xx, never a stall', async (t) => {
  const s = await startStack(t, { worker: false });
  const face = await faceFile(1);
  const files: Record<string, Uint8Array> = { image: face, image_a: face, image_b: face };
  let worst = 0;
  let requests = 0;
  const statuses = new Map<number, number>();
  for (const [path, form] of Object.entries(FORMS)) {
    const names = Object.keys((openapiDocument.components.schemas[form] as { properties: object }).properties).filter((n) => !(n in files));
    const fields = fc.dictionary(fc.oneof(fc.constantFrom(...names), fc.string({ maxLength: 12 })), hostileText, { maxKeys: 6 });
    await fc.assert(
      fc.asyncProperty(fields, fc.boolean(), async (values, withFiles) => {
        const fd = new FormData();
        if (withFiles) for (const [name, bytes] of Object.entries(files)) if (path === '/generate' ? name === 'image' : name !== 'image') fd.append(name, new Blob([bytes]), `${name}.jpg`);
        for (const [k, v] of Object.entries(values)) fd.append(k, v);
        const { value: res, ms } = await measure(() => fetch(`${s.base}${path}`, { method: 'POST', body: fd }));
        const body = (await res.json()) as { error?: { code: string; message: string }; id?: string };
        requests++;
        worst = Math.max(worst, ms);
        statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
        if (ms > STALL_LIMIT_MS) return false;
        if (res.status === 202) return typeof body.id === 'string';
        return res.status >= 400 && res.status < 500 && /^DIFFID_ERR_[A-Z_]+$/.test(body.error?.code ?? '') && typeof body.error?.message === 'string';
      }),
      { numRuns: 120, seed: 20261128 },
    );
  }
  t.comment(`${requests} fuzzed forms: statuses ${JSON.stringify(Object.fromEntries(statuses))}; worst event-loop block ${worst.toFixed(1)} ms`);
  t.ok(worst < STALL_LIMIT_MS);
});

t.test('fuzzed multipart framing: always an enveloped 4xx or a 202, never a stall', async (t) => {
  const s = await startStack(t, { worker: false });
  const face = Buffer.from(await faceFile(2));
  const boundary = fc.oneof(fc.constant('XyZ'), fc.string({ minLength: 0, maxLength: 80 }), fc.constant('-'.repeat(70)));
  const piece = fc.oneof(
    fc.constant('--B\r\n'),
    fc.constant('--B--\r\n'),
    fc.constant('Content-Disposition: form-data; name="prompt"\r\n\r\nhello\r\n'),
    fc.constant('Content-Disposition: form-data; name="image"; filename="a.jpg"\r\nContent-Type: image/jpeg\r\n\r\n'),
    fc.constant('Content-Disposition: form-data; name="steps"\r\n\r\n5\r\n'),
    fc.constant('Content-Disposition: form-data; name*=UTF-8\'\'%E2%82%AC\r\n\r\n'),
    fc.constant('Content-Disposition: form-data\r\n\r\n'),
    fc.constant('\r\n'),
    fc.constant('FACE'),
    fc.string({ maxLength: 100 }),
    fc.uint8Array({ maxLength: 2000 }).map((b) => Buffer.from(b).toString('latin1')),
  );
  let worst = 0;
  let requests = 0;
  await fc.assert(
    fc.asyncProperty(boundary, fc.array(piece, { maxLength: 24 }), fc.boolean(), async (b, pieces, declare) => {
      const text = pieces.join('').replaceAll('--B', `--${b}`);
      const body = Buffer.concat(text.split('FACE').flatMap((chunk, i) => (i === 0 ? [Buffer.from(chunk, 'latin1')] : [face, Buffer.from(chunk, 'latin1')])));
      const headers = { 'content-type': declare ? `multipart/form-data; boundary=${b}` : 'multipart/form-data' };
      const { value: res, ms } = await measure(() => fetch(`${s.base}/generate`, { method: 'POST', body, headers }));
      const parsed = (await res.json()) as { error?: { code: string } };
      requests++;
      worst = Math.max(worst, ms);
      if (ms > STALL_LIMIT_MS) return false;
      return res.status === 202 || (res.status >= 400 && res.status < 500 && /^DIFFID_ERR_/.test(parsed.error?.code ?? ''));
    }),
    { numRuns: 300, seed: 20261128 },
  );
  t.comment(`${requests} fuzzed multipart bodies: worst event-loop block ${worst.toFixed(1)} ms`);
  t.ok(worst < STALL_LIMIT_MS);
});

t.test('a corpus of hostile image files: each a 202 or an enveloped 4xx, none a stall', async (t) => {
  const s = await startStack(t, { worker: false });
  const jpeg = Buffer.from(await faceFile(3));
  const solid = (width: number, height: number) => ({ width, height, data: new Uint8Array(width * height * 3).fill(77) });
  const corpus: Array<[string, Buffer | Promise<Buffer>]> = [
    ['empty', Buffer.alloc(0)],
    ['JPEG magic only', Buffer.from([0xff, 0xd8, 0xff])],
    ['truncated JPEG', jpeg.subarray(0, jpeg.length >> 1)],
    ['JPEG with garbage after EOI', Buffer.concat([jpeg, Buffer.alloc(4096, 0x41)])],
    ['PNG signature then garbage', Buffer.concat([Buffer.from('89504e470d0a1a0a', 'hex'), Buffer.alloc(512, 0x13)])],
    ['GIF', Buffer.from('GIF89a\x01\x00\x01\x00\x00\x00\x00;', 'latin1')],
    ['SVG', Buffer.from('<svg xmlns="http://www.w3.org/2000/svg" width="100000" height="100000"/>')],
    ['RIFF but not WebP', Buffer.from('RIFF\x10\x00\x00\x00WAVEfmt ', 'latin1')],
    ['PNG bomb: 8000×8000 of one colour (64 MP)', encodeImage(solid(8000, 8000), 'png')],
    ['1×1 PNG', encodeImage(solid(1, 1), 'png')],
    ['1×30000 PNG', encodeImage(solid(1, 30000), 'png')],
    ['16-bit PNG', encodeImage(solid(64, 64), 'png', 90, undefined, { colourspace: 'rgb16' })],
    ['CMYK JPEG', encodeImage(solid(64, 64), 'jpeg', 90, undefined, { colourspace: 'cmyk' })],
    ['progressive JPEG', encodeImage(solid(300, 200), 'jpeg', 90, undefined, { progressive: true })],
    ['interlaced PNG', encodeImage(solid(300, 200), 'png', 90, undefined, { progressive: true })],
    ['EXIF orientation 8', encodeImage(solid(300, 200), 'jpeg', 90, 8)],
    ['animated WebP', encodeImage(solid(32, 64), 'webp', 90, undefined, { pageHeight: 32 })],
    ['greyscale WebP', encodeImage(solid(64, 64), 'webp', 90, undefined, { colourspace: 'b-w' })],
  ];
  let worst = 0;
  for (const [name, bytesPromise] of corpus) {
    const bytes = await bytesPromise;
    const fd = new FormData();
    fd.append('image', new Blob([bytes]), 'upload');
    fd.append('prompt', 'a face');
    const { value: res, ms } = await measure(() => fetch(`${s.base}/generate`, { method: 'POST', body: fd }));
    const body = (await res.json()) as { error?: { code: string; message: string } };
    worst = Math.max(worst, ms);
    t.ok(res.status === 202 || (res.status >= 400 && res.status < 500 && /^DIFFID_ERR_/.test(body.error?.code ?? '')), `${name}: ${res.status} ${body.error?.code ?? ''} ${body.error?.message ?? ''}`);
    t.ok(ms < STALL_LIMIT_MS, `${name}: worst event-loop block ${ms.toFixed(1)} ms`);
  }
  t.comment(`${corpus.length} hostile files: worst event-loop block ${worst.toFixed(1)} ms`);
});
