// One job through the API as a client runs it: submitted over HTTP, waited for, its images fetched.
import { postForm, type Fields } from '../test/harness.ts';

export interface Finished {
  endToEndMs: number;
  urls: string[];
  /** From the POST's answer to the poll that saw the job finished. */
  seenMs: number;
  timings: { total: number; inference: number; onnxruntime: number; stages: Record<string, number> };
}

type JobAnswer = { id: string; status: string; result?: { images: Array<{ url: string }>; timings_ms: Finished['timings'] } };

/**
 * Submits a job and waits for it. `poll` (the queue part, and jobs longer than a minute): polls
 * every `pollMs` from the 202.
 * Otherwise one request with `Prefer: wait=60`, answered when the job is done — the API shares
 * this process with the worker, and a poll every 5 ms would take the worker's main thread.
 */
export async function runJob(base: string, path: string, fields: Fields, poll = false, pollMs = 5): Promise<Finished> {
  const t0 = performance.now();
  const res = await postForm(base, path, fields, poll ? {} : { prefer: 'wait=60' });
  if (res.status !== 202 && res.status !== 200) throw new Error(`${path}: ${res.status} ${await res.text()}`);
  const answer = (await res.json()) as JobAnswer;
  const accepted = performance.now();
  if (!poll) {
    if (answer.status !== 'succeeded' || !answer.result) throw new Error(`job ${answer.id} ${answer.status}`);
    const result = answer.result;
    await Promise.all(result.images.map(async (i) => (await fetch(`${base}${i.url}`)).arrayBuffer()));
    return { seenMs: accepted - t0, endToEndMs: performance.now() - t0, timings: result.timings_ms, urls: result.images.map((i) => i.url) };
  }
  const { id } = answer;
  for (;;) {
    const view = (await (await fetch(`${base}/jobs/${id}`)).json()) as { status: string; result?: { images: Array<{ url: string }>; timings_ms: Finished['timings'] } };
    if (view.status === 'succeeded' && view.result) {
      const seenMs = performance.now() - accepted;
      await Promise.all(view.result.images.map(async (i) => (await fetch(`${base}${i.url}`)).arrayBuffer()));
      return { seenMs, endToEndMs: performance.now() - t0, timings: view.result.timings_ms, urls: view.result.images.map((i) => i.url) };
    }
    if (view.status !== 'queued' && view.status !== 'running') throw new Error(`job ${id} ${view.status}: ${JSON.stringify((view as { error?: unknown }).error)}`);
    await new Promise((r) => setTimeout(r, pollMs));
  }
}

