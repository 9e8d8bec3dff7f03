"""MkDocs hooks: tables generated from the code, so the docs cannot drift from it.

Markers in a page (HTML comments, invisible when not replaced):

    <!-- layers-table -->                 every registered layer: class, description, capabilities
    <!-- capabilities: NAME[, NAME] -->   the capability rows of those layers (built with their example options)
    <!-- options: dotted.Class -->        the constructor's keyword options with their defaults
    <!-- preset: NAME -->                 the options a registered preset (s4, s4d, dss, gss, longconv) fixes

The figures and tables of ``benchmarks/results`` are added to the site as ``results/<file>`` (tables are pulled
into pages with the snippets extension), so one copy of each lives in the repository.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import re
from pathlib import Path

MARKER = re.compile(r"<!--\s*(layers-table|capabilities|options|preset)\s*:?\s*([^>]*?)\s*-->")
ROOT = Path(__file__).resolve().parent.parent
CAPS = ("step", "state", "rate", "lengths", "bidirectional")


@functools.cache  # the table appears on several pages; each row builds the layer twice
def _capabilities(name: str) -> dict[str, str]:
    """yes/no per capability; bidirectional is 'yes' when the layer builds with bidirectional=True."""
    import statespaces as ss

    entry, _ = ss.LAYERS.lookup(name)
    caps = ss.make_layer(name, 8, **entry.example).capabilities
    row = {c: ("yes" if getattr(caps, c) else "no") for c in CAPS[:-1]}
    try:
        ss.make_layer(name, 8, **{**entry.example, "bidirectional": True})
        row["bidirectional"] = "yes"
    except (TypeError, ValueError):
        row["bidirectional"] = "no"
    return row


def _cap_table(names: list[str], with_description: bool) -> str:
    import statespaces as ss

    head = "| name | " + ("what | " if with_description else "") + " | ".join(CAPS) + " |"
    lines = [head, "|" + "---|" * (len(CAPS) + 1 + with_description)]
    for name in names:
        entry, _ = ss.LAYERS.lookup(name)
        caps = _capabilities(name)
        what = (entry.description.replace("|", "/") + " | ") if with_description else ""
        lines.append(f"| `{name}` | {what}" + " | ".join(caps[c] for c in CAPS) + " |")
    return "\n".join(lines)


def _options(dotted: str) -> str:
    module, _, attr = dotted.rpartition(".")
    obj = getattr(importlib.import_module(module), attr)
    sig = inspect.signature(obj.__init__ if inspect.isclass(obj) else obj)
    lines = ["| option | default |", "|---|---|"]
    for p in sig.parameters.values():
        if p.name == "self":
            continue
        if p.kind is p.VAR_KEYWORD:
            lines.append(f"| `**{p.name}` | passed on (see below) |")
            continue
        if p.kind is p.VAR_POSITIONAL:
            continue
        default = "required" if p.default is p.empty else f"`{p.default!r}`"
        lines.append(f"| `{p.name}` | {default} |")
    return "\n".join(lines)


def _preset(name: str) -> str:
    import statespaces as ss

    entry, _ = ss.LAYERS.lookup(name)
    fixed = entry.meta.get("defaults", {})
    return "`" + f"S4Block(d_model, {', '.join(f'{k}={v!r}' for k, v in fixed.items())})" + "`"


def on_page_markdown(markdown: str, page, config, files) -> str:
    def replace(m: re.Match) -> str:
        kind, arg = m.group(1), m.group(2)
        if kind == "layers-table":
            import statespaces as ss

            return _cap_table(ss.LAYERS.names(), with_description=True)
        if kind == "capabilities":
            return _cap_table([a.strip() for a in arg.split(",")], with_description=False)
        if kind == "options":
            return _options(arg)
        return _preset(arg)

    return MARKER.sub(replace, markdown)


def on_files(files, config):
    from mkdocs.structure.files import File

    for path in sorted((ROOT / "benchmarks" / "results").glob("*.png")):
        files.append(File.generated(config, f"results/{path.name}", abs_src_path=str(path)))
    return files


ROLE = re.compile(r":(?:class|func|meth|mod|attr|data|exc):\s*(<code>)~?")


def on_page_content(html: str, page, config, files) -> str:
    """The docstrings use Sphinx roles (:class:`~statespaces.FFTConv`); show them as plain code."""
    return ROLE.sub(r"\1", html)
