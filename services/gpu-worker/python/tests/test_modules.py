"""The reference modules' documented layouts and properties."""
import unittest

import torch

from diffid_reference.adapter import AdapterShape, DiffIdAdapter
from diffid_reference.ip_adapter_faceid import FaceIdProjection, IpAdapterFaceIdAdapter

SHAPE = AdapterShape(face_dim=16, image_dim=24, text_width=32, text_tokens=77, attention_width=16, mlp_hidden=64, conditioning_width=32)


class DiffIdAdapterTest(unittest.TestCase):
    def test_state_dict_layout_is_the_documented_one(self):
        got = {k: list(v.shape) for k, v in DiffIdAdapter(SHAPE).state_dict().items()}
        want = {
            "proj_arc.weight": [32, 16], "proj_image.weight": [32, 24], "shared.weight": [32, 32],
            **{f"{b}.{p}.weight": [16, 32] for b in ("identity", "attribute") for p in "qkv"},
            "mlp.0.weight": [64, 16], "mlp.0.bias": [64], "mlp.2.weight": [32, 64], "mlp.2.bias": [32],
        }
        self.assertEqual(got, want)

    def test_output_is_identity_then_attribute_tokens_and_non_negative(self):
        torch.manual_seed(0)
        m = DiffIdAdapter(SHAPE)
        out = m(torch.randn(3, 16), torch.randn(3, 24), torch.randn(3, 77, 32))
        self.assertEqual(list(out.shape), [3, 81, 32])
        self.assertGreaterEqual(out.min().item(), 0.0)  # the final ReLU of eq. 15
        self.assertEqual(m.manifest_adapter()["conditioning_tokens"], 81)

    def test_rows_do_not_mix(self):
        torch.manual_seed(0)
        m = DiffIdAdapter(SHAPE)
        f, i, t = torch.randn(2, 16), torch.randn(2, 24), torch.randn(2, 77, 32)
        both = m(f, i, t)
        self.assertTrue(torch.allclose(both[1:], m(f[1:], i[1:], t[1:]), atol=1e-5))


class IpAdapterFaceIdTest(unittest.TestCase):
    def setUp(self):
        torch.manual_seed(0)
        self.adapter = IpAdapterFaceIdAdapter(FaceIdProjection(face_dim=16, width=32), text_tokens=77)

    def test_text_first_then_four_identity_tokens(self):
        text = torch.randn(2, 77, 32)
        out = self.adapter(torch.randn(2, 16), torch.randn(2, 24), text)
        self.assertEqual(list(out.shape), [2, 81, 32])
        self.assertTrue(torch.equal(out[:, :77], text))
        self.assertEqual(self.adapter.manifest_adapter()["fused_sequence"], ["attribute", "identity"])

    def test_face_embedding_is_normalised_and_zero_stays_zero(self):
        face, text = torch.randn(1, 16), torch.randn(1, 77, 32)
        image = torch.zeros(1, 24)
        self.assertTrue(torch.allclose(self.adapter(face, image, text), self.adapter(7.5 * face, image, text), atol=1e-5))
        zero = self.adapter(torch.zeros(1, 16), image, text)[:, 77:]
        self.assertTrue(torch.allclose(zero, self.adapter.projection(torch.zeros(1, 16)), atol=1e-6))


if __name__ == "__main__":
    unittest.main()
