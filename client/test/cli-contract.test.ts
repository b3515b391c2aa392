// The diffid command draws its job options from the contract the service serves: against a tiny
// HTTP server that serves openapi.yaml with a field added, the field is a flag, its range is
// checked, and the form sent holds just what was given (the old flag names included). With no
// service a job exits 3, while help still works from the contract the client was built from.
import { once } from 'node:events';
import { readFile, writeFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { ROOT, diffid } from './diffid-command.ts';

interface Received {
  method: string;
  path: string;
  authorization?: string;
  prefer?: string;
  fields: Record<string, string>;
  files: Record<string, number>;
}

/** The project's contract with a field only this test's service has: GenerateForm's `sharpness`. */
async function servedContract(): Promise<string> {
  const text = await readFile(join(ROOT, 'openapi.yaml'), 'utf8');
  const modified = text.replace(
    /(\n    GenerateForm:\n(?:.*\n)*?      properties:\n)/,
    '$1        sharpness:\n          type: number\n          minimum: 0\n          maximum: 2\n          description: How sharp the images are. Only the test service has it.\n',
  );
  if (modified === text) throw new Error('GenerateForm not found in openapi.yaml');
  return modified;
}

async function body(request: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of request) chunks.push(Buffer.from(chunk));
  return Buffer.concat(chunks);
}

/**
 * A stand-in service: serves the contract, and refuses every job with a 400 that the CLI reports,
 * keeping the form it was sent. With `key`, it asks for that bearer key as the real one does.
 */
async function standIn(t: Test, key?: string) {
  const contract = await servedContract();
  const received: Received[] = [];
  const server = createServer((request, response) => {
    void (async () => {
      const seen: Received = { method: request.method ?? '', path: request.url ?? '', fields: {}, files: {} };
      if (request.headers.authorization) seen.authorization = request.headers.authorization;
      if (typeof request.headers.prefer === 'string') seen.prefer = request.headers.prefer;
      received.push(seen);
      const answer = (status: number, code: string, message: string) =>
        response.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify({ error: { code, message } }));
      if (key && request.headers.authorization !== `Bearer ${key}`) return answer(401, 'DIFFID_ERR_UNAUTHORIZED', 'send an API key');
      if (request.method === 'GET' && request.url === '/openapi.yaml') return response.writeHead(200, { 'content-type': 'application/yaml' }).end(contract);
      if (request.method === 'POST') {
        const form = await new Request('http://stand-in/', { method: 'POST', headers: { 'content-type': request.headers['content-type'] ?? '' }, body: await body(request) }).formData();
        for (const [name, value] of form) {
          if (typeof value === 'string') seen.fields[name] = value;
          else seen.files[name] = (seen.files[name] ?? 0) + 1;
        }
        return answer(400, 'DIFFID_ERR_VALIDATION', 'the stand-in takes no jobs');
      }
      return answer(404, 'DIFFID_ERR_ROUTE_NOT_FOUND', 'no such route');
    })();
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return { url: `http://127.0.0.1:${portOf(server)}`, received };
}

/** A port nothing listens on: one the system gave and took back. */
async function closedPort(): Promise<number> {
  const server = createServer().listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = portOf(server);
  await new Promise((resolve) => server.close(resolve));
  return port;
}

const flat = (text: string) => text.replace(/\s+/g, ' ');

/** The port a server listening on TCP has. */
function portOf(server: Server): number {
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('not listening on a TCP port');
  return address.port;
}

t.test('a field only the served contract has is a flag, checked and sent', async (t) => {
  const s = await standIn(t, 'k-test');
  const dir = t.testdir({ 'a.jpg': 'not really a photo', 'b.jpg': 'nor this' });
  const env = { DIFFID_URL: s.url, DIFFID_API_KEY: 'k-test' };

  const help = await diffid(['generate', '--help'], env);
  t.equal(help.code, 0, help.stderr);
  t.match(flat(help.stdout), '--sharpness <x> How sharp the images are. (from 0 to 2)');
  t.match(flat(help.stdout), `The fields are drawn from the contract served at ${s.url}/openapi.yaml.`);
  t.equal(s.received[0]?.authorization, 'Bearer k-test', 'the contract is asked for with the API key');

  const sent = await diffid(['generate', join(dir, 'a.jpg'), join(dir, 'b.jpg'), '-p', 'a portrait', '--sharpness', '0.5', '-n', '2', '--guidance', '1', '--negative', 'blur', '-i', 'steps=3', '--no-progress'], env);
  t.equal(sent.code, 2, 'the stand-in refuses the job: a 4xx is exit 2');
  t.match(sent.stderr, 'diffid: DIFFID_ERR_VALIDATION: the stand-in takes no jobs');
  const post = s.received.find((r) => r.method === 'POST');
  t.equal(post?.path, '/generate');
  t.same(post?.fields, { prompt: 'a portrait', sharpness: '0.5', num_images: '2', guidance_scale: '1', negative_prompt: 'blur', steps: '3' }, 'what was given, by the old names too, and no defaults');
  t.same(post?.files, { image: 2 });

  const posts = s.received.filter((r) => r.method === 'POST').length;
  const range = await diffid(['generate', join(dir, 'a.jpg'), '-p', 'x', '--sharpness', '3'], env);
  t.equal(range.code, 2, 'out of range is a usage error');
  t.match(range.stderr, "option '--sharpness <x>' argument '3' is invalid. --sharpness must be a decimal number from 0 to 2.");
  const input = await diffid(['generate', join(dir, 'a.jpg'), '-p', 'x', '-i', 'sharpness=2.5'], env);
  t.equal(input.code, 2);
  t.match(input.stderr, 'sharpness must be a decimal number from 0 to 2');
  t.equal(s.received.filter((r) => r.method === 'POST').length, posts, 'nothing sent for a usage error');

  const refused = await diffid(['generate', join(dir, 'a.jpg'), '-p', 'x'], { DIFFID_URL: s.url, DIFFID_API_KEY: '' });
  t.equal(refused.code, 2, 'a contract refused for want of a key is a 4xx like any other');
  t.match(refused.stderr, 'diffid: DIFFID_ERR_UNAUTHORIZED: send an API key');
});

t.test("morph and compare send the CLI's own additions", async (t) => {
  const s = await standIn(t);
  const dir = t.testdir({ 'a.jpg': 'a', 'b.jpg': 'b' });
  const env = { DIFFID_URL: s.url };
  const a = join(dir, 'a.jpg');
  const b = join(dir, 'b.jpg');

  await diffid(['morph', a, b, '--gif', join(dir, 'm.gif'), '--animation', 'webp', '--boomerang', '--pacing', 'even'], env);
  const morph = s.received.find((r) => r.path === '/morph');
  t.same(morph?.fields, { frames: '5', animation: 'webp,gif', boomerang: 'true', pacing: 'even' }, '5 frames by default; --gif adds gif to animation');
  t.same(morph?.files, { image_a: 1, image_b: 1 });

  await diffid(['morph', a, b, '-i', 'alphas=0,1'], env);
  t.same(s.received.filter((r) => r.path === '/morph')[1]?.fields, { alphas: '0,1' }, 'no default frames when alphas are given');

  const bad = await diffid(['morph', a, b, '--pacing', 'fast'], env);
  t.equal(bad.code, 2);
  t.match(bad.stderr, "option '--pacing <choice>' argument 'fast' is invalid. Allowed choices are linear, even.");

  await diffid(['compare', a, b, '--face-index-a', '1', '-i', 'face_index_b=2'], env);
  const compare = s.received.find((r) => r.path === '/compare');
  t.same(compare?.fields, { face_index_a: '1', face_index_b: '2' });
  t.equal(compare?.prefer, 'wait=30');
});

t.test('with no service, a job exits 3 and help falls back to the built contract', async (t) => {
  const url = `http://127.0.0.1:${await closedPort()}`;
  const dir = t.testdir({ 'a.jpg': 'a' });
  const env = { DIFFID_URL: url };

  const job = await diffid(['generate', join(dir, 'a.jpg'), '-p', 'x'], env);
  t.equal(job.code, 3, job.stderr);
  t.match(job.stderr, /^diffid: cannot reach the service \(ECONNREFUSED\); check --url or DIFFID_URL\n$/);
  const typo = await diffid(['generate', join(dir, 'a.jpg'), '--no-such-flag'], env);
  t.equal(typo.code, 3, 'no contract, so no verdict on the flags: the service is what is wrong');

  for (const args of [['generate', '--help'], ['help', 'generate'], ['generate', '-h', 'a.jpg']]) {
    const help = await diffid(args, env);
    t.equal(help.code, 0, args.join(' '));
    t.match(flat(help.stdout), '-n, --num-images <n> (from 1 to 8; alias --images; default: 1)');
    t.match(flat(help.stdout), 'The fields are drawn from the openapi.yaml this client was built from');
    t.match(flat(help.stdout), `the service at ${url} could not be asked (ECONNREFUSED)`);
    t.notMatch(help.stdout, '--sharpness', 'not a field of the built contract');
  }
  const top = await diffid(['--help'], env);
  t.equal(top.code, 0);
  t.match(top.stdout, /Commands:\n\s+generate/);
  const morph = await diffid(['morph', '--help'], env);
  t.match(flat(morph.stdout), '--webp <file> write the morph as an animated WebP');
  t.match(flat(morph.stdout), '--frames <n> N factors from 0 to 1');
});

t.test('a served contract without the form is the service at fault', async (t) => {
  const server = createServer((_, response) => response.writeHead(200, { 'content-type': 'application/yaml' }).end('openapi: 3.1.0\npaths: {}\n'));
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const url = `http://127.0.0.1:${portOf(server)}`;
  const dir = t.testdir({ 'a.jpg': 'a' });
  await writeFile(join(dir, 'b.jpg'), 'b');
  const run = await diffid(['compare', join(dir, 'a.jpg'), join(dir, 'b.jpg')], { DIFFID_URL: url });
  t.equal(run.code, 3);
  t.match(run.stderr, `diffid: the service at ${url}: openapi.yaml has no multipart form for POST /compare; check --url or DIFFID_URL`);
});
