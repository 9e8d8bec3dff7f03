"""The documentation runs: every Python block of the README and the docs pages, the tutorials' smoke modes, the
README's feature table against the code, and ``mkdocs build --strict`` (a warning fails)."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
BLOCK = re.compile(r"(<!-- skip-test -->\n)?```python\n(.*?)```", re.S)
TUTORIALS = sorted((ROOT / "tutorials").glob("[0-9]*.py"))


def python_blocks(path: Path) -> list[str]:
    return [m.group(2) for m in BLOCK.finditer(path.read_text()) if not m.group(1)]


def test_the_runner_finds_and_skips_blocks(tmp_path):
    page = tmp_path / "p.md"
    page.write_text("```python\na = 1\n```\n<!-- skip-test -->\n```python\nundefined_name\n```\n```bash\nls\n```\n")
    assert python_blocks(page) == ["a = 1\n"]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_python_blocks_run(page, monkeypatch, tmp_path):
    """Blocks of one page run in order in one namespace (a later block may use an earlier one's names)."""
    blocks = python_blocks(page)
    if not blocks:
        pytest.skip("no Python blocks")
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)
    namespace: dict = {"__name__": "__docs__"}
    for i, code in enumerate(blocks):
        try:
            exec(compile(code, f"{page.name}[block {i}]", "exec"), namespace)
        except Exception as e:  # noqa: BLE001 - name the page and block
            raise AssertionError(f"{page.relative_to(ROOT)}, Python block {i} failed: {type(e).__name__}: {e}\n{code}") from e


def test_pages_have_blocks_to_run():
    """The runner must not silently skip everything (a changed fence would)."""
    counted = {p.name: len(python_blocks(p)) for p in PAGES}
    assert counted["README.md"] >= 1 and counted["getting-started.md"] >= 2 and sum(counted.values()) >= 12, counted


def _load_hooks():
    spec = importlib.util.spec_from_file_location("docs_hooks", ROOT / "docs" / "hooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_readme_feature_table_matches_the_code():
    """README's layer x capability table is hand-written (GitHub renders no hooks): it must equal the code's."""
    hooks = _load_hooks()
    text = (ROOT / "README.md").read_text()
    rows = re.findall(r"^\| `([a-z0-9-]+)` \|([^\n]*)\|$", text, re.M)
    assert rows, "README has no feature table"
    import statespaces as ss

    assert {name for name, _ in rows} == set(ss.LAYERS.names())
    for name, cells in rows:
        got = [c.strip() for c in cells.split("|")][-len(hooks.CAPS) :]  # what, whole-sequence mode, then the capabilities
        caps = hooks._capabilities(name)
        assert got == [caps[c] for c in hooks.CAPS], f"README row {name}: {got} but the code says {caps}"


def test_hook_markers_are_all_replaced():
    hooks = _load_hooks()
    for page in (ROOT / "docs").rglob("*.md"):
        out = hooks.on_page_markdown(page.read_text(), None, None, None)
        assert not hooks.MARKER.search(out), page
    table = hooks._options("statespaces.SGConv")
    assert "| `kernel_dim` |" not in table and "| `mode` | `'cat'` |" in table and "| `l_max` | `None` |" in table


@pytest.mark.parametrize("script", TUTORIALS, ids=lambda p: p.name)
def test_tutorial_smoke(script, tmp_path):
    out = tmp_path / "figures"
    proc = subprocess.run(
        [sys.executable, str(script), "--smoke", "--out", str(out)], cwd=tmp_path, capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"}
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert list(out.glob("*.png")), f"{script.name} wrote no figure"


def test_mkdocs_build_strict(tmp_path):
    import mkdocs  # noqa: F401  (the docs extra; make test installs it)
    import mkdocstrings  # noqa: F401
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT, capture_output=True, text=True, timeout=600, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert (tmp_path / "site" / "layers" / "sgconv" / "index.html").exists()
    html = (tmp_path / "site" / "index.html").read_text()
    assert "<code>mamba2</code>" in html and "<!-- layers-table -->" not in html
    h3 = (tmp_path / "site" / "layers" / "h3" / "index.html").read_text()
    assert ":class:" not in h3 and "<code>statespaces.FFTConv</code>" in h3  # Sphinx roles shown as code
