// The public view of a job (openapi.yaml, schema Job) from what the queue holds: a pure mapping
// with no Redis in it, so that every state is tested by a table (test/job-view.test.ts).

import { DiffIdError, ERROR_CATALOGUE, canceled, parseFailure, plannedSteps, type JobKind, type JobPayload, type JobProgress, type JobResult } from '@diffid/shared/contract';

export type JobStatus = 'queued' | 'running' | 'succeeded' | 'failed' | 'canceled';

/** The public shape of a job (openapi.yaml, schema Job). */
export interface JobView {
  id: string;
  kind: JobKind;
  status: JobStatus;
  progress: JobProgress;
  created_at: string;
  started_at: string | null;
  finished_at: string | null;
  params: JobPayload['params'];
  error?: { code: string; message: string };
  result?: Omit<JobResult, 'images' | 'animations'> & {
    images: Array<JobResult['images'][number] & { url: string }>;
    animations?: Array<NonNullable<JobResult['animations']>[number] & { url: string }>;
  };
  links: { self: string; events: string };
  /** The batch the job belongs to (POST /batches). */
  batch?: string;
  /** Queued jobs only: how many jobs are ahead of it, and an estimate of the seconds until it finishes. */
  queue_position?: number;
  eta_s?: number;
}

/** Where a queued job stands: the jobs ahead of it, and the seconds one job takes of late over the workers there are. */
export interface QueuePlace {
  ahead: number;
  /** Mean seconds a recent job took on a worker ÷ the workers; absent before any job finished. */
  secondsPerJob?: number;
}

/** What the queue holds of a job: BullMQ's fields that the view reads, and its state. */
export interface JobSnapshot {
  id: string;
  /** BullMQ's state name: waiting, prioritized, delayed, active, completed, failed, … */
  state: string;
  data: JobPayload;
  /** What the worker last reported (a JobProgress), or BullMQ's initial 0. */
  progress: unknown;
  timestamp: number;
  processedOn?: number;
  finishedOn?: number;
  failedReason?: string;
  returnvalue?: JobResult | null;
  /** Where it stands, when it waits in line (BullMQ's waiting or prioritized). */
  place?: QueuePlace;
}

const TERMINAL: ReadonlySet<JobStatus> = new Set(['succeeded', 'failed', 'canceled']);

export function isTerminal(status: JobStatus): boolean {
  return TERMINAL.has(status);
}

/** A job's links, as the POST receipts and the view both give them. */
export const jobLinks = (id: string) => ({ self: `/jobs/${id}`, events: `/jobs/${id}/events` });

/** The public status of a BullMQ state; null for states a client never sees (unknown, removed). */
export function statusOf(state: string): JobStatus | null {
  switch (state) {
    case 'active':
      return 'running';
    case 'completed':
      return 'succeeded';
    case 'failed':
      return 'failed';
    case 'waiting':
    case 'delayed':
    case 'prioritized':
    case 'waiting-children':
      return 'queued';
    default:
      return null;
  }
}

const errorBody = (err: DiffIdError) => ({ code: err.code, message: err.message });

/** BullMQ's own reason for a job whose worker vanished on every try. */
const STALLED_REASON = /stalled more than allowable limit/;

/**
 * A failed job's public error: catalogue 4xx codes as the worker said them, a lost worker as
 * WORKER_LOST, other 5xx as their catalogue title.
 */
export function publicError(reason: string | undefined): { code: string; message: string } {
  const failure = parseFailure(reason);
  if (failure && failure.status < 500) return errorBody(failure);
  const key = STALLED_REASON.test(reason ?? '') ? 'WORKER_LOST' : 'INFERENCE_FAILED';
  return { code: ERROR_CATALOGUE[key].code, message: ERROR_CATALOGUE[key].title };
}

/** The progress to show: the worker's report, or 0 of the job's planned steps before it has one. */
export function progressOf(snapshot: Pick<JobSnapshot, 'progress' | 'data'>, maxBatch: number): JobProgress {
  const planned = plannedSteps(snapshot.data, maxBatch);
  const raw = snapshot.progress;
  if (typeof raw !== 'object' || raw === null) return { step: 0, total: planned };
  const p = raw as Partial<JobProgress>;
  return { step: typeof p.step === 'number' ? p.step : 0, total: typeof p.total === 'number' ? p.total : planned };
}

const iso = (ms: number | undefined) => (ms ? new Date(ms).toISOString() : null);

/**
 * The public view of a queued job, or null for a state clients never see. `maxBatch` is the
 * workers' batch limit, which sets a morph's planned steps.
 */
export function jobView(snapshot: JobSnapshot, maxBatch: number): JobView | null {
  const status = statusOf(snapshot.state);
  if (!status) return null;
  const { id } = snapshot;
  const view: JobView = {
    id,
    kind: snapshot.data.kind,
    status,
    progress: progressOf(snapshot, maxBatch),
    created_at: iso(snapshot.timestamp) as string,
    started_at: iso(snapshot.processedOn),
    finished_at: status === 'succeeded' || status === 'failed' ? iso(snapshot.finishedOn) : null,
    params: snapshot.data.params,
    links: jobLinks(id),
  };
  if (snapshot.data.batch) view.batch = snapshot.data.batch.id;
  if (status === 'queued' && snapshot.place) {
    view.queue_position = snapshot.place.ahead;
    // It finishes after the jobs ahead and itself, at the pace of late.
    if (snapshot.place.secondsPerJob !== undefined) view.eta_s = Math.round((snapshot.place.ahead + 1) * snapshot.place.secondsPerJob);
  }
  if (status === 'failed') view.error = publicError(snapshot.failedReason);
  if (status === 'succeeded' && snapshot.returnvalue) {
    const result = snapshot.returnvalue;
    const { animations, ...rest } = result;
    view.result = { ...rest, images: result.images.map((img) => ({ ...img, url: `/jobs/${id}/images/${img.index}.png` })) };
    if (animations) view.result.animations = animations.map((a) => ({ ...a, url: `/jobs/${id}/animation.${a.format}` }));
  }
  return view;
}

/** The view a cancel leaves behind (kept as the job's tombstone). */
export function canceledView(current: JobView, at: Date): JobView {
  return {
    ...current,
    status: 'canceled',
    finished_at: at.toISOString(),
    error: errorBody(canceled('the job was canceled by a DELETE request')),
  };
}
