"""build_full's parts, cheaply: the float16 rewrite, the external-data writer, the fast export and
the CLIP-size vocabulary. (The whole build at 1/16 width runs in services/gpu-worker/test/
full-bundle.test.ts, which also runs the graphs in onnxruntime; no onnxruntime here.)
"""
import tempfile
import unittest
from pathlib import Path

import onnx
import torch
from onnx import TensorProto, numpy_helper
from torch import nn

from diffid_reference.build_full import MODELS, SCHEDULER_CONFIG, Widths, build, build_module, example_inputs
from diffid_reference.clip_tokenizer import BOS, EOS, MERGES, VOCAB_SIZE, clip_bpe_files
from diffid_reference.onnx_files import ALIGN, export_module, torch_export
from diffid_reference.safetensors_io import save_file
from diffid_reference.sd_unet import timestep_embedding


class Tiny(nn.Module):
    """Conv, GroupNorm, attention-free linear, nearest upsampling and a sinusoidal timestep path."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(4, 32, 3, padding=1)
        self.norm = nn.GroupNorm(32, 32)
        self.time = nn.Linear(32, 32)
        self.big = nn.Linear(32, 32)  # 4 KB of weights: external
        self.out = nn.Conv2d(32, 4, 3, padding=1)

    def forward(self, sample, timestep):
        emb = self.time(timestep_embedding(timestep, 32, True, 0))
        x = self.norm(self.conv(sample)) + emb[:, :, None, None]
        x = self.big(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        x = nn.functional.interpolate(x, scale_factor=2.0, mode="nearest")
        return self.out(x)


def export_tiny(folder: Path, precision: str, external: bool) -> Path:
    torch.manual_seed(0)
    module = Tiny().eval()
    args = (torch.randn(2, 4, 8, 8), torch.tensor([981.0, 1.0]))
    out = folder / precision / "model.onnx"
    export_module(module, args, out, input_names=["sample", "timestep"], output_names=["out_sample"], dynamic_axes={"sample": {0: "batch"}, "timestep": {0: "batch"}, "out_sample": {0: "batch"}}, precision=precision, external=external, fp32_from=("timestep",))
    return out


class Fp16Test(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.path = export_tiny(Path(cls.tmp.name), "fp16", external=True)
        cls.model = onnx.load(str(cls.path), load_external_data=False)

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def test_ports_are_float16(self):
        g = self.model.graph
        self.assertEqual([i.type.tensor_type.elem_type for i in g.input], [TensorProto.FLOAT16] * 2)
        self.assertEqual(g.output[0].type.tensor_type.elem_type, TensorProto.FLOAT16)

    def test_weights_are_float16_except_resize_scales(self):
        kinds = {i.name: i.data_type for i in self.model.graph.initializer}
        floats = [k for k, v in kinds.items() if v in (TensorProto.FLOAT, TensorProto.FLOAT16)]
        self.assertTrue(floats)
        for name in floats:
            self.assertEqual(kinds[name], TensorProto.FLOAT16, name)

    def test_timestep_sinusoids_stay_float32(self):
        g = self.model.graph
        casts = {n.input[0]: n for n in g.node if n.op_type == "Cast"}
        # The float16 timestep port is cast to float32 before anything reads it...
        self.assertIn("timestep", casts)
        self.assertEqual(casts["timestep"].attribute[0].i, TensorProto.FLOAT)
        consumers = [n for n in g.node if "timestep" in n.input]
        self.assertEqual([n.op_type for n in consumers], ["Cast"])
        # ...and Sin and Cos compute in float32, their result cast to float16 before the Linear.
        inferred = onnx.shape_inference.infer_shapes(self.model)
        types = {v.name: v.type.tensor_type.elem_type for v in inferred.graph.value_info}
        for node in g.node:
            if node.op_type in ("Sin", "Cos"):
                self.assertEqual(types[node.output[0]], TensorProto.FLOAT, node.name)

    def test_resize_gets_float32_scales(self):
        resize = next(n for n in self.model.graph.node if n.op_type == "Resize")
        inferred = onnx.shape_inference.infer_shapes(self.model)
        types = {v.name: v.type.tensor_type.elem_type for v in inferred.graph.value_info}
        types.update({i.name: i.data_type for i in inferred.graph.initializer})
        consts = {n.output[0]: n.attribute[0].t.data_type for n in self.model.graph.node if n.op_type == "Constant"}
        self.assertEqual(consts.get(resize.input[2], types.get(resize.input[2])), TensorProto.FLOAT)

    def test_external_data_is_one_aligned_file(self):
        external = [i for i in self.model.graph.initializer if i.data_location == TensorProto.EXTERNAL]
        self.assertTrue(external)
        for init in external:
            info = {e.key: e.value for e in init.external_data}
            self.assertEqual(info["location"], "model.onnx_data")
            self.assertEqual(int(info["offset"]) % ALIGN, 0)
        self.assertEqual(sorted(p.name for p in self.path.parent.iterdir()), ["model.onnx", "model.onnx_data"], "no temporary files left")

    def test_fp32_weights_round_trip_exactly(self):
        with tempfile.TemporaryDirectory() as tmp:
            path = export_tiny(Path(tmp), "fp32", external=True)
            model = onnx.load(str(path))  # external data loaded
            weights = {numpy_helper.to_array(i).tobytes() for i in model.graph.initializer}
            torch.manual_seed(0)
            self.assertIn(Tiny().out.weight.detach().numpy().tobytes(), weights)


class FastExportTest(unittest.TestCase):
    def test_skipping_torch_graph_shape_inference_changes_only_value_info(self):
        widths = Widths.of(0.0625)
        module = build_module("vae_encoder", widths, 0)
        inputs = example_inputs("vae_encoder", widths)
        _, outputs, axes, _, _ = MODELS["vae_encoder"]
        graphs = []
        with tempfile.TemporaryDirectory() as tmp:
            for fast in (True, False):
                path = str(Path(tmp) / f"{fast}.onnx")
                torch_export(module, tuple(inputs.values()), path, fast=fast, input_names=list(inputs), output_names=outputs, dynamic_axes=axes)
                model = onnx.load(path)
                model.graph.ClearField("value_info")
                graphs.append(model.graph.SerializeToString())
        self.assertEqual(graphs[0], graphs[1])


class WidthsTest(unittest.TestCase):
    def test_full_size_widths(self):
        w = Widths.of(1.0)
        self.assertEqual((w.text, w.image_embedding, w.face_embedding), (768, 768, 512))
        s = w.adapter_shape()
        self.assertEqual((s.conditioning_tokens, s.conditioning_width, s.attention_width, s.mlp_hidden), (81, 768, 384, 1536))

    def test_linked_recognizer_width(self):
        w = Widths.of(0.0625, face_dim=512)
        self.assertFalse(w.built_embedder)
        self.assertEqual(w.adapter_shape().face_dim, 512)

    def test_scheduler_is_sd15_ddim(self):
        self.assertEqual((SCHEDULER_CONFIG["beta_start"], SCHEDULER_CONFIG["beta_end"], SCHEDULER_CONFIG["steps_offset"], SCHEDULER_CONFIG["set_alpha_to_one"]), (0.00085, 0.012, 1, False))


class TokenizerTest(unittest.TestCase):
    def test_clip_size_and_special_ids(self):
        vocab, merges = clip_bpe_files()
        self.assertEqual(len(vocab), VOCAB_SIZE)
        self.assertEqual(len(merges), MERGES)
        self.assertEqual((vocab[BOS], vocab[EOS]), (49406, 49407))
        self.assertEqual(sorted(vocab.values()), list(range(VOCAB_SIZE)))

    def test_every_merge_joins_earlier_tokens(self):
        vocab, merges = clip_bpe_files()
        for rank, line in enumerate(merges):
            left, right = line.split(" ")
            self.assertLess(vocab[left], 512 + rank, line)
            self.assertLess(vocab[right], 512 + rank, line)
            self.assertEqual(vocab[left + right], 512 + rank, line)
        self.assertIn("photo</w>", vocab)


if __name__ == "__main__":
    unittest.main()


class WeightsFromFiles(unittest.TestCase):
    """--weights NAME=FILE: a state dict in diffusers layout replaces a model's seeded weights."""

    widths = Widths.of(1 / 32)

    def test_a_unet_file_fills_the_unet(self):
        theirs = build_module("unet", self.widths, 9).state_dict()
        with tempfile.TemporaryDirectory() as d:
            file = Path(d) / "diffusion_pytorch_model.safetensors"
            save_file(theirs, file)
            ours = build_module("unet", self.widths, 0, {"unet": str(file)}).state_dict()
        self.assertTrue(all(torch.equal(ours[k], theirs[k]) for k in theirs), "every tensor is the file's")
        seeded = build_module("unet", self.widths, 0).state_dict()
        self.assertFalse(torch.equal(ours["conv_in.weight"], seeded["conv_in.weight"]), "not the seeded ones")

    def test_one_vae_file_fills_both_vae_graphs(self):
        theirs = build_module("vae_encoder", self.widths, 9).vae.state_dict()
        with tempfile.TemporaryDirectory() as d:
            file = Path(d) / "vae.safetensors"
            save_file(theirs, file)
            for graph in ("vae_encoder", "vae_decoder"):
                ours = build_module(graph, self.widths, 0, {"vae": str(file)}).vae.state_dict()
                self.assertTrue(torch.equal(ours["decoder.conv_out.weight"], theirs["decoder.conv_out.weight"]), graph)

    def test_a_file_of_another_model_is_refused_naming_keys(self):
        with tempfile.TemporaryDirectory() as d:
            file = Path(d) / "text.safetensors"
            save_file(build_module("text_encoder", self.widths, 0).state_dict(), file)
            with self.assertRaisesRegex(ValueError, "does not match UNet2DConditionModel: .*missing"):
                build_module("unet", self.widths, 0, {"unet": str(file)})

    def test_unknown_names_and_missing_files_stop_the_build_before_it_starts(self):
        with tempfile.TemporaryDirectory() as d:
            out = Path(d) / "export"
            with self.assertRaisesRegex(ValueError, "no such model; name one of unet, vae"):
                build(out, scale=1 / 32, size=64, weights={"unte": __file__})
            with self.assertRaisesRegex(ValueError, "no such file"):
                build(out, scale=1 / 32, size=64, weights={"unet": str(Path(d) / "absent.safetensors")})
            self.assertFalse(out.exists(), "nothing written")
