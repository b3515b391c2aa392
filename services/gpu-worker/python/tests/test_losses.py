"""The training objective against values worked out by hand (eqs. 2-3, 19-21)."""
import math
import unittest

import torch

from diffid_reference import losses


class IdentityLossTest(unittest.TestCase):
    def test_one_minus_cosine(self):
        # cos([1, 0], [0.6, 0.8]) = 0.6; scale does not matter; opposite vectors give 2.
        got = losses.identity_loss(torch.tensor([[1.0, 0.0], [2.0, 0.0], [1.0, 1.0]]), torch.tensor([[0.6, 0.8], [3.0, 4.0], [-1.0, -1.0]]))
        self.assertTrue(torch.allclose(got, torch.tensor([0.4, 0.4, 2.0]), atol=1e-6), got)

    def test_timestep_weight_is_exp_minus_k_t_over_T(self):
        got = losses.timestep_weight(torch.tensor([0, 500, 1000]))
        want = torch.tensor([1.0, math.exp(-2.5), math.exp(-5.0)])  # k = 5, T = 1000
        self.assertTrue(torch.allclose(got, want, rtol=1e-6), got)

    def test_weighted_loss_is_the_batch_mean(self):
        e0 = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
        e1 = torch.tensor([[0.6, 0.8], [0.0, 1.0]])
        t = torch.tensor([500, 0])
        # (exp(-2.5)·0.4 + 1·1.0) / 2
        want = (math.exp(-2.5) * 0.4 + 1.0) / 2
        self.assertAlmostEqual(losses.weighted_identity_loss(e0, e1, t).item(), want, places=6)

    def test_total_adds_lambda_times_the_weighted_identity_loss(self):
        eps = torch.zeros(1, 4, 2, 2)
        pred = torch.full((1, 4, 2, 2), 0.5)  # MSE 0.25
        e0 = torch.tensor([[1.0, 0.0]])
        e1 = torch.tensor([[0.6, 0.8]])
        t = torch.tensor([500])
        want = 0.25 + 0.10 * math.exp(-2.5) * 0.4  # = 0.2532834...
        self.assertAlmostEqual(losses.total_loss(pred, eps, e0, e1, t).item(), want, places=6)
        self.assertAlmostEqual(losses.LAMBDA_IDENTITY, 0.10)

    def test_gradient_reaches_the_generated_embedding(self):
        e1 = torch.tensor([[0.6, 0.8]], requires_grad=True)
        losses.total_loss(torch.zeros(1, 1), torch.zeros(1, 1), torch.tensor([[1.0, 0.0]]), e1, torch.tensor([0])).backward()
        # d/de1 of 0.1·(1 − e1·a/|e1|) with a = [1, 0], |e1| = 1: −0.1·(a − (e1·a) e1) = −0.1·[1 − 0.36, −0.48]
        self.assertTrue(torch.allclose(e1.grad, torch.tensor([[-0.064, 0.048]]), atol=1e-6), e1.grad)

    def test_predicted_x0_inverts_the_forward_process(self):
        x0 = torch.randn(2, 4, 3, 3, generator=torch.Generator().manual_seed(1))
        eps = torch.randn(2, 4, 3, 3, generator=torch.Generator().manual_seed(2))
        a = torch.tensor([0.9, 0.1])
        x_t = a.sqrt().view(-1, 1, 1, 1) * x0 + (1 - a).sqrt().view(-1, 1, 1, 1) * eps
        self.assertTrue(torch.allclose(losses.predicted_x0(x_t, eps, a), x0, atol=1e-5))


if __name__ == "__main__":
    unittest.main()
