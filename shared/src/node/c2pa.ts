// C2PA content credentials on output PNGs, with @trustnxt/c2pa-ts (pure TypeScript): the worker
// signs each PNG with a manifest whose `c2pa.actions` says it was created by a trained model
// (IPTC digital source type), by which software, from which inputs (their sha256, never the
// photos), bound to the file by a data hash; the API reads and validates such a manifest
// (POST /verify). The signing key and certificate are the operator's (DIFFID_C2PA_KEY,
// DIFFID_C2PA_CERT), else an Ed25519 key and a local CA made at first start and kept.
import { webcrypto } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
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

const pemBody = (pem: string, label: string) => {
  const m = new RegExp(`-----BEGIN ${label}-----([^-]+)-----END ${label}-----`).exec(pem);
  if (!m) throw new Error(`no ${label} in the PEM`);
  return new Uint8Array(Buffer.from((m[1] as string).replace(/\s+/g, ''), 'base64'));
};
const toPem = (der: ArrayBuffer, label: string) => `-----BEGIN ${label}-----\n${Buffer.from(der).toString('base64').replace(/(.{64})/g, '$1\n').trim()}\n-----END ${label}-----\n`;

/**
 * The signing credentials: the operator's PEM files when both are given (a PKCS#8 ES256 or
 * Ed25519 key; a certificate chain, the signer's first), else `dir`/c2pa-credentials.pem, made
 * once — an ES256 key, its certificate and the local CA that issued it — and kept.
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
  const algorithm = leaf.publicKey.algorithm.name === 'Ed25519' ? CoseAlgorithmIdentifier.Ed25519 : CoseAlgorithmIdentifier.ES256;
  const signer = new LocalSigner(pemBody(keyPem, 'PRIVATE KEY'), algorithm, leaf, rest);
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
  // The first rename wins; a later one would swap in a pair as whole as the first.
  if (existsSync(file)) await rm(temporary, { force: true });
  else await rename(temporary, file);
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

/** Reads and validates the C2PA manifest of a PNG (other formats: not present). */
export async function verifyC2pa(bytes: Uint8Array): Promise<C2paVerdict> {
  const none: C2paVerdict = { present: false, valid: false, signer: null, issuer: null, actions: [], errors: [] };
  if (!PNG.canRead(bytes)) return none;
  let asset: PNG;
  try {
    asset = new PNG(new Uint8Array(bytes));
  } catch (err) {
    return { ...none, errors: [`the PNG cannot be read: ${(err as Error).message}`] };
  }
  const jumbf = asset.getManifestJUMBF();
  if (!jumbf) return none;
  let result: ValidationResult;
  let store: ManifestStore | undefined;
  try {
    store = ManifestStore.read(SuperBox.fromBuffer(new Uint8Array(jumbf)));
    result = await store.validate(asset);
  } catch (err) {
    result = ValidationResult.fromError(err as Error);
  }
  const manifest = store?.getActiveManifest();
  const failures = result.statusEntries.filter((e) => !e.success).map((e) => `${e.code}${e.explanation ? `: ${e.explanation}` : ''}`);
  const actions = (manifest?.assertions?.assertions ?? []).flatMap((a) =>
    a instanceof ActionAssertion ? a.actions.map((x) => ({ action: String(x.action), ...(x.digitalSourceType ? { digitalSourceType: String(x.digitalSourceType) } : {}), ...(x.softwareAgent ? { softwareAgent: x.softwareAgent.name } : {}) })) : [],
  );
  const certificate = manifest?.signature?.signatureData.certificate;
  // The library checks the signature, the hashes and the certificate's profile; it holds no trust list.
  const hashed = result.statusEntries.some((e) => e.success && String(e.code) === 'assertion.dataHash.match');
  return {
    present: true,
    valid: manifest !== undefined && result.isValid && hashed,
    signer: certificate?.subject ?? null,
    issuer: certificate?.issuer ?? null,
    actions,
    errors: failures,
  };
}
