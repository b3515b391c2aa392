// A hostile client at the HTTP level: patterns that could backtrack, numbers in every notation,
// requests Node's parser refuses, and bodies that never end or are far too large. Each gets its
// 4xx in the error envelope, at once, and never stalls the event loop.
import net from 'node:net';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import t from 'tap';
import { assertContract } from './contract.ts';
import { encodeImage } from '@diffid/shared/image';
import { finished, pollJob, postForm, startStack, type Fields } from './harness.ts';
import { faceFile } from './images.ts';

/** The worst event-loop stall while `run` runs, in ms (the API runs in this process). */
async function worstBlock<T>(run: () => Promise<T>): Promise<{ value: T; ms: number }> {
  const h = monitorEventLoopDelay({ resolution: 5 });
  h.enable();
  try {
    const value = await run();
    return { value, ms: h.max / 1e6 };
  } finally {
    h.disable();
  }
}

t.test('a morph factor list built to make a backtracking pattern explode is refused at once', async (t) => {
  const s = await startStack(t, { worker: false });
  const face = { bytes: await faceFile(1) };
  // "-0,-0,…,-0x": 28 groups took the old openapi.yaml pattern 13.5 s.
  for (const groups of [24, 28, 200]) {
    const alphas = `${Array.from({ length: groups }, () => '-0').join(',')}x`;
    const { value: res, ms } = await worstBlock(() => postForm(s.base, '/morph', { image_a: face, image_b: face, alphas }));
    const body = (await res.json()) as { error: { code: string; message: string } };
    t.equal(res.status, 400, `${groups} groups: 400`);
    t.equal(body.error.code, 'DIFFID_ERR_VALIDATION');
    t.comment(`${groups} groups (${alphas.length} bytes): worst event-loop block ${ms.toFixed(1)} ms`);
    t.ok(ms < 1000, `${groups} groups: the event loop never stalled for a second (${ms.toFixed(1)} ms)`);
  }
});

t.test('numbers are plain decimals: hex, binary, exponents and Infinity are refused by name', async (t) => {
  const s = await startStack(t, { worker: false });
  const good: Fields = { image: { bytes: await faceFile(1) }, prompt: 'a person' };
  const cases: Array<[Fields, RegExp]> = [
    [{ ...good, num_images: '0x2' }, /"num_images" must be a whole number written in decimal digits \(got "0x2"\)/],
    [{ ...good, seed: '0b101' }, /"seed" must be a whole number written in decimal digits \(got "0b101"\)/],
    [{ ...good, steps: '1e2' }, /"steps" must be a whole number written in decimal digits/],
    [{ ...good, guidance_scale: 'Infinity' }, /"guidance_scale" must be a number written in decimal digits \(got "Infinity"\)/],
    [{ ...good, guidance_scale: '1e1' }, /"guidance_scale" must be a number written in decimal digits/],
    [{ ...good, steps: '' }, /"steps" must be a whole number/],
  ];
  for (const [fields, message] of cases) {
    const res = await postForm(s.base, '/generate', fields);
    const body = (await res.json()) as { error: { code: string; message: string } };
    t.equal(res.status, 400);
    t.match(body.error.message, message);
    assertContract(t, 'POST', '/generate', res.status, body);
  }
  const alpha = await postForm(s.base, '/morph', { image_a: good.image as Fields[string], image_b: good.image as Fields[string], alphas: '0, .5 ,1e0' });
  t.match(((await alpha.json()) as { error: { message: string } }).error.message, /"alphas" must be decimal numbers in \[0, 1\] separated by commas; "1e0" is not/);
  const fine = await postForm(s.base, '/generate', { ...good, steps: ' 12 ', guidance_scale: '4.50', seed: '+7' });
  t.equal(fine.status, 202, 'decimal numbers with spaces, a sign or trailing zeros are fine');
});

/** Sends raw bytes on a fresh connection and collects the answer until the server closes. */
function raw(port: number, request: string): Promise<string> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1', () => socket.end(request));
    let out = '';
    socket.on('data', (d) => (out += d.toString()));
    socket.on('close', () => resolve(out));
    socket.on('error', () => resolve(out));
  });
}

t.test("requests Node's parser or Fastify's router refuse get the error envelope and a closed connection", async (t) => {
  const s = await startStack(t, { worker: false });
  const port = Number(new URL(s.base).port);
  const cases: Array<[string, string, number, string]> = [
    ['long header', `GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`, 431, 'DIFFID_ERR_HEADERS_TOO_LARGE'],
    ['long URL', `GET /${'a'.repeat(70_000)} HTTP/1.1\r\nHost: x\r\n\r\n`, 431, 'DIFFID_ERR_HEADERS_TOO_LARGE'],
    ['undecodable URL', 'GET /jobs/%E0%A4%A HTTP/1.1\r\nHost: x\r\n\r\n', 400, 'DIFFID_ERR_MALFORMED_REQUEST'],
    ['unknown method', 'FOO / HTTP/1.1\r\nHost: x\r\n\r\n', 400, 'DIFFID_ERR_MALFORMED_REQUEST'],
    ['short Content-Length', 'POST /generate HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=X\r\nContent-Length: 100\r\n\r\n--X\r\n', 400, 'DIFFID_ERR_MALFORMED_REQUEST'],
    ['not HTTP', '\u0000\u0001 garbage\r\n\r\n', 400, 'DIFFID_ERR_MALFORMED_REQUEST'],
  ];
  for (const [name, request, status, code] of cases) {
    const answer = await raw(port, request);
    t.match(answer, new RegExp(`^HTTP/1.1 ${status} `), `${name}: ${status}`);
    const body = JSON.parse(answer.slice(answer.indexOf('\r\n\r\n') + 4)) as { error: { code: string; message: string } };
    t.equal(body.error.code, code, `${name}: ${body.error.message}`);
    assertContract(t, 'GET', '/jobs/{id}', status === 431 ? 400 : status, body);
  }
});

/** Streams `chunk` after `head` until the server answers or closes; returns what was sent and said. */
function flood(port: number, head: string, chunk: Buffer, chunked: boolean): Promise<{ sentMb: number; answer: string }> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    let sent = 0;
    let answer = '';
    let done = false;
    const timer = setTimeout(() => finish(), 60_000);
    const finish = () => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      resolve({ sentMb: sent / 1024 / 1024, answer });
    };
    socket.on('data', (d) => (answer += d.toString()));
    socket.on('end', () => undefined);
    socket.on('close', finish);
    // A write refused once the server closed (EPIPE) may be reported before the answer that came
    // with the close is read: give the socket a moment to deliver it.
    socket.on('error', () => setTimeout(finish, 100));
    socket.write(head);
    const frame = chunked ? Buffer.concat([Buffer.from(`${chunk.length.toString(16)}\r\n`), chunk, Buffer.from('\r\n')]) : chunk;
    const pump = () => {
      while (!done) {
        sent += chunk.length;
        if (!socket.write(frame)) return void socket.once('drain', pump);
      }
    };
    pump();
  });
}

t.test('bodies that never end or are far too large are cut at the limit: 413, connection closed', async (t) => {
  const s = await startStack(t, { worker: false });
  const port = Number(new URL(s.base).port);
  const mib = Buffer.alloc(1024 * 1024, 0x41);
  const part = '--X\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\n\r\n';
  const multipart = (extra: string) => `POST /generate HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=X\r\n${extra}\r\n`;
  const cases: Array<[string, string, boolean, number, RegExp]> = [
    ['an endless file part (chunked)', `${multipart('Transfer-Encoding: chunked\r\n')}${part.length.toString(16)}\r\n${part}\r\n`, true, 20, /each image may be at most 20 MB/],
    ['an endless preamble (no part ever starts)', multipart('Transfer-Encoding: chunked\r\n'), true, 81, /the request body may be at most 81 MB on this route/],
    ['a 200 MB file with its Content-Length', `${multipart('Content-Length: 200000000\r\n')}${part}`, false, 20, /each image may be at most 20 MB/],
    ['an endless JSON body', 'POST /generate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n', true, 0.0625, /multipart\/form-data/],
  ];
  for (const [name, head, chunked, limitMb, message] of cases) {
    const { sentMb, answer } = await flood(port, head, mib, chunked);
    t.match(answer, /^HTTP\/1.1 413 /, `${name}: 413 (got ${JSON.stringify(answer.slice(0, 200))} after ${sentMb.toFixed(0)} MB)`);
    t.match(answer, message, `${name}: says the limit`);
    t.match(answer, /connection: close/i, `${name}: and closes the connection`);
    t.comment(`${name}: cut after ${sentMb.toFixed(0)} MB sent (limit ${limitMb} MB; socket buffers hold a few more)`);
    t.ok(sentMb < limitMb + 16, `${name}: cut near the limit, not at the end of the body`);
  }
});

t.test('8 concurrent compares of two 40-megapixel PNGs: memory stays bounded in the API and the worker', async (t) => {
  const s = await startStack(t);
  // A 6324 × 6324 PNG of one colour: half a megabyte on the wire, 120 MB decoded in full.
  const side = 6324;
  const png = await encodeImage({ width: side, height: side, data: new Uint8Array(side * side * 3).fill(97) }, 'png');
  t.ok(png.length < 2 * 1024 * 1024, `the upload is small (${(png.length / 1024).toFixed(0)} KB)`);
  global.gc?.();
  const rss = () => process.memoryUsage().rss / 1024 / 1024;
  const base = rss();
  let peak = base;
  const sampler = setInterval(() => (peak = Math.max(peak, rss())), 5);
  try {
    const views = await Promise.all(
      Array.from({ length: 8 }, async () => {
        const res = await postForm(s.base, '/compare', { image_a: { bytes: png }, image_b: { bytes: png } });
        t.equal(res.status, 202);
        return pollJob(s.base, ((await res.json()) as { id: string }).id, finished, 120_000);
      }),
    );
    t.same(views.map((v) => v.status), Array(8).fill('succeeded'), 'every job ran (each image is taken as an aligned portrait: the tiny bundle has no detector)');
    t.same(views[0]?.result.inputs[0].faces[0].box.map(Math.round), [0, 0, side, side], "faces are reported in the upload's pixels though the worker decoded at most 2048 px");
  } finally {
    clearInterval(sampler);
  }
  t.comment(`API + worker in one process: ${base.toFixed(0)} MB before, peak ${peak.toFixed(0)} MB (+${(peak - base).toFixed(0)} MB)`);
  t.ok(peak - base < 400, `peak growth ${(peak - base).toFixed(0)} MB stays under 400 MB (a full decode of each upload took over 700 MB in the API alone)`);
  // Three such photos of one person: over the per-request pixel budget.
  const fd = new FormData();
  for (let i = 0; i < 3; i++) fd.append('image', new Blob([png]), `p${i}.png`);
  fd.append('prompt', 'x');
  const over = await fetch(`${s.base}/generate`, { method: 'POST', body: fd });
  const body = (await over.json()) as { error: { code: string; message: string } };
  t.equal(over.status, 413);
  t.match(body.error.message, /at most 80 megapixels together \(these have 120\.0\)/);
});
