// API throughput: autocannon, run as a second process so that its own work does not share the
// API's event loop, against the API alone (no worker: submissions stay queued, status reads read
// one queued job). 10 connections, 5 s each after a 1 s warm-up.
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { encodeImage } from '@diffid/shared/image';
import { facePattern } from '@diffid/shared/testing';
import { openStack, postForm } from '../test/harness.ts';

export interface LoadFigures {
  requests_per_s: number;
  p50_ms: number;
  p99_ms: number;
  requests: number;
  non_2xx: number;
  errors: number;
}

// Built (npm run bench) the runner is load-runner.js beside this file; from source, under tsx.
const BUILT = import.meta.url.endsWith('.js');
const RUNNER = join(import.meta.dirname, BUILT ? 'load-runner.js' : 'load-runner.ts');
const CONNECTIONS = 10;
const SECONDS = 5;

async function autocannon(options: { url: string; method?: string; headers?: Record<string, string>; body?: Buffer }): Promise<LoadFigures> {
  const { body, ...rest } = options;
  const child = spawn(process.execPath, BUILT ? [RUNNER] : ['--import', 'tsx', RUNNER], { stdio: ['pipe', 'pipe', 'inherit'] });
  child.stdin.end(JSON.stringify({ ...rest, connections: CONNECTIONS, duration: SECONDS, warmup: { connections: 2, duration: 1 }, ...(body ? { bodyBase64: body.toString('base64') } : {}) }));
  const chunks: Buffer[] = [];
  for await (const chunk of child.stdout) chunks.push(chunk as Buffer);
  const code = await new Promise<number | null>((resolve) => (child.exitCode !== null ? resolve(child.exitCode) : child.once('exit', resolve)));
  if (code !== 0) throw new Error(`autocannon exited with ${code}`);
  const r = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { requests: { average: number; total: number }; latency: { p50: number; p99: number }; non2xx: number; errors: number };
  return { requests_per_s: r.requests.average, p50_ms: r.latency.p50, p99_ms: r.latency.p99, requests: r.requests.total, non_2xx: r.non2xx, errors: r.errors };
}

/** Submissions (POST /generate with a 64×64 JPEG) and status reads (GET /jobs/{id}) per second. */
export async function measureApiLoad(): Promise<{ submissions: LoadFigures; status_reads: LoadFigures; upload_bytes: number }> {
  const stack = await openStack({ worker: false });
  try {
    const jpeg = await encodeImage(facePattern(5, 64, 64), 'jpeg');
    const boundary = 'diffid-bench-boundary';
    const body = Buffer.concat([
      Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="prompt"\r\n\r\na photo of a person\r\n`),
      Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="image"; filename="face.jpg"\r\nContent-Type: image/jpeg\r\n\r\n`),
      Buffer.from(jpeg),
      Buffer.from(`\r\n--${boundary}--\r\n`),
    ]);
    const submissions = await autocannon({ url: `${stack.base}/generate`, method: 'POST', headers: { 'content-type': `multipart/form-data; boundary=${boundary}` }, body });
    const { id } = (await (await postForm(stack.base, '/generate', { image: { bytes: jpeg }, prompt: 'a person' })).json()) as { id: string };
    const statusReads = await autocannon({ url: `${stack.base}/jobs/${id}` });
    return { submissions, status_reads: statusReads, upload_bytes: jpeg.length };
  } finally {
    await stack.close();
  }
}
