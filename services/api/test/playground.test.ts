// The playground in a real browser: Debian's Chromium driven by playwright-core (no browser
// download). The forms hold the contract's fields (openapi.yaml's GenerateForm, MorphForm,
// CompareForm, with their defaults); upload real photos (JPEG files), see the images and the
// detected faces appear, play a morph, compare, see the API's error message; what the page sends
// is what was filled in, nothing empty; with API keys, the page sends the key it is given. The
// faces found on a group photo are buttons that choose the face for the next run; a request that
// fails leaves no earlier result on screen.
// With ../shared/faces present the tour runs again on real photos with the embedded default.
// DIFFID_SCREENSHOTS=DIR saves a screenshot of each tab of the first run there (docs/images has them).
import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { chromium, type Browser, type Locator, type Page } from 'playwright-core';
import { buildDefaultBundle } from '../../gpu-worker/src/bundles/default-bundle.ts';
import { buildDemoBundle } from '../../gpu-worker/src/bundles/demo-bundle.ts';
import { tempDir } from '../../gpu-worker/test/helpers.ts';
import { keyRing, parseApiKeys } from '../src/auth.ts';
import { componentSchema } from '@diffid/shared/openapi';
import type { PropertySchema } from '../src/playground-form.ts';
import { postForm, startStack } from './harness.ts';
import { faceFile } from './images.ts';

const CHROMIUM = process.env.DIFFID_CHROMIUM ?? '/usr/bin/chromium';
const skip = existsSync(CHROMIUM) ? false : `no Chromium at ${CHROMIUM} (Debian: apt-get install chromium; .ci/run installs it): the playground is not tested in a browser`;
const SHOTS = process.env.DIFFID_SCREENSHOTS;
const PHOTOS = join(import.meta.dirname, '../../../../shared/faces/photos');

async function launch(t: Test): Promise<Browser> {
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    // As root in a container Chromium needs --no-sandbox; the rest keep it off this machine's closed network.
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  t.teardown(() => browser.close());
  return browser;
}

const FORMS = { generate: 'GenerateForm', morph: 'MorphForm', compare: 'CompareForm' } as const;

/**
 * Every property of the three forms is on the page as its schema says — a drop zone, select,
 * checkbox or number input by type, labelled with its title, starting at its default, up front or
 * under "More options" — and the hidden ones are not.
 */
async function contractFields(t: Test, page: Page): Promise<void> {
  for (const [form, schemaName] of Object.entries(FORMS)) {
    const { properties } = componentSchema(schemaName) as { properties: Record<string, PropertySchema> };
    for (const [name, p] of Object.entries(properties)) {
      if (p['x-playground'] === 'hidden') {
        // By name: a hidden field's id may well be one of the page's own (morph-animation is the player).
        t.equal(await page.locator(`#${form}-form [name="${name}"]`).count(), 0, `${form}: ${name} is not on the page`);
        continue;
      }
      const field = page.locator(`#${form}-${name}`);
      const seen = await field.evaluate((el: any) => ({ tag: el.tagName, type: el.type, name: el.name, value: el.value, checked: el.checked, multiple: el.multiple, label: el.closest('label').textContent, more: el.closest('details.more') !== null }));
      const file = p.format === 'binary' || p.items?.format === 'binary';
      const constant = p['x-diffid-default'] === undefined ? p.default : undefined;
      const kind = file ? { tag: 'INPUT', type: 'file', multiple: p.type === 'array' } : p.enum ? { tag: 'SELECT' } : p.type === 'boolean' ? { type: 'checkbox', checked: constant === true } : p.type === 'integer' || p.type === 'number' ? { type: p['x-playground-input'] === 'slider' ? 'range' : 'number' } : { type: 'text' };
      const starts = constant !== undefined && p.type !== 'boolean' && !(form === 'morph' && name === 'frames') ? { value: new RegExp(`^${String(constant)}$`) } : {};
      t.match(seen, { name, label: new RegExp(p.title ?? name.replaceAll('_', ' ')), more: p['x-playground'] === 'advanced', ...kind, ...starts }, `${form}: ${name}`);
    }
  }
}

/**
 * Keeps the text fields of the last form the page POSTed to each path, files left out: Chromium
 * does not hand Playwright a multipart body with files in it, so the page's fetch is watched instead.
 */
async function recordForms(page: Page): Promise<() => Promise<Record<string, Record<string, string>>>> {
  await page.addInitScript(() => {
    const w = globalThis as any;
    const fetch = w.fetch;
    w.sentForms = {};
    w.fetch = (input: string, init?: { method?: string; body?: unknown }) => {
      if (init?.body instanceof w.FormData) w.sentForms[input] = Object.fromEntries([...(init.body as any).entries()].filter(([, v]) => typeof v === 'string'));
      return fetch(input, init);
    };
  });
  return () => page.evaluate(() => (globalThis as any).sentForms);
}

/** Generate, morph, compare and an error, as a user does them; screenshots when SHOTS is set. */
async function tour(t: Test, base: string, photos: { a: string; b: string }, shots?: string): Promise<void> {
  const browser = await launch(t);
  const page = await browser.newPage({ viewport: { width: 1200, height: 900 } });
  const problems: string[] = [];
  page.on('pageerror', (err) => problems.push(err.message));
  page.on('console', (m) => m.type() === 'error' && problems.push(m.text()));
  const sent = await recordForms(page);

  const landing = await page.goto(`${base}/`);
  t.equal(landing?.status(), 200);
  await page.click('a[href="/playground"]');
  await page.waitForURL(`${base}/playground`);
  await contractFields(t, page);

  // Generate: choose the photo, fill the fields up front and one under "More options", submit,
  // watch it finish.
  await page.setInputFiles('#generate-image', photos.a);
  await page.fill('#generate-prompt', 'a portrait photo');
  await page.fill('#generate-num_images', '2');
  await page.fill('#generate-seed', '3');
  await page.fill('#generate-identity_scale', '1.5');
  t.equal(await page.textContent('output[for="generate-identity_scale"]'), '1.5', 'the strength slider shows its value');
  await page.click('#generate-form details.more > summary');
  await page.selectOption('#generate-on_missing_face', 'skip');
  await page.click('#generate-submit');
  // Waits go through locators: the page's CSP (no eval) refuses string predicates.
  // "done in" is written after the page has drawn everything, so nothing below races the rendering.
  await page.locator('#generate-status', { hasText: 'done in' }).waitFor({ timeout: 60_000 });
  // Browser-side code sees the DOM; this file is type-checked without the DOM's types (any).
  t.same(await page.locator('#generate-results img').evaluateAll((imgs) => Promise.all(imgs.map(async (i) => (await (i as any).decode(), (i as any).naturalWidth)))), [256, 256], 'both images decode in the browser');
  const captions = await page.locator('#generate-results figcaption').allTextContents();
  t.match(captions, [/^seed 3 · similarity 0\.\d{3}$/, /^seed 4 · similarity/], 'two images with their similarity');
  t.match(await page.textContent('#generate-status'), /^done in \d+\.\d s$/);
  t.equal(await page.locator('#generate-previews canvas').getAttribute('data-faces'), '1', 'the face found is drawn on the photo');
  t.equal(await page.getAttribute('#generate-progress', 'value'), await page.getAttribute('#generate-progress', 'max'), 'the progress bar reached the end');
  t.same((await sent())['/generate'], { prompt: 'a portrait photo', num_images: '2', seed: '3', identity_scale: '1.5', identity_start: '0', identity_end: '1', on_missing_face: 'skip', priority: 'normal' }, 'what was filled in is sent, and the defaults shown; empty fields are not (the server applies its defaults)');
  if (shots) await page.screenshot({ path: join(shots, 'playground-generate.png'), fullPage: true });

  // Morph: two photos, even pacing, there and back; the animation plays and can be downloaded.
  await page.click('#tab-morph');
  await page.setInputFiles('#morph-image_a', photos.a);
  await page.setInputFiles('#morph-image_b', photos.b);
  await page.fill('#morph-frames', '6');
  await page.selectOption('#morph-pacing', 'even');
  await page.check('#morph-boomerang');
  await page.click('#morph-submit');
  await page.locator('#morph-status', { hasText: 'done in' }).waitFor({ timeout: 60_000 });
  const animation = await page.locator('#morph-animation').evaluate(async (img: any) => {
    await img.decode();
    const bytes = new Uint8Array(await (await fetch(img.src)).arrayBuffer());
    return { width: img.naturalWidth, riff: String.fromCharCode(...bytes.slice(0, 4)), anim: new TextDecoder().decode(bytes.slice(0, 200)).includes('ANIM') };
  });
  t.same(animation, { width: 256, riff: 'RIFF', anim: true }, 'an animated WebP is playing');
  t.equal(await page.locator('#morph-results figure').count(), 6);
  t.match(await page.textContent('#morph-pacing-result'), /pacing evenness \d\.\d{3} · 10 frames at 12 a second/, 'six frames there and four back, at the contract\'s default rate');
  t.same((await sent())['/morph'], { frames: '6', pacing: 'even', background: 'morph', fps: '12', strategy: 'slerp', identity_scale: '1', identity_start: '0', identity_end: '1', steps: '50', animation: 'webp,gif', boomerang: 'true', priority: 'normal' }, 'the defaults shown are sent, and the animations the player needs');
  const download = page.waitForEvent('download');
  await page.click('#morph-download-gif');
  t.equal((await download).suggestedFilename(), 'morph.gif');
  if (shots) await page.screenshot({ path: join(shots, 'playground-morph.png'), fullPage: true });

  // Compare.
  await page.click('#tab-compare');
  await page.setInputFiles('#compare-image_a', photos.a);
  await page.setInputFiles('#compare-image_b', photos.b);
  await page.click('#compare-submit');
  await page.locator('#compare-status', { hasText: 'done in' }).waitFor({ timeout: 60_000 });
  t.match(await page.textContent('#compare-similarity'), /^similarity -?[01]\.\d{3}$/);
  t.equal(await page.locator('#compare-previews canvas').count(), 2);
  if (shots) await page.screenshot({ path: join(shots, 'playground-compare.png'), fullPage: true });

  // An error answer is shown as the API's message.
  await page.setInputFiles('#compare-image_b', { name: 'notes.jpg', mimeType: 'image/jpeg', buffer: Buffer.from('not an image') });
  await page.click('#compare-submit');
  await page.waitForSelector('#compare-error:not([hidden])');
  t.match(await page.textContent('#compare-error'), /"image_b" is not a JPEG, PNG or WebP image .*\(DIFFID_ERR_UNSUPPORTED_IMAGE\)/);
  t.equal(await page.textContent('#compare-similarity'), '', 'the similarity of the photos compared before is not shown under the error');
  t.equal(await page.locator('#compare-previews canvas').count(), 1, 'the photos shown are the ones chosen now (the one that is no image is not drawn)');
  t.same(problems.filter((p) => !/400 \(Bad Request\)|415 \(Unsupported Media Type\)/.test(p)), [], 'no script errors');
}

t.test('generate, morph and compare in the playground (demo bundle, drawn faces)', { skip }, async (t) => {
  const s = await startStack(t, { build: buildDemoBundle });
  const dir = await tempDir(t, 'diffid-playground-');
  const photos = { a: join(dir, 'person-a.jpg'), b: join(dir, 'person-b.jpg') };
  await writeFile(photos.a, await faceFile(31));
  await writeFile(photos.b, await faceFile(32));
  await tour(t, s.base, photos, SHOTS);
});

t.test('the same with real photos on the embedded default (its detector finds the faces)', { skip: skip || (!existsSync(join(PHOTOS, 'max_Luciano.png')) && `../shared/faces is absent (looked in ${PHOTOS})`) }, async (t) => {
  const s = await startStack(t, { build: buildDefaultBundle });
  // No screenshots of this run: the photos of ../shared/faces stay out of the repository.
  await tour(t, s.base, { a: join(PHOTOS, 'max_Luciano.png'), b: join(PHOTOS, 'max_Bryan.png') });
});

t.test("a stored identity is offered to pick, and a generate by it needs no photo", { skip }, async (t) => {
  const s = await startStack(t, { build: buildDemoBundle });
  const stored = (await (await postForm(s.base, '/identities', { image: { bytes: await faceFile(34) }, name: 'subject 34' })).json()) as { id: string };
  const browser = await launch(t);
  const page = await browser.newPage();
  await page.goto(`${s.base}/playground`);
  const option = page.locator('#stored-identities option');
  await option.first().waitFor({ state: 'attached' });
  t.same(await option.evaluateAll((os) => os.map((o) => [(o as any).value, (o as any).label])), [[stored.id, 'subject 34']], 'the key\'s identity, by its name');
  t.equal(await page.getAttribute('#generate-identity', 'list'), 'stored-identities', 'the identity field offers them');
  await page.click('#generate-form details.more > summary');
  await page.fill('#generate-identity', stored.id);
  await page.fill('#generate-prompt', 'a portrait');
  await page.fill('#generate-num_images', '1');
  await page.click('#generate-submit');
  await page.locator('#generate-status', { hasText: 'done in' }).waitFor({ timeout: 60_000 });
  t.match(await page.locator('#generate-results figcaption').allTextContents(), [/^seed \d+ · similarity 0\.\d{3}$/]);
});

t.test('with API keys the page loads without one and sends the key it is given', { skip }, async (t) => {
  const key = 'pk-123456789012345678901234';
  const s = await startStack(t, { build: buildDemoBundle, access: { keys: keyRing(parseApiKeys(`lab:${key}`).tenants), rateLimitPerMinute: 1000, maxStreamsPerKey: 5 } });
  const dir = await tempDir(t, 'diffid-playground-');
  await writeFile(join(dir, 'a.jpg'), await faceFile(33));
  const browser = await launch(t);
  const page = await browser.newPage();
  t.equal((await page.goto(`${s.base}/playground`))?.status(), 200, 'the page itself needs no key');
  await page.setInputFiles('#compare-image_a', join(dir, 'a.jpg'));
  await page.setInputFiles('#compare-image_b', join(dir, 'a.jpg'));
  await page.click('#tab-compare');
  await page.click('#compare-submit');
  await page.waitForSelector('#compare-error:not([hidden])');
  t.match(await page.textContent('#compare-error'), /needs a key.*DIFFID_ERR_UNAUTHORIZED/);
  await page.fill('#api-key', key);
  await page.click('#compare-submit');
  await page.locator('#compare-status', { hasText: 'done in' }).waitFor({ timeout: 60_000 });
  t.match(await page.textContent('#compare-similarity'), /^similarity/);
});

/** Submits a form and waits for the page to show its job done; the job's id. Throws the page's error line if it shows one instead. */
async function submit(page: Page, form: 'generate' | 'morph' | 'compare'): Promise<string> {
  const accepted = page.waitForResponse((r) => new URL(r.url()).pathname === `/${form}` && r.request().method() === 'POST');
  await page.click(`#${form}-submit`);
  const { id } = (await (await accepted).json()) as { id: string };
  await page.locator(`#${form}-status:has-text("done in"), #${form}-error:not([hidden])`).waitFor({ timeout: 120_000 });
  const error = page.locator(`#${form}-error`);
  if (await error.isVisible()) throw new Error(`${form}: the page shows the error ${await error.textContent()}`);
  return id;
}

const jobView = async (base: string, id: string) => (await fetch(`${base}/jobs/${id}`)).json() as Promise<Record<string, any>>;
const labels = (buttons: Locator) => buttons.evaluateAll((bs) => bs.map((b) => b.getAttribute('aria-label')));
const pressed = (buttons: Locator) => buttons.evaluateAll((bs) => bs.map((b) => b.getAttribute('aria-pressed')));

function watchProblems(page: Page): string[] {
  const problems: string[] = [];
  page.on('pageerror', (err) => problems.push(err.message));
  page.on('console', (m) => m.type() === 'error' && problems.push(m.text()));
  return problems;
}

t.test('a face drawn on a group photo is a button: a click or a key chooses it for the next run (the embedded default)', { skip: skip || (!existsSync(join(PHOTOS, 'nasa_apollo11_crew.jpg')) && `../shared/faces is absent (looked in ${PHOTOS}): no group photos`) }, async (t) => {
  const s = await startStack(t, { build: buildDefaultBundle });
  const browser = await launch(t);
  const page = await browser.newPage({ viewport: { width: 1200, height: 900 } });
  const problems = watchProblems(page);
  const sent = await recordForms(page);
  await page.goto(`${s.base}/playground`);

  // Generate from two photos: the pair (two faces) and a portrait (one). Nothing chosen: the largest faces.
  await page.setInputFiles('#generate-image', [join(PHOTOS, 'fr_two_people.jpg'), join(PHOTOS, 'fr_obama.jpg')]);
  await page.fill('#generate-prompt', 'a portrait photo');
  await page.fill('#generate-steps', '4');
  const first = await jobView(s.base, await submit(page, 'generate'));
  t.equal(first.status, 'succeeded', JSON.stringify(first.error ?? ''));
  t.equal((await sent())['/generate']?.face_index, undefined, 'no face chosen yet: none sent');
  const used = first.result.inputs[0].face_index as number;
  const photos = page.locator('#generate-previews .photo');
  t.equal(await photos.count(), 2);
  const pair = photos.nth(0).getByRole('button');
  t.same(await labels(pair), ['face 1 of 2', 'face 2 of 2'], 'each face of the pair is a button, named by its place');
  t.same(await pressed(pair), ['false', 'false'], 'none chosen: the service used the largest');
  t.equal(await photos.nth(1).getByRole('button').count(), 0, 'a photo with one face has nothing to choose');
  t.match(await photos.nth(0).locator('.note').textContent(), new RegExp(`^2 faces, face ${used} used: click a face to choose it$`));

  // Click the other face (the second: the detector takes the left one as the largest): the field
  // under "More options" says so, one entry per photo, and the face is marked.
  const other = used === 0 ? 1 : 0;
  t.comment(`the pair: face ${used} used, face ${other} clicked`);
  await pair.nth(other).click();
  t.equal(await page.inputValue('#generate-face_index'), `${other},0`, 'the face field: the face clicked for the pair, the face used before for the portrait');
  t.same(await pressed(pair), other === 1 ? ['false', 'true'] : ['true', 'false'], 'the face clicked is marked as chosen');
  t.equal(await photos.nth(0).locator('.note').textContent(), `face ${other} chosen for the next run`);
  const second = await jobView(s.base, await submit(page, 'generate'));
  t.equal((await sent())['/generate']?.face_index, `${other},0`, 'the next request sends it');
  t.same(second.params.face_index, [other, 0], 'the job was asked for it');
  t.equal(second.result.inputs[0].face_index, other, 'and used it');
  t.same(await pressed(photos.nth(0).getByRole('button')), other === 1 ? ['false', 'true'] : ['true', 'false'], 'still marked once the photos are drawn again');

  // Compare: three astronauts; a face chosen from the keyboard.
  await page.click('#tab-compare');
  await page.setInputFiles('#compare-image_a', join(PHOTOS, 'fr_obama.jpg'));
  await page.setInputFiles('#compare-image_b', join(PHOTOS, 'nasa_apollo11_crew.jpg'));
  const crewJob = await jobView(s.base, await submit(page, 'compare'));
  t.equal(crewJob.status, 'succeeded', JSON.stringify(crewJob.error ?? ''));
  const crew = page.locator('#compare-previews .photo').nth(1).getByRole('button');
  t.same(await labels(crew), ['face 1 of 3', 'face 2 of 3', 'face 3 of 3']);
  const usedB = crewJob.result.inputs[1].face_index as number;
  const pick = usedB === 2 ? 1 : 2;
  await crew.nth(pick).focus();
  await page.keyboard.press('Enter');
  t.equal(await page.inputValue('#compare-face_index_b'), String(pick), 'Enter on a face chooses it');
  t.equal(await page.inputValue('#compare-face_index_a'), '', "the other photo's field is left alone");
  const chosen = await jobView(s.base, await submit(page, 'compare'));
  t.same((await sent())['/compare'], { face_index_b: String(pick), priority: 'normal' });
  t.equal(chosen.params.face_index_b, pick);
  t.equal(chosen.result.inputs[1].face_index, pick, 'the compared face is the one chosen');

  // Another photo in its place: a face clicked on the old one means nothing on it.
  await page.setInputFiles('#compare-image_b', join(PHOTOS, 'fr_two_people.jpg'));
  t.equal(await page.inputValue('#compare-face_index_b'), '', 'a face chosen by clicking goes with its photo');
  t.same(problems, [], 'no script errors');
});

t.test('a request that fails leaves no earlier result on screen', { skip }, async (t) => {
  const s = await startStack(t, { build: buildDemoBundle });
  const dir = await tempDir(t, 'diffid-playground-');
  await writeFile(join(dir, 'a.jpg'), await faceFile(34));
  await writeFile(join(dir, 'b.jpg'), await faceFile(35));
  const browser = await launch(t);
  const page = await browser.newPage({ viewport: { width: 1200, height: 900 } });
  const problems = watchProblems(page);
  await page.goto(`${s.base}/playground`);

  // Generate, then a job that fails (the demo bundle sees one face; face_index 5 is none). Its
  // event stream is held until the page has been looked at: the old images went as it started.
  await page.setInputFiles('#generate-image', join(dir, 'a.jpg'));
  await page.fill('#generate-prompt', 'a portrait photo');
  await submit(page, 'generate');
  t.equal(await page.locator('#generate-results figure').count(), 1);
  let release = () => {};
  const held = new Promise<void>((resolve) => (release = resolve));
  await page.route('**/jobs/*/events', async (route) => {
    await held;
    await route.continue();
  }, { times: 1 });
  await page.click('#generate-form details.more > summary');
  await page.fill('#generate-face_index', '5');
  const following = page.waitForRequest((r) => r.url().endsWith('/events'));
  await page.click('#generate-submit');
  await following;
  t.equal(await page.locator('#generate-results figure').count(), 0, 'the images of the request before are gone as a new one starts');
  release();
  await page.waitForSelector('#generate-error:not([hidden])');
  t.match(await page.textContent('#generate-error'), /face_index 5 asks for a face that is not there.*\(DIFFID_ERR_FACE_INDEX_OUT_OF_RANGE\)/);
  t.equal(await page.locator('#generate-results figure').count(), 0, 'the failed job shows its error alone');
  t.equal(await page.textContent('#generate-status'), '');

  // A success again, then a request the API refuses (400).
  await page.fill('#generate-face_index', '');
  await submit(page, 'generate');
  t.ok(await page.locator('#generate-error').isHidden(), 'the error goes with the next request');
  t.equal(await page.locator('#generate-results figure').count(), 1);
  await page.setInputFiles('#generate-image', { name: 'notes.jpg', mimeType: 'image/jpeg', buffer: Buffer.from('not an image') });
  await page.click('#generate-submit');
  await page.waitForSelector('#generate-error:not([hidden])');
  t.match(await page.textContent('#generate-error'), /DIFFID_ERR_UNSUPPORTED_IMAGE/);
  t.equal(await page.locator('#generate-results figure').count(), 0, 'a refused request shows its error alone');

  // Morph: the player and the frames of the last morph go when the next one fails.
  await page.click('#tab-morph');
  await page.setInputFiles('#morph-image_a', join(dir, 'a.jpg'));
  await page.setInputFiles('#morph-image_b', join(dir, 'b.jpg'));
  await page.fill('#morph-frames', '3');
  await submit(page, 'morph');
  t.ok(await page.locator('#morph-player').isVisible());
  t.equal(await page.locator('#morph-results figure').count(), 3);
  await page.click('#morph-form details.more > summary');
  await page.fill('#morph-face_index_a', '5');
  await page.click('#morph-submit');
  await page.waitForSelector('#morph-error:not([hidden])');
  t.match(await page.textContent('#morph-error'), /DIFFID_ERR_FACE_INDEX_OUT_OF_RANGE/);
  t.ok(await page.locator('#morph-player').isHidden(), 'the player of the morph before is gone');
  t.equal(await page.locator('#morph-results figure').count(), 0, 'and its frames');
  t.equal(await page.locator('#morph-animation').getAttribute('src'), null);
  t.same(problems.filter((p) => !/400 \(Bad Request\)|415 \(Unsupported Media Type\)/.test(p)), [], 'no script errors');
});
