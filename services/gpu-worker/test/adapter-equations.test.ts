// The tiny adapter graph computes the paper's eqs. 5–15: checked against a float64 evaluation of
// the equations written out here, with the weights read back from the ONNX file.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import onnxProto from 'onnx-proto';
import t from 'tap';
import { gaussianNoise } from '@diffid/shared/diffusion';
import { loadBundle } from '../src/runtime/bundle-loader.ts';
import { tinyBundleDir } from './helpers.ts';

type Mat = number[][]; // rows × cols

function initializers(bytes: Uint8Array): Map<string, { dims: number[]; data: Float32Array }> {
  const model = onnxProto.onnx.ModelProto.decode(bytes);
  const out = new Map<string, { dims: number[]; data: Float32Array }>();
  for (const init of model.graph?.initializer ?? []) {
    const raw = init.rawData as Uint8Array;
    const data = new Float32Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength));
    out.set(init.name as string, { dims: (init.dims ?? []).map(Number), data });
  }
  return out;
}

const rows = (data: Float32Array, r: number, c: number): Mat => Array.from({ length: r }, (_, i) => Array.from(data.subarray(i * c, (i + 1) * c)));
const matmul = (a: Mat, b: Mat): Mat => a.map((row) => (b[0] as number[]).map((_, j) => row.reduce((s, v, k) => s + v * ((b[k] as number[])[j] as number), 0)));
const transpose = (a: Mat): Mat => (a[0] as number[]).map((_, j) => a.map((row) => row[j] as number));
const addBias = (a: Mat, b: number[]): Mat => a.map((row) => row.map((v, j) => v + (b[j] as number)));
const relu = (a: Mat): Mat => a.map((row) => row.map((v) => Math.max(0, v)));
const scale = (a: Mat, s: number): Mat => a.map((row) => row.map((v) => v * s));

t.test('the adapter graph equals eqs. 5–15 evaluated in float64', async (t) => {
  const dir = await tinyBundleDir(t);
  const bundle = await loadBundle(dir);
  t.teardown(() => bundle.release());
  const W = initializers(await readFile(join(dir, 'adapter.onnx')));
  const w = (name: string): Mat => {
    const e = W.get(name);
    if (!e) throw new Error(`no initializer ${name}`);
    return rows(e.data, e.dims[0] as number, e.dims[1] as number);
  };
  const b = (name: string): number[] => Array.from(W.get(name)?.data ?? []);
  const { faceEmbedding: D, imageEmbedding: E, textLength: L, textWidth: Wt, conditioningTokens, conditioningWidth } = bundle.dims;
  const eArc = gaussianNoise(11, D);
  const eI = gaussianNoise(12, E);
  const eT = gaussianNoise(13, L * Wt);

  const out = await bundle.graphs.adapter.run({
    face_embedding: { dtype: 'float32', data: eArc, dims: [1, D] },
    image_embedding: { dtype: 'float32', data: eI, dims: [1, E] },
    text_embedding: { dtype: 'float32', data: eT, dims: [1, L, Wt] },
  });
  const got = out.conditioning!;
  t.same(got.dims, [1, conditioningTokens, conditioningWidth]);

  // (5) e'_arc = W_arc e_arc, e'_i = W_i e_i (row vectors times [in, out] matrices).
  const arcP = matmul([Array.from(eArc)], w('W_arc'))[0] as number[];
  const imgP = matmul([Array.from(eI)], w('W_i'))[0] as number[];
  // e_img = [e'_arc; e'_i]; MaxPool / AvgPool over its two tokens.
  const eMax = arcP.map((v, j) => Math.max(v, imgP[j] as number));
  const eAvg = arcP.map((v, j) => (v + (imgP[j] as number)) / 2);
  // (6) e_id = Concat(e'_arc, e'_i, e_max, e_avg): four tokens.
  const eId: Mat = [arcP, imgP, eMax, eAvg];
  // (7) shared W_s.
  const idT = matmul(eId, w('W_s'));
  const tT = matmul(rows(eT, L, Wt), w('W_s'));
  const d = W.get('W_q_id')?.dims[1] as number;
  // (8–12) e = (Q Kᵀ / √d) V without softmax, both directions.
  const attend = (q: Mat, kv: Mat, br: string) =>
    matmul(scale(matmul(matmul(q, w(`W_q_${br}`)), transpose(matmul(kv, w(`W_k_${br}`)))), 1 / Math.sqrt(d)), matmul(kv, w(`W_v_${br}`)));
  const eIdentity = attend(idT, tT, 'id');
  const eAttribute = attend(tT, idT, 'attr');
  // (13) e_fused along the token axis; (14–15) ReLU(W2 ReLU(W1 x + b1) + b2).
  const fused = [...eIdentity, ...eAttribute];
  const refined = relu(addBias(matmul(relu(addBias(matmul(fused, w('mlp.0.weight')), b('mlp.0.bias'))), w('mlp.2.weight')), b('mlp.2.bias')));

  t.equal(refined.length, conditioningTokens, '4 identity tokens + 77 attribute tokens');
  let worst = 0;
  let scaleMax = 0;
  refined.forEach((row, i) =>
    row.forEach((v, j) => {
      worst = Math.max(worst, Math.abs(v - ((got.data as Float32Array)[i * conditioningWidth + j] as number)));
      scaleMax = Math.max(scaleMax, Math.abs(v));
    }),
  );
  t.ok(worst <= 1e-5 * Math.max(1, scaleMax), `max |graph − equations| = ${worst.toExponential(2)} (values up to ${scaleMax.toFixed(2)})`);
  const negatives = (got.data as Float32Array).some((v) => v < 0);
  t.notOk(negatives, 'the final ReLU of eq. 15 leaves no negative value');
});
