"""The full-size architectures on the meta device: parameter counts and diffusers/transformers/InsightFace key names.

Nothing here allocates weights: ``device="meta"`` builds shapes only, so the 860 M-parameter U-Net
costs a couple of seconds and no memory. Reference counts are the published models' (diffusers'
SD 1.5 U-Net and VAE, transformers' CLIP ViT-L/14, arcface_torch's iresnet100).
"""
import unittest

from diffid_reference.clip import CLIPTextModel, CLIPVisionModelWithProjection, ClipTextConfig, ClipVisionConfig
from diffid_reference.iresnet import IResNet, IResNetConfig
from diffid_reference.scaling import group_width, head_width, plain_width
from diffid_reference.sd_unet import UNet2DConditionModel, UNetConfig
from diffid_reference.vae import AutoencoderKL, VaeConfig

META = "meta"


def count(module) -> int:
    return sum(p.numel() for p in module.parameters())


def shapes(module) -> dict:
    return {k: list(v.shape) for k, v in module.state_dict().items()}


class Layout:
    """Builds each full-size model once for the whole module (meta device)."""

    cache: dict = {}

    @classmethod
    def get(cls, name: str):
        if name not in cls.cache:
            build = {
                "unet": lambda: UNet2DConditionModel(device=META),
                "vae": lambda: AutoencoderKL(device=META),
                "text": lambda: CLIPTextModel(device=META),
                "vit_l": lambda: CLIPVisionModelWithProjection(device=META),
                "vit_h": lambda: CLIPVisionModelWithProjection(ClipVisionConfig.vit_h14(), device=META),
                "r100": lambda: IResNet(IResNetConfig.of("r100"), device=META),
                "r50": lambda: IResNet(IResNetConfig.of("r50"), device=META),
            }[name]
            m = build()
            cls.cache[name] = (m, shapes(m))
        return cls.cache[name]


class ParameterCountTest(unittest.TestCase):
    def test_unet_is_diffusers_sd15(self):
        m, sd = Layout.get("unet")
        self.assertEqual(count(m), 859_520_964)  # diffusers' SD 1.5 UNet2DConditionModel
        self.assertEqual(len(sd), 686)

    def test_vae_is_diffusers_autoencoder_kl(self):
        m, sd = Layout.get("vae")
        self.assertEqual(count(m), 83_653_863)
        self.assertEqual(count(m.encoder), 34_163_592)
        self.assertEqual(count(m.decoder), 49_490_179)
        self.assertEqual(len(sd), 248)

    def test_clip_text_is_vit_l14_text_tower(self):
        m, sd = Layout.get("text")
        self.assertEqual(count(m), 123_060_480)
        self.assertEqual(len(sd), 196)  # position_ids is a non-persistent buffer

    def test_clip_vision_vit_l14_with_projection(self):
        m, _ = Layout.get("vit_l")
        # class 1,024 + patches 3·14·14·1024 = 602,112 + positions 257·1024 = 263,168 + pre_layrnorm
        # 2,048 + 24 layers × 12,596,224 + post_layernorm 2,048 + projection 1024·768 = 786,432.
        # (303,966,976, quoted in the brief, is 768 more: a projection bias neither transformers nor
        # OpenAI's CLIP has.)
        self.assertEqual(count(m), 303_966_208)
        self.assertEqual(count(m.visual_projection), 786_432)

    def test_clip_vision_vit_h14_with_projection(self):
        m, _ = Layout.get("vit_h")
        self.assertEqual(count(m), 632_076_800)  # "~632 M" (inference-facts.md)

    def test_iresnet(self):
        self.assertEqual(count(Layout.get("r100")[0]), 65_156_160)  # "~65 M"
        self.assertEqual(count(Layout.get("r50")[0]), 43_590_848)


class KeyNameTest(unittest.TestCase):
    def assertKeys(self, sd: dict, want: dict) -> None:
        for key, shape in want.items():
            self.assertIn(key, sd)
            self.assertEqual(sd[key], shape, key)

    def test_unet_keys(self):
        _, sd = Layout.get("unet")
        self.assertKeys(sd, {
            "conv_in.weight": [320, 4, 3, 3],
            "time_embedding.linear_1.weight": [1280, 320],
            "time_embedding.linear_2.weight": [1280, 1280],
            "down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.weight": [320, 768],
            "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_out.0.bias": [320],
            "down_blocks.0.attentions.1.norm.weight": [320],
            "down_blocks.0.downsamplers.0.conv.weight": [320, 320, 3, 3],
            "down_blocks.1.resnets.0.conv_shortcut.weight": [640, 320, 1, 1],
            "down_blocks.3.resnets.1.time_emb_proj.weight": [1280, 1280],
            "mid_block.attentions.0.proj_in.weight": [1280, 1280, 1, 1],
            "mid_block.resnets.1.norm2.bias": [1280],
            "up_blocks.0.resnets.0.conv1.weight": [1280, 2560, 3, 3],
            "up_blocks.0.upsamplers.0.conv.weight": [1280, 1280, 3, 3],
            "up_blocks.1.resnets.2.conv1.weight": [1280, 1920, 3, 3],  # 1280 + the 640-channel skip
            "up_blocks.1.attentions.2.transformer_blocks.0.ff.net.0.proj.weight": [10240, 1280],
            "up_blocks.1.attentions.2.transformer_blocks.0.ff.net.2.weight": [1280, 5120],
            "up_blocks.3.resnets.2.conv_shortcut.weight": [320, 640, 1, 1],
            "up_blocks.3.attentions.2.proj_out.weight": [320, 320, 1, 1],
            "conv_norm_out.weight": [320],
            "conv_out.weight": [4, 320, 3, 3],
        })
        for absent in ("down_blocks.3.attentions.0.norm.weight", "down_blocks.3.downsamplers.0.conv.weight", "up_blocks.0.attentions.0.norm.weight",
                       "up_blocks.3.upsamplers.0.conv.weight", "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.bias",
                       "down_blocks.0.resnets.0.conv_shortcut.weight"):
            self.assertNotIn(absent, sd)

    def test_vae_keys(self):
        _, sd = Layout.get("vae")
        self.assertKeys(sd, {
            "encoder.conv_in.weight": [128, 3, 3, 3],
            "encoder.down_blocks.0.downsamplers.0.conv.weight": [128, 128, 3, 3],
            "encoder.down_blocks.1.resnets.0.conv_shortcut.weight": [256, 128, 1, 1],
            "encoder.mid_block.attentions.0.group_norm.weight": [512],
            "encoder.mid_block.attentions.0.to_q.weight": [512, 512],
            "encoder.mid_block.attentions.0.to_out.0.bias": [512],
            "encoder.conv_out.weight": [8, 512, 3, 3],
            "quant_conv.weight": [8, 8, 1, 1],
            "post_quant_conv.weight": [4, 4, 1, 1],
            "decoder.conv_in.weight": [512, 4, 3, 3],
            "decoder.mid_block.resnets.1.conv2.weight": [512, 512, 3, 3],
            "decoder.up_blocks.0.upsamplers.0.conv.weight": [512, 512, 3, 3],
            "decoder.up_blocks.2.resnets.0.conv_shortcut.weight": [256, 512, 1, 1],
            "decoder.up_blocks.3.resnets.2.conv2.weight": [128, 128, 3, 3],
            "decoder.conv_out.weight": [3, 128, 3, 3],
        })
        for absent in ("encoder.down_blocks.3.downsamplers.0.conv.weight", "decoder.up_blocks.3.upsamplers.0.conv.weight"):
            self.assertNotIn(absent, sd)
        self.assertFalse([k for k in sd if "time_emb_proj" in k or ".query." in k])

    def test_clip_keys(self):
        _, text = Layout.get("text")
        self.assertKeys(text, {
            "text_model.embeddings.token_embedding.weight": [49408, 768],
            "text_model.embeddings.position_embedding.weight": [77, 768],
            "text_model.encoder.layers.0.self_attn.q_proj.bias": [768],
            "text_model.encoder.layers.11.mlp.fc1.weight": [3072, 768],
            "text_model.encoder.layers.11.mlp.fc2.weight": [768, 3072],
            "text_model.encoder.layers.11.layer_norm2.weight": [768],
            "text_model.final_layer_norm.weight": [768],
        })
        self.assertNotIn("text_model.embeddings.position_ids", text)
        _, vision = Layout.get("vit_l")
        self.assertKeys(vision, {
            "vision_model.embeddings.class_embedding": [1024],
            "vision_model.embeddings.patch_embedding.weight": [1024, 3, 14, 14],
            "vision_model.embeddings.position_embedding.weight": [257, 1024],
            "vision_model.pre_layrnorm.weight": [1024],
            "vision_model.encoder.layers.23.self_attn.out_proj.weight": [1024, 1024],
            "vision_model.encoder.layers.23.mlp.fc1.weight": [4096, 1024],
            "vision_model.post_layernorm.bias": [1024],
            "visual_projection.weight": [768, 1024],
        })
        for absent in ("vision_model.embeddings.patch_embedding.bias", "visual_projection.bias", "vision_model.encoder.layers.24.layer_norm1.weight"):
            self.assertNotIn(absent, vision)
        _, h = Layout.get("vit_h")
        self.assertKeys(h, {"vision_model.encoder.layers.31.mlp.fc1.weight": [5120, 1280], "visual_projection.weight": [1024, 1280]})

    def test_iresnet_keys(self):
        _, sd = Layout.get("r100")
        self.assertKeys(sd, {
            "conv1.weight": [64, 3, 3, 3],
            "prelu.weight": [64],
            "layer1.0.downsample.0.weight": [64, 64, 1, 1],
            "layer1.0.downsample.1.running_mean": [64],
            "layer3.29.prelu.weight": [256],
            "layer4.0.conv2.weight": [512, 512, 3, 3],
            "layer4.2.bn3.running_var": [512],
            "bn2.weight": [512],
            "fc.weight": [512, 25088],
            "fc.bias": [512],
            "features.running_var": [512],
        })
        for absent in ("layer3.30.bn1.weight", "layer1.1.downsample.0.weight", "conv1.bias", "layer1.0.conv1.bias"):
            self.assertNotIn(absent, sd)


class ScaleRuleTest(unittest.TestCase):
    def test_widths(self):
        self.assertEqual(UNetConfig.sd15(0.125).block_out_channels, (32, 96, 160, 160))
        self.assertEqual(UNetConfig.sd15(0.0625).block_out_channels, (32, 32, 96, 96))
        self.assertEqual(UNetConfig.sd15(0.125).cross_attention_dim, ClipTextConfig.vit_l14(0.125).hidden_size)
        self.assertEqual(VaeConfig.sd15(0.125).block_out_channels, (32, 32, 64, 64))
        self.assertEqual(UNetConfig.sd15(1.0), UNetConfig())
        self.assertEqual(VaeConfig.sd15(1.0), VaeConfig())
        self.assertEqual(ClipVisionConfig.vit_l14(1.0), ClipVisionConfig())
        for s in (1.0, 0.5, 0.3, 0.125, 0.1, 0.0625, 0.01):
            self.assertEqual(group_width(1280, s) % 32, 0)
            self.assertGreaterEqual(group_width(320, s), 32)
            self.assertGreaterEqual(head_width(64, s), 1)
            self.assertGreaterEqual(plain_width(512, s), 1)
        with self.assertRaises(ValueError):
            UNetConfig.sd15(0)

    def test_scale_keeps_every_key_and_head_count(self):
        # At 1/8 the VAE's 128 and 256 both round to 32 channels, at 1/16 the U-Net's 320 and 640
        # do: the conv_shortcut between them stays (shortcut_channels), so the keys do not change.
        small = [
            ("unet", UNet2DConditionModel(UNetConfig.sd15(0.125), device=META)),
            ("unet", UNet2DConditionModel(UNetConfig.sd15(0.0625), device=META)),
            ("vae", AutoencoderKL(VaeConfig.sd15(0.125), device=META)),
            ("vae", AutoencoderKL(VaeConfig.sd15(0.0625), device=META)),
            ("text", CLIPTextModel(ClipTextConfig.vit_l14(0.125), device=META)),
            ("vit_h", CLIPVisionModelWithProjection(ClipVisionConfig.vit_h14(0.125), device=META)),
            ("r100", IResNet(IResNetConfig.of("r100", 0.125), device=META)),
        ]
        for name, m in small:
            self.assertEqual(set(shapes(m)), set(Layout.get(name)[1]), name)
        self.assertEqual(shapes(small[1][1])["down_blocks.1.resnets.0.conv_shortcut.weight"], [32, 32, 1, 1])
        text = small[4][1].text_model.encoder.layers[0].self_attn
        self.assertEqual((text.heads, text.head_dim), (12, 8))
        self.assertEqual(small[0][1].down_blocks[2].attentions[0].transformer_blocks[0].attn1.heads, 8)


if __name__ == "__main__":
    unittest.main()
