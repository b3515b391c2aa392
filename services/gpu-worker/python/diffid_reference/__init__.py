"""Reference PyTorch implementations for Diff-ID Serve's adapter role.

- ``adapter``: the Diff-ID adapter (paper eqs. 5-15, shapes of docs/adapter.md).
- ``ip_adapter_faceid``: IP-Adapter-FaceID's projection of a face embedding to 4 tokens.
- ``losses``: the paper's training objective (eqs. 2-3, 19-21).
- ``export``: writes either adapter as the ONNX graph the bundle contract expects.
"""
