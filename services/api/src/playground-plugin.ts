// The playground page (services/api/playground: HTML, one script, one stylesheet; no build step)
// at /playground, and a landing page at / that links it. The three files are read once at start,
// and the page's forms filled in then from the contract (playground-form.ts); no path from a
// request reaches the file system. They need no API key: the page asks for one and sends it with
// its own API calls.
import { readFileSync } from 'node:fs';
import type { FastifyInstance } from 'fastify';
import { componentSchema, openapiDocument } from '@diffid/shared/openapi';
import { acceptedTypes, fillPage, renderForm, type FormSchema, type RenderedForm } from './playground-form.ts';

const DIR = new URL('../playground/', import.meta.url);
const FILES = {
  '/playground': { file: 'index.html', type: 'text/html; charset=utf-8' },
  '/playground/playground.js': { file: 'playground.js', type: 'text/javascript; charset=utf-8' },
  '/playground/playground.css': { file: 'playground.css', type: 'text/css; charset=utf-8' },
} as const;

/** Paths these pages are served at (the access plugin lets them through without a key). */
export const PAGE_PATHS: readonly string[] = ['/', ...Object.keys(FILES)];

// Everything the page loads comes from here; images it makes are blob: URLs (read back for downloads).
const CSP = "default-src 'self'; img-src 'self' blob: data:; script-src 'self'; style-src 'self'; connect-src 'self' blob:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'";

const LANDING = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Diff-ID Serve</title><link rel="icon" href="data:,"><link rel="stylesheet" href="/playground/playground.css"></head>
<body><main><h1>Diff-ID Serve</h1>
<p>Identity-consistent face generation and face morphing.</p>
<ul><li><a href="/playground">Playground</a>: generate, morph and compare in the browser</li>
<li><a href="/docs">API documentation</a> (<a href="/openapi.yaml">openapi.yaml</a>)</li></ul></main></body></html>
`;

// The one value the page chooses itself: a morph needs one of alpha, alphas or frames and the
// contract defaults none of them, so the Morph form starts at 12 frames for a first click to work.
const STARTING_VALUES: Record<string, Record<string, number>> = { MorphForm: { frames: 12 } };

/** A form of the contract, rendered for the page; its inputs' ids start with the schema's name less "Form" (generate-prompt). */
export function renderContractForm(schemaName: string): RenderedForm {
  return renderForm(componentSchema(schemaName) as unknown as FormSchema, {
    prefix: schemaName.replace(/Form$/, '').toLowerCase(),
    accept: acceptedTypes(openapiDocument.paths, schemaName),
    start: STARTING_VALUES[schemaName],
  });
}

/** The playground page: index.html with its `<!-- GenerateForm fields -->` (…) markers filled from openapi.yaml. */
export function playgroundPage(): string {
  return fillPage(readFileSync(new URL('index.html', DIR), 'utf8'), renderContractForm);
}

/** Serves the playground, its script and stylesheet, and the landing page, under the strict CSP. */
export async function playgroundRoutes(app: FastifyInstance): Promise<void> {
  for (const [path, { file, type }] of Object.entries(FILES)) {
    const body = file === 'index.html' ? playgroundPage() : readFileSync(new URL(file, DIR));
    app.get(path, async (_request, reply) => reply.type(type).header('content-security-policy', CSP).header('cache-control', 'no-cache').send(body));
  }
  app.get('/', async (_request, reply) => reply.type('text/html; charset=utf-8').header('content-security-policy', CSP).send(LANDING));
}
