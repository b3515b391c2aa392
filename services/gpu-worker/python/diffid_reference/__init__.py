"""Reference PyTorch implementations for Diff-ID Serve's adapter role and the models around it.

- ``adapter``: the Diff-ID adapter (paper eqs. 5-15, shapes of docs/adapter.md).
- ``ip_adapter_faceid``: IP-Adapter-FaceID's projection of a face embedding to 4 tokens.
- ``losses``: the paper's training objective (eqs. 2-3, 19-21).
- ``export``: writes either adapter as the ONNX graph the bundle contract expects.

The full architectures, with the parameter names of the published checkpoints (so that their
state dicts load with ``load_state_dict(strict=True)``), at full size or scaled down for CI:

- ``sd_unet``: SD 1.5's U-Net (diffusers' ``UNet2DConditionModel``).
- ``vae``: SD 1.5's VAE (diffusers' ``AutoencoderKL``).
- ``clip``: CLIP ViT-L/14 text tower and ViT-L/14 or ViT-H/14 vision tower (transformers' names).
- ``iresnet``: InsightFace's IResNet-50/100 ArcFace recognizers.
- ``scaling``: the width-scale rule those modules share.
- ``seeded_init``: deterministic random weights from a seed.
- ``safetensors_io``: safetensors read/write (standard library + torch) and a checked state-dict loader.
"""
