// Prefer: wait=N holds a job-creating request until the job finishes or N seconds pass.
import t from 'tap';
import { preferWait } from '../src/routes/job-routes.ts';
import { call } from './contract.ts';
import { startStack } from './harness.ts';
import { faceFile } from './images.ts';

async function form(fields: Record<string, Buffer | string>): Promise<FormData> {
  const fd = new FormData();
  for (const [k, v] of Object.entries(fields)) {
    if (typeof v === 'string') fd.append(k, v);
    else fd.append(k, new Blob([v]), `${k}.jpg`);
  }
  return fd;
}

t.test('the Prefer header is parsed as RFC 7240 says, capped at 60 seconds', async (t) => {
  t.equal(preferWait('wait=10'), 10);
  t.equal(preferWait('respond-async, wait=5'), 5);
  t.equal(preferWait('handling=lenient; wait="7"'), 7);
  t.equal(preferWait('wait=600'), 60);
  t.equal(preferWait('return=minimal'), undefined);
  t.equal(preferWait(undefined), undefined);
  t.equal(preferWait(['foo', 'wait=3']), 3);
});

t.test('a compare with Prefer: wait answers 200 with the finished job in one request', async (t) => {
  const s = await startStack(t);
  const body = await form({ image_a: await faceFile(1), image_b: await faceFile(2) });
  const res = await call(t, s.base, 'POST', '/compare', '/compare', { body, headers: { prefer: 'wait=30' } });
  t.equal(res.status, 200);
  t.equal(res.headers.get('preference-applied'), 'wait=30');
  t.match(res.headers.get('location'), /^\/jobs\/[0-9a-f-]{36}$/);
  t.equal(res.body.kind, 'compare');
  t.equal(res.body.status, 'succeeded');
  t.ok(Math.abs(res.body.result.similarity) <= 1, `similarity ${res.body.result.similarity}`);
  t.same(
    res.body.result.inputs.map((i: { input: string; faces: Array<{ score: number }>; face_index: number }) => [i.input, i.faces.map((f) => f.score), i.face_index]),
    [['image_a', [1], 0], ['image_b', [1], 0]],
    'no detector: each image is one aligned portrait',
  );
  t.same(res.body.result.images, []);
});

t.test('with Prefer: wait=0 the job comes back at once as it is (202); without it, the 202 receipt', async (t) => {
  const s = await startStack(t, { worker: false });
  const body = await form({ image: await faceFile(3), prompt: 'x' });
  const res = await call(t, s.base, 'POST', '/generate', '/generate', { body, headers: { prefer: 'wait=0' } });
  t.equal(res.status, 202);
  t.equal(res.body.status, 'queued');
  t.equal(res.body.kind, 'generate');
  t.ok(res.body.params, 'the body is the job, with its parameters');
  const plain = await call(t, s.base, 'POST', '/generate', '/generate', { body: await form({ image: await faceFile(3), prompt: 'x' }) });
  t.equal(plain.status, 202);
  t.same(Object.keys(plain.body).sort(), ['id', 'links', 'status']);
  t.equal(plain.headers.get('preference-applied'), null);
});

t.test('compare jobs run before queued generate jobs', async (t) => {
  const s = await startStack(t, { worker: false });
  const gen = await call(t, s.base, 'POST', '/generate', '/generate', { body: await form({ image: await faceFile(4), prompt: 'x' }) });
  const cmp = await call(t, s.base, 'POST', '/compare', '/compare', { body: await form({ image_a: await faceFile(5), image_b: await faceFile(6) }) });
  const { Queue } = await import('bullmq');
  const queue = new Queue('jobs', { connection: s.redis, prefix: s.prefix });
  t.teardown(() => queue.close());
  const next = await queue.getJobs(['prioritized', 'waiting'], 0, 0, true);
  t.equal(next[0]?.id, cmp.body.id, 'the compare is first in line');
  t.not(gen.body.id, cmp.body.id);
});
