"""Builds SD 1.5 with the Diff-ID adapter at any width scale, seeded random weights, as ONNX.

    python3 -m diffid_reference.build_full --out EXPORT_DIR [--size 512] [--scale 1]
        [--precision fp32|fp16] [--seed 0] [--face-dim D]

Every model is the full-depth architecture of this package (sd_unet, vae, clip, iresnet, adapter)
at ``--scale`` (scaling.py: 1 is SD 1.5's own widths), its weights from ``seeded_init(module,
seed)``, exported to ONNX opset 17 (onnx_files.py). EXPORT_DIR is a diffusers/optimum ONNX
export folder, the layout ``npm run bundle -- --kind import`` reads, plus the graphs such a
folder does not hold, in ``diffid/``:

    model_index.json
    text_encoder/model.onnx      input_ids int32 [B, 77] -> last_hidden_state [B, 77, W]
    unet/model.onnx              sample [B, 4, h, w], timestep float [B],
      + model.onnx_data          encoder_hidden_states [B, L, C] (L symbolic: Diff-ID's 77 + 4)
      config.json                  -> out_sample [B, 4, h, w]; sample_size = size / 8
    vae_encoder/model.onnx       sample [B, 3, H, W] -> latent_parameters [B, 8, h, w] (mean ‖ logvar)
    vae_decoder/model.onnx       latent_sample [B, 4, h, w] -> sample [B, 3, H, W]
      config.json                  scaling_factor 0.18215
    text_encoder/config.json, vae_encoder/config.json   the configs the graphs were built from
    tokenizer/                   vocab.json, merges.txt (clip_tokenizer.py: 49 408 ids), ...
    scheduler/scheduler_config.json   SD 1.5's DDIM schedule
    diffid/adapter.onnx + adapter.json   the Diff-ID adapter (export.py's graph and sidecar)
    diffid/image_encoder.onnx    CLIP ViT-L/14 vision + projection: pixel_values [B, 3, 224, 224] -> image_embeds [B, E]
    diffid/face_embedder.onnx    IResNet-100: input [B, 3, 112, 112] ((p - 127.5) / 127.5, RGB) -> embedding [B, D]
    diffid/build.json            what was built: scale, seed, precision, widths, files, sizes, seconds

Only the U-Net keeps its weights outside (``model.onnx_data``) at every scale: at scale 1 it is
3.44 GB in float32, over protobuf's 2 GB; the others stay one file each (the importer copies the
adapter, image encoder and embedder as single files). ``--face-dim D`` builds no IResNet and sizes
the adapter for a recognizer of width D the caller links instead (``npm run bundle -- --kind full
--embedder FILE``). ``--precision fp16``: float16 weights, ports and arithmetic (onnx_files.py).

Widths at ``scale`` s: text W = 12·round(64 s) (= the U-Net's cross-attention width C), CLIP
image embedding E = round(768 s), face embedding D = round(512 s); the adapter's attention width
d = W/2 and MLP width h = 2W, the tiny bundle's ratios. At s = 1: W = C = 768, E = 768, D = 512,
d = 384, h = 1536.

Tracing runs at small example sizes (latents 16×16, 128-px images): the graphs' batch and spatial
axes are symbolic, so the example size changes nothing but the export's time. Image sides must be
multiples of 64 (latents divisible by 8: the U-Net halves them three times).

Without torch and onnx this prints one line saying so and exits with status 3.
"""
from __future__ import annotations

import sys

NO_TORCH_EXIT = 3

try:
    import onnx  # noqa: F401
    import torch
    from torch import nn
except ImportError as err:  # pragma: no cover - depends on the machine
    print(f"diffid_reference.build_full needs torch and onnx ({err}); Debian: apt-get install python3-torch python3-onnx", file=sys.stderr)
    sys.exit(NO_TORCH_EXIT)

import argparse
import gc
import json
import time
from dataclasses import dataclass
from pathlib import Path

from .adapter import AdapterShape, DiffIdAdapter
from .clip import CLIPTextModel, CLIPVisionModelWithProjection, ClipTextConfig, ClipVisionConfig
from .clip_tokenizer import MAX_LENGTH, write_tokenizer
from .export import export as export_adapter
from .iresnet import IResNet, IResNetConfig
from .onnx_files import export_module, graph_io, write_model
from .safetensors_io import load_diffusers_state_dict
from .scaling import check_scale
from .sd_unet import UNet2DConditionModel, UNetConfig
from .seeded_init import seeded_init
from .vae import SCALING_FACTOR, AutoencoderKL, VaeConfig

#: SD 1.5's DDIM schedule (shared/src/diffusion/schedule.ts SD15_SCHEDULER) as diffusers writes it.
SCHEDULER_CONFIG = {
    "_class_name": "DDIMScheduler",
    "_diffusers_version": "0.30.0",
    "num_train_timesteps": 1000,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "timestep_spacing": "leading",
    "steps_offset": 1,
    "set_alpha_to_one": False,
    "prediction_type": "epsilon",
    "clip_sample": False,
    "trained_betas": None,
}
#: Example sizes the graphs are traced at (their spatial axes are symbolic).
TRACE_LATENT = 16
TRACE_BATCH = 2
#: The Diff-ID conditioning: 77 text tokens + 4 identity tokens (adapter.py).
TEXT_TOKENS = MAX_LENGTH


@dataclass(frozen=True)
class Widths:
    scale: float
    text: int  # W, = the U-Net's cross-attention width C
    image_embedding: int  # E
    face_embedding: int  # D
    built_embedder: bool

    @classmethod
    def of(cls, scale: float, face_dim: int | None = None) -> "Widths":
        check_scale(scale)
        return cls(
            scale=scale,
            text=ClipTextConfig.vit_l14(scale).hidden_size,
            image_embedding=ClipVisionConfig.vit_l14(scale).projection_dim,
            face_embedding=face_dim if face_dim is not None else IResNetConfig.of("r100", scale).num_features,
            built_embedder=face_dim is None,
        )

    def adapter_shape(self) -> AdapterShape:
        w = self.text
        return AdapterShape(face_dim=self.face_embedding, image_dim=self.image_embedding, text_width=w, text_tokens=TEXT_TOKENS, attention_width=max(1, w // 2), mlp_hidden=2 * w, conditioning_width=UNetConfig.sd15(self.scale).cross_attention_dim)


class VaeEncoderGraph(nn.Module):
    """sample -> latent_parameters (mean ‖ logvar), optimum's vae_encoder."""

    def __init__(self, vae: AutoencoderKL):
        super().__init__()
        self.vae = vae

    def forward(self, sample: torch.Tensor) -> torch.Tensor:
        return self.vae.encode_moments(sample)


class VaeDecoderGraph(nn.Module):
    """latent_sample (unscaled) -> sample (pixels, about [-1, 1])."""

    def __init__(self, vae: AutoencoderKL):
        super().__init__()
        self.vae = vae

    def forward(self, latent_sample: torch.Tensor) -> torch.Tensor:
        return self.vae.decode(latent_sample)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


#: What ``--weights NAME=FILE`` may name: each model, the VAE once for both of its graphs.
WEIGHT_NAMES = ("unet", "vae", "text_encoder", "image_encoder", "face_embedder", "adapter")


def weights_name(model: str) -> str:
    """The ``--weights`` name that fills a graph's model."""
    return "vae" if model.startswith("vae_") else model


def build_module(name: str, widths: Widths, seed: int, weights: dict[str, str] | None = None) -> nn.Module:
    """One model, in eval mode, with seeded weights, or a state dict file's when ``weights``
    names one for it (diffusers, transformers or InsightFace layout; every key must match).
    Names: MODELS' keys."""
    s = widths.scale
    if name == "unet":
        module = UNet2DConditionModel(UNetConfig.sd15(s))
    elif name in ("vae_encoder", "vae_decoder"):
        module = AutoencoderKL(VaeConfig.sd15(s))
    elif name == "text_encoder":
        module = CLIPTextModel(ClipTextConfig.vit_l14(s))
    elif name == "image_encoder":
        module = CLIPVisionModelWithProjection(ClipVisionConfig.vit_l14(s))
    elif name == "face_embedder":
        module = IResNet(IResNetConfig.of("r100", s))
    elif name == "adapter":
        module = DiffIdAdapter(widths.adapter_shape())
    else:
        raise KeyError(f"no model {name!r}; expected one of {', '.join(MODELS)}")
    seeded_init(module, seed)
    file = (weights or {}).get(weights_name(name))
    if file is not None:
        load_diffusers_state_dict(module, file)
    if name == "vae_encoder":
        module = VaeEncoderGraph(module)
    elif name == "vae_decoder":
        module = VaeDecoderGraph(module)
    return module.eval()


def _parameters(name: str, module: nn.Module) -> int:
    """Parameters the graph holds (a VAE half holds its half of the VAE)."""
    if name == "vae_encoder":
        parts = [module.vae.encoder, module.vae.quant_conv]
    elif name == "vae_decoder":
        parts = [module.vae.decoder, module.vae.post_quant_conv]
    else:
        parts = [module]
    return sum(p.numel() for part in parts for p in part.parameters())


def example_inputs(name: str, widths: Widths, seed: int = 0) -> dict[str, torch.Tensor]:
    """Tracing inputs of each graph, by port name (batch 2, small spatial sizes)."""
    g, b, h = _gen(seed), TRACE_BATCH, TRACE_LATENT
    if name == "unet":
        conditioning = widths.adapter_shape()
        return {
            "sample": torch.randn(b, 4, h, h, generator=g),
            "timestep": torch.tensor([981.0, 1.0]),
            "encoder_hidden_states": torch.randn(b, conditioning.conditioning_tokens, conditioning.conditioning_width, generator=g),
        }
    if name == "text_encoder":
        return {"input_ids": torch.randint(0, 49408, (b, TEXT_TOKENS), generator=g, dtype=torch.int64).to(torch.int32)}
    if name == "vae_encoder":
        return {"sample": torch.randn(b, 3, 8 * h, 8 * h, generator=g).clamp(-1, 1)}
    if name == "vae_decoder":
        return {"latent_sample": torch.randn(b, 4, h, h, generator=g)}
    if name == "image_encoder":
        return {"pixel_values": torch.randn(b, 3, 224, 224, generator=g)}
    if name == "face_embedder":
        return {"input": torch.randn(b, 3, 112, 112, generator=g).clamp(-1, 1)}
    raise KeyError(name)


#: name -> (folder file, output names, dynamic axes, external data, float32 inputs in fp16 graphs)
MODELS = {
    "text_encoder": ("text_encoder/model.onnx", ["last_hidden_state"], {"input_ids": {0: "batch"}, "last_hidden_state": {0: "batch"}}, False, ()),
    "unet": (
        "unet/model.onnx",
        ["out_sample"],
        {"sample": {0: "batch", 2: "height", 3: "width"}, "timestep": {0: "batch"}, "encoder_hidden_states": {0: "batch", 1: "sequence"}, "out_sample": {0: "batch", 2: "height", 3: "width"}},
        True,
        ("timestep",),
    ),
    "vae_encoder": ("vae_encoder/model.onnx", ["latent_parameters"], {"sample": {0: "batch", 2: "height", 3: "width"}, "latent_parameters": {0: "batch", 2: "latent_height", 3: "latent_width"}}, False, ()),
    "vae_decoder": ("vae_decoder/model.onnx", ["sample"], {"latent_sample": {0: "batch", 2: "latent_height", 3: "latent_width"}, "sample": {0: "batch", 2: "height", 3: "width"}}, False, ()),
    "image_encoder": ("diffid/image_encoder.onnx", ["image_embeds"], {"pixel_values": {0: "batch"}, "image_embeds": {0: "batch"}}, False, ()),
    "face_embedder": ("diffid/face_embedder.onnx", ["embedding"], {"input": {0: "batch"}, "embedding": {0: "batch"}}, False, ()),
    "adapter": ("diffid/adapter.onnx", ["conditioning"], {}, False, ()),
}


def _write_json(path: Path, value: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, indent=2) + "\n")


def _configs(out: Path, widths: Widths, size: int) -> None:
    s = widths.scale
    unet = UNetConfig.sd15(s)
    _write_json(out / "model_index.json", {
        "_class_name": "OnnxStableDiffusionPipeline",
        "_diffusers_version": "0.30.0",
        "text_encoder": ["diffusers", "OnnxRuntimeModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"],
        "unet": ["diffusers", "OnnxRuntimeModel"],
        "vae_encoder": ["diffusers", "OnnxRuntimeModel"],
        "vae_decoder": ["diffusers", "OnnxRuntimeModel"],
        "scheduler": ["diffusers", "DDIMScheduler"],
        "safety_checker": [None, None],
        "feature_extractor": [None, None],
        "requires_safety_checker": False,
    })
    _write_json(out / "scheduler/scheduler_config.json", SCHEDULER_CONFIG)
    _write_json(out / "unet/config.json", {
        "_class_name": "UNet2DConditionModel",
        "sample_size": size // 8,
        "in_channels": unet.in_channels,
        "out_channels": unet.out_channels,
        "block_out_channels": list(unet.block_out_channels),
        "layers_per_block": unet.layers_per_block,
        "attention_head_dim": unet.attention_head_dim,
        "cross_attention_dim": unet.cross_attention_dim,
        "norm_num_groups": unet.norm_num_groups,
        "down_block_types": ["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"],
        "up_block_types": ["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3,
        "diffid_scale": s,
    })
    vae = VaeConfig.sd15(s)
    vae_json = {"_class_name": "AutoencoderKL", "sample_size": size, "latent_channels": vae.latent_channels, "block_out_channels": list(vae.block_out_channels), "layers_per_block": vae.layers_per_block, "scaling_factor": SCALING_FACTOR, "diffid_scale": s}
    _write_json(out / "vae_encoder/config.json", vae_json)
    _write_json(out / "vae_decoder/config.json", vae_json)
    _write_json(out / "text_encoder/config.json", {"architectures": ["CLIPTextModel"], **ClipTextConfig.vit_l14(s).to_json(), "diffid_scale": s})


def build(out: Path, *, size: int = 512, scale: float = 1.0, precision: str = "fp32", seed: int = 0, face_dim: int | None = None, weights: dict[str, str] | None = None, log=print) -> dict:
    """Writes the export folder; returns what diffid/build.json records. ``weights`` maps
    WEIGHT_NAMES to state dict files loaded instead of the seeded weights."""
    if size % 64 or not 64 <= size <= 2048:
        raise ValueError(f"size must be a multiple of 64 in 64…2048 (latents divisible by 8); got {size}")
    if precision not in ("fp32", "fp16"):
        raise ValueError(f"precision must be fp32 or fp16; got {precision!r}")
    widths = Widths.of(scale, face_dim)
    weights = {k: str(Path(v).resolve()) for k, v in (weights or {}).items()}
    for key, file in weights.items():
        if key not in WEIGHT_NAMES:
            raise ValueError(f"--weights {key}=…: no such model; name one of {', '.join(WEIGHT_NAMES)}")
        if key == "face_embedder" and not widths.built_embedder:
            raise ValueError("--weights face_embedder=…: this build links a recognizer instead of building one (--face-dim)")
        if not Path(file).is_file():
            raise ValueError(f"--weights {key}={file}: no such file")
    out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    _configs(out, widths, size)
    tokenizer = write_tokenizer(out / "tokenizer")
    files: dict[str, dict] = {}
    seconds: dict[str, float] = {}
    names = [n for n in MODELS if n != "face_embedder" or widths.built_embedder]
    for name in names:
        t0 = time.monotonic()
        file, output_names, axes, external, fp32_from = MODELS[name]
        target = out / file
        module = build_module(name, widths, seed, weights)
        params = _parameters(name, module)
        doc = f"diffid_reference.build_full: {name} at scale {scale}, seed {seed}, {precision}"
        if name == "adapter":
            # export.py's graph: every port of the contract, fixed conditioning dims; then the same
            # float16 / inline rewrite as the others.
            shape = widths.adapter_shape()
            raw = target.with_name(".adapter-fp32.onnx")
            with torch.no_grad():
                export_adapter(module, (shape.face_dim, shape.image_dim, shape.text_tokens, shape.text_width), (shape.conditioning_tokens, shape.conditioning_width), raw)
            sizes = write_model(raw, target, precision=precision, doc=doc)
            raw.unlink()
            _write_json(target.with_suffix(".json"), module.manifest_adapter())
        else:
            inputs = example_inputs(name, widths, seed)
            sizes = export_module(module, tuple(inputs.values()), target, input_names=list(inputs), output_names=output_names, dynamic_axes=axes, precision=precision, external=external, fp32_from=fp32_from, doc=doc)
        del module
        gc.collect()
        seconds[name] = round(time.monotonic() - t0, 2)
        files[name] = {"file": file, "parameters": params, "bytes": sizes["graph"] + sizes["data"], **({"external_data": f"{file}_data"} if external else {}), **graph_io(target)}
        log(f"{name}: {params:,} parameters, {files[name]['bytes']:,} bytes, {seconds[name]} s")
    record = {
        "scale": scale,
        "size": size,
        "precision": precision,
        "seed": seed,
        "widths": {"text": widths.text, "conditioning": widths.adapter_shape().conditioning_width, "image_embedding": widths.image_embedding, "face_embedding": widths.face_embedding},
        "adapter": widths.adapter_shape().to_json(),
        "embedder": "iresnet100" if widths.built_embedder else f"external, width {widths.face_embedding}",
        "weights": weights,
        "tokenizer": tokenizer,
        "files": files,
        "seconds": {**seconds, "total": round(time.monotonic() - started, 2)},
    }
    _write_json(out / "diffid/build.json", record)
    return record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m diffid_reference.build_full", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="the export folder to write")
    parser.add_argument("--size", type=int, default=512, help="image side in pixels, a multiple of 64 (unet/config.json's sample_size = size / 8); default 512")
    parser.add_argument("--scale", type=float, default=1.0, help="width scale in (0, 1] (scaling.py); default 1, SD 1.5's own widths")
    parser.add_argument("--precision", choices=("fp32", "fp16"), default="fp32")
    parser.add_argument("--seed", type=int, default=0, help="seeded_init's seed for every model; default 0")
    parser.add_argument("--face-dim", type=int, help="build no face embedder; size the adapter for a linked recognizer of this width")
    parser.add_argument("--weights", action="append", default=[], metavar="NAME=FILE", help=f"a state dict (.safetensors or .bin, diffusers layout) for one model instead of seeded weights; NAME: {', '.join(WEIGHT_NAMES)}; repeatable")
    args = parser.parse_args(argv)
    weights: dict[str, str] = {}
    for item in args.weights:
        key, sep, file = item.partition("=")
        if not sep or not file:
            parser.error(f"--weights takes NAME=FILE, got {item!r}")
        weights[key] = file
    if args.seed < 0:
        parser.error("--seed must be a non-negative integer")
    if args.face_dim is not None and args.face_dim < 1:
        parser.error("--face-dim must be positive")
    try:
        record = build(Path(args.out), size=args.size, scale=args.scale, precision=args.precision, seed=args.seed, face_dim=args.face_dim, weights=weights, log=lambda line: print(line, file=sys.stderr, flush=True))
    except ValueError as err:
        parser.error(str(err))
    print(json.dumps(record))
    return 0


if __name__ == "__main__":
    sys.exit(main())
