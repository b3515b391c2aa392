// Morphs people can use: even pacing (two passes, measured), animated WebP and GIF with a frame
// rate and a boomerang, and a face-only morph that keeps one photo's background. On the demo
// bundle, whose frames are faces, through real HTTP, Redis and a worker.
import { spawnSync } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import t from 'tap';
import { animationInfo, decodeRgb } from '@diffid/shared/image';
import { animationFormats } from '@diffid/shared/job-params';
import { buildDemoBundle } from '../../gpu-worker/src/bundles/demo-bundle.ts';
import { tempDir } from '../../gpu-worker/test/helpers.ts';
import { call } from './contract.ts';
import { finished, pollJob, postForm, startStack } from './harness.ts';
import { faceFile } from './images.ts';

/** The top-left 8×8 corner's bytes of a frame. */
async function corner(base: string, url: string): Promise<string> {
  const rgb = await decodeRgb(new Uint8Array(await (await fetch(`${base}${url}`)).arrayBuffer()), 'frame');
  const rows: number[] = [];
  for (let y = 0; y < 8; y++) rows.push(...rgb.data.subarray(y * rgb.width * 3, (y * rgb.width + 8) * 3));
  return Buffer.from(rows).toString('hex');
}

t.test('pacing=even, animations and a face-only morph', async (t) => {
  const s = await startStack(t, { build: buildDemoBundle });
  const faces = { image_a: { bytes: await faceFile(21) }, image_b: { bytes: await faceFile(22) } };
  const res = await postForm(s.base, '/morph', { ...faces, frames: 6, steps: 10, pacing: 'even', animation: 'webp,gif', fps: 8, boomerang: 'true' });
  t.equal(res.status, 202);
  const { id } = (await res.json()) as { id: string };
  await pollJob(s.base, id, finished);
  const job = (await call(t, s.base, 'GET', `/jobs/${id}`, '/jobs/{id}')).body;
  t.equal(job.status, 'succeeded', JSON.stringify(job.error ?? ''));
  t.same(job.progress, { step: 30, total: 30 }, 'one inversion run, then two passes of one sampling run: 10 × (1 + 2)');
  t.match(job.params, { pacing: 'even', background: 'morph', animation: ['webp', 'gif'], fps: 8, boomerang: true });
  const r = job.result;
  const alphas = r.images.map((i: { alpha: number }) => i.alpha) as number[];
  t.equal(alphas[0], 0);
  t.equal(alphas.at(-1), 1);
  t.ok(alphas.every((a, i) => i === 0 || a > (alphas[i - 1] as number)), `factors increase: ${alphas.map((a) => a.toFixed(3)).join(' ')}`);
  t.notSame(alphas, [0, 0.2, 0.4, 0.6, 0.8, 1], 'the factors were re-spaced');
  t.ok(r.pacing_evenness < r.pacing_evenness_linear, `evenness ${r.pacing_evenness.toFixed(3)} with even pacing, ${r.pacing_evenness_linear.toFixed(3)} linear`);

  t.same(r.animations.map((a: { format: string }) => a.format), ['webp', 'gif']);
  for (const a of r.animations as Array<{ format: string; url: string; frames: number; fps: number; bytes: number }>) {
    t.equal(a.url, `/jobs/${id}/animation.${a.format}`);
    t.equal(a.frames, 10, 'a boomerang of 6 frames shows 6 + 4');
    const file = await fetch(`${s.base}${a.url}`);
    t.equal(file.headers.get('content-type'), `image/${a.format}`);
    const bytes = new Uint8Array(await file.arrayBuffer());
    t.equal(bytes.length, a.bytes);
    const info = await animationInfo(bytes);
    t.match(info, { format: a.format, width: 256, height: 256, frames: 10, loop: 0 }, `${a.format}: ${bytes.length} bytes`);
    t.ok(info.delays.every((d) => Math.abs(d - 125) <= 10), `${a.format}: 8 fps is ${info.delays[0]} ms a frame`);
  }

  // Face-only: the corner (outside both faces) is face A's photo in every frame. (A job of its
  // own: inside the small face area the changes between frames are a few grey levels, too close
  // to rounding for pacing to be measured on them.)
  const faceOnly = await postForm(s.base, '/morph', { ...faces, frames: 4, steps: 10, background: 'a' });
  const only = await pollJob(s.base, ((await faceOnly.json()) as { id: string }).id, finished);
  t.equal(only.params.background, 'a');
  const corners = await Promise.all(only.result.images.map((i: { url: string }) => corner(s.base, i.url)));
  t.equal(new Set(corners).size, 1, 'every frame has A\'s background');
  const plain = await postForm(s.base, '/morph', { ...faces, frames: 3, steps: 10 });
  const other = await pollJob(s.base, ((await plain.json()) as { id: string }).id, finished);
  const plainCorners = await Promise.all(other.result.images.map((i: { url: string }) => corner(s.base, i.url)));
  t.not(plainCorners[0], plainCorners[2], 'without it the background cross-fades');
  t.equal(other.result.pacing_evenness_linear, undefined, 'linear pacing measures only its one pass');
  t.ok(other.result.pacing_evenness >= 0);
  const none = await call(t, s.base, 'GET', `/jobs/${other.id}/animation.webp`, '/jobs/{id}/animation.{format}');
  t.equal(none.status, 404);
  t.equal(none.body.error.code, 'DIFFID_ERR_IMAGE_NOT_FOUND');
});

t.test('morph options that cannot work are refused by name', async (t) => {
  const s = await startStack(t, { worker: false });
  const faces = { image_a: { bytes: await faceFile(1) }, image_b: { bytes: await faceFile(2) } };
  const cases: Array<[Record<string, string | number>, RegExp]> = [
    [{ alphas: '0,0.5,1', pacing: 'even' }, /"pacing=even" chooses the factors itself: give "frames" \(at least 3\)/],
    [{ frames: 2, pacing: 'even' }, /give "frames" \(at least 3\)/],
    [{ frames: 3, animation: 'avi' }, /"animation" lists formats from webp, gif, mp4 separated by commas; "avi" is not one/],
    [{ frames: 3, animation: 'gif,GIF' }, /"animation" names gif twice/],
    [{ frames: 3, fps: 0 }, /"fps" must be ≥ 1/],
    [{ frames: 3, background: 'c' }, /"background" must be one of morph, a, b/],
    [{ frames: 3, boomerang: 'maybe' }, /"boomerang" must be a boolean/],
  ];
  for (const [fields, message] of cases) {
    const res = await postForm(s.base, '/morph', { ...faces, ...fields });
    const body = (await res.json()) as { error: { code: string; message: string } };
    t.equal(res.status, 400, JSON.stringify(fields));
    t.equal(body.error.code, 'DIFFID_ERR_VALIDATION');
    t.match(body.error.message, message);
  }
});

const ffmpeg = spawnSync('ffmpeg', ['-version'], { stdio: 'ignore' }).status === 0;

t.test('animation=mp4 with ffmpeg on the worker: H.264 at the frame rate asked for', { skip: !ffmpeg && 'no ffmpeg here (Debian: apt-get install ffmpeg; .ci/run installs it): MP4 animations are not tested' }, async (t) => {
  const s = await startStack(t, { build: buildDemoBundle });
  const res = await postForm(s.base, '/morph', { image_a: { bytes: await faceFile(23) }, image_b: { bytes: await faceFile(24) }, frames: 4, steps: 4, animation: 'mp4', fps: 10, boomerang: 'true' });
  const { id } = (await res.json()) as { id: string };
  const job = await pollJob(s.base, id, finished);
  t.equal(job.status, 'succeeded', JSON.stringify(job.error ?? ''));
  t.match(job.result.animations, [{ format: 'mp4', frames: 6, fps: 10, url: `/jobs/${id}/animation.mp4` }]);
  const file = await fetch(`${s.base}/jobs/${id}/animation.mp4`);
  t.equal(file.headers.get('content-type'), 'video/mp4');
  const bytes = Buffer.from(await file.arrayBuffer());
  t.equal(bytes.subarray(4, 8).toString('latin1'), 'ftyp', 'an MP4 file');
  const dir = await tempDir(t, 'diffid-mp4-');
  await writeFile(join(dir, 'm.mp4'), bytes);
  const probe = spawnSync('ffprobe', ['-v', 'error', '-select_streams', 'v:0', '-count_frames', '-show_entries', 'stream=codec_name,width,height,r_frame_rate,nb_read_frames', '-of', 'json', join(dir, 'm.mp4')], { encoding: 'utf8' });
  t.match(JSON.parse(probe.stdout).streams[0], { codec_name: 'h264', width: 256, height: 256, r_frame_rate: '10/1', nb_read_frames: '6' });
});

t.test('a format the workers cannot make is refused at submission', async (t) => {
  t.throws(() => animationFormats('webp,mp4', ['webp', 'gif']), /"animation": mp4 needs ffmpeg on the workers, and this deployment's have none; webp and gif work/);
  t.same(animationFormats('gif, WEBP', ['webp', 'gif']), ['gif', 'webp']);
  t.same(animationFormats(undefined), []);
});
