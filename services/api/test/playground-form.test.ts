// The playground's forms are drawn from the contract (playground-form.ts): a small schema with new
// enum, integer and boolean fields comes out as the inputs its types say, with its ranges, defaults,
// titles and tooltips, escaped; the `x-playground` placements hold; and a field added to
// GenerateForm in openapi.yaml appears on the page the API serves, with no page change.
import Fastify from 'fastify';
import t from 'tap';
import { componentSchema, formSchema, openapiDocument } from '@diffid/shared/openapi';
import { escapeHtml, fileFields, fillPage, renderForm, type FormSchema, type PropertySchema } from '../src/playground-form.ts';
import { playgroundPage, playgroundRoutes } from '../src/playground-plugin.ts';

const FORMS = { generate: 'GenerateForm', morph: 'MorphForm', compare: 'CompareForm' } as const;

const SMALL: FormSchema = {
  required: ['photo', 'prompt'],
  properties: {
    photo: { type: 'string', format: 'binary', title: 'Photo', description: 'A face.' },
    refs: { type: 'array', items: { type: 'string', format: 'binary' }, maxItems: 3, title: 'References' },
    prompt: { type: 'string', minLength: 1, maxLength: 200, title: 'Prompt' },
    quality: { type: 'string', enum: ['draft', 'fine'], default: 'fine', title: 'Quality', description: 'How hard to `try`.' },
    passes: { type: 'integer', minimum: 1, maximum: 9, default: 3, title: 'Passes' },
    sharpen: { type: 'boolean', default: true, title: 'Sharpen' },
    strength: { type: 'number', minimum: 0, maximum: 1, title: 'Strength', description: 'How much.\nDefault — the bundle\'s choice, else 0.5.', 'x-playground': 'advanced' },
    callback: { type: 'string', maxLength: 2048, title: 'Callback', 'x-playground': 'hidden' },
  },
};

t.test('a new enum, integer and boolean field: a select, a number input and a checkbox, with their defaults', async (t) => {
  const { files, fields } = renderForm(SMALL, { prefix: 't', accept: { photo: 'image/png' } });
  t.ok(
    fields.includes('<label title="How hard to try.">Quality <select id="t-quality" name="quality" title="How hard to try."><option value="draft">draft</option><option value="fine" selected>fine</option></select></label>'),
    'enum → select, the default selected, the description as tooltip',
  );
  t.ok(fields.includes('<label>Passes <input id="t-passes" name="passes" type="number" min="1" max="9" step="1" value="3"></label>'), 'integer → number input with its range, step 1, the default as value');
  t.ok(fields.includes('<label class="check"><input id="t-sharpen" name="sharpen" type="checkbox" value="true" checked> Sharpen</label>'), 'boolean → checkbox, checked by its default');
  t.ok(fields.includes('<label class="wide">Prompt <input id="t-prompt" name="prompt" type="text" maxlength="200" required></label>'), 'string → text input with maxlength; required; long text on a line of its own');
  t.match(fields, /<input id="t-strength" name="strength" type="number" min="0" max="1" step="any" placeholder="the bundle&#39;s choice" title="How much\. Default — the bundle&#39;s choice, else 0\.5\.">/, 'number → step any; no default: a placeholder from the description');
  const more = fields.indexOf('<details class="more"><summary>More options</summary>');
  t.ok(more > fields.indexOf('id="t-sharpen"') && more < fields.indexOf('id="t-strength"'), 'x-playground: advanced goes under More options, the rest before it');
  t.notMatch(fields + files, /callback|Callback/, 'x-playground: hidden is left out');
  t.ok(files.includes('<label class="drop" title="A face."><span>Photo <span class="hint">— drop it here or choose</span></span><input id="t-photo" name="photo" type="file" accept="image/png" required title="A face."></label>'), 'a binary is a drop zone taking what its encoding accepts');
  t.ok(files.includes('<span>References (up to 3) <span class="hint">— drop them here or choose</span></span><input id="t-refs" name="refs" type="file" multiple>'), 'an array of binaries takes several files');
  t.same(fileFields(SMALL), ['photo', 'refs']);
});

t.test('defaults the API settles per job, and fields with no default', async (t) => {
  const props: Record<string, PropertySchema> = {
    steps: { type: 'integer', minimum: 1, maximum: 150, default: 30, 'x-diffid-default': 'bundle', title: 'Steps' },
    seed: { type: 'integer', minimum: 0, 'x-diffid-default': 'random', title: 'Seed' },
    face: { type: 'integer', description: 'Which face. Default — the largest face.' },
    token: { type: 'integer', description: 'A number; fresh when absent.' },
    mode: { type: 'string', enum: ['a', 'b'], title: 'Mode' },
    loop: { type: 'boolean', title: 'Loop' },
  };
  const { fields } = renderForm({ properties: props }, { prefix: 'x', start: { face: 2 } });
  t.match(fields, /<input id="x-steps" name="steps" type="number" min="1" max="150" step="1" placeholder="bundle default">/, 'x-diffid-default: bundle — empty, not the fallback default, so the bundle decides');
  t.match(fields, /<input id="x-seed" name="seed" type="number" min="0" step="1" placeholder="random">/, 'x-diffid-default: random');
  t.match(fields, /<label title="Which face\. Default — the largest face\.">face <input id="x-face" name="face" type="number" step="1" value="2" /, 'a starting value from the page; no title: the name is the label');
  t.match(fields, /id="x-token"[^>]* placeholder="fresh"/, '"… when absent" in the description');
  t.ok(fields.includes('<select id="x-mode" name="mode"><option value="" selected>—</option><option value="a">a</option><option value="b">b</option></select>'), 'an enum without a default starts empty');
  t.ok(fields.includes('<select id="x-loop" name="loop"><option value="" selected>—</option><option value="true">true</option><option value="false">false</option></select>'), 'a boolean without a default is a select, not a checkbox that cannot be empty');
  t.notMatch(fields, /<details/, 'no More options when nothing is advanced');
});

t.test('everything put in the page is escaped', async (t) => {
  const { fields } = renderForm(
    { properties: { 'a"b': { type: 'string', enum: ['<script>', "it's"], default: "it's", title: 'Tone <b>"x"</b> & \'y\'', description: '"quoted" <em>' } } },
    { prefix: 'p' },
  );
  t.equal(
    fields,
    '<div class="row">\n  <label title="&quot;quoted&quot; &lt;em&gt;">Tone &lt;b&gt;&quot;x&quot;&lt;/b&gt; &amp; &#39;y&#39; <select id="p-a&quot;b" name="a&quot;b" title="&quot;quoted&quot; &lt;em&gt;"><option value="&lt;script&gt;">&lt;script&gt;</option><option value="it&#39;s" selected>it&#39;s</option></select></label>\n</div>',
  );
  t.equal(escapeHtml(`<a href='x'>&"`), '&lt;a href=&#39;x&#39;&gt;&amp;&quot;');
});

t.test('a number marked as a slider is a range input with its value beside it', async (t) => {
  const { fields } = renderForm({ properties: { strength: { type: 'number', minimum: 0, maximum: 3, default: 1, title: 'Strength', 'x-playground-input': 'slider' } } }, { prefix: 'p' });
  t.match(fields, '<input id="p-strength" name="strength" type="range" min="0" max="3" step="any" value="1"><output for="p-strength">1</output>');
});

t.test('what the contract may not ask of the page fails at start', async (t) => {
  t.throws(() => renderForm({ properties: { a: { type: 'string', 'x-playground': 'secret' } } }, { prefix: 'p' }), /x-playground: secret; it takes advanced or hidden/);
  t.throws(() => renderForm({ required: ['a'], properties: { a: { type: 'string', 'x-playground': 'hidden' } } }, { prefix: 'p' }), /a is required, so the playground cannot hide it/);
  const { fields } = renderForm({ required: ['a'], properties: { a: { type: 'string', 'x-playground': 'advanced' } } }, { prefix: 'p' });
  t.notMatch(fields, /<details/, 'a required field stays up front even when marked advanced');
  t.throws(() => renderForm({ properties: { a: { type: 'number', minimum: 0, 'x-playground-input': 'slider' } } }, { prefix: 'p' }), /a is a slider, so it needs a minimum, a maximum and a default/);
  t.throws(() => renderForm({ properties: { a: { type: 'string', 'x-playground-input': 'slider' } } }, { prefix: 'p' }), /only a number takes slider/);
  const form = renderForm({ properties: { status: { type: 'string' } } }, { prefix: 'p' });
  t.throws(() => fillPage('<span id="p-status"></span>\n<!-- PForm fields -->', () => form), /two elements with the id p-status/, 'a field named like an element of the page');
});

t.test('the served page holds every field of the three forms, and the contract decides their files', async (t) => {
  const app = Fastify({ logger: false });
  await app.register(playgroundRoutes);
  t.teardown(() => app.close());
  const res = await app.inject({ method: 'GET', url: '/playground' });
  t.equal(res.statusCode, 200);
  t.match(res.headers['content-security-policy'], /script-src 'self'; style-src 'self'/, 'the strict CSP still applies');
  const page = res.body;
  t.notMatch(page, /<!-- \w+ (files|fields) -->/, 'no marker is left');
  t.notMatch(page, /<script(?![^>]*\ssrc=)|<style|\sstyle=/, 'no inline script or style');
  for (const [form, name] of Object.entries(FORMS)) {
    const schema = componentSchema(name) as unknown as FormSchema;
    t.same(fileFields(schema), formSchema(name).files, `${name}: the page's files are the ones the API reads`);
    const html = new RegExp(`<form id="${form}-form">([^]*?)</form>`).exec(page)?.[1] ?? '';
    for (const [field, p] of Object.entries(schema.properties)) {
      if (p['x-playground'] === 'hidden') t.notOk(html.includes(`name="${field}"`), `${name}: ${field} is not on the page`);
      else t.ok(html.includes(` id="${form}-${field}" name="${field}"`), `${name}: ${field} is on the page`);
    }
  }
  t.match(page, /<input id="generate-image" name="image" type="file" accept="image\/jpeg,image\/png,image\/webp" multiple title=/, 'accept from the multipart encoding; the array of photos takes several (or a stored identity instead)');
  t.match(page, /<input id="morph-frames" name="frames" type="number" min="2" max="64" step="1" value="12"/, 'frames, the one value the page starts itself');
});

t.test('a field added to GenerateForm in openapi.yaml appears on the page', async (t) => {
  const properties = (openapiDocument.components.schemas.GenerateForm as { properties: Record<string, unknown> }).properties;
  properties.tone = { type: 'string', enum: ['warm', 'cool'], default: 'cool', title: 'Tone', description: 'Colour balance.' };
  properties.grain = { type: 'integer', minimum: 0, maximum: 5, default: 1, title: 'Grain', 'x-playground': 'advanced' };
  t.teardown(() => {
    delete properties.tone;
    delete properties.grain;
  });
  const page = playgroundPage();
  t.ok(page.includes('<select id="generate-tone" name="tone" title="Colour balance."><option value="warm">warm</option><option value="cool" selected>cool</option></select>'), 'the new enum, its default selected');
  t.match(page, /<details class="more">[^]*<input id="generate-grain" name="grain" type="number" min="0" max="5" step="1" value="1">[^]*?<\/details>/, 'the new integer, under More options');
});
