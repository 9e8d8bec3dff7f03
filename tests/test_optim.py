import pytest
import torch
from torch import nn

from statespaces import FFTConv, S4Block, param_groups


def _settings(groups, param):
    for g in groups:
        if any(p is param for p in g["params"]):
            return {k: v for k, v in g.items() if k != "params"}
    return None


def test_ssm_tensors_carry_their_settings():
    layer = FFTConv(8, d_state=4, lr=1e-3)
    k = layer.kernel
    groups = param_groups(layer, lr=1e-2, weight_decay=0.1)
    for name in ("raw_dt", "raw_A_real", "raw_A_imag", "B", "P"):
        assert _settings(groups, getattr(k, name)) == {"lr": 1e-3, "weight_decay": 0.0}, name
    assert _settings(groups, k.C) == {"lr": 1e-3, "weight_decay": 0.1}  # C: global weight decay by default
    assert _settings(groups, layer.D) == {"lr": 1e-2, "weight_decay": 0.1}


def test_lr_and_wd_dicts_and_freezing():
    layer = FFTConv(8, mode="diag", d_state=4, lr={"dt": 0.0, "B": 0.0, "A": 5e-4}, wd={"C": 0.0, "A": 0.01})
    k = layer.kernel
    names = dict(k.named_parameters())
    assert "raw_dt" not in names and "B" not in names  # frozen: buffers
    assert "raw_dt" in dict(k.named_buffers()) and "B" in dict(k.named_buffers())
    groups = param_groups(layer, lr=1e-2, weight_decay=0.1)
    assert _settings(groups, k.raw_A_real) == {"lr": 5e-4, "weight_decay": 0.01}
    assert _settings(groups, k.C) == {"lr": 1e-2, "weight_decay": 0.0}
    before = k.B.clone()
    opt = torch.optim.AdamW(groups)
    layer(torch.randn(2, 10, 8))[0].sum().backward()
    opt.step()
    assert torch.equal(k.B, before)


def test_norms_biases_embeddings_get_no_weight_decay():
    model = nn.Sequential(nn.Embedding(10, 8), S4Block(8, d_state=4), nn.LayerNorm(8), nn.Linear(8, 3))
    groups = param_groups(model, lr=1e-3, weight_decay=0.5)
    assert _settings(groups, model[0].weight)["weight_decay"] == 0.0
    assert _settings(groups, model[2].weight)["weight_decay"] == 0.0
    assert _settings(groups, model[3].bias)["weight_decay"] == 0.0
    assert _settings(groups, model[3].weight)["weight_decay"] == 0.5
    n_params = sum(len(g["params"]) for g in groups)
    assert n_params == len([p for p in model.parameters() if p.requires_grad])
    keys = [tuple(sorted((k, v) for k, v in g.items() if k != "params")) for g in groups]
    assert len(keys) == len(set(keys))  # one group per distinct setting


@pytest.mark.parametrize("opt", [torch.optim.SGD, torch.optim.Adam, torch.optim.AdamW, torch.optim.RMSprop])
def test_groups_work_with_any_optimizer(opt):
    block = S4Block(8, d_state=4, lr=1e-3)
    o = opt(param_groups(block, lr=1e-2, weight_decay=0.01))
    block(torch.randn(2, 10, 8))[0].pow(2).mean().backward()
    o.step()


def test_gss_configuration_freezes_dt_and_B():
    block = S4Block(16, gate=4, bottleneck=4, measure="diag-rand", dt_min=1.0, dt_max=1.0, lr={"dt": 0.0, "B": 0.0}, imag_transform="exp")
    params = dict(block.named_parameters())
    assert not any(n.endswith("raw_dt") or n.endswith(".B") for n in params)
    torch.testing.assert_close(block.layer.kernel.dt(), torch.ones(4, 1))
