// The one catalogue of error codes. Codes are stable API: never rename one, add new ones.
// `status` is the HTTP status a request that meets the error gets; 5xx details never reach clients.

export const ERROR_CATALOGUE = {
  // Requests
  MALFORMED_REQUEST: { code: 'DIFFID_ERR_MALFORMED_REQUEST', status: 400, title: 'The HTTP request itself is malformed (method, URL, framing or length)' },
  HEADERS_TOO_LARGE: { code: 'DIFFID_ERR_HEADERS_TOO_LARGE', status: 431, title: 'The request line or headers are larger than allowed' },
  REQUEST_TIMEOUT: { code: 'DIFFID_ERR_REQUEST_TIMEOUT', status: 408, title: 'The request was not received in time' },
  VALIDATION: { code: 'DIFFID_ERR_VALIDATION', status: 400, title: 'A request field is missing, malformed or out of range' },
  NOT_MULTIPART: { code: 'DIFFID_ERR_NOT_MULTIPART', status: 415, title: 'The request body must be multipart/form-data' },
  MISSING_FILE: { code: 'DIFFID_ERR_MISSING_FILE', status: 400, title: 'A required image file is missing' },
  WEBHOOK_REFUSED: { code: 'DIFFID_ERR_WEBHOOK_REFUSED', status: 400, title: 'The webhook URL is not one this service will call' },
  UNEXPECTED_FIELD: { code: 'DIFFID_ERR_UNEXPECTED_FIELD', status: 400, title: 'The request has a field or file this route does not take' },
  UNSUPPORTED_IMAGE: { code: 'DIFFID_ERR_UNSUPPORTED_IMAGE', status: 415, title: 'An uploaded file is not a JPEG, PNG or WebP image that can be decoded' },
  FILE_TOO_LARGE: { code: 'DIFFID_ERR_FILE_TOO_LARGE', status: 413, title: 'An uploaded file or image is larger than allowed' },
  PROMPT_TOO_LONG: { code: 'DIFFID_ERR_PROMPT_TOO_LONG', status: 400, title: 'A prompt is longer than allowed' },
  UNAUTHORIZED: { code: 'DIFFID_ERR_UNAUTHORIZED', status: 401, title: 'An API key is needed: send Authorization: Bearer <key>' },
  RATE_LIMITED: { code: 'DIFFID_ERR_RATE_LIMITED', status: 429, title: "The key's requests per minute are used up" },
  TOO_MANY_JOBS: { code: 'DIFFID_ERR_TOO_MANY_JOBS', status: 429, title: 'The key has as many jobs or queued steps as it may have at once' },
  TOO_MANY_STREAMS: { code: 'DIFFID_ERR_TOO_MANY_STREAMS', status: 429, title: 'Too many event streams are open on this job or for this key' },
  QUEUE_FULL: { code: 'DIFFID_ERR_QUEUE_FULL', status: 503, title: 'The job queue is full; try again later' },
  JOB_NOT_FOUND: { code: 'DIFFID_ERR_JOB_NOT_FOUND', status: 404, title: 'No job has this id, or it has expired' },
  IMAGE_NOT_FOUND: { code: 'DIFFID_ERR_IMAGE_NOT_FOUND', status: 404, title: 'The job has no result image with this number' },
  JOB_FINISHED: { code: 'DIFFID_ERR_JOB_FINISHED', status: 409, title: 'The job has already finished and cannot be canceled' },
  PRIORITY_NOT_ALLOWED: { code: 'DIFFID_ERR_PRIORITY_NOT_ALLOWED', status: 403, title: 'The key may not ask for this priority' },
  IDENTITY_NOT_FOUND: { code: 'DIFFID_ERR_IDENTITY_NOT_FOUND', status: 404, title: 'No identity has this id for this key, or it has expired' },
  BATCH_NOT_FOUND: { code: 'DIFFID_ERR_BATCH_NOT_FOUND', status: 404, title: 'No batch has this id for this key, or it has expired' },
  IDENTITY_NOT_READY: { code: 'DIFFID_ERR_IDENTITY_NOT_READY', status: 409, title: 'The identity is still being checked; use it once its status is ready' },
  TOO_MANY_IDENTITIES: { code: 'DIFFID_ERR_TOO_MANY_IDENTITIES', status: 429, title: 'The key has as many stored identities as it may have' },
  ROUTE_NOT_FOUND: { code: 'DIFFID_ERR_ROUTE_NOT_FOUND', status: 404, title: 'No such route' },
  QUEUE_UNAVAILABLE: { code: 'DIFFID_ERR_QUEUE_UNAVAILABLE', status: 503, title: 'The job queue (Redis) is not reachable' },
  STORAGE_FULL: { code: 'DIFFID_ERR_STORAGE_FULL', status: 503, title: 'Redis, which holds the queue and its images, is full; try again later' },
  INTERNAL: { code: 'DIFFID_ERR_INTERNAL', status: 500, title: 'Internal error' },
  // Jobs (reported in a failed job's `error`; status is what a synchronous request would get)
  NO_FACE_DETECTED: { code: 'DIFFID_ERR_NO_FACE_DETECTED', status: 422, title: 'No usable face was found in an input image' },
  FACE_INDEX_OUT_OF_RANGE: { code: 'DIFFID_ERR_FACE_INDEX_OUT_OF_RANGE', status: 422, title: 'A face_index names a face the image does not have' },
  INPUT_EXPIRED: { code: 'DIFFID_ERR_INPUT_EXPIRED', status: 410, title: "The job's uploaded images expired before a worker ran it" },
  JOB_CANCELED: { code: 'DIFFID_ERR_JOB_CANCELED', status: 409, title: 'The job was canceled' },
  WORKER_LOST: { code: 'DIFFID_ERR_WORKER_LOST', status: 503, title: 'The worker running the job was lost (killed or cut off) on every attempt' },
  INFERENCE_FAILED: { code: 'DIFFID_ERR_INFERENCE_FAILED', status: 500, title: 'The worker failed while running the models' },
  // Model bundles (worker start-up)
  BUNDLE_MANIFEST_INVALID: { code: 'DIFFID_ERR_BUNDLE_MANIFEST_INVALID', status: 503, title: 'The model bundle manifest does not meet the contract' },
  BUNDLE_FILE_MISSING: { code: 'DIFFID_ERR_BUNDLE_FILE_MISSING', status: 503, title: 'A file named by the model bundle manifest is missing' },
  BUNDLE_CHECKSUM_MISMATCH: { code: 'DIFFID_ERR_BUNDLE_CHECKSUM_MISMATCH', status: 503, title: 'A model bundle file does not hash to its manifest sha256' },
  BUNDLE_GRAPH_MISMATCH: { code: 'DIFFID_ERR_BUNDLE_GRAPH_MISMATCH', status: 503, title: "A graph's inputs or outputs differ from the manifest" },
  BUNDLE_GRAPH_UNREADABLE: { code: 'DIFFID_ERR_BUNDLE_GRAPH_UNREADABLE', status: 503, title: 'onnxruntime could not open a graph of the model bundle' },
  BUNDLE_TOKENIZER_INVALID: { code: 'DIFFID_ERR_BUNDLE_TOKENIZER_INVALID', status: 503, title: 'The tokenizer files of the model bundle cannot be loaded' },
  BUNDLE_TOO_LARGE: { code: 'DIFFID_ERR_BUNDLE_TOO_LARGE', status: 503, title: "The worker's memory cannot hold the model bundle and one guided image" },
  EXECUTION_PROVIDER_UNAVAILABLE: { code: 'DIFFID_ERR_EXECUTION_PROVIDER_UNAVAILABLE', status: 503, title: 'The requested onnxruntime execution provider is not available' },
} as const;

export type ErrorKey = keyof typeof ERROR_CATALOGUE;
export type ErrorCode = (typeof ERROR_CATALOGUE)[ErrorKey]['code'];

/** The catalogue key of a code; unknown codes become INTERNAL. */
export function errorKeyOf(code: string): ErrorKey {
  return catalogueEntryKey(code) ?? 'INTERNAL';
}

/** An error with a catalogue code; `detail` is for logs and operators, `publicMessage` for clients. */
export class DiffIdError extends Error {
  readonly key: ErrorKey;
  readonly code: ErrorCode;
  readonly status: number;
  /** Seconds after which trying again may succeed (sent as Retry-After). */
  readonly retryAfterSeconds?: number;
  constructor(key: ErrorKey, message: string, options?: { cause?: unknown; retryAfterSeconds?: number }) {
    super(message, options);
    this.name = 'DiffIdError';
    this.key = key;
    this.code = ERROR_CATALOGUE[key].code;
    this.status = ERROR_CATALOGUE[key].status;
    if (options?.retryAfterSeconds !== undefined) this.retryAfterSeconds = options.retryAfterSeconds;
  }
  /** What a client may see: the message for 4xx, the catalogue title for 5xx. */
  get publicMessage(): string {
    return this.status >= 500 ? ERROR_CATALOGUE[this.key].title : this.message;
  }
}

const CANCELED = 'JOB_CANCELED' satisfies ErrorKey;

/** A job's cancellation, the one way it is raised; `when` says where it stopped the job. */
export function canceled(when = 'the job was canceled'): DiffIdError {
  return new DiffIdError(CANCELED, when);
}

/** Whether an error is a job's cancellation (the one place that recognises it). */
export function isCanceled(err: unknown): err is DiffIdError {
  return err instanceof DiffIdError && err.key === CANCELED;
}

/** How a worker records a job's failure in BullMQ's failedReason: "CODE: message". */
export function failureReason(err: DiffIdError): string {
  return `${err.code}: ${err.message}`;
}

/** A failedReason read back: the catalogue error a worker recorded, or null for anything else (a crash, a stall). */
export function parseFailure(reason: string | undefined): DiffIdError | null {
  const m = /^(DIFFID_ERR_[A-Z_]+): ([\s\S]*)$/.exec(reason ?? '');
  const entry = m ? catalogueEntryKey(m[1] as string) : undefined;
  return m && entry ? new DiffIdError(entry, m[2] as string) : null;
}

function catalogueEntryKey(code: string): ErrorKey | undefined {
  return (Object.keys(ERROR_CATALOGUE) as ErrorKey[]).find((k) => ERROR_CATALOGUE[k].code === code);
}
