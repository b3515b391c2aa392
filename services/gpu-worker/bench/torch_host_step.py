"""The peer of bench/host-step.ts: the host work of one denoising step done the way diffusers'
StableDiffusionPipeline does it, in PyTorch on this CPU — torch.cat of the latents for the two
guidance branches, chunk and guidance, then DDIMScheduler.step (eta 0, epsilon) — with the U-Net
replaced by a copy that is timed apart. B counts U-Net rows (B/2 images), as host-step.ts does.
Prints {"B=2": {"host_ms_per_step": …}, …} as JSON.

  python3 services/gpu-worker/bench/torch_host_step.py   (torch 1.13 from Debian's python3-torch)
"""
import json
import os
import statistics
import time

import torch

STEPS = 20
ROUNDS = 9
GUIDANCE = 5.0
torch.set_num_threads(int(os.environ.get("BENCH_TORCH_THREADS", "2")))

# Stable Diffusion 1.5's scheduler: scaled_linear betas 0.00085..0.012 over 1000 steps, "leading"
# spacing with steps_offset 1, set_alpha_to_one False (docs/reference-values.md).
betas = torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=torch.float32) ** 2
alphas_cumprod = torch.cumprod(1.0 - betas, dim=0)
final_alpha_cumprod = alphas_cumprod[0]
ratio = 1000 // STEPS
timesteps = [t + 1 for t in range(0, 1000, ratio)][::-1]


def ddim_step(model_output, t, sample):
    prev_t = t - ratio
    alpha_prod_t = alphas_cumprod[t]
    alpha_prod_t_prev = alphas_cumprod[prev_t] if prev_t >= 0 else final_alpha_cumprod
    beta_prod_t = 1 - alpha_prod_t
    pred_original_sample = (sample - beta_prod_t ** 0.5 * model_output) / alpha_prod_t ** 0.5
    pred_sample_direction = (1 - alpha_prod_t_prev) ** 0.5 * model_output
    return alpha_prod_t_prev ** 0.5 * pred_original_sample + pred_sample_direction


def host_ms_per_step(rows):
    images = rows // 2
    generator = torch.Generator().manual_seed(0)
    start = torch.randn(images, 4, 64, 64, generator=generator)
    per_round = []
    for r in range(ROUNDS + 1):
        latents = start.clone()
        host = 0.0
        for t in timesteps:
            t0 = time.perf_counter()
            latent_model_input = torch.cat([latents] * 2)
            t1 = time.perf_counter()
            noise_pred = latent_model_input.clone()  # the U-Net's place
            t2 = time.perf_counter()
            noise_pred_uncond, noise_pred_text = noise_pred.chunk(2)
            noise_pred = noise_pred_uncond + GUIDANCE * (noise_pred_text - noise_pred_uncond)
            latents = ddim_step(noise_pred, t, latents)
            t3 = time.perf_counter()
            host += (t1 - t0) + (t3 - t2)
        if r > 0:  # the first round warms up
            per_round.append(host * 1000 / STEPS)
    return statistics.median(per_round)


print(json.dumps({f"B={b}": {"host_ms_per_step": host_ms_per_step(b)} for b in (2, 8, 16)}))
