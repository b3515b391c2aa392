// openapi.yaml is a valid OpenAPI 3.1 document: by the specification's JSON schema
// (@seriousme/openapi-schema-validator) and by Redocly's structural and recommended rules, which
// also catch what a schema cannot — a flow-style description whose comma silently split it into
// stray keys, operations without the security the API applies, a license without its identifier.
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { parse } from 'yaml';
import { Validator } from '@seriousme/openapi-schema-validator';
import { settleJob } from '@diffid/shared/job-params';
import { createConfig, lint } from '@redocly/openapi-core';

const FILE = fileURLToPath(new URL('../../../openapi.yaml', import.meta.url));
const text = await readFile(FILE, 'utf8');

t.test('openapi.yaml validates against the OpenAPI 3.1 schema', async (t) => {
  const result = await new Validator().validate(parse(text) as Parameters<Validator['validate']>[0]);
  t.same(result, { valid: true }, JSON.stringify(result.errors ?? [], null, 2).slice(0, 2000));
});

t.test('Redocly\'s recommended rules find nothing', async (t) => {
  // Health, readiness, metrics and the document itself take no input, so they have no 4xx answer.
  const config = await createConfig({ extends: ['recommended'], rules: { 'operation-4xx-response': 'off' } });
  const problems = await lint({ ref: FILE, config });
  t.same(problems.map((p) => `${p.severity} ${p.ruleId}: ${p.message} at ${p.location[0]?.pointer}`), []);
});

t.test('the rules do catch a license with neither identifier nor url', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'diffid-openapi-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const broken = join(dir, 'openapi.yaml');
  await writeFile(broken, text.replace('    identifier: Apache-2.0\n', ''));
  const problems = await lint({ ref: broken, config: await createConfig({ extends: ['recommended'] }) });
  t.ok(problems.some((p) => p.ruleId === 'info-license-strict'), problems.map((p) => p.ruleId).join(', '));
});

t.test('the defaults the forms document are the ones the routes apply', async (t) => {
  const schemas = (parse(text) as { components: { schemas: Record<string, { properties: Record<string, { default?: unknown }> }> } }).components.schemas;
  const documented = (form: string, field: string) => schemas[form]?.properties[field]?.default;
  // What the routes apply is what settleJob makes of a form that leaves the field out.
  const generate = settleJob('generate', { prompt: 'a photo' }, { files: { image: [null] }, bundle: null }).params;
  const morph = settleJob('morph', { frames: 3 }, { files: { image_a: [null], image_b: [null] }, bundle: null }).params;
  t.equal(generate.num_images, documented('GenerateForm', 'num_images'));
  t.equal(generate.on_missing_face, documented('GenerateForm', 'on_missing_face'));
  t.equal(morph.steps, documented('MorphForm', 'steps'));
  t.equal(morph.strategy, documented('MorphForm', 'strategy'));
  t.equal(morph.identity_scale, documented('MorphForm', 'identity_scale'));
  t.equal(generate.identity_scale, documented('GenerateForm', 'identity_scale'));
  t.equal(generate.identity_start, documented('GenerateForm', 'identity_start'));
  t.equal(generate.identity_end, documented('GenerateForm', 'identity_end'));
  t.equal(morph.pacing, documented('MorphForm', 'pacing'));
  t.equal(morph.background, documented('MorphForm', 'background'));
  t.equal(morph.fps, documented('MorphForm', 'fps'));
});
