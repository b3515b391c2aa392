// The morphing-attack evaluation: its figures against values worked out by hand, then
// `npm run eval -- --morph-attack` on a real batch's results.zip (HTTP, Redis, a worker on the
// demo bundle), and on real photos with the embedded default when ../shared/faces is present.
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { copyFile, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import t, { type Test } from 'tap';
import { encodeImage, imageInfo } from '@diffid/shared/image';
import { facePattern } from '@diffid/shared/testing';
import { webhookKey } from '@diffid/shared/contract';
import { buildDefaultBundle } from '../../gpu-worker/src/bundles/default-bundle.ts';
import { buildDemoBundle } from '../../gpu-worker/src/bundles/demo-bundle.ts';
import { detCurve, mapMatrix, mmpmr, prodAvgMmpmr, rmmr, thresholdAtFmr, trueMatchRate, type MorphScores } from '../../gpu-worker/src/eval/attack-metrics.ts';
import type { AttackReport } from '../../gpu-worker/src/eval/morph-attack.ts';
import { postForm, startStack, type Stack } from './harness.ts';
import { receiver } from './webhook-receiver.ts';
import { webhookPolicy, type WebhookPolicy } from '../src/webhook-policy.ts';
import { tempDir } from '../../gpu-worker/test/helpers.ts';

const run = promisify(execFile);
const ROOT = join(import.meta.dirname, '../../..');
const PHOTOS = join(ROOT, '../shared/faces/photos');
const SECOND = join(ROOT, '../shared/faces/models/mobilefacenet_facegate.onnx');
const SECRET = `whsec_${Buffer.alloc(32, 9).toString('base64')}`;

t.test('the figures, against values worked out by hand', async (t) => {
  // Three morphs, two contributors each, two probes each (attempt order).
  const first: MorphScores = [
    [[0.5, 0.2], [0.6, 0.1]],
    [[0.3, null], [0.9, 0.8]],
    [[0.45, 0.41], [0.5, 0.39]],
  ];
  t.equal(mmpmr(first, 0.4), 2 / 3, 'MinMax-MMPMR: morphs 0 and 2 match both contributors');
  t.equal(prodAvgMmpmr(first, 0.4), (0.25 + 0 + 0.5) / 3, 'ProdAvg-MMPMR: ½·½, 0·1, 1·½');
  t.equal(mmpmr(first, 0.5), 0, 'at τ = 0.5 (strictly above): none');
  const tmr = trueMatchRate([0.3, 0.5, 0.7, 0.9], 0.4);
  t.equal(tmr, 0.75);
  t.ok(Math.abs((rmmr(2 / 3, tmr) as number) - (1 + 2 / 3 - 0.75)) < 1e-12, 'RMMR = 1 + (MMPMR − TMR)');
  t.equal(rmmr(0.5, null), null, 'no TMR, no RMMR');
  t.equal(trueMatchRate([], 0.4), null);

  const impostor = [0.9, 0.8, 0.1, 0.2, 0.3, 0.0, -0.1, 0.15, 0.25, 0.05];
  t.equal(thresholdAtFmr(impostor, 0.1), 0.8, 'FMR 0.1 of 10 impostor scores: one may lie above τ');
  t.equal(thresholdAtFmr(impostor.slice(1), 0.1), null, '9 scores cannot resolve an FMR of 0.1');
  t.throws(() => thresholdAtFmr(impostor, 0), /FMR/);

  // A second recognizer: everything 0.9 except morph 2, all 0.1; τ 0.5.
  const second: MorphScores = [
    [[0.9, 0.9], [0.9, 0.9]],
    [[0.9, 0.9], [0.9, 0.9]],
    [[0.1, 0.1], [0.1, 0.1]],
  ];
  t.same(mapMatrix([first, second], [0.4, 0.5]), [
    [1, 1 / 3],
    [2 / 3, 0],
  ], 'MAP: rows ≥ 1, 2 attempts; columns ≥ 1, 2 recognizers');

  t.same(detCurve([0.5, 0.9], [0.1, 0.6]), [
    { tau: 0.1, fmr: 0.5, fnmr: 0 },
    { tau: 0.5, fmr: 0.5, fnmr: 0.5 },
    { tau: 0.6, fmr: 0, fnmr: 0.5 },
    { tau: 0.9, fmr: 0, fnmr: 1 },
  ]);
});

/** Stores the named photos as identities, morphs every pair as a batch, and writes its results.zip. */
async function batchZip(t: Test, s: Stack, ended: () => Promise<unknown>, people: Array<[string, Buffer]>, o: { steps: number; alphas: number[] }, dir: string, webhook: string): Promise<string> {
  const ids: string[] = [];
  for (const [name, photo] of people) {
    const made = (await (await postForm(s.base, '/identities', { image: { bytes: photo }, name }, { prefer: 'wait=120' })).json()) as { id: string; status: string };
    t.equal(made.status, 'ready', `${name} stored`);
    ids.push(made.id);
  }
  const pairs = ids.flatMap((a, i) => ids.slice(i + 1).map((b) => [a, b]));
  const res = await fetch(`${s.base}/batches`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ kind: 'morph', pairs, alphas: o.alphas, steps: o.steps, seed: 3, webhook }) });
  t.equal(res.status, 202, 'the batch is admitted');
  const { id } = (await res.json()) as { id: string };
  await ended();
  const zip = join(dir, 'results.zip');
  await writeFile(zip, Buffer.from(await (await fetch(`${s.base}/batches/${id}/results.zip`)).arrayBuffer()));
  return zip;
}

const evalCli = (args: string[]) => run(process.execPath, ['--conditions=diffid-source', '--import', 'tsx', 'services/gpu-worker/src/eval/cli.ts', '--morph-attack', ...args], { cwd: ROOT, maxBuffer: 1 << 24 });

t.test('npm run eval -- --morph-attack on a batch\'s results.zip: report.json, a CSV and plots', async (t) => {
  const hook = await receiver(t);
  const s = await startStack(t, { build: buildDemoBundle, webhooks: { key: webhookKey(SECRET) as Buffer, policy: webhookPolicy('127.0.0.1') as WebhookPolicy } });
  const dir = await tempDir(t, 'diffid-attack-');
  const face = (seed: number, size = 256) => encodeImage(facePattern(seed, size, size), 'jpeg');
  const zip = await batchZip(t, s, () => hook.next(1, 600_000), [['Ann', await face(21)], ['Bob', await face(22)], ['=Cy', await face(23)]], { steps: 4, alphas: [0.5] }, dir, hook.url);
  // Probes: other renderings of each person (not the photos the morphs were made from), and a fourth person.
  const probes = join(dir, 'probes');
  for (const [name, seed] of [['Ann', 21], ['Bob', 22], ['=Cy', 23], ['Dee', 24]] as const) {
    await mkdir(join(probes, name), { recursive: true });
    await writeFile(join(probes, name, 'p1.png'), await encodeImage(facePattern(seed, 320, 320), 'png'));
    await writeFile(join(probes, name, 'p2.jpg'), await face(seed, 300));
  }
  const linked = join(dir, 'second.onnx');
  await copyFile(join(s.bundleDir, 'face_embedder.onnx'), linked);

  const out = join(dir, 'report');
  const { stdout } = await evalCli(['--morphs', zip, '--probes', probes, '--recognizer', linked, '--threshold', '0.5', '--bundle', s.bundleDir, '--out', out]);
  t.comment(stdout);
  const report = JSON.parse(await readFile(join(out, 'report.json'), 'utf8')) as AttackReport;
  t.equal(report.morphs, 3, 'every morph of the batch');
  t.same(report.subjects, ['=Cy', 'Ann', 'Bob', 'Dee'].sort((a, b) => a.localeCompare(b)), 'subjects by their folders (a formula-like name matched through the manifest)');
  t.same(report.recognizers.map((r) => r.name), ['demo (conditioning)', 'face-api dlib ResNet (shipped)', 'second.onnx'], "the bundle's recognizer, the shipped evaluation one and the linked one");
  t.equal(report.scores.length, 3 * 2 * 2 * 3, 'morphs × contributors × probes × recognizers');
  for (const r of report.recognizers) {
    t.equal(r.threshold_source, 'given', `${r.name}: 12 probe pairs cannot set τ at FMR 0.001: --threshold`);
    t.equal(r.threshold, 0.5);
    // MinMax-MMPMR recomputed from the report's own scores.
    const byMorph = new Map<string, Map<string, number[]>>();
    for (const s of report.scores.filter((x) => x.recognizer === r.name)) {
      const subjects = byMorph.get(s.morph) ?? new Map<string, number[]>();
      subjects.set(s.subject, [...(subjects.get(s.subject) ?? []), s.score ?? -Infinity]);
      byMorph.set(s.morph, subjects);
    }
    const matched = [...byMorph.values()].filter((subjects) => [...subjects.values()].every((scores) => Math.max(...scores) > r.threshold)).length;
    t.equal(r.mmpmr, matched / byMorph.size, `${r.name}: mmpmr ${r.mmpmr} = MinMax-MMPMR recomputed from scores`);
    const genuine = report.bona_fide.filter((b) => b.recognizer === r.name && b.kind === 'genuine');
    t.equal(r.tmr, genuine.filter((b) => b.score > r.threshold).length / genuine.length, 'TMR from the bona fide pairs');
  }
  t.same(report.map.matrix.length, 2, 'MAP over 2 attempts');
  t.same(report.map.matrix[0]?.length, 3, 'and 3 recognizers');
  const csv = (await readFile(join(out, 'scores.csv'), 'utf8')).trim().split('\r\n');
  t.equal(csv[0], 'morph,subject,probe,recognizer,score');
  t.equal(csv.length, 1 + report.scores.length, 'a CSV row per score');
  for (const png of ['histograms.png', 'map.png']) t.match(await imageInfo(await readFile(join(out, png))), { format: 'png' }, `${png} is a PNG`);
  t.match(await readFile(join(out, 'report.html'), 'utf8'), /<img src="histograms\.png"/, 'a page shows the plots and the table');

  // With a looser FMR the probes' 24 impostor pairs are enough: τ from them, never from the morphs.
  const fromProbes = join(dir, 'from-probes');
  await evalCli(['--morphs', zip, '--probes', probes, '--fmr', '0.05', '--bundle', s.bundleDir, '--out', fromProbes]);
  const second = JSON.parse(await readFile(join(fromProbes, 'report.json'), 'utf8')) as AttackReport;
  const r = second.recognizers[0] as AttackReport['recognizers'][number];
  t.equal(r.threshold_source, 'probes');
  t.equal(r.threshold, thresholdAtFmr(second.bona_fide.filter((b) => b.recognizer === r.name && b.kind === 'impostor').map((b) => b.score), 0.05), 'τ at FMR 0.05 of the impostor pairs');

  const refused = await evalCli(['--morphs', zip, '--probes', probes, '--bundle', s.bundleDir, '--out', join(dir, 'x')]).then(
    () => null,
    (err: { code: number; stderr: string }) => err,
  );
  t.ok(refused && refused.code !== 0, 'too few probes and no --threshold: refused');
  t.match(refused?.stderr, /needs at least 1000 to set τ; add probes .* or give --threshold/);
});

t.test('on real photos with the embedded default, a morph of two people scores above impostor level against both', { skip: !existsSync(SECOND) && `../shared/faces is absent (looked for ${SECOND})` }, async (t) => {
  const hook = await receiver(t);
  const s = await startStack(t, { build: buildDefaultBundle, webhooks: { key: webhookKey(SECRET) as Buffer, policy: webhookPolicy('127.0.0.1') as WebhookPolicy } });
  const dir = await tempDir(t, 'diffid-attack-real-');
  const photo = (name: string) => readFile(join(PHOTOS, name));
  const zip = await batchZip(t, s, () => hook.next(1, 900_000), [['obama', await photo('fr_obama.jpg')], ['biden', await photo('fr_biden.jpg')]], { steps: 20, alphas: [0.4, 0.5, 0.6, 0.7] }, dir, hook.url);
  // Obama's probe is a photo the morph was not made from; Biden has one photo only, so it is his
  // probe too. Two more people give the impostor level.
  const probes = join(dir, 'probes');
  for (const [subject, file] of [['obama', 'fr_obama2.jpg'], ['biden', 'fr_biden.jpg'], ['bryan', 'max_Bryan.png'], ['luciano', 'max_Luciano.png']] as const) {
    await mkdir(join(probes, subject), { recursive: true });
    await copyFile(join(PHOTOS, file), join(probes, subject, file));
  }
  const out = join(dir, 'report');
  const { stdout } = await evalCli(['--morphs', zip, '--probes', probes, '--recognizer', SECOND, '--threshold', '0.3', '--bundle', s.bundleDir, '--out', out]);
  t.comment(stdout);
  const report = JSON.parse(await readFile(join(out, 'report.json'), 'utf8')) as AttackReport;
  t.equal(report.morphs, 4, 'one morph, four factors');
  for (const r of report.recognizers) {
    const impostorLevel = Math.max(...report.bona_fide.filter((b) => b.recognizer === r.name && b.kind === 'impostor').map((b) => b.score));
    const score = (morph: string, subject: string) => report.scores.find((x) => x.recognizer === r.name && x.morph === morph && x.subject === subject)?.score ?? -1;
    const frames = [...new Set(report.scores.map((x) => x.morph))];
    for (const m of frames) t.comment(`${r.name}: ${m} vs obama ${score(m, 'obama').toFixed(3)}, vs biden ${score(m, 'biden').toFixed(3)}; impostor level ${impostorLevel.toFixed(3)}`);
    // The frame an attacker would pick: the one closest to both.
    const best = frames.reduce((a, b) => (Math.min(score(b, 'obama'), score(b, 'biden')) > Math.min(score(a, 'obama'), score(a, 'biden')) ? b : a));
    t.ok(score(best, 'obama') > impostorLevel && score(best, 'biden') > impostorLevel, `${r.name}: its best frame (${best}) scores above every impostor pair against both`);
  }
});
