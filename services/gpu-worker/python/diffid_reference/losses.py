"""The paper's training objective: section 3.3 and appendix A.1.4.

L_total = L_denoise + λ_identity · E[W_t · L_identity]           (eqs. 3, 21)
L_identity = 1 − cos(e_original, e_generated)                    (eq. 2)
W_t = exp(−k · t / T)                                             (eqs. 19)

λ_identity = 0.10 (section 3.3, ablated in section 5.3), k = 5 (Fig. 5), T = 1000 (the DDPM
training schedule of Stable Diffusion). e_generated is the recognizer's embedding of the image the
model predicts at step t; ``predicted_x0`` gives that prediction in latent space, to be decoded by
the VAE and aligned before the recognizer sees it.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

LAMBDA_IDENTITY = 0.10
DECAY_K = 5.0
TRAIN_TIMESTEPS = 1000


def identity_loss(e_original: torch.Tensor, e_generated: torch.Tensor) -> torch.Tensor:
    """Eq. 2 per sample: 1 − cosine similarity of two [B, D] embedding batches -> [B]."""
    return 1.0 - F.cosine_similarity(e_original, e_generated, dim=-1)


def timestep_weight(t: torch.Tensor, total: int = TRAIN_TIMESTEPS, k: float = DECAY_K) -> torch.Tensor:
    """Eq. 19: W_t = exp(−k t / T); near 1 at low noise, exp(−k) at t = T."""
    return torch.exp(-k * t.to(torch.float32) / total)


def weighted_identity_loss(e_original: torch.Tensor, e_generated: torch.Tensor, t: torch.Tensor, total: int = TRAIN_TIMESTEPS, k: float = DECAY_K) -> torch.Tensor:
    """Eq. 20: the batch mean of W_t · L_identity."""
    return (timestep_weight(t, total, k) * identity_loss(e_original, e_generated)).mean()


def total_loss(
    noise_prediction: torch.Tensor,
    noise: torch.Tensor,
    e_original: torch.Tensor,
    e_generated: torch.Tensor,
    t: torch.Tensor,
    lambda_identity: float = LAMBDA_IDENTITY,
    total: int = TRAIN_TIMESTEPS,
    k: float = DECAY_K,
) -> torch.Tensor:
    """Eqs. 3 / 21: Stable Diffusion's ε-prediction MSE plus λ times the weighted identity loss."""
    denoise = F.mse_loss(noise_prediction, noise)
    return denoise + lambda_identity * weighted_identity_loss(e_original, e_generated, t, total, k)


def predicted_x0(x_t: torch.Tensor, noise_prediction: torch.Tensor, alpha_bar_t: torch.Tensor) -> torch.Tensor:
    """x̂_0 = (x_t − sqrt(1 − ᾱ_t) ε̂) / sqrt(ᾱ_t), per sample; ``alpha_bar_t`` has shape [B]."""
    a = alpha_bar_t.to(x_t.dtype).view(-1, *([1] * (x_t.dim() - 1)))
    return (x_t - torch.sqrt(1 - a) * noise_prediction) / torch.sqrt(a)
