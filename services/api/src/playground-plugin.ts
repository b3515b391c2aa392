// The playground page (services/api/playground: HTML, one script, one stylesheet; no build step)
// at /playground, and a landing page at / that links it. The three files are read once at start;
// no path from a request reaches the file system. They need no API key: the page asks for one
// and sends it with its own API calls.
import { readFileSync } from 'node:fs';
import type { FastifyInstance } from 'fastify';

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

export async function playgroundRoutes(app: FastifyInstance): Promise<void> {
  for (const [path, { file, type }] of Object.entries(FILES)) {
    const body = readFileSync(new URL(file, DIR));
    app.get(path, async (_request, reply) => reply.type(type).header('content-security-policy', CSP).header('cache-control', 'no-cache').send(body));
  }
  app.get('/', async (_request, reply) => reply.type('text/html; charset=utf-8').header('content-security-policy', CSP).send(LANDING));
}
