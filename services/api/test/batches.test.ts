// POST /batches through HTTP, Redis and a worker on the demo bundle: a morph batch of stored
// identities queued in waves under a key limit of two jobs, listed page by page by batch, ended
// with one signed webhook, and downloaded as a zip whose manifest matches the jobs; a generate
// batch canceled before it ran; another key sees none of it; bad batches get 4xx.
import t from 'tap';
import yauzl from 'yauzl';
import { buildDemoBundle } from '../../gpu-worker/src/bundles/demo-bundle.ts';
import { batchKeys, feedingBatchesKey, verifyWebhook, webhookKey } from '@diffid/shared/contract';
import { keyRing, parseApiKeys } from '../src/auth.ts';
import { webhookPolicy, type WebhookPolicy } from '../src/webhook-policy.ts';
import { assertContract } from './contract.ts';
import { postForm, startStack } from './harness.ts';
import { faceFile } from './images.ts';
import { receiver, type Received } from './webhook-receiver.ts';

const ALPHA = 'alpha-key-0123456789abcdef';
const BETA = 'beta-key-0123456789abcdef0';
const keys = keyRing(parseApiKeys(`alpha:${ALPHA},beta:${BETA}`).tenants);
const auth = (key: string) => ({ authorization: `Bearer ${key}` });
const SECRET = `whsec_${Buffer.alloc(32, 7).toString('base64')}`;
const signingKey = webhookKey(SECRET) as Buffer;
/** Two open jobs per key: a batch of more must go in waves. */
const limits = { maxJobsPerKey: 2, maxQueuedStepsPerKey: 5_000, maxQueueDepth: 1000, maxInputBytesPerKey: 2 ** 30, maxInputBytes: 2 ** 32 };

/** The entries of a zip, by name. */
function unzip(bytes: Buffer): Promise<Map<string, Buffer>> {
  return new Promise((resolve, reject) => {
    yauzl.fromBuffer(bytes, { lazyEntries: true }, (err, zip) => {
      if (err || !zip) return reject(err ?? new Error('no zip'));
      const files = new Map<string, Buffer>();
      zip.on('entry', (entry: yauzl.Entry) => {
        zip.openReadStream(entry, (e, stream) => {
          if (e || !stream) return reject(e ?? new Error('no stream'));
          const chunks: Buffer[] = [];
          stream.on('data', (c: Buffer) => chunks.push(c));
          stream.on('end', () => {
            files.set(entry.fileName, Buffer.concat(chunks));
            zip.readEntry();
          });
          stream.on('error', reject);
        });
      });
      zip.on('end', () => resolve(files));
      zip.on('error', reject);
      zip.readEntry();
    });
  });
}

/** CSV rows as field arrays (RFC 4180 quoting). */
function parseCsv(text: string): string[][] {
  const rows: string[][] = [];
  let row: string[] = [];
  let field = '';
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i] as string;
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') (field += '"'), i++;
      else if (c === '"') quoted = false;
      else field += c;
    } else if (c === '"') quoted = true;
    else if (c === ',') row.push(field), (field = '');
    else if (c === '\n') row.push(field.replace(/\r$/, '')), rows.push(row), (row = []), (field = '');
    else field += c;
  }
  return rows;
}

t.test('a morph batch of identities runs in waves, lists by batch, ends once, downloads as a zip', async (t) => {
  const hook = await receiver(t);
  const s = await startStack(t, {
    build: buildDemoBundle,
    access: { keys, rateLimitPerMinute: 10_000, maxStreamsPerKey: 50 },
    limits,
    webhooks: { key: signingKey, policy: webhookPolicy('127.0.0.1') as WebhookPolicy },
  });
  const json = async (res: Response) => (await res.json()) as Record<string, any>;
  const store = async (seed: number, name: string, key = ALPHA) => {
    const body = await json(await postForm(s.base, '/identities', { image: { bytes: await faceFile(seed) }, name }, auth(key)));
    t.equal(body.status, 'ready', `identity ${name} stored`);
    return body.id as string;
  };
  const [ann, bob, cy] = [await store(21, 'Ann'), await store(22, '=Bob'), await store(23, 'Cy, "Jr."')];
  const post = (body: unknown, key = ALPHA) => fetch(`${s.base}/batches`, { method: 'POST', headers: { ...auth(key), 'content-type': 'application/json' }, body: JSON.stringify(body) });

  const request = { kind: 'morph', pairs: [[ann, bob], [ann, cy], [bob, cy]], alphas: [0.3, 0.7], steps: 2, seed: 5, webhook: hook.url };
  const res = await post(request);
  const batch = await json(res);
  assertContract(t, 'POST', '/batches', res.status, batch);
  t.equal(res.status, 202, 'admitted');
  t.equal(res.headers.get('location'), `/batches/${batch.id}`);
  t.equal(batch.jobs, 3);
  t.equal(batch.admission, 'waves');
  t.equal(batch.priority, 'low', 'a batch runs at low priority unless it asks');
  t.equal(batch.counts.queued + batch.counts.running, 2, 'the first wave fills the key\'s two open jobs');
  t.equal(batch.counts.pending, 1, 'and the third waits for room');

  // The batch's one event, when its last job ends: waits on the receiver, not on a clock.
  const [ended] = await hook.next(1, 600_000);
  t.ok(ended, 'batch.ended arrived');
  const event = JSON.parse((ended as Received).body) as { type: string; data: Record<string, any> };
  t.equal(event.type, 'batch.ended');
  t.ok(verifyWebhook(signingKey, { id: String(ended?.headers['webhook-id']), timestamp: String(ended?.headers['webhook-timestamp']), signature: String(ended?.headers['webhook-signature']) }, (ended as Received).body), 'signed');
  t.equal(event.data.id, batch.id);
  t.equal(event.data.status, 'completed');
  t.same(event.data.counts, { pending: 0, queued: 0, running: 0, succeeded: 3, failed: 0, canceled: 0 });

  const got = await fetch(`${s.base}/batches/${batch.id}`, { headers: auth(ALPHA) });
  const done = await json(got);
  assertContract(t, 'GET', '/batches/{id}', got.status, done);
  t.equal(done.progress, 1);
  t.notOk('eta_s' in done, 'no estimate once ended');

  // Its jobs, page by page, each marked with the batch; the key's own list has them too.
  const listed: Array<Record<string, any>> = [];
  let cursor: string | null = null;
  let pages = 0;
  do {
    const page = await json(await fetch(`${s.base}/jobs?batch=${batch.id}&limit=2${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`, { headers: auth(ALPHA) }));
    listed.push(...page.jobs);
    cursor = page.next_cursor;
    pages++;
  } while (cursor && pages < 5);
  t.equal(pages, 2, 'two pages of two');
  t.equal(new Set(listed.map((j) => j.id)).size, 3, 'three jobs');
  t.ok(listed.every((j) => j.batch === batch.id && j.kind === 'morph' && j.status === 'succeeded' && j.params.priority === 'low'), 'each is a succeeded morph of the batch, at low priority');
  t.same(listed.map((j) => [j.params.identity_a, j.params.identity_b]).sort(), request.pairs.map((p) => [...p]).sort(), 'one job per pair');

  // Another key sees none of it.
  for (const path of [`/batches/${batch.id}`, `/batches/${batch.id}/results.zip`, `/jobs?batch=${batch.id}`]) {
    const other = await fetch(`${s.base}${path}`, { headers: auth(BETA) });
    t.equal(other.status, 404, `${path}: 404 for another key`);
    t.equal((await json(other)).error.code, 'DIFFID_ERR_BATCH_NOT_FOUND');
  }
  t.equal((await fetch(`${s.base}/batches/${batch.id}`, { method: 'DELETE', headers: auth(BETA) })).status, 404, "another key's DELETE: 404");

  // The archive: every frame, and a manifest row for each that says what it is.
  const zipped = await fetch(`${s.base}/batches/${batch.id}/results.zip`, { headers: auth(ALPHA) });
  t.equal(zipped.status, 200);
  t.equal(zipped.headers.get('content-type'), 'application/zip');
  const files = await unzip(Buffer.from(await zipped.arrayBuffer()));
  const [header, ...rows] = parseCsv((files.get('manifest.csv') as Buffer).toString('utf8'));
  t.same(header, ['job', 'index', 'status', 'identity_a', 'name_a', 'identity_b', 'name_b', 'prompt', 'alpha', 'strategy', 'seed', 'similarity_a', 'similarity_b', 'similarity', 'file']);
  t.equal(rows.length, 6, 'three pairs × two factors');
  const col = (name: string) => (header as string[]).indexOf(name);
  const names = new Map([[ann, 'Ann'], [bob, "'=Bob"], [cy, 'Cy, "Jr."']]);
  for (const row of rows) {
    const job = listed.find((j) => j.id === row[col('job')]);
    t.ok(job, `row ${row[col('index')]}: a job of the batch`);
    t.equal(row[col('name_a')], names.get(row[col('identity_a')] as string), 'contributor A by name (a formula made inert, quotes kept)');
    t.equal(row[col('name_b')], names.get(row[col('identity_b')] as string), 'contributor B by name');
    t.equal(row[col('strategy')], 'slerp');
    t.ok(['0.3', '0.7'].includes(row[col('alpha')] as string), 'its factor');
    const image = job?.result.images.find((i: Record<string, any>) => String(i.alpha) === row[col('alpha')]);
    t.equal(Number(row[col('similarity_a')]), image.arcface_similarity_a, 'the job\'s similarity to A');
    t.equal(Number(row[col('similarity_b')]), image.arcface_similarity_b, 'and to B');
    const png = files.get(row[col('file')] as string);
    const served = Buffer.from(await (await fetch(`${s.base}${image.url}`, { headers: auth(ALPHA) })).arrayBuffer());
    t.ok(png?.equals(served), `${row[col('file')]} is the job's PNG`);
  }
  t.equal(files.size, 7, 'six PNGs and the manifest');
});

t.test('a generate batch canceled before it ran; bad batches get 4xx', async (t) => {
  const s = await startStack(t, { build: buildDemoBundle, access: { keys, rateLimitPerMinute: 10_000, maxStreamsPerKey: 50 }, limits, batches: { maxJobsPerKey: 8 } });
  const json = async (res: Response) => (await res.json()) as Record<string, any>;
  const ann = (await json(await postForm(s.base, '/identities', { image: { bytes: await faceFile(21) }, name: 'Ann' }, auth(ALPHA)))).id as string;
  const bobs = (await json(await postForm(s.base, '/identities', { image: { bytes: await faceFile(22) } }, auth(BETA)))).id as string;
  const post = (body: unknown, key = ALPHA, type = 'application/json') => fetch(`${s.base}/batches`, { method: 'POST', headers: { ...auth(key), 'content-type': type }, body: typeof body === 'string' ? body : JSON.stringify(body) });

  const res = await post({ kind: 'generate', identities: [ann], prompts: ['a', 'b', 'c', 'd', 'e', 'f'], steps: 2 });
  const batch = await json(res);
  t.equal(res.status, 202);
  t.equal(batch.jobs, 6);
  const canceledRes = await fetch(`${s.base}/batches/${batch.id}`, { method: 'DELETE', headers: auth(ALPHA) });
  const canceled = await json(canceledRes);
  assertContract(t, 'DELETE', '/batches/{id}', canceledRes.status, canceled);
  t.ok(['canceling', 'canceled'].includes(canceled.status), `canceled (${canceled.status})`);
  t.equal(canceled.counts.pending, 0, 'nothing is left to queue');
  t.equal(canceled.counts.queued, 0, 'nothing is left queued');
  t.ok(canceled.counts.canceled >= 4, `the jobs not yet running are canceled (${canceled.counts.canceled})`);
  t.equal(canceled.counts.canceled + canceled.counts.running + canceled.counts.succeeded + canceled.counts.failed, 6, 'every job is counted once');

  const bad: Array<[string, unknown, number, string, string?]> = [
    ['an unknown field', { kind: 'generate', identities: [ann], prompts: ['a'], colour: 'red' }, 400, 'DIFFID_ERR_UNEXPECTED_FIELD'],
    ['a field the batch sets', { kind: 'generate', identities: [ann], prompts: ['a'], prompt: 'b' }, 400, 'DIFFID_ERR_UNEXPECTED_FIELD'],
    ['pairs in a generate batch', { kind: 'generate', identities: [ann], prompts: ['a'], pairs: [[ann, ann]] }, 400, 'DIFFID_ERR_UNEXPECTED_FIELD'],
    ['a morph batch without pairs', { kind: 'morph', alphas: [0.5] }, 400, 'DIFFID_ERR_VALIDATION'],
    ['a pair of one', { kind: 'morph', pairs: [[ann]], alphas: [0.5] }, 400, 'DIFFID_ERR_VALIDATION'],
    ['steps out of range', { kind: 'generate', identities: [ann], prompts: ['a'], steps: 100_000 }, 400, 'DIFFID_ERR_VALIDATION', 'job 0 of the batch'],
    ['a job no key could ever queue', { kind: 'morph', pairs: [[ann, ann]], frames: 64, steps: 150 }, 400, 'DIFFID_ERR_VALIDATION', 'more than a key may have queued at once'],
    ["another key's identity", { kind: 'morph', pairs: [[ann, bobs]], alphas: [0.5] }, 404, 'DIFFID_ERR_IDENTITY_NOT_FOUND'],
    ['more jobs than the key may batch', { kind: 'generate', identities: [ann], prompts: Array.from({ length: 9 }, (_, i) => `p${i}`), steps: 2 }, 429, 'DIFFID_ERR_TOO_MANY_JOBS'],
    ['a webhook without a signing secret', { kind: 'generate', identities: [ann], prompts: ['a'], webhook: 'https://example.com/hook' }, 400, 'DIFFID_ERR_WEBHOOK_REFUSED'],
    ['not JSON', '{"kind": "morph", ', 415, 'DIFFID_ERR_NOT_MULTIPART', 'not valid JSON'],
  ];
  for (const [what, body, status, code, says] of bad) {
    const r = await post(body);
    const b = await json(r);
    t.equal(r.status, status, `${what}: ${status}`);
    t.equal(b.error?.code, code, `${what}: ${code}`);
    if (says) t.match(b.error?.message, says, `${what}: says where`);
  }
  const high = await post({ kind: 'generate', identities: [bobs], prompts: ['a'], priority: 'high' }, BETA);
  t.equal(high.status, 403, 'priority=high for a key that may not: 403');
  t.equal((await json(high)).error.code, 'DIFFID_ERR_PRIORITY_NOT_ALLOWED');
});

t.test('a batch canceled while a dead feeder held one of its jobs still ends, every job counted once', async (t) => {
  const hook = await receiver(t);
  const s = await startStack(t, { build: buildDemoBundle, access: { keys, rateLimitPerMinute: 10_000, maxStreamsPerKey: 50 }, limits, webhooks: { key: signingKey, policy: webhookPolicy('127.0.0.1') as WebhookPolicy } });
  const json = async (res: Response) => (await res.json()) as Record<string, any>;
  const ann = (await json(await postForm(s.base, '/identities', { image: { bytes: await faceFile(21) } }, auth(ALPHA)))).id as string;
  // No worker from here: the first wave stays queued, the rest pending.
  await s.worker?.close();
  const res = await fetch(`${s.base}/batches`, { method: 'POST', headers: { ...auth(ALPHA), 'content-type': 'application/json' }, body: JSON.stringify({ kind: 'generate', identities: [ann], prompts: ['a', 'b', 'c', 'd', 'e', 'f'], steps: 2, webhook: hook.url }) });
  const batch = await json(res);
  t.equal(batch.counts.queued, 2);
  // A feeder that chose job 2 and died before queueing it: its claim, under the feeding lock.
  const k = batchKeys(s.prefix, batch.id);
  while ((await s.redis.set(k.feeding, 'test', 'PX', 30_000, 'NX')) !== 'OK') await new Promise((r) => setTimeout(r, 50));
  await s.redis.hset(k.record, 'submitted', 3, 'claiming', 2);
  await s.redis.del(k.feeding);
  const canceled = await json(await fetch(`${s.base}/batches/${batch.id}`, { method: 'DELETE', headers: auth(ALPHA) }));
  t.equal(canceled.status, 'canceling', 'the claimed job is not settled yet');
  const [ended] = await hook.next(1, 120_000);
  const event = JSON.parse((ended as Received).body) as { data: Record<string, any> };
  t.equal(event.data.status, 'canceled', 'the next feeder settles the claim and the batch ends');
  t.same(event.data.counts, { pending: 0, queued: 0, running: 0, succeeded: 0, failed: 0, canceled: 6 }, 'every job canceled, once');
  t.equal(await s.redis.sismember(feedingBatchesKey(s.prefix), batch.id), 0, 'no feeder looks at it again');
});
