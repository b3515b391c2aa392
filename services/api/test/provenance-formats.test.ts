// Every file the service delivers says what it is, where exiftool (an independent reader) looks:
// a generate's PNG is trainedAlgorithmicMedia; a morph's PNG frames, WebP, GIF and MP4 are
// compositeWithTrainedAlgorithmicMedia. The PNG's packet sits in an uncompressed iTXt chunk, as
// the XMP specification says. Through real HTTP, Redis and a worker on the demo bundle.
import { spawnSync } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import t from 'tap';
import { imageXmp } from '@diffid/shared/image';
import { buildDemoBundle } from '../../gpu-worker/src/bundles/demo-bundle.ts';
import { tempDir } from '../../gpu-worker/test/helpers.ts';
import { postForm, startStack } from './harness.ts';
import { faceFile } from './images.ts';

const haveExiftool = spawnSync('exiftool', ['-ver']).status === 0;
const haveFfmpeg = spawnSync('ffmpeg', ['-hide_banner', '-version']).status === 0;
const TYPES = 'http://cv.iptc.org/newscodes/digitalsourcetype/';

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
  if (!haveExiftool) {
    t.comment('exiftool is absent (Debian: libimage-exiftool-perl): the independent reads are skipped');
    return;
  }
  const read = spawnSync('exiftool', ['-j', '-XMP:DigitalSourceType', '-XMP:CreatorTool', ...files.map(([name]) => join(dir, name))], { encoding: 'utf8' });
  const found = JSON.parse(read.stdout) as Array<{ SourceFile: string; DigitalSourceType?: string; CreatorTool?: string }>;
  for (const [name, , type] of files) {
    const f = found.find((x) => x.SourceFile.endsWith(name));
    t.equal(f?.DigitalSourceType, `${TYPES}${type}`, `exiftool reads ${name}: ${type}`);
    t.equal(f?.CreatorTool, 'Diff-ID Serve', `exiftool reads ${name}'s creator tool`);
  }
});
