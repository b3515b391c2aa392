// The one catalogue of error codes. Codes are stable API: never rename one, add new ones.
// `status` is the HTTP status a request that meets the error gets; 5xx details never reach clients.

export const ERROR_CATALOGUE = {
  BUNDLE_MANIFEST_INVALID: { code: 'DIFFID_ERR_BUNDLE_MANIFEST_INVALID', status: 503, title: 'The model bundle manifest does not meet the contract' },
  BUNDLE_FILE_MISSING: { code: 'DIFFID_ERR_BUNDLE_FILE_MISSING', status: 503, title: 'A file named by the model bundle manifest is missing' },
  BUNDLE_CHECKSUM_MISMATCH: { code: 'DIFFID_ERR_BUNDLE_CHECKSUM_MISMATCH', status: 503, title: 'A model bundle file does not hash to its manifest sha256' },
  BUNDLE_GRAPH_MISMATCH: { code: 'DIFFID_ERR_BUNDLE_GRAPH_MISMATCH', status: 503, title: "A graph's inputs or outputs differ from the manifest" },
  BUNDLE_GRAPH_UNREADABLE: { code: 'DIFFID_ERR_BUNDLE_GRAPH_UNREADABLE', status: 503, title: 'onnxruntime could not open a graph of the model bundle' },
  BUNDLE_TOKENIZER_INVALID: { code: 'DIFFID_ERR_BUNDLE_TOKENIZER_INVALID', status: 503, title: 'The tokenizer files of the model bundle cannot be loaded' },
  EXECUTION_PROVIDER_UNAVAILABLE: { code: 'DIFFID_ERR_EXECUTION_PROVIDER_UNAVAILABLE', status: 503, title: 'The requested onnxruntime execution provider is not available' },
} as const;

export type ErrorKey = keyof typeof ERROR_CATALOGUE;
export type ErrorCode = (typeof ERROR_CATALOGUE)[ErrorKey]['code'];

/** An error with a catalogue code; `detail` is for logs and operators, `publicMessage` for clients. */
export class DiffIdError extends Error {
  readonly key: ErrorKey;
  readonly code: ErrorCode;
  readonly status: number;
  constructor(key: ErrorKey, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'DiffIdError';
    this.key = key;
    this.code = ERROR_CATALOGUE[key].code;
    this.status = ERROR_CATALOGUE[key].status;
  }
  /** What a client may see: the message for 4xx, the catalogue title for 5xx. */
  get publicMessage(): string {
    return this.status >= 500 ? ERROR_CATALOGUE[this.key].title : this.message;
  }
}
