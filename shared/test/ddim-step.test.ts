import t, { type Test } from 'tap';
import { SD15_SCHEDULER, classifierFreeGuidance, ddimInverseStep, ddimStep, inversionStepAlphas, makeSchedule, samplingStepAlphas } from '@diffid/shared/diffusion';

// Expected outputs: torch 1.13 float32, the DDIMScheduler / DDIMInverseScheduler formulas on these
// exact inputs (docs/reference-values.md says how they were computed).
const x = new Float32Array([0.5, -1.25, 2.0, 0.0, -0.3125, 1.5]);
const e = new Float32Array([0.1, 0.7, -0.4, 1.2, -2.0, 0.05]);
const s = makeSchedule(SD15_SCHEDULER);

function close(t: Test, got: Float32Array, want: number[], tol: number, what: string): void {
  t.equal(got.length, want.length, `${what}: length`);
  const worst = Math.max(...want.map((w, i) => Math.abs((got[i] as number) - w)));
  t.ok(worst <= tol, `${what}: max |Δ| = ${worst.toExponential(2)} ≤ ${tol}`);
}

t.test('epsilon step 981 → 961 (N = 50) matches the reference to 1e-6', async (t) => {
  const { alphaBarT, alphaBarPrev } = samplingStepAlphas(s, 50, 981);
  close(t, ddimStep(x, e, alphaBarT, alphaBarPrev, 'epsilon'),
    [0.5491006374359131, -1.4898409843444824, 2.29500412940979, -0.14790236949920654, -0.10438728332519531, 1.6781151294708252],
    1e-6, 'eps 981→961');
});

t.test('the last epsilon step lands on the final ᾱ (ᾱ_0)', async (t) => {
  const { alphaBarT, alphaBarPrev } = samplingStepAlphas(s, 50, 1);
  close(t, ddimStep(x, e, alphaBarT, alphaBarPrev, 'epsilon'),
    [0.49899962544441223, -1.2590337991714478, 2.005711793899536, -0.014570139348506927, -0.28835007548332214, 1.5000343322753906],
    1e-6, 'eps 1→−19');
});

t.test('v-prediction step 501 → 481 matches the reference', async (t) => {
  const { alphaBarT, alphaBarPrev } = samplingStepAlphas(s, 50, 501);
  close(t, ddimStep(x, e, alphaBarT, alphaBarPrev, 'v_prediction'),
    [0.4967608153820038, -1.2705185413360596, 2.011141300201416, -0.036147356033325195, -0.2521125078201294, 1.497813105583191],
    1e-6, 'v 501→481');
});

t.test('inversion steps match the reference at both ends of the grid', async (t) => {
  const first = inversionStepAlphas(s, 50, 1);
  close(t, ddimInverseStep(x, e, first.alphaBarS, first.alphaBarT, 'epsilon'),
    [0.500999927520752, -1.2409701347351074, 1.9942903518676758, 0.0145639106631279, -0.3366395831108093, 1.4999656677246094],
    1e-6, 'inverse −19→1');
  const last = inversionStepAlphas(s, 50, 981);
  close(t, ddimInverseStep(x, e, last.alphaBarS, last.alphaBarT, 'epsilon'),
    [0.4562714695930481, -1.0364000797271729, 1.7372722625732422, 0.1317204236984253, -0.4978431463241577, 1.3413726091384888],
    1e-6, 'inverse 961→981');
});

t.test('a step writes in place when given its input as output', async (t) => {
  const z = Float32Array.from(x);
  const { alphaBarT, alphaBarPrev } = samplingStepAlphas(s, 50, 981);
  const out = ddimStep(z, e, alphaBarT, alphaBarPrev, 'epsilon', z);
  t.equal(out, z);
  t.ok(Math.abs((z[0] as number) - 0.5491006374359131) < 1e-6);
});

t.test('steps reject mismatched lengths and impossible ᾱ', async (t) => {
  t.throws(() => ddimStep(x, new Float32Array(3), 0.5, 0.6, 'epsilon'), /lengths differ/);
  t.throws(() => ddimStep(x, e, 0, 0.6, 'epsilon'), /alphaBarT/);
  t.throws(() => ddimInverseStep(x, e, 0.5, 1.5, 'epsilon'), /alphaBarT/);
  t.throws(() => ddimStep(x, e, 0.5, 0.6, 'sample' as 'epsilon'), /not supported/);
});

t.test('classifier-free guidance and guidance_rescale match the reference', async (t) => {
  const u = new Float32Array([0.1, -0.2, 0.3, 0.4, -0.5, 0.6]);
  const c = new Float32Array([0.3, 0.1, -0.2, 0.8, -0.1, 0.0]);
  close(t, classifierFreeGuidance(u, c, 7.5),
    [1.6000001430511475, 2.049999952316284, -3.450000047683716, 3.4000000953674316, 2.5, -3.9000000953674316], 1e-6, 'cfg g=7.5');
  close(t, classifierFreeGuidance(u, c, 7.5, 0.7),
    [0.6070786118507385, 0.7778193950653076, -1.3090131282806396, 1.2900420427322388, 0.9485602378845215, -1.4797539710998535], 1e-6,
    'cfg g=7.5 φ=0.7');
  // In float32, as diffusers computes it, c − u is rounded before u is added back.
  close(t, classifierFreeGuidance(u, c, 1), Array.from(c), 6e-8, 'g = 1 is the conditional branch, to float32 rounding');
  t.throws(() => classifierFreeGuidance(u, c, 7.5, 1.5), /guidance_rescale/);
});
