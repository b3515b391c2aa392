// A typed client for Diff-ID Serve. The types are generated from openapi.yaml by openapi-typescript
// (api-types.ts, `npm run contract:types`); requests go through openapi-fetch, so a route, a field or
// a response shape that the contract does not have does not compile. Helpers add what the raw
// routes leave to the caller: multipart forms with files, following a job's event stream, and
// errors as exceptions carrying the API's stable code.
import createClient, { type Client } from 'openapi-fetch';
import { EventSourceParserStream } from 'eventsource-parser/stream';
import type { components, paths } from './api-types.ts';

export type { components, paths };
export type Job = components['schemas']['Job'];
export type JobResult = components['schemas']['JobResult'];
export type Accepted = components['schemas']['Accepted'];
export type ErrorCode = components['schemas']['ErrorCode'];
export type AnimationFormat = components['schemas']['Animation']['format'];
export type Identity = components['schemas']['Identity'];
export type IdentityList = components['schemas']['IdentityList'];
export type JobList = components['schemas']['JobList'];
export type Batch = components['schemas']['Batch'];
export type Verification = components['schemas']['Verification'];
/** POST /batches: the kind, what it multiplies, and any field of the kind's form for every job. */
export type BatchRequest = components['schemas']['BatchRequest'] & Record<string, unknown>;
/** GET /jobs's filters and page. */
export type JobListQuery = NonNullable<paths['/jobs']['get']['parameters']['query']>;

/** A file to upload: bytes with an optional name and type (the server decides the type by the bytes). */
export type Upload = Blob | Uint8Array | { bytes: Uint8Array; name?: string; type?: string };

/** The routes that take a job's multipart form. */
export type JobRoute = '/generate' | '/morph' | '/compare';
/** A form field's value: a file (or a field's several files) as uploads, anything else as text. */
export type FormValue = string | number | boolean | Upload | Upload[];

/** Whether a form value is a file to upload. */
export function isUpload(value: unknown): value is Upload {
  if (value instanceof Blob || value instanceof Uint8Array) return true;
  return typeof value === 'object' && value !== null && 'bytes' in value && value.bytes instanceof Uint8Array;
}

type FormFields<S> = { [K in keyof S]?: S[K] extends string ? (K extends ImageFields ? never : S[K] | number | boolean) : S[K] };
type ImageFields = 'image' | 'image_a' | 'image_b' | 'identity' | 'identity_a' | 'identity_b';
/** Each input: its photos, or a stored identity's id in their place. */
type Photos = { image: Upload | Upload[]; identity?: never } | { identity: string; image?: never };
type SideA = { image_a: Upload; identity_a?: never } | { identity_a: string; image_a?: never };
type SideB = { image_b: Upload; identity_b?: never } | { identity_b: string; image_b?: never };
export type GenerateRequest = Omit<FormFields<components['schemas']['GenerateForm']>, ImageFields> & Photos;
export type MorphRequest = Omit<FormFields<components['schemas']['MorphForm']>, ImageFields> & SideA & SideB;
export type CompareRequest = Omit<FormFields<components['schemas']['CompareForm']>, ImageFields> & SideA & SideB;
export type IdentityRequest = Omit<FormFields<components['schemas']['IdentityForm']>, 'image'> & { image: Upload | Upload[] };

export interface ClientOptions {
  /** The service, e.g. http://localhost:8080. */
  baseUrl: string;
  /** Sent as `Authorization: Bearer KEY` when the service has API keys. */
  apiKey?: string;
  fetch?: typeof fetch;
}

/** An error answer of the API: its HTTP status, stable code and message. */
export class DiffIdApiError extends Error {
  readonly status: number;
  readonly code: string;
  constructor(status: number, code: string, message: string) {
    super(message);
    this.name = 'DiffIdApiError';
    this.status = status;
    this.code = code;
  }
}

export const TERMINAL_STATUSES: ReadonlySet<Job['status']> = new Set(['succeeded', 'failed', 'canceled']);

function blobOf(u: Upload, name: string): { blob: Blob; name: string } {
  if (u instanceof Blob) return { blob: u, name };
  if (u instanceof Uint8Array) return { blob: new Blob([u]), name };
  return { blob: new Blob([u.bytes], u.type ? { type: u.type } : {}), name: u.name ?? name };
}

/**
 * A request object as multipart/form-data: uploads (and lists of them) as files, the rest as
 * text. Files are told by their value, not their name, so a file field that a newer contract adds
 * goes as a file too.
 */
export function formData(fields: Record<string, unknown>): FormData {
  const form = new FormData();
  for (const [key, value] of Object.entries(fields)) {
    if (value === undefined) continue;
    const list: unknown[] = Array.isArray(value) ? value : [value];
    if (list.length > 0 && list.every(isUpload)) {
      list.filter(isUpload).forEach((u, i) => {
        const { blob, name } = blobOf(u, `${key}${list.length > 1 ? `-${i}` : ''}`);
        form.append(key, blob, name);
      });
    } else {
      form.append(key, String(value));
    }
  }
  return form;
}

async function fail(response: Response, error: unknown): Promise<never> {
  const body = error as { error?: { code?: string; message?: string } } | undefined;
  throw new DiffIdApiError(response.status, body?.error?.code ?? `HTTP_${response.status}`, body?.error?.message ?? response.statusText);
}

export interface DiffIdClient {
  /** The openapi-fetch client itself, for routes the helpers do not cover. */
  raw: Client<paths>;
  generate(request: GenerateRequest): Promise<Accepted>;
  morph(request: MorphRequest): Promise<Accepted>;
  /** A compare; with `waitSeconds` the answer is the finished job when it finishes in time. */
  compare(request: CompareRequest, waitSeconds?: number): Promise<Accepted | Job>;
  /**
   * Any job form, as the served contract has it: for callers that draw their fields from the
   * served openapi.yaml (the diffid CLI), which may have fields these generated types do not.
   */
  submit(route: JobRoute, form: Record<string, FormValue>, waitSeconds?: number): Promise<Accepted | Job>;
  /** The served contract, the service's openapi.yaml, as YAML text. */
  openapi(): Promise<string>;
  job(id: string): Promise<Job>;
  /** One page of the key's jobs, newest first; pass `next_cursor` back as `cursor` for the next. */
  jobs(query?: JobListQuery): Promise<JobList>;
  cancel(id: string): Promise<Job>;
  /** Stores photos of one person as an identity; pending when its check outlasted the API's wait. */
  createIdentity(request: IdentityRequest): Promise<Identity>;
  /** One page of the key's stored identities; pass `next_cursor` back for the next. */
  identities(page?: { cursor?: string; limit?: number }): Promise<IdentityList>;
  identity(id: string): Promise<Identity>;
  deleteIdentity(id: string): Promise<void>;
  /** Queues many morphs or generates of stored identities; they enter the queue in waves. */
  createBatch(request: BatchRequest): Promise<Batch>;
  batch(id: string): Promise<Batch>;
  /** Cancels what of the batch has not started. */
  cancelBatch(id: string): Promise<Batch>;
  /** The batch's outputs so far and manifest.csv, as a zip, streamed. */
  batchResults(id: string): Promise<ReadableStream<Uint8Array>>;
  /** What a file says of its provenance: its C2PA manifest, validated, and its XMP. */
  verify(file: Upload): Promise<Verification>;
  image(id: string, index: number): Promise<Uint8Array>;
  animation(id: string, format: AnimationFormat): Promise<Uint8Array>;
  /** The job's event stream: the job each time its status or progress changes, until it finishes. */
  events(id: string, signal?: AbortSignal): AsyncGenerator<Job>;
  /** Follows the job until it finishes; `onUpdate` sees every state on the way. */
  wait(id: string, options?: { onUpdate?: (job: Job) => void; signal?: AbortSignal }): Promise<Job>;
}

export function createDiffIdClient(options: ClientOptions): DiffIdClient {
  const raw = createClient<paths>({
    baseUrl: options.baseUrl.replace(/\/+$/, ''),
    ...(options.apiKey ? { headers: { authorization: `Bearer ${options.apiKey}` } } : {}),
    ...(options.fetch ? { fetch: options.fetch } : {}),
  });
  const multipart = { bodySerializer: (body: unknown) => formData(body as Record<string, unknown>) };
  const bytes = async (path: '/jobs/{id}/images/{n}.png' | '/jobs/{id}/animation.{format}', params: Record<string, string | number>): Promise<Uint8Array> => {
    const { data, error, response } = await raw.GET(path as '/jobs/{id}/images/{n}.png', { params: { path: params as never }, parseAs: 'arrayBuffer' });
    if (error !== undefined || data === undefined) return fail(response, error);
    return new Uint8Array(data as unknown as ArrayBuffer);
  };

  const client: DiffIdClient = {
    raw,
    async generate(request) {
      const { data, error, response } = await raw.POST('/generate', { body: request as never, ...multipart });
      if (error !== undefined || data === undefined) return fail(response, error);
      return data as Accepted;
    },
    async morph(request) {
      const { data, error, response } = await raw.POST('/morph', { body: request as never, ...multipart });
      if (error !== undefined || data === undefined) return fail(response, error);
      return data as Accepted;
    },
    async compare(request, waitSeconds) {
      const { data, error, response } = await raw.POST('/compare', {
        body: request as never,
        ...multipart,
        ...(waitSeconds === undefined ? {} : { params: { header: { Prefer: `wait=${waitSeconds}` } } }),
      });
      if (error !== undefined || data === undefined) return fail(response, error);
      return data;
    },
    async submit(route, form, waitSeconds) {
      const init = { body: form as never, ...multipart, ...(waitSeconds === undefined ? {} : { params: { header: { Prefer: `wait=${waitSeconds}` } } }) };
      const { data, error, response } = route === '/generate' ? await raw.POST('/generate', init) : route === '/morph' ? await raw.POST('/morph', init) : await raw.POST('/compare', init);
      if (error !== undefined || data === undefined) return fail(response, error);
      return data;
    },
    async openapi() {
      const { data, error, response } = await raw.GET('/openapi.yaml', { parseAs: 'text' });
      if (error !== undefined || data === undefined) return fail(response, error);
      return data;
    },
    async job(id) {
      const { data, error, response } = await raw.GET('/jobs/{id}', { params: { path: { id } } });
      if (error !== undefined || data === undefined) return fail(response, error);
      return data;
    },
    async jobs(query = {}) {
      const { data, error, response } = await raw.GET('/jobs', { params: { query } });
      if (error !== undefined || data === undefined) return fail(response, error);
      return data;
    },
    async cancel(id) {
      const { data, error, response } = await raw.DELETE('/jobs/{id}', { params: { path: { id } } });
      if (error !== undefined || data === undefined) return fail(response, error);
      return data;
    },
    async createIdentity(request) {
      const { data, error, response } = await raw.POST('/identities', { body: request as never, ...multipart });
      if (error !== undefined || data === undefined) return fail(response, error);
      return data;
    },
    async identities(page = {}) {
      const { data, error, response } = await raw.GET('/identities', { params: { query: page } });
      if (error !== undefined || data === undefined) return fail(response, error);
      return data;
    },
    async identity(id) {
      const { data, error, response } = await raw.GET('/identities/{id}', { params: { path: { id } } });
      if (error !== undefined || data === undefined) return fail(response, error);
      return data;
    },
    async deleteIdentity(id) {
      const { error, response } = await raw.DELETE('/identities/{id}', { params: { path: { id } } });
      if (error !== undefined || !response.ok) return fail(response, error);
    },
    async createBatch(request) {
      const { data, error, response } = await raw.POST('/batches', { body: request });
      if (error !== undefined || data === undefined) return fail(response, error);
      return data;
    },
    async batch(id) {
      const { data, error, response } = await raw.GET('/batches/{id}', { params: { path: { id } } });
      if (error !== undefined || data === undefined) return fail(response, error);
      return data;
    },
    async cancelBatch(id) {
      const { data, error, response } = await raw.DELETE('/batches/{id}', { params: { path: { id } } });
      if (error !== undefined || data === undefined) return fail(response, error);
      return data;
    },
    async batchResults(id) {
      const { data, error, response } = await raw.GET('/batches/{id}/results.zip', { params: { path: { id } }, parseAs: 'stream' });
      if (error !== undefined || !data) return fail(response, error);
      return data as ReadableStream<Uint8Array>;
    },
    async verify(file) {
      const { data, error, response } = await raw.POST('/verify', { body: { image: file } as never, ...multipart });
      if (error !== undefined || data === undefined) return fail(response, error);
      return data;
    },
    image: (id, index) => bytes('/jobs/{id}/images/{n}.png', { id, n: index }),
    animation: (id, format) => bytes('/jobs/{id}/animation.{format}', { id, format }),
    async *events(id, signal) {
      const { error, response } = await raw.GET('/jobs/{id}/events', { params: { path: { id } }, parseAs: 'stream', ...(signal ? { signal } : {}) });
      if (error !== undefined || !response.body) return fail(response, error);
      const reader = response.body.pipeThrough(new TextDecoderStream()).pipeThrough(new EventSourceParserStream()).getReader();
      // Each read races the signal: an abort must end the wait even where it does not reach the
      // stream (it did not, now and then, once the first event had been read).
      const aborted = new Promise<never>((_, reject) => {
        if (signal?.aborted) reject(signal.reason);
        signal?.addEventListener('abort', () => reject(signal.reason), { once: true });
      });
      aborted.catch(() => undefined);
      try {
        for (;;) {
          const { value, done } = await Promise.race([reader.read(), aborted]);
          if (done) return;
          if (value.event === 'job') yield JSON.parse(value.data) as Job;
        }
      } finally {
        reader.cancel().catch(() => undefined);
      }
    },
    async wait(id, o = {}) {
      let last: Job | undefined;
      for await (const job of client.events(id, o.signal)) {
        last = job;
        o.onUpdate?.(job);
        if (TERMINAL_STATUSES.has(job.status)) return job;
      }
      // The stream ended without a final state (a proxy cut it): ask once.
      return last && TERMINAL_STATUSES.has(last.status) ? last : client.job(id);
    },
  };
  return client;
}
