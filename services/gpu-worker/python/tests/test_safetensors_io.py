"""The safetensors reader/writer and the state-dict loader (safetensors_io.py)."""
import json
import pickle
import struct
import tempfile
import unittest
from pathlib import Path

import torch

from diffid_reference import safetensors_io as st
from diffid_reference.clip import CLIPTextModel, ClipTextConfig
from diffid_reference.iresnet import IResNet, IResNetConfig
from diffid_reference.seeded_init import seeded_init
from diffid_reference.sd_unet import UNet2DConditionModel, UNetConfig
from diffid_reference.vae import AutoencoderKL, VaeConfig


def craft(header, buffer: bytes, declared: int | None = None) -> bytes:
    """A file by hand: 8-byte length (``declared`` overrides it), header JSON (or raw bytes), buffer."""
    text = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(text) if declared is None else declared) + text + buffer


def f32(name_offsets: dict) -> dict:
    return {name: {"dtype": "F32", "shape": [(end - begin) // 4], "data_offsets": [begin, end]} for name, (begin, end) in name_offsets.items()}


class FormatTest(unittest.TestCase):
    def test_reads_a_file_written_by_hand(self):
        header = {
            "__metadata__": {"format": "pt"},
            "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
            "b": {"dtype": "I64", "shape": [], "data_offsets": [8, 16]},
            "c": {"dtype": "F16", "shape": [1, 1], "data_offsets": [16, 18]},
        }
        data = craft(header, struct.pack("<2fq", 1.5, -2.0, 7) + struct.pack("<e", 0.25))
        got = st.loads(data)
        self.assertTrue(torch.equal(got["a"], torch.tensor([1.5, -2.0])))
        self.assertEqual((got["b"].dtype, got["b"].shape, int(got["b"])), (torch.int64, torch.Size([]), 7))
        self.assertTrue(torch.equal(got["c"], torch.tensor([[0.25]], dtype=torch.float16)))

    def test_round_trip(self):
        g = torch.Generator().manual_seed(0)
        tensors = {
            "f32": torch.randn(3, 5, generator=g),
            "f16": torch.randn(4, generator=g).half(),
            "bf16": torch.randn(2, 3, generator=g).bfloat16(),
            "f64": torch.randn(2, generator=g).double(),
            "i64": torch.arange(77).unsqueeze(0),
            "i32": torch.tensor([-1, 2, 3], dtype=torch.int32),
            "u8": torch.tensor([0, 255], dtype=torch.uint8),
            "bool": torch.tensor([True, False, True]),
            "scalar": torch.tensor(3.25),
            "empty": torch.empty(0, 3),
            "transposed": torch.randn(4, 6, generator=g).t(),  # not contiguous: written row-major
        }
        with tempfile.TemporaryDirectory() as d:
            path = Path(d) / "t.safetensors"
            st.save_file(tensors, path, metadata={"format": "pt"})
            raw = path.read_bytes()
            got, metadata = st.load_file(path, with_metadata=True)
        (n,) = struct.unpack("<Q", raw[:8])
        self.assertEqual(n % 8, 0)  # header padded as the official writer pads it
        self.assertEqual(metadata, {"format": "pt"})
        self.assertEqual(set(got), set(tensors))
        for name, t in tensors.items():
            self.assertEqual(got[name].dtype, t.dtype, name)
            self.assertTrue(torch.equal(got[name], t), name)

    def assertRefused(self, data: bytes, fragment: str) -> None:
        with self.assertRaises(st.SafetensorsError) as ctx:
            st.loads(data)
        self.assertIn(fragment, str(ctx.exception))

    def test_malformed_files_are_refused_with_a_reason(self):
        eight = struct.pack("<2f", 1.0, 2.0)
        ok = f32({"a": (0, 8)})
        self.assertEqual(list(st.loads(craft(ok, eight))["a"]), [1.0, 2.0])
        self.assertRefused(b"\x01\x02", "shorter than the 8-byte header length")
        self.assertRefused(craft(ok, eight, declared=10**6), "runs past the end")
        self.assertRefused(craft(ok, eight, declared=2**63), "exceeds")
        self.assertRefused(craft(b"{not json", eight), "not UTF-8 JSON")
        self.assertRefused(craft(b"[1, 2]", b""), "not an object")
        self.assertRefused(craft({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 1 << 40]}}, eight), "outside")
        self.assertRefused(craft({"a": {"dtype": "F32", "shape": [2], "data_offsets": [-8, 0]}}, eight), "outside")
        self.assertRefused(craft({"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}, eight), "bytes for shape")
        self.assertRefused(craft({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, True]}}, eight), "not two integers")
        self.assertRefused(craft({"a": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}}, eight), "non-negative")
        self.assertRefused(craft({"a": {"dtype": "U32", "shape": [2], "data_offsets": [0, 8]}}, eight), "dtype 'U32'")
        self.assertRefused(craft(f32({"a": (0, 8), "b": (4, 12)}), eight + eight[:4]), "overlaps")
        self.assertRefused(craft(f32({"a": (0, 4), "b": (8, 12)}), eight + eight[:4]), "hole")
        self.assertRefused(craft(ok, eight + b"\x00" * 4), "after the last tensor")
        self.assertRefused(craft({"__metadata__": {"a": 1}}, b""), "__metadata__")


class LoadStateDictTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.addCleanup(self.dir.cleanup)
        self.path = Path(self.dir.name)

    def test_saved_state_loads_strictly_and_gives_identical_outputs(self):
        cfg = UNetConfig.sd15(0.0625)
        source = seeded_init(UNet2DConditionModel(cfg), 1).eval()
        g = torch.Generator().manual_seed(2)
        x, c = torch.randn(1, 4, 8, 8, generator=g), torch.randn(1, 81, cfg.cross_attention_dim, generator=g)
        with torch.no_grad():
            want = source(x, torch.tensor([500.0]), c)
        st.save_file(source.state_dict(), self.path / "unet.safetensors")
        torch.save(source.state_dict(), self.path / "unet.bin")
        for name in ("unet.safetensors", "unet.bin"):
            fresh = seeded_init(UNet2DConditionModel(cfg), 99).eval()
            report = st.load_diffusers_state_dict(fresh, self.path / name)
            self.assertTrue(report.ok, report.describe())
            with torch.no_grad():
                self.assertTrue(torch.equal(fresh(x, torch.tensor([500.0]), c), want), name)

    def test_float16_files_fill_float32_modules(self):
        source = seeded_init(AutoencoderKL(VaeConfig.sd15(0.0625)), 3)
        st.save_file({k: v.half() for k, v in source.state_dict().items()}, self.path / "vae.safetensors")
        fresh = AutoencoderKL(VaeConfig.sd15(0.0625))
        st.load_diffusers_state_dict(fresh, self.path / "vae.safetensors")
        w = fresh.encoder.conv_in.weight
        self.assertEqual(w.dtype, torch.float32)
        self.assertTrue(torch.equal(w, source.encoder.conv_in.weight.half().float()))

    def test_mismatches_are_named_and_strict_loads_nothing(self):
        source = seeded_init(AutoencoderKL(VaeConfig.sd15(0.0625)), 3)
        state = dict(source.state_dict())
        del state["decoder.conv_in.bias"]
        state["decoder.extra.weight"] = torch.zeros(2)
        state["quant_conv.bias"] = torch.zeros(5)
        st.save_file(state, self.path / "bad.safetensors")
        fresh = seeded_init(AutoencoderKL(VaeConfig.sd15(0.0625)), 4)
        before = fresh.encoder.conv_in.weight.clone()
        with self.assertRaises(ValueError) as ctx:
            st.load_diffusers_state_dict(fresh, self.path / "bad.safetensors")
        message = str(ctx.exception)
        for name in ("decoder.conv_in.bias", "decoder.extra.weight", "quant_conv.bias: file [5] vs module [8]"):
            self.assertIn(name, message)
        self.assertTrue(torch.equal(fresh.encoder.conv_in.weight, before))
        report = st.load_diffusers_state_dict(fresh, self.path / "bad.safetensors", strict=False)
        self.assertEqual((report.missing, report.unexpected), (["decoder.conv_in.bias"], ["decoder.extra.weight"]))
        self.assertTrue(torch.equal(fresh.encoder.conv_in.weight, source.encoder.conv_in.weight))

    def test_old_files_position_ids_and_attention_names(self):
        text = seeded_init(CLIPTextModel(ClipTextConfig.vit_l14(0.0625)), 5)
        state = dict(text.state_dict(), **{"text_model.embeddings.position_ids": torch.arange(77).unsqueeze(0)})
        st.save_file(state, self.path / "text.safetensors")
        report = st.load_diffusers_state_dict(CLIPTextModel(ClipTextConfig.vit_l14(0.0625)), self.path / "text.safetensors")
        self.assertEqual(report.ignored, ["text_model.embeddings.position_ids"])

        vae = seeded_init(AutoencoderKL(VaeConfig.sd15(0.0625)), 6)
        legacy = {}
        for k, v in vae.state_dict().items():
            for new, old in (("to_q", "query"), ("to_k", "key"), ("to_v", "value"), ("to_out.0", "proj_attn")):
                k = k.replace(f"attentions.0.{new}.", f"attentions.0.{old}.")
            legacy[k] = v
        self.assertIn("encoder.mid_block.attentions.0.proj_attn.weight", legacy)
        st.save_file(legacy, self.path / "legacy.safetensors")
        fresh = AutoencoderKL(VaeConfig.sd15(0.0625))
        report = st.load_diffusers_state_dict(fresh, self.path / "legacy.safetensors")
        self.assertEqual(len(report.renamed), 16)  # 2 attentions × 4 layers × weight, bias
        self.assertTrue(torch.equal(fresh.decoder.mid_block.attentions[0].to_out[0].weight, vae.decoder.mid_block.attentions[0].to_out[0].weight))

    def test_batchnorm_counters_may_be_absent(self):
        source = seeded_init(IResNet(IResNetConfig.of("r50", 0.0625)), 7).eval()
        st.save_file({k: v for k, v in source.state_dict().items() if not k.endswith("num_batches_tracked")}, self.path / "r50.safetensors")
        fresh = IResNet(IResNetConfig.of("r50", 0.0625)).eval()
        report = st.load_diffusers_state_dict(fresh, self.path / "r50.safetensors")
        self.assertEqual(len(report.defaulted), 24 * 3 + 4 + 3)  # bn1-3 per block, a downsample BN per stage; bn1, bn2, features
        faces = torch.rand(1, 3, 112, 112, generator=torch.Generator().manual_seed(8))
        with torch.no_grad():
            self.assertTrue(torch.equal(fresh(faces), source(faces)))

    def test_pickled_code_is_refused(self):
        torch.save({"w": torch.zeros(1), "payload": Payload()}, self.path / "evil.bin")
        with self.assertRaises((pickle.UnpicklingError, RuntimeError)):
            st.read_state_dict(self.path / "evil.bin")


class Payload:
    """Stands for any object a hostile .bin could carry; weights_only loading must not build it."""


if __name__ == "__main__":
    unittest.main()
