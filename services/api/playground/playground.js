// The playground: plain browser JavaScript, no build step. It calls the same API as everyone
// (multipart forms, the event stream, result URLs), with the API key from the header field when
// the server asks for one; results that need the key are fetched and shown as blob URLs. The
// forms' inputs are drawn from openapi.yaml by the server (ids `${form}-${field}`), so this script
// names none of them: it reads whatever each form holds.

const $ = (selector) => document.querySelector(selector);
const TERMINAL = new Set(['succeeded', 'failed', 'canceled']);
const keyField = $('#api-key');
keyField.value = localStorage.getItem('diffid-api-key') ?? '';
keyField.addEventListener('change', () => localStorage.setItem('diffid-api-key', keyField.value.trim()));

const authHeaders = () => (keyField.value.trim() ? { authorization: `Bearer ${keyField.value.trim()}` } : {});

/** fetch with the key; an error answer becomes an Error carrying the API's code and message. */
async function api(path, init = {}) {
  const res = await fetch(path, { ...init, headers: { ...authHeaders(), ...(init.headers ?? {}) } });
  if (!res.ok) {
    let message = `HTTP ${res.status}`;
    try {
      const body = await res.json();
      message = `${body.error.message} (${body.error.code})`;
    } catch {}
    throw new Error(message);
  }
  return res;
}

/** Follows a job's server-sent events (fetch, so that the key can go along); resolves with the finished job. */
async function follow(id, onJob) {
  const res = await api(`/jobs/${id}/events`);
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value;
    let end;
    while ((end = buffer.indexOf('\n\n')) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const lines = block.split('\n');
      const event = lines.find((l) => l.startsWith('event:'))?.slice(6).trim();
      const data = lines.filter((l) => l.startsWith('data:')).map((l) => l.slice(5).trimStart()).join('\n');
      if (event !== 'job' || !data) continue;
      const job = JSON.parse(data);
      onJob(job);
      if (TERMINAL.has(job.status)) {
        reader.cancel().catch(() => {});
        return job;
      }
    }
  }
  return (await api(`/jobs/${id}`)).json();
}

const blobUrl = async (path) => URL.createObjectURL(await (await api(path)).blob());

/** A photo drawn upright with the faces a job found on it: boxes, landmarks, the one used in colour. */
async function drawFaces(container, file, faces = [], used = null, label = '') {
  const bitmap = await createImageBitmap(file, { imageOrientation: 'from-image' });
  const canvas = document.createElement('canvas');
  canvas.width = bitmap.width;
  canvas.height = bitmap.height;
  canvas.title = label;
  const g = canvas.getContext('2d');
  g.drawImage(bitmap, 0, 0);
  const line = Math.max(2, bitmap.width / 200);
  faces.forEach((face, i) => {
    const [x1, y1, x2, y2] = face.box;
    g.lineWidth = line;
    g.strokeStyle = i === used ? '#2ecc71' : '#f0b429';
    g.strokeRect(x1, y1, x2 - x1, y2 - y1);
    g.fillStyle = g.strokeStyle;
    for (const [x, y] of Object.values(face.landmarks)) g.fillRect(x - line, y - line, 2 * line, 2 * line);
    g.font = `${Math.max(12, bitmap.width / 30)}px system-ui`;
    g.fillText(`face ${i}`, x1, Math.max(12, y1 - line * 2));
  });
  canvas.dataset.faces = String(faces.length);
  container.append(canvas);
}

/** The files chosen in a form, in the order of its file inputs (the order of the job's `inputs`). */
const formFiles = (form) => [...form.querySelectorAll('input[type=file]')].flatMap((input) => [...input.files]);

// A container's drawing round: photos still decoding for an earlier round are not added to a later one.
const rounds = new WeakMap();
function clearPreviews(container) {
  rounds.set(container, (rounds.get(container) ?? 0) + 1);
  container.replaceChildren();
}

function showPreviews(container, files) {
  clearPreviews(container);
  const round = rounds.get(container);
  for (const file of files) {
    const holder = document.createElement('div');
    drawFaces(holder, file)
      .then(() => rounds.get(container) === round && container.append(...holder.childNodes))
      .catch(() => {});
  }
}

function figure(src, caption) {
  const f = document.createElement('figure');
  const img = document.createElement('img');
  img.src = src;
  img.alt = caption;
  const c = document.createElement('figcaption');
  c.textContent = caption;
  f.append(img, c);
  return f;
}

/** Runs a form's job: submit, live progress, then `render(job)`; errors in the form's error line. */
function wire(name, path, prepare, render) {
  const form = $(`#${name}-form`);
  const button = $(`#${name}-submit`);
  const progress = $(`#${name}-progress`);
  const status = $(`#${name}-status`);
  const error = $(`#${name}-error`);
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    error.hidden = true;
    button.disabled = true;
    progress.hidden = false;
    progress.value = 0;
    status.textContent = 'uploading…';
    try {
      const body = new FormData(form);
      for (const [k, v] of [...body.entries()]) if (v === '' || (v instanceof File && v.size === 0)) body.delete(k);
      // A checkbox shows the contract's default; an unchecked one would be left out (and so get
      // the server's default, whatever the box showed), so its state is sent either way.
      for (const box of form.querySelectorAll('input[type=checkbox][name]')) body.set(box.name, String(box.checked));
      prepare(body);
      const { id } = await (await api(path, { method: 'POST', body })).json();
      const job = await follow(id, (j) => {
        progress.max = Math.max(1, j.progress.total);
        progress.value = j.progress.step;
        status.textContent = `${j.status} — step ${j.progress.step} of ${j.progress.total}`;
      });
      if (job.status !== 'succeeded') throw new Error(job.error ? `${job.error.message} (${job.error.code})` : `the job ${job.status}`);
      await render(job, form);
      status.textContent = `done in ${(job.result.timings_ms.total / 1000).toFixed(1)} s`;
    } catch (err) {
      error.textContent = err.message;
      error.hidden = false;
      status.textContent = '';
    } finally {
      button.disabled = false;
    }
  });
}

const fmt = (v) => (typeof v === 'number' ? v.toFixed(3) : '—');

/** The form's photos again, with the faces the job found on each and the one it used. */
async function drawInputs(container, form, job) {
  clearPreviews(container);
  const inputs = job.result.inputs ?? [];
  for (const [i, file] of formFiles(form).entries()) await drawFaces(container, file, inputs[i]?.faces, inputs[i]?.face_index, inputs[i]?.input);
}

wire(
  'generate',
  '/generate',
  () => {},
  async (job, form) => {
    const results = $('#generate-results');
    results.replaceChildren();
    for (const img of job.result.images) {
      results.append(figure(await blobUrl(img.url), `seed ${img.seed} · similarity ${fmt(img.arcface_similarity)}`));
    }
    await drawInputs($('#generate-previews'), form, job);
  },
);

wire(
  'morph',
  '/morph',
  // The player and the downloads need these two (openapi.yaml keeps `animation` off the page).
  (body) => body.set('animation', 'webp,gif'),
  async (job) => {
    const byFormat = Object.fromEntries((job.result.animations ?? []).map((a) => [a.format, a]));
    const webp = await blobUrl(byFormat.webp.url);
    $('#morph-animation').src = webp;
    $('#morph-download-webp').href = webp;
    $('#morph-download-gif').href = await blobUrl(byFormat.gif.url);
    $('#morph-pacing-result').textContent = `pacing evenness ${fmt(job.result.pacing_evenness)} · ${byFormat.webp.frames} frames at ${byFormat.webp.fps} a second`;
    // The frames are fetched before anything is shown, so the player never appears beside a half-filled strip.
    const frames = [];
    for (const img of job.result.images) frames.push(figure(await blobUrl(img.url), `α ${img.alpha.toFixed(2)} · A ${fmt(img.arcface_similarity_a)} · B ${fmt(img.arcface_similarity_b)}`));
    $('#morph-results').replaceChildren(...frames);
    $('#morph-player').hidden = false;
  },
);

wire(
  'compare',
  '/compare',
  () => {},
  async (job, form) => {
    $('#compare-similarity').textContent = `similarity ${fmt(job.result.similarity)}`;
    await drawInputs($('#compare-previews'), form, job);
  },
);

// Previews as soon as photos are chosen (in forms with a previews area above their fields); files
// dropped on a drop zone go to its input.
for (const name of ['generate', 'morph']) {
  const form = $(`#${name}-form`);
  form.addEventListener('change', (event) => {
    if (event.target.type === 'file') showPreviews($(`#${name}-previews`), formFiles(form));
  });
}
for (const zone of document.querySelectorAll('.drop')) {
  const input = zone.querySelector('input[type=file]');
  zone.addEventListener('dragover', (e) => {
    e.preventDefault();
    zone.classList.add('over');
  });
  zone.addEventListener('dragleave', () => zone.classList.remove('over'));
  zone.addEventListener('drop', (e) => {
    e.preventDefault();
    zone.classList.remove('over');
    input.files = e.dataTransfer.files;
    input.dispatchEvent(new Event('change'));
  });
}

for (const tab of document.querySelectorAll('[role=tab]')) {
  tab.addEventListener('click', () => {
    for (const other of document.querySelectorAll('[role=tab]')) {
      const selected = other === tab;
      other.setAttribute('aria-selected', String(selected));
      $(`#panel-${other.dataset.panel}`).hidden = !selected;
    }
  });
}
