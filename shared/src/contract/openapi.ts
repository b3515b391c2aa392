// openapi.yaml is the contract: the API's routes take their request checks and response shapes
// from it, job parameters are validated and defaulted by it (job-params.ts), and the CLI and the
// playground draw their fields from it. Read once at start; the repository root holds the file,
// three levels above this module in src/ and in dist/ alike.
import { readFileSync } from 'node:fs';
import { parse } from 'yaml';

export const OPENAPI_PATH = new URL('../../../openapi.yaml', import.meta.url);

/** The raw YAML text and the parsed document. */
export const openapiText = readFileSync(OPENAPI_PATH, 'utf8');
export const openapiDocument = parse(openapiText) as {
  paths: Record<string, Record<string, unknown>>;
  components: { schemas: Record<string, Record<string, unknown>> };
};

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

/** A schema with every local $ref replaced by its target (the components have no cycles). */
export function resolveRefs(schema: unknown): Record<string, unknown> {
  const schemas = openapiDocument.components.schemas;
  const resolve = (node: Json): Json => {
    if (Array.isArray(node)) return node.map(resolve);
    if (node === null || typeof node !== 'object') return node;
    const ref = node.$ref;
    if (typeof ref === 'string') {
      const target = /^#\/components\/schemas\/(.+)$/.exec(ref)?.[1];
      if (!target || !schemas[target]) throw new Error(`openapi.yaml: unresolved $ref ${ref}`);
      return resolve(schemas[target] as Json);
    }
    const out: { [k: string]: Json } = {};
    for (const [k, v] of Object.entries(node)) out[k] = resolve(v as Json);
    return out;
  };
  return resolve(schema as Json) as Record<string, unknown>;
}

/** A component schema, its $refs resolved. */
export function componentSchema(name: string): Record<string, unknown> {
  const schema = openapiDocument.components.schemas[name];
  if (!schema) throw new Error(`openapi.yaml has no schema ${name}`);
  return resolveRefs(schema);
}

type PropertySchema = { format?: string; type?: string; maxItems?: number; items?: { format?: string } };

/** The openapi.yaml schema of each job kind's form. */
export const FORM_SCHEMAS = { generate: 'GenerateForm', morph: 'MorphForm', compare: 'CompareForm', identity: 'IdentityForm' } as const;

/**
 * A multipart form schema split into its file fields — with how many files each takes (an array
 * of binaries is a repeated field) — and a schema for the text fields.
 */
export function formSchema(name: string): { files: string[]; maxFiles: Record<string, number>; requiredFiles: string[]; fields: Record<string, unknown> } {
  const schema = componentSchema(name) as { properties: Record<string, PropertySchema>; required?: string[] };
  const maxFiles: Record<string, number> = {};
  for (const [k, p] of Object.entries(schema.properties)) {
    if (p.format === 'binary') maxFiles[k] = 1;
    else if (p.type === 'array' && p.items?.format === 'binary') maxFiles[k] = p.maxItems ?? 1;
  }
  const files = Object.keys(maxFiles);
  const properties = Object.fromEntries(Object.entries(schema.properties).filter(([k]) => !files.includes(k)));
  return {
    files,
    maxFiles,
    requiredFiles: (schema.required ?? []).filter((k) => files.includes(k)),
    fields: { ...schema, properties, required: (schema.required ?? []).filter((k) => !files.includes(k)) },
  };
}

/**
 * The query parameters of an operation as one object schema (what Fastify checks a querystring
 * against): each parameter `in: query` with its schema, required as the document says, no others.
 */
export function querySchema(path: string, method: string): Record<string, unknown> {
  const operation = openapiDocument.paths[path]?.[method] as { parameters?: Array<{ name: string; in: string; required?: boolean; schema?: unknown }> } | undefined;
  if (!operation) throw new Error(`openapi.yaml has no ${method.toUpperCase()} ${path}`);
  const query = (operation.parameters ?? []).filter((p) => p.in === 'query');
  return {
    type: 'object',
    additionalProperties: false,
    properties: Object.fromEntries(query.map((p) => [p.name, resolveRefs(p.schema ?? {})])),
    required: query.filter((p) => p.required).map((p) => p.name),
  };
}
