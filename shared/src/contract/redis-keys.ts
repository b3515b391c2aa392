// Every Redis key and channel name the services use, under a deployment's key prefix
// (DIFFID_REDIS_PREFIX), in one place: BullMQ's own keys live under `${prefix}:${queueName}:…`.

import { ANIMATION_FORMATS, inputIdentity, inputNames, uploadCount, type AnimationFormat, type InputName, type JobPayload } from './jobs.ts';

/** Redis keys of one job. */
export const jobKeys = (prefix: string, id: string) => {
  const input = (name: InputName, index = 0) => `${prefix}:job:${id}:input:${name}${index > 0 ? `:${index}` : ''}`;
  const result = (index: number) => `${prefix}:job:${id}:result:${index}`;
  const animation = (format: AnimationFormat) => `${prefix}:job:${id}:animation:${format}`;
  return {
    input,
    /**
     * The keys of the job's own uploads, in form order (its payload says how many each field has);
     * an input read from a stored identity has none here (identityKeys holds its photos).
     */
    inputs: (payload: JobPayload) =>
      inputNames(payload.kind).flatMap((name) => (inputIdentity(payload, name) === undefined ? Array.from({ length: uploadCount(payload, name) }, (_, i) => input(name, i)) : [])),
    result,
    animation,
    /** Every result key a job of `count` images may have: the images and any animation. */
    results: (count: number) => [...Array.from({ length: count }, (_, i) => result(i)), ...ANIMATION_FORMATS.map(animation)],
    /**
     * The finished result as JSON, written with the PNGs in one transaction: a run that finds it
     * (the job ran again after its first run lost the lock) returns it instead of running again.
     */
    done: `${prefix}:job:${id}:done`,
    /** The worker running the job and its lock token, for the worker-loss reaper (JSON). */
    owner: `${prefix}:job:${id}:owner`,
    /** Present once a cancel was asked for: the job's public view at that moment, as JSON. */
    canceled: `${prefix}:job:${id}:canceled`,
  };
};

/**
 * Redis keys of one stored identity (POST /identities). Every key of an identity starts with
 * `record`, so that deleting it can be checked by a scan; they all expire when the record does.
 */
export const identityKeys = (prefix: string, id: string) => {
  const record = `${prefix}:identity:${id}`;
  return {
    /** The identity as JSON (owner, name, photos, faces, when it expires). */
    record,
    /** Photo i, as uploaded. */
    photo: (index: number) => `${record}:photo:${index}`,
    /** Inverted latents of its first photo's face under one conditioning (a hash of what sets them). */
    inverted: (condition: string) => `${record}:inverted:${condition}`,
    /** The conditions that have inverted latents stored (a set), so that delete finds them all. */
    invertedSet: `${record}:inverted`,
  };
};

/**
 * A tenant's identities (a sorted set: id → when it expires, ms), for listing and the per-key
 * limit; without API keys (owner null) there is one list.
 */
export const ownerIdentitiesKey = (prefix: string, owner: string | null) => (owner === null ? `${prefix}:identities` : `${prefix}:identities:${owner}`);

/**
 * Redis keys of one batch (POST /batches); every key starts with `record` and expires with it.
 * The record is a hash: owner, kind, jobs (how many in all), priority, webhook, created_at, and
 * the counters the ledger keeps (shared/src/node/batch-ledger.ts): submitted, running,
 * succeeded, failed, canceled, dropped (never queued: canceled first), claiming, canceled_at,
 * ended_at.
 */
export const batchKeys = (prefix: string, id: string) => {
  const record = `${prefix}:batch:${id}`;
  return {
    record,
    /** Each job's settled parameters and manifest facts (JSON), by index: a list. */
    specs: `${record}:specs`,
    /** The jobs queued so far (a sorted set: job id → when, ms), for GET /jobs?batch=. */
    jobs: `${record}:jobs`,
    /** Jobs that have started and jobs that have ended (sets), so that each counts once. */
    started: `${record}:started`,
    ended: `${record}:ended`,
    /** The lock of the API process queueing its next wave. */
    feeding: `${record}:feeding`,
  };
};

/** Batches with jobs still to queue (a set), which every API process's feeder goes through. */
export const feedingBatchesKey = (prefix: string) => `${prefix}:batches:feeding`;

/** A tenant's open batches (a set), for DIFFID_MAX_BATCHED_JOBS_PER_KEY; owner null: one set. */
export const ownerBatchesKey = (prefix: string, owner: string | null) => (owner === null ? `${prefix}:batches:open` : `${prefix}:owner:${owner}:batches`);

/** The bundle info the workers publish (BundleInfo, JSON), for the API's defaults and plans. */
export const bundleInfoKey = (prefix: string) => `${prefix}:bundle`;

/** Pub/sub channel on which the API announces cancels to running workers. */
export const cancelChannel = (prefix: string) => `${prefix}:cancel`;

/**
 * A tenant's admitted jobs (a hash: job id → "steps bytes", its planned U-Net steps and uploaded
 * bytes), for the per-key admission limits; finished jobs are pruned at the next admission.
 */
export const ownerOpenJobsKey = (prefix: string, owner: string) => `${prefix}:owner:${owner}:admitted`;

/**
 * A tenant's jobs (a sorted set: job id → when it was made, ms), for GET /jobs; without API keys
 * (owner null) there is one list.
 */
export const ownerJobsKey = (prefix: string, owner: string | null) => (owner === null ? `${prefix}:jobs` : `${prefix}:owner:${owner}:jobs`);

/** Admission's own keys (shared/src/node/admission.ts). */
export const admissionKeys = (prefix: string) => ({
  /** Jobs admitted but not yet in BullMQ (a sorted set: id → when the reservation lapses, ms). */
  pending: `${prefix}:admission:pending`,
  /** Each admitted job's uploaded bytes while its uploads are kept (a hash: id → bytes). */
  inputBytes: `${prefix}:admission:input-bytes`,
  /** The sum of inputBytes, kept beside it so that admission reads one number. */
  inputBytesTotal: `${prefix}:admission:input-bytes-total`,
  /** When each job's uploads expire (a sorted set: id → ms), so expired ones stop counting. */
  inputExpiry: `${prefix}:admission:input-expiry`,
});

/** A tenant's requests in one one-minute window (the per-key rate limit). */
export const rateWindowKey = (prefix: string, owner: string, window: number) => `${prefix}:rate:${owner}:${window}`;

/**
 * BullMQ's keys of a queue that the services read themselves: the lists and sets that hold open
 * jobs (admission counts them), a job's hash and its lock (the worker-loss reaper).
 */
export const queueKeys = (prefix: string, queueName: string) => ({
  wait: `${prefix}:${queueName}:wait`,
  paused: `${prefix}:${queueName}:paused`,
  active: `${prefix}:${queueName}:active`,
  delayed: `${prefix}:${queueName}:delayed`,
  prioritized: `${prefix}:${queueName}:prioritized`,
  waitingChildren: `${prefix}:${queueName}:waiting-children`,
  /** A job's hash is this plus its id. */
  jobPrefix: `${prefix}:${queueName}:`,
  lock: (id: string) => `${prefix}:${queueName}:${id}:lock`,
});
