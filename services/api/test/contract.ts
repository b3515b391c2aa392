// Checks real responses against openapi.yaml: the documented status for the route, and the body
// against that response's schema.
import { Ajv2020 } from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';
import type { Test } from 'tap';
import { openapiDocument, resolveRefs } from '@diffid/shared/openapi';

const ajv = new Ajv2020({ strict: false, allErrors: true });
addFormats.default(ajv);
const compiled = new Map<string, ReturnType<typeof ajv.compile>>();

type Responses = Record<string, { $ref?: string; content?: Record<string, { schema?: { $ref?: string } }> }>;

function responseSpec(method: string, path: string, status: number) {
  const op = openapiDocument.paths[path]?.[method.toLowerCase()] as { responses: Responses } | undefined;
  if (!op) throw new Error(`openapi.yaml has no ${method} ${path}`);
  let spec = op.responses[String(status)];
  if (spec?.$ref) {
    const name = spec.$ref.split('/').pop() as string;
    spec = (openapiDocument.components as unknown as { responses: Responses }).responses[name];
  }
  return spec;
}

/** Asserts the status is documented for the route and the JSON body matches its schema. */
export function assertContract(t: Test, method: string, path: string, status: number, body: unknown): void {
  const spec = responseSpec(method, path, status);
  if (!spec) {
    t.fail(`${method} ${path} answered ${status}, which openapi.yaml does not list`);
    return;
  }
  const media = spec.content?.['application/json'];
  if (!media?.schema) return;
  const key = `${method} ${path} ${status}`;
  let validate = compiled.get(key);
  if (!validate) {
    validate = ajv.compile(resolveRefs(media.schema));
    compiled.set(key, validate);
  }
  const ok = validate(body);
  t.ok(ok, `${method} ${path} ${status} matches openapi.yaml${ok ? '' : `: ${ajv.errorsText(validate.errors)}`}`);
}

/** Fetches, checks the contract, returns status, body and headers. */
export async function call(t: Test, base: string, method: string, url: string, template: string, init: RequestInit = {}) {
  const res = await fetch(`${base}${url}`, { ...init, method });
  const type = res.headers.get('content-type') ?? '';
  const body: unknown = type.includes('application/json') ? await res.json() : Buffer.from(await res.arrayBuffer());
  if (type.includes('application/json')) assertContract(t, method, template, res.status, body);
  else t.ok(responseSpec(method, template, res.status), `${method} ${template} ${res.status} is documented`);
  return { status: res.status, body: body as any, headers: res.headers };
}
