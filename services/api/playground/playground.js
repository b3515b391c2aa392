// The playground: plain browser JavaScript, no build step. It calls the same API as everyone
// (multipart forms, the event stream, result URLs), with the API key from the header field when
// the server asks for one; results that need the key are fetched and shown as blob URLs. The
// forms' inputs are drawn from openapi.yaml by the server (ids `${form}-${field}`), so this script
// names none of them: it reads whatever each form holds. One convention ties fields together: the
// face used in a photo field `image…` is named by the field `face_index…` (image_b → face_index_b),
// which a click on a face drawn on that photo sets.

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

/** The key's stored identities, offered in every field that takes one (their names shown beside the ids). */
async function listIdentities() {
  const list = $('#stored-identities');
  try {
    const { identities } = await (await api('/identities?limit=100')).json();
    list.replaceChildren(...identities.filter((i) => i.status === 'ready').map((i) => Object.assign(document.createElement('option'), { value: i.id, label: i.name ?? `${i.photos} photo(s)` })));
  } catch {
    list.replaceChildren();
  }
}
listIdentities();
keyField.addEventListener('change', listIdentities);

const blobUrl = async (path) => URL.createObjectURL(await (await api(path)).blob());

// What the last finished job found on each photo, by the File chosen: previews drawn again (another
// photo chosen beside it, a later job that failed) still show a photo's faces, and still let one be
// chosen.
const found = new WeakMap();

/**
 * The photos chosen in a form, in the order of its file inputs (the order of the job's `inputs`),
 * each with the field that names its face (null when the form has none): `face_index_a` for
 * `image_a`; a repeated photo field's is one list, one index per photo, comma-separated.
 */
function photoSlots(form) {
  return [...form.querySelectorAll('input[type=file]')].flatMap((input) => {
    const named = form.elements.namedItem(input.name.replace(/^image/, 'face_index'));
    const field = named instanceof HTMLInputElement && named.type !== 'file' ? named : null;
    const files = [...input.files];
    return files.map((file, place) => ({ file, files, place, field, list: input.multiple }));
  });
}

const INDEX = /^\d+$/;

/** The face the form will send for a photo: its entry in the face field, or null (the largest). */
function chosenFace(slot) {
  const value = slot.field?.value.trim() ?? '';
  if (value === '') return null;
  const parts = value.split(',').map((p) => p.trim());
  if (parts.length !== (slot.list ? slot.files.length : 1)) return null;
  const part = parts[slot.list ? slot.place : 0];
  return INDEX.test(part) ? Number(part) : null;
}

/**
 * Sets a photo's entry in its face field. In a list, the other photos keep their entries, or (when
 * the list does not hold one per photo) get the face the last job used on them, which is what they
 * would get again.
 */
function chooseFace(slot, index) {
  const { field } = slot;
  let value = String(index);
  if (slot.list) {
    const parts = field.value.split(',').map((p) => p.trim());
    const whole = parts.length === slot.files.length && parts.every((p) => INDEX.test(p));
    value = slot.files.map((file, i) => (i === slot.place ? value : whole ? parts[i] : String(found.get(file)?.used ?? 0))).join(',');
  }
  field.value = value;
  // A choice made by clicking is forgotten when that photo is replaced (its faces are another photo's).
  field.dataset.picked = value;
  field.dispatchEvent(new Event('input', { bubbles: true }));
  field.dispatchEvent(new Event('change', { bubbles: true }));
}

// Each photo drawn: its slot, with the faces drawn on it.
const drawn = new WeakMap();

const clamp = (v, most) => Math.min(Math.max(v, 0), most);
const percent = (part, whole) => `${(100 * part) / whole}%`;

/**
 * A photo drawn upright with the faces a job found on it: boxes, landmarks, the one the job used in
 * colour. With several faces and a face field to set, each face is also a button (in the photo's
 * order, "face 2 of 4") that chooses it for the next run; the chosen one is outlined.
 */
async function drawPhoto(slot) {
  const { faces = [], used = null, label = slot.file.name } = found.get(slot.file) ?? {};
  const bitmap = await createImageBitmap(slot.file, { imageOrientation: 'from-image' });
  const { width, height } = bitmap;
  const canvas = document.createElement('canvas');
  canvas.width = width;
  canvas.height = height;
  canvas.title = label;
  canvas.setAttribute('role', 'img');
  canvas.setAttribute('aria-label', faces.length ? `${label}: ${faces.length} face${faces.length === 1 ? '' : 's'} found` : label);
  const g = canvas.getContext('2d');
  g.drawImage(bitmap, 0, 0);
  bitmap.close();
  const line = Math.max(2, width / 200);
  faces.forEach((face, i) => {
    const [x1, y1, x2, y2] = face.box;
    g.lineWidth = line;
    g.strokeStyle = i === used ? '#2ecc71' : '#f0b429';
    g.strokeRect(x1, y1, x2 - x1, y2 - y1);
    g.fillStyle = g.strokeStyle;
    for (const [x, y] of Object.values(face.landmarks)) g.fillRect(x - line, y - line, 2 * line, 2 * line);
    g.font = `${Math.max(12, width / 30)}px system-ui`;
    g.fillText(`face ${i}`, x1, Math.max(12, y1 - line * 2));
  });
  canvas.dataset.faces = String(faces.length);

  const photo = document.createElement('div');
  photo.className = 'photo';
  const frame = document.createElement('div');
  frame.className = 'frame';
  frame.append(canvas);
  photo.append(frame);
  if (slot.field && faces.length > 1) {
    const group = slot.list ? `photo ${slot.place + 1} of “${slot.field.name}”` : `“${slot.field.name}”`;
    faces.forEach((face, i) => {
      const [x1, y1, x2, y2] = face.box;
      const button = document.createElement('button');
      button.type = 'button';
      button.className = 'face';
      button.dataset.faceIndex = String(i);
      button.setAttribute('aria-label', `face ${i + 1} of ${faces.length}`);
      button.title = `face ${i}${i === used ? ' (used by the last run)' : ''}: use it for ${group}`;
      // Placed in percent of the photo, so that it stays on its face however large the photo is shown.
      const [left, right, top, bottom] = [clamp(x1, width), clamp(x2, width), clamp(y1, height), clamp(y2, height)];
      Object.assign(button.style, { left: percent(left, width), top: percent(top, height), width: percent(right - left, width), height: percent(bottom - top, height) });
      button.addEventListener('click', () => chooseFace(slot, i));
      frame.append(button);
    });
    const note = document.createElement('p');
    note.className = 'note';
    photo.append(note);
  }
  drawn.set(photo, { ...slot, faces, used });
  return photo;
}

/** Marks, on each photo drawn in a container, the face its form's field now chooses. */
function markChosen(container) {
  for (const photo of container.querySelectorAll('.photo')) {
    const slot = drawn.get(photo);
    const { faces, used } = slot;
    const chosen = chosenFace(slot);
    for (const button of photo.querySelectorAll('button.face')) button.setAttribute('aria-pressed', String(Number(button.dataset.faceIndex) === chosen));
    const note = photo.querySelector('.note');
    if (!note) continue;
    if (chosen !== null) note.textContent = `face ${chosen} chosen for the next run`;
    else note.textContent = `${faces.length} faces${used === null ? '' : `, face ${used} used`}: click a face to choose it`;
  }
}

// A container's drawing round: photos still decoding for an earlier round are not shown in a later one.
const rounds = new WeakMap();

/** The form's photos as now chosen, with the faces known on them, drawn all at once in the form's previews. */
async function showPhotos(container, form) {
  const round = (rounds.get(container) ?? 0) + 1;
  rounds.set(container, round);
  const photos = await Promise.allSettled(photoSlots(form).map(drawPhoto));
  if (rounds.get(container) !== round) return;
  container.replaceChildren(...photos.flatMap((d) => (d.status === 'fulfilled' ? [d.value] : [])));
  markChosen(container);
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

const revoke = (url) => url?.startsWith('blob:') && URL.revokeObjectURL(url);

/** Empties a results area, letting go of its images' blob URLs. */
function clearFigures(container) {
  for (const img of container.querySelectorAll('img')) revoke(img.src);
  container.replaceChildren();
}

/**
 * Runs a form's job: submit, live progress, then `render(job)` and the photos sent drawn again with
 * the faces the job found; errors in the form's error line. The last job's result (`clear`) goes
 * as a new request starts, and again when it fails, so that an error never stands over an earlier
 * request's images. The photos stay in the previews (they are the form's), with the faces the last
 * job that succeeded found on them, so that another can still be chosen.
 */
function wire(name, path, { prepare = () => {}, render, clear }) {
  const form = $(`#${name}-form`);
  const button = $(`#${name}-submit`);
  const progress = $(`#${name}-progress`);
  const status = $(`#${name}-status`);
  const error = $(`#${name}-error`);
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    error.hidden = true;
    clear();
    button.disabled = true;
    progress.hidden = false;
    progress.value = 0;
    status.textContent = 'uploading…';
    try {
      const photos = photoSlots(form);
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
      await render(job);
      await showInputs(name, job, photos);
      status.textContent = `done in ${(job.result.timings_ms.total / 1000).toFixed(1)} s`;
    } catch (err) {
      clear();
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
async function showInputs(name, job, photos) {
  const inputs = job.result.inputs ?? [];
  photos.forEach((slot, i) => {
    const seen = inputs[i];
    if (seen) found.set(slot.file, { faces: seen.faces, used: seen.face_index, label: seen.input });
  });
  await showPhotos($(`#${name}-previews`), $(`#${name}-form`));
}

wire('generate', '/generate', {
  clear: () => clearFigures($('#generate-results')),
  async render(job) {
    const results = $('#generate-results');
    for (const img of job.result.images) {
      results.append(figure(await blobUrl(img.url), `seed ${img.seed} · similarity ${fmt(img.arcface_similarity)}`));
    }
  },
});

wire('morph', '/morph', {
  // The player and the downloads need these two (openapi.yaml keeps `animation` off the page).
  prepare: (body) => body.set('animation', 'webp,gif'),
  clear() {
    $('#morph-player').hidden = true;
    const animation = $('#morph-animation');
    revoke(animation.src);
    animation.removeAttribute('src');
    for (const link of [$('#morph-download-webp'), $('#morph-download-gif')]) {
      revoke(link.href);
      link.removeAttribute('href');
    }
    $('#morph-pacing-result').textContent = '';
    clearFigures($('#morph-results'));
  },
  async render(job) {
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
});

wire('compare', '/compare', {
  clear: () => ($('#compare-similarity').textContent = ''),
  async render(job) {
    $('#compare-similarity').textContent = `similarity ${fmt(job.result.similarity)}`;
  },
});

// The photos as soon as they are chosen (with the faces a job found on them before, if any); a
// face chosen by clicking on a photo that is then replaced is forgotten. Typing in a face field
// moves the mark on the photos too.
for (const name of ['generate', 'morph', 'compare']) {
  const form = $(`#${name}-form`);
  const previews = $(`#${name}-previews`);
  form.addEventListener('change', (event) => {
    if (event.target.type !== 'file') return;
    const face = form.elements.namedItem(event.target.name.replace(/^image/, 'face_index'));
    if (face instanceof HTMLInputElement && face.type !== 'file' && face.dataset.picked === face.value) {
      face.value = '';
      delete face.dataset.picked;
    }
    showPhotos(previews, form);
  });
  form.addEventListener('input', () => markChosen(previews));
}
// A slider shows its value beside it.
for (const slider of document.querySelectorAll('input[type=range]')) {
  const output = document.querySelector(`output[for="${slider.id}"]`);
  slider.addEventListener('input', () => { if (output) output.textContent = slider.value; });
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
    input.dispatchEvent(new Event('change', { bubbles: true }));
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
