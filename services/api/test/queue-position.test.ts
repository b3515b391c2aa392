// A queued job's place in line and its estimate, through HTTP and Redis: jobs wait with no
// worker running, each shows the jobs ahead of it; a compare (served first) goes ahead of them;
// once a job has finished somewhere, the estimate follows the pace it took; priority moves a job
// up or down the line, high only for the tenants allowed.
import t from 'tap';
import { buildDemoBundle } from '../../gpu-worker/src/bundles/demo-bundle.ts';
import { keyRing, parseApiKeys } from '../src/auth.ts';
import { assertContract } from './contract.ts';
import { postForm, startStack } from './harness.ts';
import { faceFile } from './images.ts';

t.test('queued jobs show the jobs ahead of them and, once one job has finished, an estimate', async (t) => {
  const s = await startStack(t, { build: buildDemoBundle });
  const face = { bytes: await faceFile(5) };
  // One job runs to the end, so that the pace is known; then the worker stops and jobs wait.
  const first = (await (await postForm(s.base, '/generate', { image: face, prompt: 'a', steps: 2 }, { prefer: 'wait=60' })).json()) as { status: string };
  t.equal(first.status, 'succeeded');
  await s.worker?.close();
  const submit = async (path: string, fields: Record<string, unknown>) => ((await (await postForm(s.base, path, fields as never)).json()) as { id: string }).id;
  const generates = [await submit('/generate', { image: face, prompt: 'a', steps: 2 }), await submit('/generate', { image: face, prompt: 'b', steps: 2 })];
  const view = async (id: string) => (await (await fetch(`${s.base}/jobs/${id}`)).json()) as { status: string; queue_position?: number; eta_s?: number };
  const before = await Promise.all(generates.map(view));
  t.same(before.map((v) => [v.status, v.queue_position]), [['queued', 0], ['queued', 1]], 'in the order they came');
  t.ok(typeof before[1]?.eta_s === 'number' && (before[1]?.eta_s as number) >= (before[0]?.eta_s as number), `an estimate that grows down the line (${before.map((v) => v.eta_s).join(', ')} s)`);
  const compare = await submit('/compare', { image_a: face, image_b: face });
  t.equal((await view(compare)).queue_position, 0, 'a compare is served first');
  t.same((await Promise.all(generates.map(view))).map((v) => v.queue_position), [1, 2], 'the generates now wait behind it');
});

t.test('priority: high goes ahead of normal, low behind it; high only for the tenants allowed', async (t) => {
  const ALPHA = 'alpha-key-0123456789abcdef';
  const BETA = 'beta-key-0123456789abcdef0';
  const keys = keyRing(parseApiKeys(`alpha:${ALPHA},beta:${BETA}`).tenants);
  const s = await startStack(t, { build: buildDemoBundle, worker: false, access: { keys, rateLimitPerMinute: 10_000, maxStreamsPerKey: 50, highPriorityTenants: ['alpha'] } });
  const face = { bytes: await faceFile(6) };
  const auth = { authorization: `Bearer ${ALPHA}` };
  const submit = async (priority: string) => ((await (await postForm(s.base, '/generate', { image: face, prompt: 'a', steps: 2, priority }, auth)).json()) as { id: string }).id;
  const ids = { low: await submit('low'), normal: await submit('normal'), high: await submit('high') };
  const place = async (id: string) => ((await (await fetch(`${s.base}/jobs/${id}`, { headers: auth })).json()) as { queue_position: number; params: { priority: string } });
  t.same([(await place(ids.high)).queue_position, (await place(ids.normal)).queue_position, (await place(ids.low)).queue_position], [0, 1, 2], 'high, normal, low, whatever the order they came in');
  t.equal((await place(ids.low)).params.priority, 'low', 'the job records it');
  const refused = await postForm(s.base, '/generate', { image: face, prompt: 'a', steps: 2, priority: 'high' }, { authorization: `Bearer ${BETA}` });
  t.equal(refused.status, 403);
  const body = (await refused.json()) as { error: { code: string; message: string } };
  t.equal(body.error.code, 'DIFFID_ERR_PRIORITY_NOT_ALLOWED');
  assertContract(t, 'POST', '/generate', 403, body);
  t.equal((await postForm(s.base, '/generate', { image: face, prompt: 'a', steps: 2, priority: 'low' }, { authorization: `Bearer ${BETA}` })).status, 202, 'any key may ask for low');
});
