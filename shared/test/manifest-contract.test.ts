import t from 'tap';
import { ManifestError, ROLE_PORTS, manifestSchema, validateManifest, type Manifest } from '@diffid/shared/bundle';

const sha = 'a'.repeat(64);
const g = (file: string, inputs: Record<string, string>, outputs: Record<string, string>) => ({ file, sha256: sha, inputs, outputs });
const norm = { channel_order: 'RGB', divide_by: 1, mean: [127.5, 127.5, 127.5], std: [127.5, 127.5, 127.5] };
function valid(): Manifest {
  return {
    format: 'diffid-bundle',
    version: 1,
    name: 'test',
    image: { width: 64, height: 64 },
    latent: { channels: 4, downscale: 8, scaling_factor: 0.18215 },
    scheduler: {
      kind: 'ddim', num_train_timesteps: 1000, beta_schedule: 'scaled_linear', beta_start: 0.00085, beta_end: 0.012,
      timestep_spacing: 'leading', steps_offset: 1, set_alpha_to_one: false, prediction_type: 'epsilon', clip_sample: false,
    },
    tokenizer: { tokenizer_json: { file: 'tokenizer.json', sha256: sha }, max_length: 77, bos_token: '<s>', eos_token: '</s>', pad_token: '</s>' },
    adapter: {
      architecture: 'diff-id', identity_tokens: 4, text_tokens: 77, pooling: 'over_modalities',
      fused_sequence: ['identity', 'attribute'], conditioning_tokens: 81, conditioning_width: 768,
    },
    models: {
      text_encoder: g('t.onnx', { input_ids: 'input_ids' }, { hidden_states: 'last_hidden_state' }),
      image_encoder: { ...g('i.onnx', { pixels: 'pixel_values' }, { embedding: 'image_embeds' }), preprocess: { ...norm, size: 224, resize: 'shortest_side_center_crop' } },
      face_embedder: {
        ...g('f.onnx', { pixels: 'data' }, { embedding: 'fc1' }),
        preprocess: { ...norm, size: 112, template: [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]] },
      },
      adapter: g('a.onnx', { face_embedding: 'f', image_embedding: 'i', text_embedding: 't' }, { conditioning: 'c' }),
      unet: g('u.onnx', { sample: 'sample', timestep: 'timestep', encoder_hidden_states: 'ehs' }, { noise: 'out_sample' }),
      vae_encoder: { ...g('e.onnx', { pixels: 'sample' }, { latent: 'latent_sample' }), output_kind: 'latent' },
      vae_decoder: g('d.onnx', { latent: 'latent_sample' }, { pixels: 'sample' }),
    },
  } as Manifest;
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- tests break the types on purpose
function problems(mutate: (m: any) => void): string[] {
  const m = valid();
  mutate(m);
  try {
    validateManifest(m);
    return [];
  } catch (err) {
    if (!(err instanceof ManifestError)) throw err;
    return err.problems;
  }
}

t.test('a complete manifest validates and every role has its ports', async (t) => {
  t.same(validateManifest(valid()).name, 'test');
  t.same(Object.keys(ROLE_PORTS).sort(), ['adapter', 'face_detector', 'face_embedder', 'image_encoder', 'text_encoder', 'unet', 'vae_decoder', 'vae_encoder']);
  t.equal(manifestSchema.$schema, 'http://json-schema.org/draft-07/schema#');
});

t.test('schema errors name the field', async (t) => {
  t.same(problems((m) => delete m.models.unet), ['models: missing field "unet"']);
  t.same(problems((m) => (m.latent.fps = 3)), ['latent: unknown field "fps"']);
  t.match(problems((m) => (m.models.unet.sha256 = 'abc')), [/models.unet.sha256: must match pattern/]);
  t.match(problems((m) => (m.models.unet.file = '/etc/passwd')), [/models.unet.file: must match pattern/]);
  t.match(problems((m) => (m.models.vae_encoder.output_kind = 'sample')), [/models.vae_encoder.output_kind: must be one of "latent", "mean_logvar"/]);
});

t.test('cross-field rules: ports, tokenizer files, latent grid, token counts, scheduler', async (t) => {
  t.same(problems((m) => (m.models.unet.inputs = { sample: 'x', timestep: 't', context: 'c' })), [
    'models.unet.inputs: missing port "encoder_hidden_states"',
    'models.unet.inputs: unknown port "context"',
  ]);
  t.same(problems((m) => (m.tokenizer.vocab = { file: 'v.json', sha256: sha })), ['tokenizer: give either vocab + merges or tokenizer_json']);
  t.same(problems((m) => delete m.tokenizer.tokenizer_json), ['tokenizer: give either vocab + merges or tokenizer_json']);
  t.same(problems((m) => (m.image.width = 60)), ['image: 60×64 is not a multiple of latent.downscale 8']);
  t.same(problems((m) => (m.adapter.conditioning_tokens = 80)), ['adapter.conditioning_tokens 80 differs from the fused sequence\'s 81 (identity + attribute)']);
  t.same(problems((m) => (m.scheduler.prediction_type = 'sample')), ['scheduler.prediction_type "sample" is not supported; use "epsilon" or "v_prediction"']);
  t.same(problems((m) => m.models.face_embedder.preprocess.template.pop()), ['models.face_embedder.preprocess.template: needs the 5 landmarks (eyes, nose, mouth corners)']);
});

t.test('adapter architectures: pooling belongs to diff-id; every fused sequence must add up', async (t) => {
  t.same(problems((m) => delete m.adapter.pooling), ['adapter: missing field "pooling"'], 'diff-id needs pooling');
  const ip = { architecture: 'ip-adapter-faceid', identity_tokens: 4, text_tokens: 77, fused_sequence: ['attribute', 'identity'], conditioning_tokens: 81, conditioning_width: 768 };
  t.same(problems((m) => (m.adapter = ip)), [], 'IP-Adapter-FaceID: text tokens, then 4 identity tokens, no pooling');
  t.same(problems((m) => (m.adapter = { ...ip, architecture: 'arc2face', identity_tokens: 1, fused_sequence: ['attribute'], conditioning_tokens: 77 })), [], 'Arc2Face: 77 tokens');
  t.same(problems((m) => (m.adapter = { ...ip, conditioning_tokens: 77 })), ['adapter.conditioning_tokens 77 differs from the fused sequence\'s 81 (attribute + identity)']);
  t.match(problems((m) => (m.adapter.architecture = 'instantid')), [/adapter.architecture: must be one of "diff-id", "ip-adapter-faceid", "arc2face", "analytic-demo"/]);
});
