// A queued job's place in line and its estimate, through HTTP and Redis: jobs wait with no
// worker running, each shows the jobs ahead of it; a compare (served first) goes ahead of them;
// once a job has finished somewhere, the estimate follows the pace it took.
import t from 'tap';
import { buildDemoBundle } from '../../gpu-worker/src/bundles/demo-bundle.ts';
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
