import torch

from statespaces import S4Block
from statespaces.minimal import S4D


def test_minimal_s4d_equals_full_layer_with_seed_settings():
    """README: S4D minimal == S4(mode='diag', measure='diag-lin', disc='zoh', real_type='exp')."""
    H, N = 6, 8
    mini = S4D(H, d_state=N).double()
    full = S4Block(H, d_state=N, mode="diag", measure="diag-lin", disc="zoh", real_type="exp").double()
    k, fk = mini.kernel, full.layer.kernel
    with torch.no_grad():
        fk.raw_dt.copy_(k.log_dt[:, None])
        fk.raw_A_real.copy_(k.log_A_real)
        fk.raw_A_imag.copy_(k.A_imag)
        fk.C.copy_(k.C[None])
        full.layer.D.copy_(mini.D[None])
        full.output_linear[0].weight.copy_(mini.output_linear[0].weight[..., 0])
        full.output_linear[0].bias.copy_(mini.output_linear[0].bias)
    x = torch.randn(2, 30, H, dtype=torch.float64)
    torch.testing.assert_close(mini(x)[0], full(x)[0])


def test_minimal_s4d_registers_ssm_settings():
    mini = S4D(4, lr=1e-3)
    assert mini.kernel.log_dt._optim == {"weight_decay": 0.0, "lr": 1e-3}
    assert not hasattr(mini.kernel.C, "_optim")
    frozen = S4D(4, lr=0.0)
    assert "log_dt" in dict(frozen.kernel.named_buffers())
