// Every file the service delivers says what it is, where exiftool (an independent reader) looks,
// and POST /verify checks its signed C2PA manifest:
// a generate's PNG is trainedAlgorithmicMedia; a morph's PNG frames, WebP, GIF and MP4 are
// compositeWithTrainedAlgorithmicMedia. The PNG's packet sits in an uncompressed iTXt chunk, as
// the XMP specification says. Through real HTTP, Redis and a worker on the demo bundle.
import { spawnSync } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import t from 'tap';
import { encodeImage, imageXmp } from '@diffid/shared/image';
import { facePattern } from '@diffid/shared/testing';
import { pngWithChunk } from '@diffid/shared/xmp';
import { buildDemoBundle } from '../../gpu-worker/src/bundles/demo-bundle.ts';
import { tempDir } from '../../gpu-worker/test/helpers.ts';
import { assertContract } from './contract.ts';
import { postForm, startStack } from './harness.ts';
import { faceFile } from './images.ts';

const haveExiftool = spawnSync('exiftool', ['-ver']).status === 0;
const haveFfmpeg = spawnSync('ffmpeg', ['-hide_banner', '-version']).status === 0;
const TYPES = 'http://cv.iptc.org/newscodes/digitalsourcetype/';
interface Verification {
  c2pa: { present: boolean; valid: boolean; signer: string | null; issuer: string | null; actions: unknown[]; errors: string[] };
  xmp: { present: boolean; digital_source_type: string | null; creator_tool: string | null; kind: string | null };
}

/** The PNG's chunk types in order. */
function chunks(png: Buffer): string[] {
  const types: string[] = [];
  for (let at = 8; at + 8 <= png.length; at += 12 + png.readUInt32BE(at)) types.push(png.toString('latin1', at + 4, at + 8));
  return types;
}

t.test('PNG, WebP, GIF and MP4 carry the digital source type exiftool reads', async (t) => {
  const s = await startStack(t, { build: buildDemoBundle });
  const dir = await tempDir(t, 'diffid-provenance-');
  const wait = { prefer: 'wait=120' };
  const generate = (await (await postForm(s.base, '/generate', { image: { bytes: await faceFile(3) }, prompt: 'a portrait', steps: 2 }, wait)).json()) as { status: string; result: { images: Array<{ url: string }> } };
  t.equal(generate.status, 'succeeded');
  const animation = haveFfmpeg ? 'webp,gif,mp4' : 'webp,gif';
  if (!haveFfmpeg) t.comment('ffmpeg is absent: no MP4 to check');
  const morph = (await (await postForm(s.base, '/morph', { image_a: { bytes: await faceFile(4) }, image_b: { bytes: await faceFile(5) }, frames: 3, steps: 2, animation }, wait)).json()) as {
    status: string;
    result: { images: Array<{ url: string }>; animations: Array<{ format: string; url: string }> };
  };
  t.equal(morph.status, 'succeeded');

  const files: Array<[string, string, string]> = [
    ['generate.png', generate.result.images[0]?.url as string, 'trainedAlgorithmicMedia'],
    ['frame.png', morph.result.images[1]?.url as string, 'compositeWithTrainedAlgorithmicMedia'],
    ...morph.result.animations.map((a) => [`morph.${a.format}`, a.url, 'compositeWithTrainedAlgorithmicMedia'] as [string, string, string]),
  ];
  for (const [name, url, type] of files) {
    const bytes = Buffer.from(await (await fetch(`${s.base}${url}`)).arrayBuffer());
    await writeFile(join(dir, name), bytes);
    if (name.endsWith('.png')) {
      const order = chunks(bytes);
      t.ok(order.indexOf('iTXt') > 0 && order.indexOf('iTXt') < order.indexOf('IDAT'), `${name}: XMP in an iTXt chunk before the image data (${order.join(' ')})`);
      t.notOk(order.includes('zTXt'), `${name}: no compressed text chunk`);
      const at = bytes.indexOf('XML:com.adobe.xmp\0');
      t.same([...bytes.subarray(at + 18, at + 20)], [0, 0], `${name}: the iTXt's compression flag says uncompressed`);
      t.match(await imageXmp(bytes), `${TYPES}${type}`, `${name}: sharp reads it back`);
    }
  }
  // POST /verify: the delivered PNG's manifest holds; one changed byte of its image data breaks it.
  const verify = async (bytes: Buffer) => {
    const res = await postForm(s.base, '/verify', { image: { bytes, name: 'x' } });
    const body = (await res.json()) as Verification;
    assertContract(t, 'POST', '/verify', res.status, body);
    return body;
  };
  const delivered = Buffer.from(await (await fetch(`${s.base}${generate.result.images[0]?.url}`)).arrayBuffer());
  const verdict = await verify(delivered);
  t.match(verdict.c2pa, { present: true, valid: true, errors: [] }, 'the delivered PNG: a C2PA manifest that holds');
  t.match(verdict.c2pa.signer, /Diff-ID Serve/);
  t.match(verdict.c2pa.issuer, /local CA/, 'signed through the local CA a service makes by default');
  t.same(verdict.c2pa.actions, [{ action: 'c2pa.created', digitalSourceType: `${TYPES}trainedAlgorithmicMedia`, softwareAgent: 'Diff-ID Serve' }]);
  t.same(verdict.xmp, { present: true, digital_source_type: `${TYPES}trainedAlgorithmicMedia`, creator_tool: 'Diff-ID Serve', kind: 'generate' });
  const changed = Buffer.from(delivered);
  const idat = changed.lastIndexOf('IDAT');
  changed[idat + 20] = (changed[idat + 20] as number) ^ 0x01;
  const broken = await verify(changed);
  t.equal(broken.c2pa.valid, false, 'one changed byte of the image data: not valid');
  t.ok(broken.c2pa.errors.includes('assertion.dataHash.mismatch'), `says why (${broken.c2pa.errors.join(', ')})`);
  for (const [name, , type] of files.filter(([n]) => !n.endsWith('.png'))) {
    const v = await verify(Buffer.from(await (await fetch(`${s.base}${files.find(([n]) => n === name)?.[1]}`)).arrayBuffer()));
    t.equal(v.xmp.digital_source_type, `${TYPES}${type}`, `/verify reads ${name}'s XMP`);
    t.equal(v.c2pa.present, false, `${name}: no C2PA manifest (the library embeds in PNG)`);
  }
  const photo = await verify(await faceFile(9));
  t.same(photo, { c2pa: { present: false, valid: false, signer: null, issuer: null, actions: [], errors: [] }, xmp: { present: false, digital_source_type: null, creator_tool: null, kind: null } }, 'a photo says nothing');

  if (!haveExiftool) {
    t.comment('exiftool is absent (Debian: libimage-exiftool-perl): the independent reads are skipped');
    return;
  }
  const read = spawnSync('exiftool', ['-j', '-XMP:DigitalSourceType', '-XMP:CreatorTool', ...files.map(([name]) => join(dir, name))], { encoding: 'utf8' });
  const found = JSON.parse(read.stdout) as Array<{ SourceFile: string; DigitalSourceType?: string; CreatorTool?: string }>;
  const jumbf = spawnSync('exiftool', ['-a', '-G1', '-JUMBF:all', join(dir, 'generate.png')], { encoding: 'utf8' }).stdout;
  t.match(jumbf, /\[JUMBF\]\s+JUMD Label\s+: c2pa\n/, 'exiftool finds the C2PA manifest store in the PNG');
  t.match(jumbf, /c2pa\.actions/, 'with its actions');
  for (const [name, , type] of files) {
    const f = found.find((x) => x.SourceFile.endsWith(name));
    t.equal(f?.DigitalSourceType, `${TYPES}${type}`, `exiftool reads ${name}: ${type}`);
    t.equal(f?.CreatorTool, 'Diff-ID Serve', `exiftool reads ${name}'s creator tool`);
  }
});

t.test('POST /verify on manifests built to hurt: nested, huge or garbled stores are refused by name, and the API stays up', async (t) => {
  const s = await startStack(t, { worker: false });
  const plain = await encodeImage(facePattern(3, 64, 64), 'png');
  const verify = async (png: Buffer) => {
    const res = await postForm(s.base, '/verify', { image: { bytes: png, name: 'x.png' } });
    t.equal(res.status, 200);
    return ((await res.json()) as Verification).c2pa;
  };
  // jumb boxes each holding the next, 50,000 deep (the library copies a box's rest at every level).
  const depth = 50_000;
  const nested = Buffer.alloc(8 * depth);
  for (let i = 0; i < depth; i++) {
    nested.writeUInt32BE(8 * (depth - i), 8 * i);
    nested.write('jumb', 8 * i + 4, 'latin1');
  }
  const deep = await verify(pngWithChunk(plain, 'caBX', nested));
  t.match(deep, { present: true, valid: false }, 'deep nesting: not valid');
  t.match(deep.errors.join(), /nest deeper than 8/, 'and says why');
  const huge = await verify(pngWithChunk(plain, 'caBX', Buffer.alloc(2 * 1024 * 1024, 1)));
  t.match(huge.errors.join(), /more than the 1048576 this service checks/, 'a store over 1 MB is not parsed');
  const garbled = await verify(pngWithChunk(plain, 'caBX', Buffer.from('00000010jumbnonsense-bytes', 'latin1')));
  t.match(garbled, { present: true, valid: false }, 'a garbled store: present, not valid');
  t.equal((await fetch(`${s.base}/healthz`)).status, 200, 'the API is still there');
});
