// The pure mapping from what the queue holds to the public job view: every state, every kind,
// each view checked against openapi.yaml's Job schema.
import t from 'tap';
import { DiffIdError, failureReason, type JobPayload, type JobResult } from '@diffid/shared/contract';
import { canceledView, jobView, progressOf, publicError, statusOf, type JobSnapshot } from '../src/job-view.ts';
import { assertContract } from './contract.ts';

const ID = '3f1c2a4e-8b7d-4c1e-9a2b-0d1e2f3a4b5c';
const PAYLOADS: Record<JobPayload['kind'], JobPayload> = {
  generate: { kind: 'generate', params: { prompt: 'a photo', negative_prompt: '', num_images: 2, steps: 30, guidance_scale: 5, seed: 7, photos: 1, on_missing_face: 'fail', identity_scale: 1, identity_start: 0, identity_end: 1, priority: 'normal' } },
  morph: { kind: 'morph', params: { alphas: [0, 0.25, 0.5, 0.75, 1], strategy: 'slerp', identity_scale: 1, identity_start: 0, identity_end: 1, priority: 'normal', prompt: '', steps: 20, seed: 7, pacing: 'linear', background: 'morph', animation: [], fps: 12, boomerang: false } },
  compare: { kind: 'compare', params: { priority: 'normal' } },
  identity: { kind: 'identity', params: { identity: ID, photos: 2, face_index: [0, 1], name: 'subject 7' } },
};
const RESULTS: Record<JobPayload['kind'], JobResult> = {
  generate: {
    images: [0, 1].map((index) => ({ index, width: 64, height: 64, seed: 7 + index, arcface_similarity: 0.8 })),
    prompt_truncated: false,
    timings_ms: { total: 12, inference: 5, onnxruntime: 3, stages: { denoise: 4 } },
  },
  morph: {
    images: [0, 0.25, 0.5, 0.75, 1].map((alpha, index) => ({ index, width: 64, height: 64, seed: 7, alpha, arcface_similarity_a: 1 - alpha, arcface_similarity_b: alpha })),
    arcface_similarity_ab: 0.1,
    prompt_truncated: false,
    timings_ms: { total: 12, inference: 5, onnxruntime: 3, stages: { denoise: 4 } },
  },
  compare: {
    images: [],
    similarity: 0.7,
    inputs: [
      { input: 'image_a', faces: [{ box: [1, 2, 3, 4], score: 0.9, landmarks: { left_eye: [1.5, 2.5], right_eye: [2.5, 2.5] } }], face_index: 0 },
      { input: 'image_b', faces: [], face_index: null },
    ],
    warnings: [{ code: 'AMBIGUOUS_FACE', input: 'image_a', message: 'two faces of one size' }],
    timings_ms: { total: 3, inference: 1, onnxruntime: 1, stages: { find_faces: 1, embed: 1 } },
  },
  identity: {
    images: [],
    inputs: [
      { input: 'image[0]', faces: [{ box: [1, 2, 3, 4], score: 0.9, landmarks: { left_eye: [1.5, 2.5], right_eye: [2.5, 2.5] } }], face_index: 0 },
      { input: 'image[1]', faces: [{ box: [1, 2, 3, 4], score: 0.9, landmarks: {} }, { box: [5, 2, 7, 4], score: 0.8, landmarks: {} }], face_index: 1 },
    ],
    warnings: [],
    timings_ms: { total: 3, inference: 1, onnxruntime: 1, stages: { find_faces: 1 } },
  },
};
const T0 = Date.parse('2026-11-28T10:00:00Z');

function snapshot(kind: JobPayload['kind'], state: string, extra: Partial<JobSnapshot> = {}): JobSnapshot {
  return { id: ID, state, data: PAYLOADS[kind], progress: 0, timestamp: T0, ...extra };
}

t.test('BullMQ states map to the five public statuses; states clients never see map to null', async (t) => {
  const table: Array<[string, string | null]> = [
    ['waiting', 'queued'],
    ['prioritized', 'queued'],
    ['delayed', 'queued'],
    ['waiting-children', 'queued'],
    ['active', 'running'],
    ['completed', 'succeeded'],
    ['failed', 'failed'],
    ['unknown', null],
    ['', null],
  ];
  for (const [state, status] of table) t.equal(statusOf(state), status, `${state || '(empty)'} → ${status}`);
  t.equal(jobView(snapshot('generate', 'unknown'), 8), null);
});

t.test('queued jobs show 0 of their planned steps, the same total the worker will count to', async (t) => {
  const table: Array<[JobPayload['kind'], number, number]> = [
    ['generate', 8, 30],
    ['compare', 8, 1],
    // 5 frames: one inversion run + ⌈5 / maxBatch⌉ sampling runs of 20 steps.
    ['morph', 8, 40],
    ['morph', 2, 80],
    ['morph', 1, 120],
  ];
  for (const [kind, maxBatch, total] of table) {
    t.same(jobView(snapshot(kind, 'waiting'), maxBatch)?.progress, { step: 0, total }, `${kind} with max batch ${maxBatch}`);
  }
  t.same(progressOf({ data: PAYLOADS.morph, progress: { step: 7, total: 40 } }, 8), { step: 7, total: 40 }, "the worker's report wins");
  t.same(progressOf({ data: PAYLOADS.morph, progress: { step: 3 } }, 8), { step: 3, total: 40 }, 'a partial report keeps the planned total');
});

t.test('a job waiting in line shows its place, and an estimate once the pace is known', async (t) => {
  const placed = jobView(snapshot('generate', 'prioritized', { place: { ahead: 3, secondsPerJob: 2.5 } }), 8);
  t.match(placed, { status: 'queued', queue_position: 3, eta_s: 10 }, 'three ahead and itself at 2.5 s a job');
  const unknown = jobView(snapshot('generate', 'waiting', { place: { ahead: 0 } }), 8);
  t.equal(unknown?.queue_position, 0);
  t.notOk(unknown && 'eta_s' in unknown, 'no estimate before any job finished');
  const running = jobView(snapshot('generate', 'active', { place: { ahead: 0, secondsPerJob: 1 } }), 8);
  t.notOk(running && 'queue_position' in running, 'only a queued job has a place');
  assertContract(t, 'GET', '/jobs/{id}', 200, placed);
});

t.test('failed jobs: 4xx catalogue codes pass through, a lost worker is WORKER_LOST, anything else INFERENCE_FAILED with its title', async (t) => {
  const table: Array<[string | undefined, string, RegExp]> = [
    [failureReason(new DiffIdError('NO_FACE_DETECTED', 'image_a: no face found')), 'DIFFID_ERR_NO_FACE_DETECTED', /^image_a: no face found$/],
    [failureReason(new DiffIdError('INPUT_EXPIRED', 'image: gone')), 'DIFFID_ERR_INPUT_EXPIRED', /gone/],
    [failureReason(new DiffIdError('INFERENCE_FAILED', 'onnxruntime: /secret/path broke')), 'DIFFID_ERR_INFERENCE_FAILED', /^The worker failed while running the models$/],
    ['job stalled more than allowable limit', 'DIFFID_ERR_WORKER_LOST', /^The worker running the job was lost \(killed or cut off\) on every attempt$/],
    // A code of the right form that the catalogue lacks (failureReason only writes catalogue codes).
    ['DIFFID_ERR_MADE_UP: x', 'DIFFID_ERR_INFERENCE_FAILED', /^The worker failed/],
    [undefined, 'DIFFID_ERR_INFERENCE_FAILED', /^The worker failed/],
  ];
  for (const [reason, code, message] of table) {
    const e = publicError(reason);
    t.equal(e.code, code, String(reason));
    t.match(e.message, message);
  }
});

t.test('every kind in every state is a Job as openapi.yaml defines it', async (t) => {
  for (const kind of ['generate', 'morph', 'compare'] as const) {
    const views = {
      queued: jobView(snapshot(kind, 'prioritized'), 8),
      running: jobView(snapshot(kind, 'active', { processedOn: T0 + 1000, progress: { step: 1, total: 5 } }), 8),
      succeeded: jobView(snapshot(kind, 'completed', { processedOn: T0 + 1000, finishedOn: T0 + 2000, returnvalue: RESULTS[kind] }), 8),
      failed: jobView(snapshot(kind, 'failed', { processedOn: T0 + 1000, finishedOn: T0 + 2000, failedReason: failureReason(new DiffIdError('NO_FACE_DETECTED', 'image: none')) }), 8),
    };
    const canceled = canceledView(views.running!, new Date(T0 + 1500));
    for (const [status, view] of Object.entries({ ...views, canceled })) {
      t.equal(view?.status, status, `${kind} ${status}`);
      t.equal(view?.kind, kind);
      assertContract(t, 'GET', '/jobs/{id}', 200, view);
    }
    t.equal(views.queued?.started_at, null);
    t.equal(views.running?.started_at, new Date(T0 + 1000).toISOString());
    t.equal(views.running?.finished_at, null, 'a running job has not finished');
    t.equal(views.succeeded?.finished_at, new Date(T0 + 2000).toISOString());
    t.same(
      views.succeeded?.result?.images.map((i) => i.url),
      RESULTS[kind].images.map((_, n) => `/jobs/${ID}/images/${n}.png`),
      `${kind}: each result image has its URL`,
    );
    t.same(views.failed?.error, { code: 'DIFFID_ERR_NO_FACE_DETECTED', message: 'image: none' });
    t.equal(canceled.error?.code, 'DIFFID_ERR_JOB_CANCELED');
    t.equal(canceled.finished_at, new Date(T0 + 1500).toISOString());
    t.same(views.queued?.links, { self: `/jobs/${ID}`, events: `/jobs/${ID}/events` });
  }
});
