// C2PA content credentials on output PNGs, with @trustnxt/c2pa-ts (pure TypeScript): the worker
// signs each PNG with a manifest whose `c2pa.actions` says it was created by a trained model
// (IPTC digital source type), by which software, from which inputs (their sha256, never the
// photos), bound to the file by a data hash; the API reads and validates such a manifest
// (POST /verify). The signing key and certificate are the operator's (DIFFID_C2PA_KEY,
// DIFFID_C2PA_CERT), else an Ed25519 key and a local CA made at first start and kept.
import { webcrypto } from 'node:crypto';
import { Worker } from 'node:worker_threads';
import { existsSync } from 'node:fs';
import { link, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import * as x509 from '@peculiar/x509';
import { PNG } from '@trustnxt/c2pa-ts/asset';
import { CoseAlgorithmIdentifier, LocalSigner, type Signer } from '@trustnxt/c2pa-ts/cose';
import { SuperBox } from '@trustnxt/c2pa-ts/jumbf';
import { ActionAssertion, DataHashAssertion, ManifestStore, ValidationResult } from '@trustnxt/c2pa-ts/manifest';
import { hashUuid } from '../contract/index.ts';

x509.cryptoProvider.set(webcrypto as never);

/** What a signed output says of itself. */
export interface C2paClaim {
  /** IPTC digital source type URI (trainedAlgorithmicMedia, compositeWithTrainedAlgorithmicMedia). */
  digitalSourceType: string;
  softwareAgent: { name: string; version: string };
  /** sha256 (hex) of each input photo, in form order. */
  inputSha256: string[];
}

/** A signer and where its credentials came from. */
export interface C2paCredentials {
  signer: Signer;
  /** The certificate's subject, as /verify reports the signer. */
  subject: string;
  selfSigned: boolean;
}

/** COSE's ECDSA algorithm for each curve, and the hash it signs with. */
const CURVES: Record<string, CoseAlgorithmIdentifier> = { 'P-256': CoseAlgorithmIdentifier.ES256, 'P-384': CoseAlgorithmIdentifier.ES384, 'P-521': CoseAlgorithmIdentifier.ES512 };
const CURVE_HASH: Record<string, string> = { 'P-256': 'SHA-256', 'P-384': 'SHA-384', 'P-521': 'SHA-512' };

const pemBody = (pem: string, label: string) => {
  const m = new RegExp(`-----BEGIN ${label}-----([^-]+)-----END ${label}-----`).exec(pem);
  if (!m) throw new Error(`no ${label} in the PEM`);
  return new Uint8Array(Buffer.from((m[1] as string).replace(/\s+/g, ''), 'base64'));
};
const toPem = (der: ArrayBuffer, label: string) => `-----BEGIN ${label}-----\n${Buffer.from(der).toString('base64').replace(/(.{64})/g, '$1\n').trim()}\n-----END ${label}-----\n`;

/**
 * The signing credentials: the operator's PEM files when both are given (a PKCS#8 Ed25519 or
 * ECDSA P-256/384/521 key; a certificate chain, the signer's first), else `dir`/c2pa-credentials.pem,
 * made once — an Ed25519 key, its certificate and the local CA that issued it — and kept.
 */
export async function c2paCredentials(o: { keyFile?: string; certFile?: string; dir: string; commonName: string }): Promise<C2paCredentials> {
  let keyPem: string;
  let certPem: string;
  let selfSigned = false;
  if (o.keyFile || o.certFile) {
    if (!o.keyFile || !o.certFile) throw new Error('DIFFID_C2PA_KEY and DIFFID_C2PA_CERT go together: give both, or neither for a self-signed pair');
    [keyPem, certPem] = await Promise.all([readFile(o.keyFile, 'utf8'), readFile(o.certFile, 'utf8')]);
  } else {
    // Key and chain in one file, written whole by a rename: workers starting together on one
    // disk all end up with the same pair.
    const file = join(o.dir, 'c2pa-credentials.pem');
    if (!existsSync(file)) await makeSelfSigned(file, o.commonName);
    keyPem = certPem = await readFile(file, 'utf8');
    selfSigned = true;
  }
  const chain = certPem.match(/-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----/g) ?? [];
  const [leaf, ...rest] = chain.map((c) => new x509.X509Certificate(c));
  if (!leaf) throw new Error('the C2PA certificate file holds no certificate');
  const key = leaf.publicKey.algorithm as { name: string; namedCurve?: string };
  const algorithm = key.name === 'Ed25519' ? CoseAlgorithmIdentifier.Ed25519 : key.name === 'ECDSA' ? CURVES[key.namedCurve ?? ''] : undefined;
  if (algorithm === undefined) throw new Error(`the C2PA certificate's key is ${key.name} ${key.namedCurve ?? ''}; sign with Ed25519 or ECDSA on P-256, P-384 or P-521`);
  const signer = new LocalSigner(pemBody(keyPem, 'PRIVATE KEY'), algorithm, leaf, rest);
  // A key that is not the certificate's would make every manifest invalid: find out now, not after a job.
  const probe = new Uint8Array([1, 2, 3]);
  const signature = await signer.sign(probe).catch((err: Error) => {
    throw new Error(`the C2PA key cannot sign (${err.message}); is it a PKCS#8 PEM ("BEGIN PRIVATE KEY")?`);
  });
  const verifyAlg = key.name === 'Ed25519' ? { name: 'Ed25519' } : { name: 'ECDSA', hash: CURVE_HASH[key.namedCurve ?? ''] as string };
  if (!(await webcrypto.subtle.verify(verifyAlg, await leaf.publicKey.export(verifyAlg as never, ['verify'], webcrypto as never), signature, probe))) {
    throw new Error('the C2PA key is not the one its certificate names: DIFFID_C2PA_KEY and DIFFID_C2PA_CERT must be a pair');
  }
  return { signer, subject: leaf.subject, selfSigned: selfSigned || leaf.subject === leaf.issuer };
}

/**
 * A local CA and a signing certificate it issues, shaped as C2PA asks of a signer (C2PA does not
 * accept a self-signed certificate for signing manifests): the CA — a self-signed root, keyCertSign
 * — and an Ed25519 leaf (not a CA; digitalSignature; emailProtection; authority key identifier).
 * The file keeps the leaf's key, the leaf, then the CA. No public validator trusts this CA.
 */
async function makeSelfSigned(file: string, commonName: string): Promise<void> {
  const alg = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' };
  const generate = async () => (await webcrypto.subtle.generateKey(alg, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
  const serial = () => Buffer.from(webcrypto.getRandomValues(new Uint8Array(16))).toString('hex').replace(/^[89a-f]/, '1');
  const now = Date.now();
  const validity = { notBefore: new Date(now - 60_000), notAfter: new Date(now + 10 * 365 * 86_400_000) };
  const caKeys = await generate();
  const caName = `CN=${commonName} local CA, O=Diff-ID Serve self-made untrusted`;
  const ca = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial(),
    name: caName,
    ...validity,
    signingAlgorithm: alg,
    keys: caKeys as never,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(caKeys.publicKey as never),
    ],
  });
  // Ed25519 signatures are deterministic: the same PNG signed twice is the same file.
  const leafKeys = (await webcrypto.subtle.generateKey({ name: 'Ed25519' }, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
  const leaf = await x509.X509CertificateGenerator.create({
    serialNumber: serial(),
    subject: `CN=${commonName}, O=Diff-ID Serve self-made untrusted`,
    issuer: ca.subject,
    ...validity,
    signingAlgorithm: alg,
    publicKey: leafKeys.publicKey as never,
    signingKey: caKeys.privateKey as never,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.emailProtection]),
      await x509.SubjectKeyIdentifierExtension.create(leafKeys.publicKey as never),
      await x509.AuthorityKeyIdentifierExtension.create(ca),
    ],
  });
  await mkdir(dirname(file), { recursive: true });
  const temporary = `${file}.${process.pid}.${Date.now()}.tmp`;
  await writeFile(temporary, `${toPem(await webcrypto.subtle.exportKey('pkcs8', leafKeys.privateKey), 'PRIVATE KEY')}${leaf.toString('pem')}\n${ca.toString('pem')}\n`, { mode: 0o600 });
  // link() refuses an existing name: the first worker's pair stays, every other one reads it.
  try {
    await link(temporary, file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  } finally {
    await rm(temporary, { force: true });
  }
}

/**
 * The PNG with a signed C2PA manifest store in a caBX chunk; its instance id and manifest label
 * come from the PNG itself. With an Ed25519 key (the self-made default) the same PNG and claim
 * always give the same bytes.
 */
export async function signPng(png: Uint8Array, claim: C2paClaim, credentials: C2paCredentials): Promise<Buffer> {
  const instanceID = `xmp:iid:${hashUuid(png)}`;
  const asset = new PNG(new Uint8Array(png));
  const store = new ManifestStore();
  const manifest = store.createManifest({ assetFormat: 'image/png', instanceID, defaultHashAlgorithm: 'SHA-256', signer: credentials.signer });
  // The manifest's label from the file it signs, not at random: the same output, the same bytes.
  manifest.label = `urn:uuid:${hashUuid(png)}`;
  const actions = new ActionAssertion();
  actions.actions = [
    {
      action: 'c2pa.created' as never,
      digitalSourceType: claim.digitalSourceType as never,
      softwareAgent: claim.softwareAgent,
      parameters: { 'org.diffid.input_sha256': claim.inputSha256 },
    },
  ];
  manifest.addAssertion(actions);
  const hash = DataHashAssertion.create('SHA-256');
  manifest.addAssertion(hash);
  await asset.ensureManifestSpace(store.measureSize());
  await hash.updateWithAsset(asset);
  await manifest.sign(credentials.signer);
  await asset.writeManifestJUMBF(store.getBytes());
  return Buffer.from(await asset.getDataRange());
}

/** What POST /verify says of a file's C2PA manifest. */
export interface C2paVerdict {
  present: boolean;
  /** The claim's signature and the file's data hash hold (trust in the signer aside). */
  valid: boolean;
  /** The signing certificate's subject, and who issued it: whether to trust them is the reader's call. */
  signer: string | null;
  issuer: string | null;
  actions: Array<{ action: string; digitalSourceType?: string; softwareAgent?: string }>;
  errors: string[];
}

/** The most manifest-store bytes a PNG may carry for this service to check it (ours are ~27 KB). */
const MAX_STORE_BYTES = 1024 * 1024;

/** The bytes of a PNG's caBX chunks, counted by a linear walk over its chunks (no parsing). */
function storeBytes(png: Uint8Array): number {
  const view = Buffer.from(png.buffer, png.byteOffset, png.byteLength);
  let total = 0;
  for (let at = 8; at + 8 <= view.length; ) {
    const length = view.readUInt32BE(at);
    if (view.toString('latin1', at + 4, at + 8) === 'caBX') total += length;
    at += 12 + length;
  }
  return total;
}

/** How deep JUMBF boxes may nest (a C2PA store needs 5) and how many there may be. */
const MAX_BOX_DEPTH = 8;
const MAX_BOXES = 10_000;

/**
 * Why a JUMBF store's box structure is not one to hand to the library, or null: walked with a
 * stack, each box inside its parent, nesting and count bounded — the library copies a superbox's
 * rest at every level, so deep nesting would cost depth × size in memory.
 */
function jumbfShapeProblem(jumbf: Uint8Array): string | null {
  const view = Buffer.from(jumbf.buffer, jumbf.byteOffset, jumbf.byteLength);
  const ranges: Array<[number, number, number]> = [[0, view.length, 0]];
  let boxes = 0;
  while (ranges.length > 0) {
    const [start, end, depth] = ranges.pop() as [number, number, number];
    for (let at = start; at < end; ) {
      if (++boxes > MAX_BOXES) return `more than ${MAX_BOXES} boxes`;
      if (at + 8 > end) return 'a box header runs past its parent';
      let length = view.readUInt32BE(at);
      let header = 8;
      if (length === 1) {
        if (at + 16 > end) return 'a box header runs past its parent';
        length = Number(view.readBigUInt64BE(at + 8));
        header = 16;
      } else if (length === 0) length = end - at;
      if (length < header || at + length > end) return 'a box is longer than its parent';
      if (view.toString('latin1', at + 4, at + 8) === 'jumb') {
        if (depth + 1 > MAX_BOX_DEPTH) return `boxes nest deeper than ${MAX_BOX_DEPTH}`;
        ranges.push([at + header, at + length, depth + 1]);
      }
      at += length;
    }
  }
  return null;
}

const text = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);

/**
 * Reads and validates the C2PA manifest of a PNG (other formats: not present). Runs the library
 * on the caller's thread: hostile input can make it slow or large, so the API runs it through
 * verifyC2paIsolated.
 */
export async function verifyC2pa(bytes: Uint8Array): Promise<C2paVerdict> {
  const none: C2paVerdict = { present: false, valid: false, signer: null, issuer: null, actions: [], errors: [] };
  if (!PNG.canRead(bytes)) return none;
  const size = storeBytes(bytes);
  if (size === 0) return none;
  if (size > MAX_STORE_BYTES) return { ...none, present: true, errors: [`the C2PA manifest store is ${size} bytes, more than the ${MAX_STORE_BYTES} this service checks`] };
  try {
    const asset = new PNG(new Uint8Array(bytes));
    const jumbf = asset.getManifestJUMBF();
    if (!jumbf) return none;
    const shape = jumbfShapeProblem(jumbf);
    if (shape) return { ...none, present: true, errors: [`the C2PA manifest store is malformed: ${shape}`] };
    const store = ManifestStore.read(SuperBox.fromBuffer(new Uint8Array(jumbf)));
    const result = await store.validate(asset);
    const manifest = store.getActiveManifest();
    const errors = result.statusEntries.filter((e) => !e.success).map((e) => `${String(e.code)}${typeof e.explanation === 'string' ? `: ${e.explanation}` : ''}`);
    // Only what the claim names counts, and the data hash must leave out exactly the manifest's
    // own chunk: a wider exclusion would let chunks that change how pixels look ride along unsigned.
    const claimed = new Set((manifest?.claim?.assertions ?? []).map((a) => a.uri));
    const assertions = (manifest?.assertions?.assertions ?? []).filter((a) => [...claimed].some((uri) => typeof uri === 'string' && a.label !== undefined && uri.endsWith(`/${a.label}`)));
    const expected = asset.getHashExclusionRange();
    const hashes = assertions.filter((a): a is DataHashAssertion => a instanceof DataHashAssertion);
    if (hashes.length !== 1 || hashes[0]?.exclusions.length !== 1 || hashes[0].exclusions[0]?.start !== expected.start || hashes[0].exclusions[0]?.length !== expected.length) {
      errors.push('assertion.dataHash.exclusions: the data hash must leave out exactly the manifest store chunk');
    }
    const actions = assertions.flatMap((a) =>
      a instanceof ActionAssertion
        ? a.actions.flatMap((x) => {
            const action = text(x.action);
            if (!action) return [];
            const source = text(x.digitalSourceType);
            const agent = text(x.softwareAgent?.name);
            return [{ action, ...(source ? { digitalSourceType: source } : {}), ...(agent ? { softwareAgent: agent } : {}) }];
          })
        : [],
    );
    const certificate = manifest?.signature?.signatureData.certificate;
    const hashed = result.statusEntries.some((e) => e.success && String(e.code) === 'assertion.dataHash.match');
    return {
      present: true,
      valid: manifest !== undefined && result.isValid && hashed && errors.length === 0,
      signer: text(certificate?.subject) ?? null,
      issuer: text(certificate?.issuer) ?? null,
      actions,
      errors,
    };
  } catch (err) {
    return { ...none, present: true, errors: [`the C2PA manifest cannot be read: ${(err as Error).message.slice(0, 200)}`] };
  }
}

/** How long one check may take, and how much heap its thread may use. */
const ISOLATION = { timeoutMs: 10_000, heapMb: 256 };
const BUILT = import.meta.url.endsWith('.js');

/** Checks files' C2PA manifests in a thread of its own; close() ends the thread. */
export interface C2paVerifier {
  verify(bytes: Uint8Array): Promise<C2paVerdict>;
  close(): Promise<void>;
}

/**
 * verifyC2pa in one long-lived thread with a heap limit, one file at a time, each with a
 * deadline: a manifest built to exhaust memory or time costs that thread (it is replaced), never
 * the caller's process.
 */
export function c2paVerifier(o = ISOLATION): C2paVerifier {
  let worker: Worker | null = null;
  let ready: Promise<boolean> = Promise.resolve(false);
  let queue: Promise<unknown> = Promise.resolve();
  let seq = 0;
  const failed = (why: string): C2paVerdict => ({ present: true, valid: false, signer: null, issuer: null, actions: [], errors: [why] });
  const thread = (): Worker => {
    if (worker) return worker;
    const entry = new URL(BUILT ? './c2pa-thread.js' : './c2pa-thread.ts', import.meta.url);
    const options = { resourceLimits: { maxOldGenerationSizeMb: o.heapMb }, workerData: { entry: entry.href } };
    // From source (the tests), the thread registers tsx first, as the inference thread does.
    const w = BUILT ? new Worker(entry, options) : new Worker(new URL('./thread-boot.mjs', import.meta.url), options);
    w.unref();
    w.on('error', () => undefined);
    w.once('exit', () => {
      if (worker === w) worker = null;
    });
    // The deadline counts from when the thread has loaded (seconds from source under tsx).
    ready = new Promise<boolean>((resolve) => {
      w.once('message', () => resolve(true));
      w.once('exit', () => resolve(false));
    });
    return (worker = w);
  };
  const check = async (bytes: Uint8Array): Promise<C2paVerdict> => {
    const w = thread();
    if (!(await ready)) return failed('the C2PA checker could not start');
    return new Promise<C2paVerdict>((resolve) => {
      const id = ++seq;
      const finish = (v: C2paVerdict) => {
        clearTimeout(timer);
        w.off('message', onMessage);
        w.off('exit', onExit);
        resolve(v);
      };
      const onMessage = (m: { id: number; verdict: C2paVerdict }) => m.id === id && finish(m.verdict);
      const onExit = (code: number) => finish(failed(`the C2PA check stopped (exit ${code}); the file may be built to exhaust it`));
      const timer = setTimeout(() => {
        finish(failed(`the C2PA manifest took more than ${o.timeoutMs / 1000} s to check`));
        void w.terminate();
      }, o.timeoutMs);
      w.on('message', onMessage);
      w.once('exit', onExit);
      w.postMessage({ id, bytes });
    });
  };
  return {
    verify(bytes) {
      const run = queue.then(() => check(bytes));
      queue = run.catch(() => undefined);
      return run;
    },
    async close() {
      await worker?.terminate();
    },
  };
}
