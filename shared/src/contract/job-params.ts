// A request's fields to a job's parameters, in one step per job kind. The form's text fields are
// checked against the route's form schema in openapi.yaml (numbers coerced from plain decimal
// text, the schema's defaults filled in); the defaults that are not constants are settled
// (`x-diffid-default`: the workers' bundle recommends one, or a random value); the fields whose
// form differs from the job's (alphas, face_index, animation, photos) are derived; every other
// field of the kind's *Params schema is copied as it is; and the result is checked against that
// schema. The job stores what comes out, so the worker never defaults again, and a parameter
// whose form and job shapes agree needs no code here.

import { randomInt } from 'node:crypto';
import { Ajv, type ErrorObject } from 'ajv';
import addFormats from 'ajv-formats';
import type { components } from './api-types.ts';
import { DiffIdError } from './errors.ts';
import { ANIMATION_FORMATS, type AnimationFormat, type BundleInfo, type InputName, type JobKind, type ParamsOf } from './jobs.ts';
import { FORM_SCHEMAS, componentSchema, formSchema } from './openapi.ts';

type Schemas = components['schemas'];

/** The text fields of a job kind's form (its files aside), typed from openapi.yaml. */
export type FormFields<K extends JobKind> = Omit<Schemas[(typeof FORM_SCHEMAS)[K]], InputName>;

/** A stored identity as a job's input: its id, how many photos it has, the faces chosen in them. */
export interface StoredIdentity {
  id: string;
  photos: number;
  face_index?: number[];
}

/** What settling a job's parameters needs besides its fields. */
export interface ParamsContext {
  /** The files given, per file field (generate's photos: how many). */
  files: Partial<Record<InputName, readonly unknown[]>>;
  /**
   * The stored identities the form names, per input they stand in for, as the API found them for
   * the caller's key (generate's `identity` stands in for `image`, `identity_a` for `image_a`);
   * for an identity check, the identity being made, under `image`.
   */
  identities?: Partial<Record<InputName, StoredIdentity>>;
  /** What the workers published of their bundle (its default steps and guidance, the animations they can make); null before any worker started. */
  bundle: Pick<BundleInfo, 'defaults' | 'animations'> | null;
}

/** A job kind's form fields, checked and defaulted, and the job parameters settled from them. */
export interface SettledJob<K extends JobKind> {
  form: FormFields<K>;
  params: ParamsOf[K];
}

const ajv = new Ajv({ coerceTypes: true, useDefaults: true, allErrors: false, strict: false, verbose: true });
addFormats.default(ajv);
// The job parameters are built, not typed in: no coercion, no defaults.
const strictAjv = new Ajv({ allErrors: false, strict: false, verbose: true });

const PARAMS_SCHEMAS = { generate: 'GenerateParams', morph: 'MorphParams', compare: 'CompareParams', identity: 'IdentityParams' } as const satisfies Record<JobKind, keyof Schemas>;

interface FieldSchema {
  type?: string;
  minimum?: number;
  maximum?: number;
  'x-diffid-default'?: 'bundle' | 'random';
}

/** Fields whose form shape differs from the job's: what each kind derives from its form. */
const DERIVED: { [K in JobKind]: (form: FormFields<K>, context: ParamsContext, sent: Record<string, unknown>) => Partial<ParamsOf[K]> } = {
  generate: (form, context) => {
    identityWindow(form);
    const stored = storedSide(context, 'image', 'identity', form.identity, 'face_index', form.face_index);
    if (stored) return { photos: stored.photos, identity: stored.id, ...(stored.face_index ? { face_index: stored.face_index } : {}) };
    const photos = context.files.image?.length ?? 0;
    const faceIndex = faceIndexes(form, photos);
    return { photos, ...(faceIndex === undefined ? {} : { face_index: faceIndex }) };
  },
  morph: (form, context, sent) => {
    identityWindow(form);
    const sides = pairSides(form, context);
    if (form.pacing === 'even' && !(form.frames !== undefined && form.frames >= 3)) {
      throw new DiffIdError('VALIDATION', '"pacing=even" chooses the factors itself: give "frames" (at least 3) instead of "alpha" or "alphas"');
    }
    // `interpolation`, deprecated, names the strategy when `strategy` is not sent.
    if (form.interpolation !== undefined && sent.strategy !== undefined && form.interpolation !== form.strategy) {
      throw new DiffIdError('VALIDATION', `"interpolation" (deprecated) and "strategy" disagree (${form.interpolation}, ${form.strategy}); send "strategy" alone`);
    }
    const strategy = form.interpolation ?? form.strategy;
    if (strategy === 'embedding_only' && form.structure_alpha !== undefined) {
      throw new DiffIdError('VALIDATION', '"structure_alpha" mixes the inverted latents, and "strategy=embedding_only" inverts nothing: use strategy slerp or lerp, or leave structure_alpha out');
    }
    return { ...sides, strategy, alphas: morphAlphas(form), animation: animationFormats(form.animation, context.bundle?.animations) };
  },
  compare: (form, context) => pairSides(form, context),
  identity: (form, context) => {
    const photos = context.files.image?.length ?? 0;
    const faceIndex = faceIndexes(form, photos);
    return { identity: context.identities?.image?.id as string, photos, ...(faceIndex === undefined ? {} : { face_index: faceIndex }) };
  },
};

/**
 * One input given as a stored identity in place of its photos: exactly one of the two, and the
 * identity's own choice of face (a face index beside it is refused). Null when photos are given.
 */
function storedSide(context: ParamsContext, input: InputName, field: string, id: string | undefined, faceField: string, face: unknown): StoredIdentity | null {
  const photos = context.files[input]?.length ?? 0;
  if (id === undefined) {
    if (photos === 0) throw new DiffIdError('MISSING_FILE', `the image file "${input}" is missing; attach it as a multipart file field, or give "${field}", a stored identity's id`);
    return null;
  }
  if (photos > 0) throw new DiffIdError('VALIDATION', `give "${input}" or "${field}", not both`);
  if (face !== undefined) throw new DiffIdError('VALIDATION', `"${faceField}" cannot go with "${field}": the identity's faces were chosen when it was stored`);
  const stored = context.identities?.[input];
  // The API looks the identity up before settling; a context without it is a caller's mistake.
  if (stored?.id !== id) throw new Error(`settleJob: the identity ${id} for ${input} was not looked up`);
  return stored;
}

/** Morph's and compare's two sides: each a photo or a stored identity (whose first photo it uses). */
function pairSides(form: { identity_a?: string; identity_b?: string; face_index_a?: number; face_index_b?: number }, context: ParamsContext) {
  const a = storedSide(context, 'image_a', 'identity_a', form.identity_a, 'face_index_a', form.face_index_a);
  const b = storedSide(context, 'image_b', 'identity_b', form.identity_b, 'face_index_b', form.face_index_b);
  const face = (s: StoredIdentity) => s.face_index?.[0];
  return {
    ...(a ? { identity_a: a.id, ...(face(a) === undefined ? {} : { face_index_a: face(a) }) } : {}),
    ...(b ? { identity_b: b.id, ...(face(b) === undefined ? {} : { face_index_b: face(b) }) } : {}),
  };
}

/** The identity acts over [identity_start, identity_end) of the sampling steps: a window that is not empty. */
function identityWindow(form: { identity_start?: number; identity_end?: number }): void {
  const [start, end] = [form.identity_start ?? 0, form.identity_end ?? 1];
  if (!(start < end)) throw new DiffIdError('VALIDATION', `"identity_start" must be below "identity_end" (got ${start} and ${end}): they are fractions of the sampling steps, the window where the identity acts`);
}

/** One job kind's settling, compiled once. */
function settler<K extends JobKind>(kind: K) {
  const form = formSchema(FORM_SCHEMAS[kind]);
  const checkForm = ajv.compile<FormFields<K>>(form.fields);
  const formFields = (form.fields as { properties: Record<string, FieldSchema> }).properties;
  const paramsSchema = componentSchema(PARAMS_SCHEMAS[kind]) as { properties: Record<string, unknown> };
  const checkParams = strictAjv.compile<ParamsOf[K]>(paramsSchema);
  const derive = DERIVED[kind] as (form: FormFields<K>, context: ParamsContext, sent: Record<string, unknown>) => Partial<ParamsOf[K]>;

  return (fields: Record<string, unknown>, context: ParamsContext): SettledJob<K> => {
    const given: Record<string, unknown> = { ...fields };
    strictNumbers(given, formFields);
    for (const [name, schema] of Object.entries(formFields)) {
      if (given[name] !== undefined) continue;
      const settled = settledDefault(name, schema, context);
      if (settled !== undefined) given[name] = settled;
    }
    if (!checkForm(given)) throw fieldError((checkForm.errors ?? [])[0] as ErrorObject, given);
    const derived: Record<string, unknown> = derive(given, context, fields);
    // The params schema's order, so that a job's params read the same whatever the form's order.
    const params: Record<string, unknown> = {};
    for (const name of Object.keys(paramsSchema.properties)) {
      const value = name in derived ? derived[name] : (given as Record<string, unknown>)[name];
      if (value !== undefined) params[name] = value;
    }
    if (!checkParams(params)) throw fieldError((checkParams.errors ?? [])[0] as ErrorObject, params);
    return { form: given, params };
  };
}

/** The default of a field whose default is not a constant; undefined leaves it to the schema's `default`. */
function settledDefault(name: string, schema: FieldSchema, context: ParamsContext): unknown {
  switch (schema['x-diffid-default']) {
    case 'bundle':
      return (context.bundle?.defaults as Record<string, unknown> | undefined)?.[name];
    case 'random':
      return randomInt(schema.minimum ?? 0, (schema.maximum ?? 2 ** 32 - 1) + 1);
    default:
      return undefined;
  }
}

const SETTLERS: { [K in JobKind]: (fields: Record<string, unknown>, context: ParamsContext) => SettledJob<K> } = {
  generate: settler('generate'),
  morph: settler('morph'),
  compare: settler('compare'),
  identity: settler('identity'),
};

/**
 * A job kind's form fields (text as a form sends it, or values) checked against openapi.yaml and
 * settled into the job's parameters; a field that is wrong throws a 4xx DiffIdError saying what
 * to fix.
 */
export function settleJob<K extends JobKind>(kind: K, fields: Record<string, unknown>, context: ParamsContext): SettledJob<K> {
  return SETTLERS[kind](fields, context);
}

/** The first schema error as the error a client gets: the field, what it must be, what it was. */
function fieldError(e: ErrorObject, fields: Record<string, unknown>): DiffIdError {
  const path = e.instancePath.slice(1);
  const field = path.split('/')[0] || String(e.params.additionalProperty ?? e.params.missingProperty ?? '');
  const got = field in fields ? ` (got ${JSON.stringify(fields[field])})` : '';
  const name = path.replace(/\//g, '.') || field;
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
      return new DiffIdError('VALIDATION', `"${name}" must be ${e.keyword === 'minimum' ? '≥' : '≤'} ${String(e.params.limit)}${got}`);
    case 'maxItems':
      return new DiffIdError('VALIDATION', `"${field}" may list at most ${String(e.params.limit)} values (got ${Array.isArray(fields[field]) ? fields[field].length : '?'})`);
    case 'type':
      return new DiffIdError('VALIDATION', `"${name}" must be ${e.params.type === 'integer' ? 'a whole number' : `a ${String(e.params.type)}`}${got}`);
    case 'minLength':
      return new DiffIdError('VALIDATION', `"${field}" must not be empty`);
    case 'pattern': {
      // The contract's description says what the form is; its YAML line breaks are not the message's.
      const description = (e.parentSchema as { description?: string } | undefined)?.description?.replace(/\s+/g, ' ').trim();
      return new DiffIdError('VALIDATION', `"${field}" is not in the expected form${got}${description ? `. ${description}` : ''}`);
    }
    case 'enum':
      return new DiffIdError('VALIDATION', `"${field}" must be one of ${(e.params.allowedValues as unknown[]).join(', ')}${got}`);
    default:
      return new DiffIdError('VALIDATION', `"${name}" ${e.message ?? 'is invalid'}${got}`);
  }
}

/**
 * A number as people write it in a form: decimal digits, an optional sign and fraction. No hex,
 * binary, exponents or Infinity. Each part is a single character class in sequence, so the match
 * is linear in the text.
 */
const DECIMAL = /^[-+]?[0-9]{1,20}(?:\.[0-9]{1,20})?$|^[-+]?\.[0-9]{1,20}$/;
const INTEGER = /^[-+]?[0-9]{1,20}$/;

/**
 * Refuses number fields sent as text but not written as plain decimals before the schema coerces
 * them (JavaScript's Number() would take 0x10, 0b101, 1e2 and Infinity).
 */
function strictNumbers(fields: Record<string, unknown>, schemas: Record<string, FieldSchema>): void {
  for (const [name, value] of Object.entries(fields)) {
    const type = schemas[name]?.type;
    if ((type !== 'integer' && type !== 'number') || typeof value !== 'string') continue;
    const text = value.trim();
    if (!(type === 'integer' ? INTEGER : DECIMAL).test(text)) {
      throw new DiffIdError('VALIDATION', `"${name}" must be ${type === 'integer' ? 'a whole number' : 'a number'} written in decimal digits (got ${JSON.stringify(value.slice(0, 40))})`);
    }
    fields[name] = text;
  }
}

/** The morph factors: exactly one of alpha, alphas (comma-separated decimals) or frames (evenly spaced). */
export function morphAlphas(fields: Pick<FormFields<'morph'>, 'alpha' | 'alphas' | 'frames'>): number[] {
  const given = (['alpha', 'alphas', 'frames'] as const).filter((k) => fields[k] !== undefined);
  if (given.length !== 1) {
    throw new DiffIdError('VALIDATION', given.length === 0 ? 'give the morph factor: one of alpha, alphas or frames' : `give one of alpha, alphas or frames, not ${given.join(' and ')}`);
  }
  if (fields.alpha !== undefined) return [fields.alpha];
  if (fields.frames !== undefined) {
    const n = fields.frames;
    return Array.from({ length: n }, (_, i) => i / (n - 1));
  }
  return String(fields.alphas).split(',').map((raw) => {
    const text = raw.trim();
    const value = DECIMAL.test(text) ? Number(text) : NaN;
    if (!(value >= 0 && value <= 1)) throw new DiffIdError('VALIDATION', `"alphas" must be decimal numbers in [0, 1] separated by commas; "${text.slice(0, 40)}" is not`);
    return value;
  });
}

/**
 * `animation`: comma-separated formats, each once ([] when not given); `available` is what the
 * workers said they can make, when they said.
 */
export function animationFormats(value: string | undefined, available?: readonly AnimationFormat[]): AnimationFormat[] {
  if (value === undefined || value.trim() === '') return [];
  const out: AnimationFormat[] = [];
  for (const raw of value.split(',')) {
    const format = ANIMATION_FORMATS.find((f) => f === raw.trim().toLowerCase());
    if (!format) {
      throw new DiffIdError('VALIDATION', `"animation" lists formats from ${ANIMATION_FORMATS.join(', ')} separated by commas; "${raw.trim().slice(0, 20)}" is not one`);
    }
    if (out.includes(format)) throw new DiffIdError('VALIDATION', `"animation" names ${format} twice`);
    if (available && !available.includes(format)) {
      throw new DiffIdError('VALIDATION', `"animation": ${format} needs ffmpeg on the workers, and this deployment's have none; ${available.join(' and ')} work`);
    }
    out.push(format);
  }
  return out;
}

/** /generate's face_index: one index per photo, comma-separated ("1" or "0,2,1"); undefined when not given. */
export function faceIndexes(fields: Pick<FormFields<'generate'>, 'face_index'>, photos: number): number[] | undefined {
  if (fields.face_index === undefined) return undefined;
  const values = String(fields.face_index).split(',').map((p) => Number(p.trim()));
  if (values.length !== photos) {
    throw new DiffIdError('VALIDATION', `"face_index" needs one index per photo: ${photos} photo(s), ${values.length} index(es) given`);
  }
  return values;
}
