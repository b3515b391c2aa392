// Reads a multipart form and checks it against its openapi.yaml schema: files by name and by
// their bytes, text fields by the schema (with numbers coerced from their text).

import { Ajv, type ErrorObject } from 'ajv';
import addFormats from 'ajv-formats';
import type {} from '@fastify/multipart';
import type { FastifyRequest } from 'fastify';
import { ANIMATION_FORMATS, DiffIdError, LIMITS, inputLabel, type AnimationFormat, type InputName } from '@diffid/shared';
import { MAX_JOB_PIXELS, checkImage, sniffImageFormat } from '@diffid/shared/image';
import { formSchema } from './openapi.ts';

/** Bytes one uploaded image may have. */
export const MAX_FILE_BYTES = 20 * 1024 * 1024;
/** Bytes a form may spend on its text fields and multipart framing, besides its files. */
export const MAX_FIELDS_BYTES = 1024 * 1024;

const mb = (bytes: number) => Math.round(bytes / 1024 / 1024);

export interface ParsedForm {
  fields: Record<string, unknown>;
  /** Each file field's uploads, in the order they came. */
  files: Record<string, Buffer[]>;
}

// Defaults are the route's to apply (some come from the workers' bundle), not the validator's.
const ajv = new Ajv({ coerceTypes: true, useDefaults: false, allErrors: false, strict: false, verbose: true });
addFormats.default(ajv);

function fieldError(e: ErrorObject, fields: Record<string, unknown>): DiffIdError {
  const field = e.instancePath.slice(1) || String(e.params.additionalProperty ?? e.params.missingProperty ?? '');
  const got = field in fields ? ` (got ${JSON.stringify(fields[field])})` : '';
  switch (e.keyword) {
    case 'additionalProperties':
      return new DiffIdError('UNEXPECTED_FIELD', `"${field}" is not a field of this route`);
    case 'required':
      return new DiffIdError('VALIDATION', `the field "${field}" is required`);
    case 'maxLength':
      if (field.includes('prompt')) {
        return new DiffIdError('PROMPT_TOO_LONG', `"${field}" is longer than ${String(e.params.limit)} characters; shorten it`);
      }
      return new DiffIdError('VALIDATION', `"${field}" must be at most ${String(e.params.limit)} characters`);
    case 'minimum':
    case 'maximum':
      return new DiffIdError('VALIDATION', `"${field}" must be ${e.keyword === 'minimum' ? '≥' : '≤'} ${String(e.params.limit)}${got}`);
    case 'type':
      return new DiffIdError('VALIDATION', `"${field}" must be ${e.params.type === 'integer' ? 'a whole number' : `a ${String(e.params.type)}`}${got}`);
    case 'minLength':
      return new DiffIdError('VALIDATION', `"${field}" must not be empty`);
    case 'pattern': {
      const description = (e.parentSchema as { description?: string } | undefined)?.description;
      return new DiffIdError('VALIDATION', `"${field}" is not in the expected form${description ? `: ${description}` : ''}${got}`);
    }
    case 'enum':
      return new DiffIdError('VALIDATION', `"${field}" must be one of ${(e.params.allowedValues as unknown[]).join(', ')}${got}`);
    default:
      return new DiffIdError('VALIDATION', `"${field}" ${e.message ?? 'is invalid'}${got}`);
  }
}

/** A form reader for one openapi.yaml multipart schema. */
export function formReader(schemaName: string) {
  const schema = formSchema(schemaName);
  const validate = ajv.compile(schema.fields);
  const properties = (schema.fields as { properties: Record<string, { type?: string }> }).properties;
  const fieldNames = new Set(Object.keys(properties));
  const fieldTypes = Object.fromEntries(Object.entries(properties).map(([k, p]) => [k, p.type]));
  const maxBodyBytes = Object.values(schema.maxFiles).reduce((sum, n) => sum + n * MAX_FILE_BYTES, MAX_FIELDS_BYTES);
  // Per-request limits replace the plugin's as a whole, so every one is given here.
  const partLimits = {
    fileSize: MAX_FILE_BYTES,
    files: Object.values(schema.maxFiles).reduce((sum, n) => sum + n, 0) + 1,
    fields: fieldNames.size + 1,
    parts: fieldNames.size + schema.files.length + 8,
    fieldSize: 16 * 1024,
  };

  return async function readForm(request: FastifyRequest): Promise<ParsedForm> {
    if (!request.isMultipart()) {
      throw new DiffIdError('NOT_MULTIPART', 'send the request as multipart/form-data (for example curl -F image=@face.jpg -F prompt=...)');
    }
    const fields: Record<string, unknown> = {};
    const files: Record<string, Buffer[]> = {};
    // The tripwire ends the read the moment a limit is crossed, whatever the parser is doing: a
    // file over its size (busboy would otherwise read on to the part's end), or a body over the
    // route's total (an endless preamble or part never yields to the loop below).
    let trip: (err: DiffIdError) => void = () => undefined;
    const tripped = new Promise<never>((_, reject) => (trip = reject));
    tripped.catch(() => undefined);
    let seen = 0;
    const onData = (chunk: Buffer) => {
      seen += chunk.length;
      if (seen > maxBodyBytes) trip(new DiffIdError('FILE_TOO_LARGE', `the request body may be at most ${mb(maxBodyBytes)} MB on this route`));
    };
    request.raw.on('data', onData);
    const fileTooLarge = () => trip(new DiffIdError('FILE_TOO_LARGE', `each image may be at most ${mb(MAX_FILE_BYTES)} MB`));
    const read = async () => {
      for await (const part of request.parts({ limits: partLimits })) {
        const name = part.fieldname;
        if (part.type === 'file') {
          part.file.once('limit', fileTooLarge);
          if (!schema.files.includes(name)) {
            throw new DiffIdError('UNEXPECTED_FIELD', `this route takes no file "${name}"; its files are ${schema.files.join(', ')}`);
          }
          const list = (files[name] ??= []);
          const most = schema.maxFiles[name] ?? 1;
          if (list.length >= most) {
            throw new DiffIdError('UNEXPECTED_FIELD', most === 1 ? `the file "${name}" is given twice` : `the file "${name}" is given more than ${most} times`);
          }
          list.push(await part.toBuffer());
        } else {
          if (schema.files.includes(name)) throw new DiffIdError('VALIDATION', `"${name}" must be a file upload, not a text field`);
          if (!fieldNames.has(name)) throw new DiffIdError('UNEXPECTED_FIELD', `"${name}" is not a field of this route; its fields are ${[...fieldNames].join(', ')}`);
          if (name in fields) throw new DiffIdError('UNEXPECTED_FIELD', `the field "${name}" is given twice`);
          if (part.valueTruncated) {
            throw new DiffIdError(name.includes('prompt') ? 'PROMPT_TOO_LONG' : 'VALIDATION', `"${name}" is too long`);
          }
          fields[name] = part.value;
        }
      }
    };
    try {
      const reading = read();
      reading.catch(() => undefined);
      await Promise.race([reading, tripped]);
    } catch (err) {
      const code = (err as { code?: string }).code;
      if (code === 'FST_REQ_FILE_TOO_LARGE') throw new DiffIdError('FILE_TOO_LARGE', `each image may be at most ${mb(MAX_FILE_BYTES)} MB`);
      if (code === 'FST_FILES_LIMIT' || code === 'FST_PARTS_LIMIT' || code === 'FST_FIELDS_LIMIT') {
        throw new DiffIdError('UNEXPECTED_FIELD', 'the form has more parts than this route takes');
      }
      if (err instanceof DiffIdError) throw err;
      // Everything else here is the body's own fault: no boundary, a truncated or garbled part.
      throw new DiffIdError('VALIDATION', `the multipart body is malformed (${(err as Error).message}); let your HTTP client build the form`);
    } finally {
      request.raw.off('data', onData);
    }
    for (const name of schema.requiredFiles) {
      if (!files[name]) throw new DiffIdError('MISSING_FILE', `the image file "${name}" is missing; attach it as a multipart file field`);
    }
    strictNumbers(fields, fieldTypes);
    if (!validate(fields)) throw fieldError((validate.errors ?? [])[0] as ErrorObject, fields);
    let pixels = 0;
    for (const [field, list] of Object.entries(files)) {
      for (const [i, bytes] of list.entries()) {
        const name = inputLabel(field as InputName, i, list.length);
        if (bytes.length === 0) throw new DiffIdError('UNSUPPORTED_IMAGE', `"${name}" is an empty file`);
        if (!sniffImageFormat(bytes)) throw new DiffIdError('UNSUPPORTED_IMAGE', `"${name}" is not a JPEG, PNG or WebP image (checked by its bytes, whatever its declared type)`);
        // A full decode here keeps truncated or corrupt images out of the queue.
        const { width, height } = await checkImage(bytes, name);
        pixels += width * height;
      }
    }
    if (pixels > MAX_JOB_PIXELS) {
      throw new DiffIdError('FILE_TOO_LARGE', `the images of one request may have at most ${MAX_JOB_PIXELS / 1e6} megapixels together (these have ${(pixels / 1e6).toFixed(1)}); send smaller photos`);
    }
    return { fields, files };
  };
}

/**
 * A number as people write it in a form: decimal digits, an optional sign and fraction. No hex,
 * binary, exponents or Infinity. Each part is a single character class in sequence, so the match
 * is linear in the text.
 */
const DECIMAL = /^[-+]?[0-9]{1,20}(?:\.[0-9]{1,20})?$|^[-+]?\.[0-9]{1,20}$/;
const INTEGER = /^[-+]?[0-9]{1,20}$/;

/**
 * Refuses number fields not written as plain decimals before the schema coerces them (JavaScript's
 * Number() would take 0x10, 0b101, 1e2 and Infinity).
 */
function strictNumbers(fields: Record<string, unknown>, types: Record<string, string | undefined>): void {
  for (const [name, value] of Object.entries(fields)) {
    const type = types[name];
    if ((type !== 'integer' && type !== 'number') || typeof value !== 'string') continue;
    const text = value.trim();
    if (!(type === 'integer' ? INTEGER : DECIMAL).test(text)) {
      throw new DiffIdError('VALIDATION', `"${name}" must be ${type === 'integer' ? 'a whole number' : 'a number'} written in decimal digits (got ${JSON.stringify(value.slice(0, 40))})`);
    }
    fields[name] = text;
  }
}

/** Parses the morph factors: exactly one of alpha, alphas or frames. */
export function morphAlphas(fields: Record<string, unknown>): number[] {
  const given = ['alpha', 'alphas', 'frames'].filter((k) => fields[k] !== undefined);
  if (given.length !== 1) {
    throw new DiffIdError('VALIDATION', given.length === 0 ? 'give the morph factor: one of alpha, alphas or frames' : `give one of alpha, alphas or frames, not ${given.join(' and ')}`);
  }
  if (fields.alpha !== undefined) return [fields.alpha as number];
  if (fields.frames !== undefined) {
    const n = fields.frames as number;
    return Array.from({ length: n }, (_, i) => i / (n - 1));
  }
  if (fields.alphas !== undefined) {
    const parts = String(fields.alphas).split(',');
    if (parts.length > LIMITS.maxAlphas) throw new DiffIdError('VALIDATION', `"alphas" may list at most ${LIMITS.maxAlphas} values (got ${parts.length})`);
    return parts.map((raw) => {
      const text = raw.trim();
      const value = DECIMAL.test(text) ? Number(text) : NaN;
      if (!(value >= 0 && value <= 1)) throw new DiffIdError('VALIDATION', `"alphas" must be decimal numbers in [0, 1] separated by commas; "${text.slice(0, 40)}" is not`);
      return value;
    });
  }
  throw new DiffIdError('VALIDATION', 'give the morph factor: one of alpha, alphas or frames');
}

/**
 * Parses `animation`: comma-separated formats, each once ([] when not given); `available` is what
 * the workers said they can make, when they said.
 */
export function animationFormats(value: string | undefined, available?: readonly AnimationFormat[]): AnimationFormat[] {
  if (value === undefined || value.trim() === '') return [];
  const out: AnimationFormat[] = [];
  for (const raw of value.split(',')) {
    const format = raw.trim().toLowerCase();
    if (!(ANIMATION_FORMATS as readonly string[]).includes(format)) {
      throw new DiffIdError('VALIDATION', `"animation" lists formats from ${ANIMATION_FORMATS.join(', ')} separated by commas; "${raw.trim().slice(0, 20)}" is not one`);
    }
    if (out.includes(format as AnimationFormat)) throw new DiffIdError('VALIDATION', `"animation" names ${format} twice`);
    if (available && !available.includes(format as AnimationFormat)) {
      throw new DiffIdError('VALIDATION', `"animation": ${format} needs ffmpeg on the workers, and this deployment's have none; ${available.join(' and ')} work`);
    }
    out.push(format as AnimationFormat);
  }
  return out;
}

/**
 * Parses face_index for /generate: one index per photo, comma-separated ("1" or "0,2,1");
 * undefined when not given.
 */
export function faceIndexes(fields: Record<string, unknown>, photos: number): number[] | undefined {
  if (fields.face_index === undefined) return undefined;
  const values = String(fields.face_index).split(',').map((p) => Number(p.trim()));
  if (values.length !== photos) {
    throw new DiffIdError('VALIDATION', `"face_index" needs one index per photo: ${photos} photo(s), ${values.length} index(es) given`);
  }
  if (values.some((v) => v > LIMITS.maxFaceIndex)) throw new DiffIdError('VALIDATION', `"face_index" values must be ≤ ${LIMITS.maxFaceIndex}`);
  return values;
}
