"""Tutorial 2: the library in ten minutes.

    python tutorials/02_quickstart.py           # about a minute on CPU; figures in tutorial_figures/02_quickstart
    python tutorials/02_quickstart.py --smoke   # small sizes (the test suite runs this)

Every step prints what it checked.  In order: a layer's forward pass, its recurrent step, state forwarding
(a long input in chunks), ``rate`` (another sampling rate), ``lengths`` (padded batches), SSM-aware optimiser
groups, a small language model trained on a toy grammar, saved and loaded, and generation with O(1) work per
token.
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

import torch

import statespaces as ss
from statespaces.models import LanguageModel, ModelConfig


def check(label: str, a: torch.Tensor, b: torch.Tensor, tol: float = 1e-4) -> None:
    gap = (a - b).abs().max().item()
    print(f"  {label}: max |difference| {gap:.1e}")
    assert gap < tol, f"{label}: {gap} >= {tol}"


def layers(L: int) -> None:
    print("\n1. A layer: (B, L, H) in, (B, L, H) out, and a next state")
    torch.manual_seed(0)
    layer = ss.S4Block(32, d_state=64, lr=1e-3)  # lr: the state space tensors' own learning rate; S4: DPLR kernel, HiPPO-LegS; ss.S4Block(32, kernel="diag") is S4D
    x = torch.randn(4, L, 32)
    y, _ = layer(x)
    print(f"  S4Block(32): {tuple(x.shape)} -> {tuple(y.shape)}, {sum(p.numel() for p in layer.parameters()):,} parameters")
    layer.eval()  # dropout off; the recurrent form is set up for inference

    print("\n2. The recurrent step: the same outputs one step at a time, O(N) work per step")
    y, _ = layer(x)
    layer.setup_step()
    state, ys = layer.default_state(4), []
    for t in range(L):
        y_t, state = layer.step(x[:, t], state)
        ys.append(y_t)
    check("convolution mode vs step by step", y, torch.stack(ys, 1))

    print("\n3. State forwarding: a long input in chunks equals the whole")
    state, chunks = layer.default_state(4), []
    for piece in x.split(L // 4, dim=1):
        y_c, state = layer(piece, state=state)
        chunks.append(y_c)
    check("4 chunks with the state passed on vs one pass", y, torch.cat(chunks, 1))

    print("\n4. rate: read a signal sampled at another rate (rate multiplies the step size dt)")
    t1, t2 = torch.arange(L) / L, torch.arange(2 * L) / (2 * L)
    smooth = lambda t: torch.sin(2 * math.pi * 3 * t)[None, :, None].expand(4, -1, 32)  # noqa: E731
    y1, _ = layer(smooth(t1))
    y2, _ = layer(smooth(t2), rate=0.5)  # twice the samples, half the step
    gap = (y2[:, 1::2] - y1).abs().mean() / y1.abs().mean()
    print(f"  a sine at {L} samples (rate=1) vs at {2 * L} samples (rate=0.5), at the shared instants: relative gap {gap:.3f}")
    s4d = ss.S4Block(32, kernel="diag").eval()  # zoh is exact for an input held constant over each step
    y1, _ = s4d(x)
    y2, _ = s4d(x.repeat_interleave(2, dim=1), rate=0.5)
    check("S4D (zoh) on each sample held for two steps at rate=0.5 vs rate=1", y2[:, 1::2], y1)

    print("\n5. lengths: a padded batch; padding never leaks into the valid outputs or the next state")
    lengths = torch.tensor([L, L // 2, L // 4, 1])
    x_pad = x.clone()
    for b, n in enumerate(lengths):
        x_pad[b, n:] = float("nan")  # even NaN in the padding is harmless
    y_pad, next_state = layer(x_pad, state=layer.default_state(4), lengths=lengths)
    for b, n in enumerate(lengths.tolist()):
        alone, s_alone = layer(x[b : b + 1, :n], state=layer.default_state(1))
        assert torch.allclose(y_pad[b, :n], alone[0], atol=1e-4) and torch.allclose(next_state[b], s_alone[0], atol=1e-4)
    print(f"  each row of the padded batch equals that sequence alone (lengths {lengths.tolist()}), next state included")

    print("\n6. SSM-aware optimiser groups: the state space tensors get their own lr and no weight decay")
    opt = torch.optim.AdamW(ss.param_groups(layer, lr=1e-2, weight_decay=0.05))
    for g in opt.param_groups:
        print(f"  {len(g['params'])} tensors at lr={g['lr']}, weight_decay={g['weight_decay']}")
    print(f"  every registered layer: {', '.join(ss.LAYERS.names())}")


def grammar(n: int, L: int, g: torch.Generator) -> torch.Tensor:
    """A toy language over 8 tokens: 'a b c' counting patterns ((t + offset) mod 8, stride 1 or 3)."""
    offset = torch.randint(0, 8, (n, 1), generator=g)
    stride = torch.randint(0, 2, (n, 1), generator=g) * 2 + 1
    return (offset + stride * torch.arange(L)) % 8


def language_model(out: Path, steps: int) -> None:
    print("\n7. A language model: config, training, save / load, generation")
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    config = ModelConfig(tokens=True, d_input=8, d_output=8, d_model=32, n_layers=2, layer="s4d", pool="none", prenorm=True)
    model = LanguageModel(config)
    opt = torch.optim.AdamW(ss.param_groups(model, lr=1e-2, weight_decay=0.0))
    for i in range(steps):
        seq = grammar(32, 33, g)
        logits, _ = model(seq[:, :-1])
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, 8), seq[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
    print(f"  trained {steps} steps, last loss {loss.item():.3f}")

    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp)  # config.json + model.safetensors: no code is unpickled on load
        loaded = LanguageModel.from_pretrained(tmp)
        files = sorted(p.name for p in Path(tmp).iterdir())
    print(f"  save_pretrained wrote {files}; from_pretrained loaded them")

    prompt = torch.tensor([[2, 5, 0], [1, 2, 3]])  # a stride-3 and a stride-1 pattern
    start = time.perf_counter()
    text = loaded.generate(prompt, 40, temperature=0.0)
    per_token = (time.perf_counter() - start) / 40
    print(f"  generate: {prompt.tolist()} -> {text[:, 3:13].tolist()} ... ({1e3 * per_token:.2f} ms per token, one step each)")
    expected = (prompt[:, -1:] + (prompt[:, 1:2] - prompt[:, :1]) % 8 * torch.arange(1, 41)) % 8
    accuracy = (text[:, 3:] == expected).float().mean().item()
    print(f"  generated tokens that continue the pattern: {100 * accuracy:.0f}%")

    # generation cost per token stays flat with the position (the state has a fixed size)
    costs = []
    loaded.eval()
    loaded.setup_step()
    state = loaded.default_state(1)
    token = torch.tensor([0])
    for t in range(400):
        t0 = time.perf_counter()
        logits, state = loaded.step(token, state)
        costs.append(time.perf_counter() - t0)
        token = logits.argmax(-1)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3))
    ax.plot([1e3 * c for c in costs], lw=0.8)
    ax.set_xlabel("position")
    ax.set_ylabel("ms per step")
    ax.set_title("Recurrent generation: constant cost per token")
    fig.tight_layout()
    fig.savefig(out / "step_cost.png", dpi=110)
    plt.close(fig)
    first, last = sum(costs[10:60]) / 50, sum(costs[-50:]) / 50
    print(f"  step cost at positions 10-60 vs 350-400: {1e3 * first:.2f} vs {1e3 * last:.2f} ms")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="tutorial_figures/02_quickstart", help="folder for the figures")
    parser.add_argument("--smoke", action="store_true", help="small sizes, seconds")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    layers(64 if args.smoke else 256)
    language_model(out, 20 if args.smoke else 300)
    print(f"\nfigures in {out}/")


if __name__ == "__main__":
    main()
