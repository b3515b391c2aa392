// The diffid command end to end against the service: generate, morph with an animation, compare,
// jobs, --json, exit codes by outcome, and Ctrl-C canceling the job it follows. Its job options
// come from the contract the service serves (cli-contract.test.ts tries one with a field added).
// It runs as users run it — the built bin when `npm run build` made one, else the source under tsx.
import { existsSync } from 'node:fs';
import { readFile, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import t from 'tap';
import { animationInfo, imageInfo } from '@diffid/shared/image';
import { buildDemoBundle } from '../../services/gpu-worker/src/bundles/demo-bundle.ts';
import { startStack } from '../../services/api/test/harness.ts';
import { faceFile } from '../../services/api/test/images.ts';
import { freePort } from '../../services/api/src/free-port.ts';
import { tempDir } from '../../services/gpu-worker/test/helpers.ts';
import { LINKED, diffid } from './diffid-command.ts';

t.test('npm links the diffid command', async (t) => {
  t.ok(existsSync(LINKED), `${LINKED} exists (npx diffid finds it)`);
});

t.test('generate, morph, compare and jobs from the command line', async (t) => {
  const s = await startStack(t, { build: buildDemoBundle });
  const dir = await tempDir(t, 'diffid-cli-');
  const env = { DIFFID_URL: s.base };
  for (const [name, seed] of [['a.jpg', 1], ['b.jpg', 2]] as const) await writeFile(join(dir, name), await faceFile(seed));

  // -n and --guidance: the names users typed before the flags came from the contract, as aliases.
  const gen = await diffid(['generate', join(dir, 'a.jpg'), '--prompt', 'a portrait', '-n', '2', '--seed', '5', '--steps', '4', '--guidance', '1', '-o', join(dir, 'out')], env);
  t.equal(gen.code, 0, gen.stderr);
  t.match(gen.stdout, /image 0, seed 5, similarity 0\.\d{3}\nimage 1, seed 6, similarity/);
  t.match(gen.stderr, /^job [0-9a-f-]{36}\n/, 'the job id first');
  t.match(gen.stderr, /succeeded \[[=█░-]+\] 4\/4 steps/, 'a progress bar to the last step');
  t.same((await readdir(join(dir, 'out'))).sort(), ['generated-0.png', 'generated-1.png']);
  t.match(await imageInfo(await readFile(join(dir, 'out/generated-1.png'))), { format: 'png', width: 256 });

  const morph = await diffid(['morph', join(dir, 'a.jpg'), join(dir, 'b.jpg'), '--frames', '4', '--steps', '4', '--webp', join(dir, 'm.webp'), '-i', 'fps=10', '--boomerang', '--json'], env);
  t.equal(morph.code, 0, morph.stderr);
  const job = JSON.parse(morph.stdout) as { status: string; result: { images: unknown[]; animations: Array<{ frames: number; fps: number }> } };
  t.equal(job.status, 'succeeded');
  t.equal(job.result.images.length, 4);
  t.match(job.result.animations, [{ fps: 10 }], 'a field given as -i name=value');
  t.match(await animationInfo(await readFile(join(dir, 'm.webp'))), { format: 'webp', frames: 6 }, '4 frames there and 2 back');
  t.notMatch(morph.stderr, /steps/, 'no progress bar with --json');

  const compare = await diffid(['compare', join(dir, 'a.jpg'), join(dir, 'a.jpg')], env);
  t.equal(compare.code, 0, compare.stderr);
  t.match(compare.stdout, /^similarity 1\.0000|^similarity 0\.99\d\d/);

  const id = /job ([0-9a-f-]{36})/.exec(gen.stderr)?.[1] as string;
  const got = await diffid(['jobs', 'get', id], env);
  t.match(got.stdout, new RegExp(`job ${id}: generate succeeded, step 4/4`));
  const listed = await diffid(['jobs', 'list', '--kind', 'generate'], env);
  t.match(listed.stdout, new RegExp(`^${id}  generate  succeeded  `, 'm'), 'jobs list shows it');
  t.equal(listed.stdout.trim().split('\n').length, 1, 'and only the generate');
  const bad = await diffid(['jobs', 'list', '--status', 'lost'], env);
  t.equal(bad.code, 2, 'a status the API does not know: a usage error');
  t.match(bad.stderr, /DIFFID_ERR_VALIDATION/);
});

t.test('identities add, list and rm, and a generate by --identity', async (t) => {
  const s = await startStack(t, { build: buildDemoBundle });
  const dir = await tempDir(t, 'diffid-cli-identities-');
  const env = { DIFFID_URL: s.base };
  await writeFile(join(dir, 'a.jpg'), await faceFile(3));
  const add = await diffid(['identities', 'add', join(dir, 'a.jpg'), '--name', 'subject 3', '--json'], env);
  t.equal(add.code, 0, add.stderr);
  const identity = JSON.parse(add.stdout) as { id: string; status: string; name: string };
  t.match(identity, { status: 'ready', name: 'subject 3' }, '--name drawn from the contract\'s form');
  const gen = await diffid(['generate', '--identity', identity.id, '--prompt', 'a portrait', '--steps', '3'], env);
  t.equal(gen.code, 0, gen.stderr);
  t.match(gen.stdout, /image 0, seed \d+, similarity 0\.\d{3}/);
  await writeFile(join(dir, 'b.jpg'), await faceFile(4));
  const morph = await diffid(['morph', '--identity-a', identity.id, join(dir, 'b.jpg'), '--alpha', '0.5', '--steps', '3', '--json'], env);
  t.equal(morph.code, 0, morph.stderr);
  t.match(JSON.parse(morph.stdout), { status: 'succeeded', params: { identity_a: identity.id } }, 'the one file given is face B: the identity stands in for A');
  const list = await diffid(['identities', 'list'], env);
  t.match(list.stdout, new RegExp(`^${identity.id}  ready  1 photo\\(s\\)  expires .*  subject 3$`, 'm'));
  t.equal((await diffid(['identities', 'rm', identity.id], env)).code, 0);
  const again = await diffid(['identities', 'rm', identity.id], env);
  t.equal(again.code, 2, 'a second rm: the API says 404, a usage error');
  t.match(again.stderr, /DIFFID_ERR_IDENTITY_NOT_FOUND/);
});

t.test('batches create, wait (with its zip), get and jobs list --batch; verify a frame', async (t) => {
  const s = await startStack(t, { build: buildDemoBundle });
  const dir = await tempDir(t, 'diffid-cli-batches-');
  const env = { DIFFID_URL: s.base };
  const ids: string[] = [];
  for (const seed of [5, 6]) {
    await writeFile(join(dir, `${seed}.jpg`), await faceFile(seed));
    const add = await diffid(['identities', 'add', join(dir, `${seed}.jpg`), '--name', `subject ${seed}`, '--json'], env);
    ids.push((JSON.parse(add.stdout) as { id: string }).id);
  }
  await writeFile(join(dir, 'batch.json'), JSON.stringify({ kind: 'morph', pairs: [ids], alphas: [0.5], steps: 2 }));
  const created = await diffid(['batches', 'create', join(dir, 'batch.json'), '--json'], env);
  t.equal(created.code, 0, created.stderr);
  const batch = JSON.parse(created.stdout) as { id: string; jobs: number };
  t.equal(batch.jobs, 1);
  const waited = await diffid(['batches', 'wait', batch.id, '-o', join(dir, 'out.zip'), '--every', '1'], env);
  t.equal(waited.code, 0, waited.stderr);
  t.match(waited.stdout, new RegExp(`batch ${batch.id}: morph completed, 1 jobs — 0 pending, 0 queued, 0 running, 1 succeeded`));
  const zip = await readFile(join(dir, 'out.zip'));
  t.equal(zip.subarray(0, 4).toString('latin1'), 'PK\x03\x04', 'a zip was written');
  t.ok(zip.includes(Buffer.from('manifest.csv')), 'with its manifest');
  const listed = await diffid(['jobs', 'list', '--batch', batch.id], env);
  t.match(listed.stdout, /^[0-9a-f-]{36}  morph  succeeded  /m, 'jobs list --batch shows its job');
  // A frame of the batch, checked from the command line: its C2PA manifest holds; a photo has none.
  const frame = await (await fetch(`${s.base}/jobs?batch=${batch.id}`)).json() as { jobs: Array<{ result: { images: Array<{ url: string }> } }> };
  await writeFile(join(dir, 'frame.png'), Buffer.from(await (await fetch(`${s.base}${frame.jobs[0]?.result.images[0]?.url}`)).arrayBuffer()));
  const verified = await diffid(['verify', join(dir, 'frame.png')], env);
  t.equal(verified.code, 0, verified.stderr);
  t.match(verified.stdout, /^C2PA: valid, signed by CN=Diff-ID Serve/m);
  t.match(verified.stdout, /c2pa\.created \(compositeWithTrainedAlgorithmicMedia\) by Diff-ID Serve/);
  t.match((await diffid(['verify', join(dir, '5.jpg')], env)).stdout, /^C2PA: no manifest\nXMP: none$/m);
  const notJson = await diffid(['batches', 'create', join(dir, '5.jpg')], env);
  t.equal(notJson.code, 2, 'a file that is not JSON: a usage error');
  const gone = await diffid(['batches', 'get', '00000000-0000-4000-8000-000000000000'], env);
  t.equal(gone.code, 2);
  t.match(gone.stderr, /DIFFID_ERR_BATCH_NOT_FOUND/);
});

t.test('exit codes say what went wrong', async (t) => {
  const s = await startStack(t);
  const dir = await tempDir(t, 'diffid-cli-');
  const env = { DIFFID_URL: s.base };
  await writeFile(join(dir, 'a.jpg'), await faceFile(3));
  await writeFile(join(dir, 'not-an-image.jpg'), 'hello');

  const failed = await diffid(['generate', join(dir, 'a.jpg'), '--prompt', 'x', '--steps', '2', '--no-progress', '--json'], { ...env });
  t.equal(failed.code, 0, 'the tiny bundle generates');
  const badFace = await diffid(['jobs', 'get', 'no-such-job'], env);
  t.equal(badFace.code, 2, 'a 4xx answer is exit 2');
  t.match(badFace.stderr, /DIFFID_ERR_JOB_NOT_FOUND/);
  const refused = await diffid(['generate', join(dir, 'not-an-image.jpg'), '--prompt', 'x'], env);
  t.equal(refused.code, 2);
  t.match(refused.stderr, /DIFFID_ERR_UNSUPPORTED_IMAGE: "image" is not a JPEG, PNG or WebP image/);
  const usage = await diffid(['generate', join(dir, 'a.jpg')], env);
  t.equal(usage.code, 2, 'a missing option is a usage error');
  t.match(usage.stderr, /required option '-p, --prompt <text>' not specified/);
  const range = await diffid(['generate', join(dir, 'a.jpg'), '-p', 'x', '--steps', '500'], env);
  t.equal(range.code, 2, "a value out of the contract's range is a usage error");
  t.match(range.stderr, /option '--steps <n>' argument '500' is invalid\. --steps must be an integer from 1 to 150\./);
  const choice = await diffid(['generate', join(dir, 'a.jpg'), '-p', 'x', '--on-missing-face', 'ignore'], env);
  t.equal(choice.code, 2);
  t.match(choice.stderr, /Allowed choices are fail, skip\./);
  const missing = await diffid(['compare', join(dir, 'nope.jpg'), join(dir, 'a.jpg')], env);
  t.equal(missing.code, 2);
  t.match(missing.stderr, /cannot read .*nope\.jpg: ENOENT/);
  const nowhere = { DIFFID_URL: `http://127.0.0.1:${await freePort()}` };
  const down = await diffid(['jobs', 'get', 'x'], nowhere);
  t.equal(down.code, 3, 'no service is exit 3');
  t.match(down.stderr, /cannot reach the service \(ECONNREFUSED\); check --url or DIFFID_URL/);
  const noContract = await diffid(['generate', join(dir, 'a.jpg'), '-p', 'x'], nowhere);
  t.equal(noContract.code, 3, 'a job command with no contract to draw its options from is exit 3 too');
  t.match(noContract.stderr, /cannot reach the service \(ECONNREFUSED\); check --url or DIFFID_URL/);
});

t.test('Ctrl-C cancels the job being followed', async (t) => {
  // No worker: the job waits in the queue until the interrupt cancels it.
  const s = await startStack(t, { worker: false });
  const dir = await tempDir(t, 'diffid-cli-');
  await writeFile(join(dir, 'a.jpg'), await faceFile(4));
  let sent = false;
  const run = await diffid(['generate', join(dir, 'a.jpg'), '--prompt', 'x'], { DIFFID_URL: s.base }, (text, child) => {
    if (!sent && /queued \[/.test(text)) {
      sent = true;
      child.kill('SIGINT');
    }
  });
  t.equal(run.code, 130, run.stderr);
  t.match(run.stderr, /canceling job/);
  const id = /job ([0-9a-f-]{36})/.exec(run.stderr)?.[1] as string;
  const view = (await (await fetch(`${s.base}/jobs/${id}`)).json()) as { status: string };
  t.equal(view.status, 'canceled', 'the job itself was canceled');
  t.match(run.stdout, new RegExp(`job ${id} canceled`));
});
