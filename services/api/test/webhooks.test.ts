// Webhooks through the whole path: a job's events POSTed to a local receiver on an allow-listed
// address, signed per Standard Webhooks and checked as a receiver would; retried with the same id
// and body after a failure; cancel and failure announced; targets that are not public refused at
// submission, and again at delivery.
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import t, { type Test } from 'tap';
import { verifyWebhook, webhookKey } from '@diffid/shared/contract';
import { postJson } from '../src/webhook-dispatcher.ts';
import { embeddedIpv4, guardedLookup, refusedAddress, webhookEvents, webhookPolicy, type WebhookPolicy } from '../src/webhook-policy.ts';
import { finished, pollJob, postForm, startStack } from './harness.ts';
import { faceFile } from './images.ts';
import { receiver, type Received } from './webhook-receiver.ts';

const SECRET = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw';
const key = webhookKey(SECRET) as Buffer;
const policy = (allow?: string) => webhookPolicy(allow) as WebhookPolicy;

const verified = (r: Received) =>
  verifyWebhook(key, { id: String(r.headers['webhook-id']), timestamp: String(r.headers['webhook-timestamp']), signature: String(r.headers['webhook-signature']) }, r.body);

t.test('a job\'s start and completion reach an allow-listed receiver, signed', async (t) => {
  const hook = await receiver(t);
  const s = await startStack(t, { webhooks: { key, policy: policy('127.0.0.1') } });
  const res = await postForm(s.base, '/generate', { image: { bytes: await faceFile(1) }, prompt: 'x', steps: 2, webhook: hook.url });
  t.equal(res.status, 202);
  const { id } = (await res.json()) as { id: string };
  await pollJob(s.base, id, finished);
  const [a, b] = await hook.next(2);
  const events = [a, b].map((r) => JSON.parse((r as Received).body) as { type: string; timestamp: string; data: { id: string; status: string; result?: unknown } });
  t.same(events.map((e) => e.type).sort(), ['job.completed', 'job.start']);
  for (const [i, r] of [a, b].entries()) {
    const e = events[i] as (typeof events)[number];
    t.ok(verified(r as Received), `${e.type}: the signature verifies with the secret`);
    t.equal(r?.headers['content-type'], 'application/json');
    t.equal(e.data.id, id);
    t.match(String(r?.headers['webhook-id']), /^msg_[0-9a-f-]+-(start|completed)$/);
  }
  const completed = events.find((e) => e.type === 'job.completed');
  t.equal(completed?.data.status, 'succeeded');
  t.ok(completed?.data.result, 'the completed job carries its result');
  const tampered = { ...(a as Received), body: (a as Received).body.replace('"job.', '"jobx.') };
  t.notOk(verified(tampered), 'a changed body does not verify');
});

t.test('a failed delivery is retried with the same id and body; events can be chosen', async (t) => {
  const hook = await receiver(t, [503]);
  const s = await startStack(t, { webhooks: { key, policy: policy('127.0.0.0/8') } });
  const res = await postForm(s.base, '/generate', { image: { bytes: await faceFile(2) }, prompt: 'x', steps: 2, webhook: hook.url, webhook_events: 'completed' });
  const { id } = (await res.json()) as { id: string };
  await pollJob(s.base, id, finished);
  const [first, second] = await hook.next(2);
  t.equal(first?.headers['webhook-id'], second?.headers['webhook-id'], 'same webhook-id on the retry');
  t.equal(first?.body, second?.body, 'byte-identical body');
  t.ok(verified(second as Received));
  t.equal((JSON.parse((second as Received).body) as { type: string }).type, 'job.completed', 'only the event asked for');
  await new Promise((r) => setTimeout(r, 500));
  t.equal(hook.got.length, 2, 'no other event was sent');
});

t.test('cancel and failure are announced', async (t) => {
  const hook = await receiver(t);
  const queued = await startStack(t, { worker: false, webhooks: { key, policy: policy('127.0.0.1') } });
  const res = await postForm(queued.base, '/generate', { image: { bytes: await faceFile(3) }, prompt: 'x', webhook: hook.url, webhook_events: 'canceled,failed' });
  const { id } = (await res.json()) as { id: string };
  t.equal((await fetch(`${queued.base}/jobs/${id}`, { method: 'DELETE' })).status, 200);
  const [canceled] = await hook.next(1);
  t.match(JSON.parse((canceled as Received).body), { type: 'job.canceled', data: { id, status: 'canceled' } });

  const s = await startStack(t, { webhooks: { key, policy: policy('127.0.0.1') } });
  // The tiny bundle takes photos as aligned portraits: one face, so face_index 3 fails the job.
  const bad = await postForm(s.base, '/generate', { image: { bytes: await faceFile(4) }, prompt: 'x', face_index: 3, webhook: hook.url, webhook_events: 'failed' });
  const failedId = ((await bad.json()) as { id: string }).id;
  await pollJob(s.base, failedId, finished);
  const [, failed] = await hook.next(2);
  t.match(JSON.parse((failed as Received).body), { type: 'job.failed', data: { id: failedId, status: 'failed', error: { code: 'DIFFID_ERR_FACE_INDEX_OUT_OF_RANGE' } } });
  t.ok(verified(failed as Received));
});

t.test('targets that are not public, or not http, are refused at submission', async (t) => {
  const s = await startStack(t, { worker: false, webhooks: { key, policy: policy('allowed.example') } });
  const refused: Array<[string, RegExp]> = [
    ['http://127.0.0.1:9/x', /127\.0\.0\.1 is at 127\.0\.0\.1, which is not a public address/],
    ['http://localhost:9/x', /localhost is at (127\.0\.0\.1|::1), which is not a public address/],
    ['http://169.254.169.254/latest/meta-data', /not a public address/],
    ['http://10.1.2.3/', /not a public address/],
    ['http://[::1]/', /not a public address/],
    ['http://[::ffff:127.0.0.1]/', /not a public address/],
    ['http://[::127.0.0.1]/', /not a public address/],
    ['http://[::ffff:0:127.0.0.1]/', /not a public address/],
    ['http://[64:ff9b:1::7f00:1]/', /not a public address/],
    ['http://[2002:7f00:1::1]/', /not a public address/],
    ['http://[fd00::1]/', /not a public address/],
    ['http://0.0.0.0/', /not a public address/],
    ['http://2130706433/', /not a public address/],
    ['http://0x7f.1/', /not a public address/],
    ['ftp://example.com/', /must be an http or https URL, not ftp:/],
    ['http://user:pw@example.com/', /must not carry a user name or password/],
    ['not a url', /"webhook" is not a URL/],
    ['http://no-such-host.invalid/', /does not resolve/],
  ];
  for (const [url, message] of refused) {
    const res = await postForm(s.base, '/generate', { image: { bytes: await faceFile(5) }, prompt: 'x', webhook: url });
    const body = (await res.json()) as { error: { code: string; message: string } };
    t.equal(res.status, 400, url);
    t.equal(body.error.code, 'DIFFID_ERR_WEBHOOK_REFUSED', url);
    t.match(body.error.message, message, url);
  }
  const events = await postForm(s.base, '/compare', { image_a: { bytes: await faceFile(5) }, image_b: { bytes: await faceFile(6) }, webhook: 'http://93.184.216.34/', webhook_events: 'done' });
  t.match(((await events.json()) as { error: { message: string } }).error.message, /"webhook_events" lists events from start, completed, failed, canceled/);
  const alone = await postForm(s.base, '/compare', { image_a: { bytes: await faceFile(5) }, image_b: { bytes: await faceFile(6) }, webhook_events: 'start' });
  t.match(((await alone.json()) as { error: { message: string } }).error.message, /"webhook_events" needs "webhook"/);

  const off = await startStack(t, { worker: false });
  const res = await postForm(off.base, '/generate', { image: { bytes: await faceFile(5) }, prompt: 'x', webhook: 'https://example.com/hook' });
  t.equal(res.status, 400);
  t.match(((await res.json()) as { error: { message: string } }).error.message, /no signing secret \(DIFFID_WEBHOOK_SECRET\)/);
});

t.test('the address rule, also at delivery time', async (t) => {
  const p = policy('hooks.internal, 10.0.0.0/8, ::1');
  t.equal(refusedAddress(p, 'hooks.internal', '192.168.1.1', 443), null, 'an allowed host name, whatever it resolves to');
  t.equal(refusedAddress(p, 'x', '10.9.9.9', 443), null, 'inside an allowed CIDR');
  t.equal(refusedAddress(p, 'x', '::1', 443), null);
  t.match(refusedAddress(p, 'x', '127.0.0.1', 443), /not a public address/);
  t.equal(refusedAddress(p, 'x', '93.184.216.34', 443), null, 'a public address');
  // IPv4 written in IPv6, in every form that reaches it, is judged as the IPv4 address.
  for (const [written, v4] of [
    ['::ffff:7f00:1', '127.0.0.1'],
    ['::ffff:127.0.0.1', '127.0.0.1'],
    ['::127.0.0.1', '127.0.0.1'],
    ['::7f00:1', '127.0.0.1'],
    ['::ffff:0:127.0.0.1', '127.0.0.1'],
    ['::ffff:0:7f00:1', '127.0.0.1'],
    ['64:ff9b::7f00:1', '127.0.0.1'],
    ['2002:7f00:1::1', '127.0.0.1'],
    ['2002:a9fe:a9fe::', '169.254.169.254'],
  ]) {
    t.equal(embeddedIpv4(written as string), v4, `${written} carries ${v4}`);
    t.match(refusedAddress(policy(), 'x', written as string, 80), /not a public address/, `${written} is refused`);
  }
  t.match(refusedAddress(policy(), 'x', '64:ff9b:1::7f00:1', 80), /not a public address/, 'local-use NAT64 is refused whole');
  t.match(refusedAddress(policy(), 'x', '2001:0:4136:e378:8000:63bf:3fff:fdd2', 80), /not a public address/, 'Teredo is refused');
  t.equal(refusedAddress(policy(), 'x', '2002:5db8:d822::1', 80), null, '6to4 of a public address is public');
  t.equal(refusedAddress(policy(), 'x', '64:ff9b::5db8:d822', 80), null, 'NAT64 of a public address is public');
  t.equal(refusedAddress(policy(), 'x', '2606:4700::1111', 80), null, 'plain public IPv6');
  t.equal(embeddedIpv4('::1'), null, '::1 is IPv6 loopback, not 0.0.0.1');

  // Ports: an entry that names one admits only it; one without admits every port.
  const ported = policy('127.0.0.1:8080, [::1]:8443, hooks.internal:443, hooks.internal:8443, 10.0.0.0/8:9000, [fd00::]/8:7000');
  t.equal(refusedAddress(ported, 'x', '127.0.0.1', 8080), null);
  t.match(refusedAddress(ported, 'x', '127.0.0.1', 6379), /list it with its port \(6379\)/, "the allowed host's Redis port is not");
  t.equal(refusedAddress(ported, 'x', '::1', 8443), null);
  t.match(refusedAddress(ported, 'x', '::1', 80), /not a public address/);
  t.equal(refusedAddress(ported, 'hooks.internal', '10.1.1.1', 8443), null, 'a host name with two ports: both');
  t.equal(refusedAddress(ported, 'other', '10.1.1.1', 9000), null, 'a CIDR with a port');
  t.match(refusedAddress(ported, 'other', '10.1.1.1', 9001), /not a public address/);
  t.equal(refusedAddress(ported, 'x', 'fd12::1', 7000), null);
  t.same(ported.everyPort, [], 'every entry named its port');
  t.same(policy('127.0.0.1, example.internal:443').everyPort, ['127.0.0.1'], 'a portless entry is reported');
  t.match(webhookPolicy('10.0.0.0/33'), { error: /not a CIDR/ });
  t.match(webhookPolicy('exa mple'), { error: /neither a host name nor a CIDR/ });
  t.match(webhookPolicy('127.0.0.1:0'), { error: /port must be a number from 1 to 65535/ });
  t.match(webhookPolicy('127.0.0.1:http'), { error: /port must be a number/ });
  t.match(webhookPolicy('[::1]:99999'), { error: /port must be a number/ });
  t.same(webhookEvents(undefined), ['start', 'completed', 'failed', 'canceled']);
  t.same(webhookEvents('failed, completed,failed'), ['failed', 'completed']);
  // A name that resolves to loopback by the time of delivery (DNS rebinding) is not connected to.
  const lookupErr = await new Promise<Error | null>((r) => guardedLookup(policy(), 80)('localhost', {}, (err) => r(err)));
  t.match(lookupErr?.message, /not a public address/);
  await t.rejects(postJson('http://127.0.0.1:9/', '{}', {}, policy(), 1000), /not a public address/, 'an address literal is checked before connecting');
  await t.rejects(postJson('http://localhost:9/', '{}', {}, policy(), 1000), /not a public address/);
});

t.test('a receiver that never finishes its answer is cut off at the deadline', async (t) => {
  // Headers at once, then a byte every 100 ms for ever: never idle, never done.
  const server = createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain' });
    const drip = setInterval(() => res.write('.'), 100);
    res.on('close', () => clearInterval(drip));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => {
    server.closeAllConnections();
    return new Promise<void>((r) => server.close(() => r()));
  });
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
  const started = Date.now();
  await t.rejects(postJson(url, '{}', {}, policy('127.0.0.1'), 500), /no complete answer in 500 ms/);
  t.ok(Date.now() - started < 5000, `gave up after ${Date.now() - started} ms`);
});
