"""Forward passes of the full-depth architectures at 1/8 width with seeded weights (seeded_init.py).

Small spatial sizes keep the whole file to a few seconds: U-Net latents 8x8 (64-px images), VAE
32-px images, CLIP vision at 56 px (the same code as 224 px, 17 tokens instead of 257).
"""
import dataclasses
import math
import unittest

import torch
import torch.nn.functional as F

from diffid_reference.clip import CLIPTextModel, CLIPVisionModelWithProjection, ClipAttention, ClipTextConfig, ClipVisionConfig, quick_gelu
from diffid_reference.iresnet import IResNet, IResNetConfig
from diffid_reference.sd_unet import UNet2DConditionModel, UNetConfig, timestep_embedding
from diffid_reference.seeded_init import RESIDUAL_OUTPUT, residual_branches, seeded_init, tensor_seed
from diffid_reference.vae import AutoencoderKL, VaeConfig

SCALE = 0.125


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def unet(seed: int = 7) -> UNet2DConditionModel:
    return seeded_init(UNet2DConditionModel(UNetConfig.sd15(SCALE)), seed).eval()


class Finite:
    def assertSane(self, y: torch.Tensor, shape: list) -> None:
        self.assertEqual(list(y.shape), shape)
        self.assertTrue(torch.isfinite(y).all().item())
        # Order one: neither collapsed to a constant nor blown up (see seeded_init's rules).
        self.assertTrue(0.05 < y.std().item() < 20, y.std().item())


class UNetForwardTest(Finite, unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        torch.manual_seed(0)  # only the module constructors' default init, overwritten by seeded_init
        cls.model = unet()
        cls.width = cls.model.config.cross_attention_dim
        g = gen(1)
        cls.x = torch.randn(2, 4, 8, 8, generator=g)
        cls.context = torch.randn(2, 81, cls.width, generator=g)  # 77 text + 4 identity tokens
        cls.t = torch.tensor([981.0, 1.0])
        with torch.no_grad():
            cls.y = cls.model(cls.x, cls.t, cls.context)

    def test_shape_finite_and_order_one(self):
        self.assertSane(self.y, [2, 4, 8, 8])

    def test_same_seed_same_output_other_seed_other_output(self):
        torch.manual_seed(123)  # a different constructor init must not matter
        with torch.no_grad():
            again = unet(7)(self.x, self.t, self.context)
            other = unet(8)(self.x, self.t, self.context)
        self.assertTrue(torch.equal(again, self.y))
        self.assertGreater((other - self.y).abs().max().item(), 1e-2)

    def test_conditioning_and_timestep_move_the_output(self):
        g = gen(2)
        with torch.no_grad():
            other_context = self.model(self.x, self.t, self.context + 0.5 * torch.randn(self.context.shape, generator=g))
            other_t = self.model(self.x, torch.tensor([500.0, 500.0]), self.context)
            identity_only = self.context.clone()
            identity_only[:, 77:] += 1.0  # only the identity tokens differ
            other_identity = self.model(self.x, self.t, identity_only)
        # Far above a 1e-3 parity tolerance: a wrong cross-attention or time path would be caught.
        self.assertGreater((other_context - self.y).abs().max().item(), 1e-2)
        self.assertGreater((other_t - self.y).abs().max().item(), 1e-2)
        self.assertGreater((other_identity - self.y).abs().max().item(), 1e-3)

    def test_any_sequence_length_scalar_timestep_and_rows_independent(self):
        with torch.no_grad():
            text_only = self.model(self.x, self.t, self.context[:, :77])
            scalar = self.model(self.x, 981.0, self.context)
            batch_t = self.model(self.x, torch.tensor([981.0, 981.0]), self.context)
            row = self.model(self.x[1:], self.t[1:], self.context[1:])
        self.assertEqual(list(text_only.shape), [2, 4, 8, 8])
        self.assertTrue(torch.allclose(scalar, batch_t, atol=1e-6))
        self.assertTrue(torch.allclose(row, self.y[1:], atol=1e-5))

    def test_sizes_not_a_multiple_of_eight(self):
        # diffusers passes the skip connections' sizes to the upsamplers then; so does this U-Net.
        with torch.no_grad():
            y = self.model(self.x[:1, :, :7, :5], torch.tensor([10.0]), self.context[:1])
        self.assertEqual(list(y.shape), [1, 4, 7, 5])

    def test_timestep_embedding_is_diffusers_flip_sin_to_cos(self):
        t = torch.tensor([0.0, 3.0])
        got = timestep_embedding(t, 4, flip_sin_to_cos=True, freq_shift=0)
        f = torch.tensor([1.0, math.exp(-math.log(10000.0) / 2)])  # exp(-ln(10^4)·i/half), half = 2
        want = torch.cat([torch.cos(t[:, None] * f), torch.sin(t[:, None] * f)], dim=1)
        self.assertTrue(torch.allclose(got, want, atol=1e-6))


class VaeForwardTest(Finite, unittest.TestCase):
    def test_encode_mean_and_decode(self):
        vae = seeded_init(AutoencoderKL(VaeConfig.sd15(SCALE)), 3).eval()
        pixels = torch.rand(2, 3, 32, 32, generator=gen(4)) * 2 - 1
        with torch.no_grad():
            moments = vae.encode_moments(pixels)
            mean = vae.encode_mean(pixels)
            image = vae.decode(mean)
            again = seeded_init(AutoencoderKL(VaeConfig.sd15(SCALE)), 3).eval().decode(mean)
        self.assertSane(moments, [2, 8, 4, 4])
        self.assertTrue(torch.equal(mean, moments[:, :4]))
        self.assertSane(image, [2, 3, 32, 32])
        self.assertTrue(torch.equal(image, again))


class ClipForwardTest(Finite, unittest.TestCase):
    def test_text_tower_is_causal(self):
        model = seeded_init(CLIPTextModel(ClipTextConfig.vit_l14(SCALE)), 5).eval()
        ids = torch.randint(0, 49408, (2, 77), generator=gen(6))
        changed = ids.clone()
        changed[:, 40] = (ids[:, 40] + 1) % 49408
        with torch.no_grad():
            h = model(ids)
            h2 = model(changed)
            h32 = model(ids.to(torch.int32))
        self.assertSane(h, [2, 77, 96])
        self.assertTrue(torch.equal(h[:, :40], h2[:, :40]))  # earlier tokens never see later ones
        self.assertGreater((h[:, 40:] - h2[:, 40:]).abs().amax(dim=-1).min().item(), 1e-4)  # every later one does
        self.assertTrue(torch.equal(h, h32))

    def test_attention_agrees_with_torch_multihead_attention(self):
        torch.manual_seed(0)
        attn = seeded_init(ClipAttention(48, 6), 9).eval()
        mha = torch.nn.MultiheadAttention(48, 6, batch_first=True)
        with torch.no_grad():
            mha.in_proj_weight.copy_(torch.cat([attn.q_proj.weight, attn.k_proj.weight, attn.v_proj.weight]))
            mha.in_proj_bias.copy_(torch.cat([attn.q_proj.bias, attn.k_proj.bias, attn.v_proj.bias]))
            mha.out_proj.weight.copy_(attn.out_proj.weight)
            mha.out_proj.bias.copy_(attn.out_proj.bias)
            x = torch.randn(2, 10, 48, generator=gen(10))
            causal = torch.full((10, 10), float("-inf")).triu(1)
            want = mha(x, x, x, attn_mask=causal, need_weights=False)[0]
            got = attn(x, torch.full((10, 10), torch.finfo(torch.float32).min).triu(1)[None, None])
        self.assertTrue(torch.allclose(got, want, atol=1e-5))

    def test_vision_towers(self):
        for cfg, act, width in ((ClipVisionConfig.vit_l14(SCALE), quick_gelu, 96), (ClipVisionConfig.vit_h14(SCALE), F.gelu, 128)):
            cfg = dataclasses.replace(cfg, image_size=56)
            model = seeded_init(CLIPVisionModelWithProjection(cfg), 11).eval()
            self.assertIs(model.vision_model.encoder.layers[0].mlp.act, act)
            pixels = torch.randn(3, 3, 56, 56, generator=gen(12))
            with torch.no_grad():
                e = model(pixels)
                row = model(pixels[2:])
            self.assertSane(e, [3, width])
            self.assertTrue(torch.allclose(row, e[2:], atol=1e-5))


class IResNetForwardTest(Finite, unittest.TestCase):
    def test_r100_and_r50(self):
        for name in ("r100", "r50"):
            model = seeded_init(IResNet(IResNetConfig.of(name, SCALE)), 13).eval()
            faces = torch.rand(2, 3, 112, 112, generator=gen(14)) * 2 - 1
            with torch.no_grad():
                e = model(faces)
                again = seeded_init(IResNet(IResNetConfig.of(name, SCALE)), 13).eval()(faces)
            self.assertSane(e, [2, 64])
            self.assertTrue(torch.equal(e, again))


class SeededInitTest(unittest.TestCase):
    def test_the_per_tensor_seed_is_pinned(self):
        # Changing the derivation changes every recorded fixture; do it on purpose or not at all.
        self.assertEqual(tensor_seed(0, "conv_in.weight"), 9091577005237728252)

    def test_rules(self):
        model = seeded_init(IResNet(IResNetConfig.of("r50", SCALE)), 1)
        n = residual_branches(model)
        self.assertEqual(n, 24)  # 3 + 4 + 14 + 3 IBasicBlocks
        bn = model.layer1[0].bn1
        self.assertFalse(torch.equal(bn.running_var, torch.ones_like(bn.running_var)))
        self.assertGreater(bn.running_var.min().item(), 0)
        self.assertEqual(int(bn.num_batches_tracked), 0)
        conv2 = model.layer3[5].conv2.weight  # a residual output: std 1/sqrt(n · fan_in)
        self.assertIsNotNone(RESIDUAL_OUTPUT.search("layer3.5.conv2.weight"))
        fan_in = conv2.shape[1] * 9
        self.assertAlmostEqual(conv2.std().item() * math.sqrt(n * fan_in), 1.0, delta=0.15)
        conv1 = model.layer3[5].conv1.weight
        self.assertAlmostEqual(conv1.std().item() * math.sqrt(fan_in), 1.0, delta=0.15)

    def test_meta_tensors_are_refused(self):
        with self.assertRaises(ValueError):
            seeded_init(IResNet(IResNetConfig.of("r50", SCALE), device="meta"), 1)


if __name__ == "__main__":
    unittest.main()
