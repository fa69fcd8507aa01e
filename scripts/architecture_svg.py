"""Draw docs/architecture.svg from the code: the packages in their layers, and a request's path.

The layers are computed from the imports (tests/test_architecture.py reads them), so the
picture cannot drift from the code: that test fails when the committed file differs from
what this script draws. Run it after moving a module:

    .venv/bin/python -m scripts.architecture_svg
"""

from __future__ import annotations

import sys
from html import escape

from tests.test_architecture import ROOT, SOURCE, package_of, read_package

TARGET = ROOT / "docs" / "architecture.svg"

# The request path, top to bottom: what meets a request, and where it lives.
REQUEST_PATH = (
    ("gunicorn, gevent worker", "server/serving.py, server/worker.py"),
    ("RequestLog: request id, access line", "server/log.py"),
    ("TenantDispatcher: host or /slug, /healthz", "server/dispatch.py"),
    ("TenantRegistry: the tenant's app, re-checked", "server/registry.py"),
    ("RequestLimits: concurrency, rate", "server/limits.py"),
    ("the tenant's Flask app", "built by server/factory.py"),
    ("resources: built-ins, your modules", "web/api.py, builtin/"),
)

BOX_W, BOX_H, GAP_X, GAP_Y = 150, 44, 14, 26
LEFT, TOP = 20, 50
PATH_W = 300


def layers() -> tuple[list[list[tuple[str, list[str]]]], dict[str, set[str]]]:
    """The first-level packages by layer, lowest first, each with its modules' names; and
    which package imports which."""
    package = read_package(SOURCE)
    imports: dict[str, set[str]] = {}
    modules: dict[str, list[str]] = {}
    for module, targets in package.imports.items():
        name = package_of(module)
        imports.setdefault(name, set()).update(package_of(t) for t in targets)
        imports[name].discard(name)
        short = module.split(".")[-1]
        if module.count(".") == 2:
            modules.setdefault(name, []).append(short)
        elif module.count(".") <= 1:
            modules.setdefault(name, [])
    depth: dict[str, int] = {}

    def level(name: str) -> int:
        if name not in depth:
            depth[name] = 1 + max((level(t) for t in imports.get(name, ())), default=-1)
        return depth[name]

    rows: list[list[tuple[str, list[str]]]] = []
    for name in sorted(imports, key=lambda n: (level(n), n)):
        while len(rows) <= level(name):
            rows.append([])
        rows[level(name)].append((name, sorted(modules.get(name, []))))
    return rows, imports


def draw() -> str:
    rows, _imports = layers()
    widest = max(len(row) for row in rows)
    packages_w = widest * (BOX_W + GAP_X)
    height = TOP + len(rows) * (BOX_H + GAP_Y) + 10
    width = LEFT + packages_w + 40 + PATH_W + LEFT
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">',
        '<rect width="100%" height="100%" fill="#ffffff"/>',
        f'<text x="{LEFT}" y="24" font-size="14" font-weight="bold">'
        "Packages: each imports only packages below it</text>",
    ]
    for index, row in enumerate(reversed(rows)):
        y = TOP + index * (BOX_H + GAP_Y)
        for position, (name, modules) in enumerate(row):
            x = LEFT + position * (BOX_W + GAP_X)
            fill = "#e8f0fe" if modules else "#f1f3f4"
            out.append(
                f'<rect x="{x}" y="{y}" width="{BOX_W}" height="{BOX_H}" rx="5" '
                f'fill="{fill}" stroke="#5f6368"/>'
            )
            label = f"{name}/" if modules else "__init__.py" if name == "tenantry" else f"{name}.py"
            out.append(f'<text x="{x + 8}" y="{y + 16}" font-weight="bold">{escape(label)}</text>')
            listed = ", ".join(modules)
            for line_number, line in enumerate(_wrap(listed, 26)[:2]):
                out.append(
                    f'<text x="{x + 8}" y="{y + 30 + 11 * line_number}" fill="#3c4043" '
                    f'font-size="9">{escape(line)}</text>'
                )
    x0 = LEFT + packages_w + 40
    out.append(
        f'<text x="{x0}" y="24" font-size="14" font-weight="bold">A request, top to bottom</text>'
    )
    step = (height - TOP - 10) / len(REQUEST_PATH)
    for index, (what, where) in enumerate(REQUEST_PATH):
        y = TOP + index * step
        out.append(
            f'<rect x="{x0}" y="{y:.0f}" width="{PATH_W}" height="{step - 12:.0f}" rx="5" '
            'fill="#fef7e0" stroke="#5f6368"/>'
        )
        out.append(f'<text x="{x0 + 8}" y="{y + 16:.0f}">{escape(what)}</text>')
        out.append(
            f'<text x="{x0 + 8}" y="{y + 29:.0f}" fill="#3c4043" font-size="9">'
            f"{escape(where)}</text>"
        )
        if index:
            out.append(
                f'<line x1="{x0 + PATH_W / 2:.0f}" y1="{y - 12:.0f}" x2="{x0 + PATH_W / 2:.0f}" '
                f'y2="{y:.0f}" stroke="#5f6368"/>'
            )
    out.append("</svg>")
    return "\n".join(out) + "\n"


def _wrap(text: str, width: int) -> list[str]:
    lines: list[str] = []
    for word in text.split(" "):
        if lines and len(lines[-1]) + 1 + len(word) <= width:
            lines[-1] += " " + word
        else:
            lines.append(word)
    if len(lines) > 2:
        lines[1] = lines[1].rstrip(",") + ", ..."
    return lines


if __name__ == "__main__":
    TARGET.write_text(draw())
    sys.stdout.write(f"wrote {TARGET.relative_to(ROOT)}\n")
