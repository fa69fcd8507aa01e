"""The shape of the code, as docs/architecture.md describes it, kept by tests.

- No import circle in ``src/tenantry``, counting every import: at the top of a module,
  inside a function, and under ``if TYPE_CHECKING``. A circle means two files that cannot be
  read (or changed) one without the other.
- No import chain of the platform longer than :data:`MAX_CHAIN` files: a chain is how much a
  reader must hold in mind to follow one file down to the bottom of what it builds on.
- The built-in endpoint modules (``tenantry.builtin``) are endpoint modules like a team's
  own: the platform never imports them (it loads them by name), and they build on
  :mod:`tenantry.endpoint`, whose own chain is the platform's. Their chains down to it are
  at most :data:`MAX_MODULE_CHAIN` files (``datasets``' resources reuse files' and links').
- An import inside a function exists only to keep start-up light (``/healthz`` answers before
  Flask apps, SQLAlchemy and auth load; S3, prometheus and limits code loads only where it
  is used), and says so on the line above, ``# lazy: <why>``.
- No file over :data:`MAX_LINES` lines but those in :data:`LONG_FILES`, whose docstrings say
  why.
- The public import paths stay: generated ``wsgi.py`` and config modules, endpoint modules
  and their tests import them.
- The code's docs name only what is in the repository: no docstring or comment points at a
  file, or at a specification, a clone does not have.

The checks are functions of the source (each returns what it finds), so that the tests can
also feed them a made-up package and see them fail.
"""

from __future__ import annotations

import ast
import importlib
import io
import re
import tokenize
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "src" / "tenantry"
# Ten: the admin address's app (tenantry.platform.app) stands on the tenants' whole WSGI
# stack, which is nine, since it serves both addresses from one gunicorn.
MAX_CHAIN = 10
MAX_MODULE_CHAIN = 6
BUILTIN = "tenantry.builtin"
MAX_LINES = 600
LONG_FILES = {"cli.py"}
SKIPPED_PARTS = {"migrations", "templates"}  # alembic revisions, scaffold templates
PUBLIC = {
    "tenantry.endpoint": None,  # every name of its __all__
    "tenantry.testing": None,
    "tenantry.config": ("TenantConfig", "TenantConfigError"),
    "tenantry.wsgi": ("dispatcher_application", "tenant_application"),
    "tenantry.client": ("TenantClient", "TenantryError", "PlatformClient"),
}


@dataclass
class Package:
    """The import graph of a package's source: module name -> the modules it imports."""

    name: str
    imports: dict[str, set[str]] = field(default_factory=dict)
    files: dict[str, Path] = field(default_factory=dict)
    lazy: list[tuple[str, int, str, str]] = field(
        default_factory=list
    )  # module, line, import, above


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def read_package(root: Path) -> Package:
    package = Package(root.name)
    for path in sorted(root.rglob("*.py")):
        if SKIPPED_PARTS & set(path.relative_to(root).parts):
            continue
        package.files[module_name(root, path)] = path
    for module, path in package.files.items():
        package.imports[module] = set()
        text = path.read_text()
        lines = text.splitlines()
        tree = ast.parse(text)
        base = module if path.name == "__init__.py" else module.rpartition(".")[0]
        for node, in_function in _imports(tree):
            for target in _targets(node, base):
                found = _known(package, target)
                if found and found != module:
                    package.imports[module].add(found)
            if in_function:
                above = lines[node.lineno - 2].strip() if node.lineno > 1 else ""
                package.lazy.append((module, node.lineno, ast.unparse(node), above))
    return package


def _imports(tree: ast.AST):
    """Every import statement with whether it sits inside a function."""

    def walk(node, in_function):
        for child in ast.iter_child_nodes(node):
            inside = in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
            if isinstance(child, ast.Import | ast.ImportFrom):
                yield child, in_function
            yield from walk(child, inside)

    yield from walk(tree, False)


def _targets(node: ast.Import | ast.ImportFrom, base: str) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if node.level:
        anchor = base
        for _ in range(node.level - 1):
            anchor = anchor.rpartition(".")[0]
        source = f"{anchor}.{node.module}" if node.module else anchor
    else:
        source = node.module or ""
    return [source, *(f"{source}.{alias.name}" for alias in node.names)]


def _known(package: Package, name: str) -> str | None:
    """The package's module ``name`` stands for (itself, or the module holding it)."""
    while name:
        if name in package.files:
            return name
        name = name.rpartition(".")[0]
    return None


def circles(package: Package) -> list[list[str]]:
    """The import circles (strongly connected groups of more than one module)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for target in package.imports[module]:
            if target not in index:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in on_stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == module:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for module in package.imports:
        if module not in index:
            visit(module)
    return found


def longest_chain(package: Package, within=lambda module: True) -> list[str]:
    """The longest chain of imports among the modules ``within`` says, as the files along it
    (the package has no circle)."""
    chains: dict[str, list[str]] = {}

    def chain(module: str) -> list[str]:
        if module not in chains:
            below = [chain(target) for target in package.imports[module] if within(target)]
            chains[module] = [module, *max(below, key=len, default=[])]
        return chains[module]

    return max((chain(module) for module in package.imports if within(module)), key=len)


def is_builtin(module: str) -> bool:
    return module == BUILTIN or module.startswith(BUILTIN + ".")


def platform_imports_of_builtins(package: Package) -> list[str]:
    return [
        f"{module} imports {target}"
        for module, targets in sorted(package.imports.items())
        if not is_builtin(module)
        for target in sorted(targets)
        if is_builtin(target) and target != BUILTIN
    ]


def package_of(module: str) -> str:
    """The first-level part of the package a module is in (``tenantry.web.api``: ``web``)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def package_circles(package: Package) -> list[list[str]]:
    """Circles between the first-level packages: each package must be a layer."""
    layers = Package(package.name)
    for module, targets in package.imports.items():
        imports = layers.imports.setdefault(package_of(module), set())
        imports.update(package_of(target) for target in targets)
        imports.discard(package_of(module))
    for imports in list(layers.imports.values()):
        for name in imports:
            layers.imports.setdefault(name, set())
    return circles(layers)


def unexplained_lazy_imports(package: Package) -> list[str]:
    return [
        f"{module}:{line}: {statement}"
        for module, line, statement, above in package.lazy
        if not above.startswith("# lazy: ") and not _continues_lazy_group(above)
    ]


def _continues_lazy_group(above: str) -> bool:
    """A second import right under an explained one shares its reason."""
    return above.startswith(("from ", "import "))


def long_files(root: Path) -> list[str]:
    return [
        f"{path.relative_to(root)}: {count} lines"
        for path in sorted(root.rglob("*.py"))
        if (count := len(path.read_text().splitlines())) > MAX_LINES
        and path.relative_to(root).as_posix() not in LONG_FILES
    ]


# Paths a docstring or comment may name: docs/…, tests/…, README.md and the like.
REPO_PATH = re.compile(
    r"(?<![\w/.-])((?:docs|tests|bench|scripts|examples)/[\w/-]+(?:\.[\w-]+)*"
    r"\.(?:md|py|svg|toml)|README\.md)(?![\w-]|\.\w)"
)
OUTSIDE = re.compile(r"CONTRACT|TRAPS|§")


def outside_references(root: Path, repository: Path) -> list[str]:
    """Docstrings and comments that point at a file the repository does not have, or at the
    specifications that stay outside it."""
    problems = []
    for path in sorted(root.rglob("*.py")):
        for number, text in _docs_of(path):
            where = f"{path.relative_to(root)}:{number}"
            if OUTSIDE.search(text):
                problems.append(f"{where}: names an outside specification")
            for named in REPO_PATH.findall(text):
                if not (repository / named).exists():
                    problems.append(f"{where}: {named} is not in the repository")
    return problems


def _docs_of(path: Path) -> list[tuple[int, str]]:
    """The docstrings and comments of a Python file, with the line each starts on."""
    source = path.read_text()
    found = [
        (node.body[0].lineno, ast.get_docstring(node, clean=False))
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and ast.get_docstring(node, clean=False)
    ]
    tokens = tokenize.generate_tokens(io.StringIO(source).readline)
    found += [(token.start[0], token.string) for token in tokens if token.type == tokenize.COMMENT]
    return sorted(found)


# -- the tests ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tenantry_package() -> Package:
    return read_package(SOURCE)


def test_no_import_circles(tenantry_package):
    assert circles(tenantry_package) == []


def test_the_packages_are_layers(tenantry_package):
    """support, storage, data, web, modules, home, ops, server, cli: none imports a package
    that imports it, so each reads with what is below it alone (docs/architecture.md)."""
    assert package_circles(tenantry_package) == []


def test_no_import_chain_of_the_platform_is_longer_than_ten_files(tenantry_package):
    chain = longest_chain(tenantry_package, within=lambda module: not is_builtin(module))
    assert len(chain) <= MAX_CHAIN, " -> ".join(chain)


def test_the_builtin_modules_are_endpoint_modules_the_platform_does_not_import(
    tenantry_package,
):
    assert platform_imports_of_builtins(tenantry_package) == []
    chain = longest_chain(tenantry_package, within=is_builtin)
    assert len(chain) <= MAX_MODULE_CHAIN, " -> ".join(chain)


def test_every_import_inside_a_function_says_why(tenantry_package):
    assert tenantry_package.lazy, "the start-up imports of test_start.py are lazy on purpose"
    assert unexplained_lazy_imports(tenantry_package) == []


def test_no_file_is_longer_than_600_lines_without_saying_why():
    assert long_files(SOURCE) == []
    for name in LONG_FILES:
        docstring = ast.get_docstring(ast.parse((SOURCE / name).read_text())) or ""
        assert "on purpose" in docstring, f"{name} says why it is long"


def test_the_code_names_only_what_the_repository_has():
    assert outside_references(SOURCE, ROOT) == []
    tests = [p for p in outside_references(ROOT / "tests", ROOT) if "architecture" not in p]
    assert tests == []
    for folder in ("bench", "scripts", "examples"):
        assert outside_references(ROOT / folder, ROOT) == []


@pytest.mark.parametrize("module", sorted(PUBLIC))
def test_public_import_paths_stay(module):
    imported = importlib.import_module(module)
    names = PUBLIC[module] or imported.__all__
    assert [name for name in names if not hasattr(imported, name)] == []


# -- the checks fail where they should ----------------------------------------------------


def write_package(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "pkg"
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_a_circle_through_a_function_or_type_checking_import_is_found(tmp_path):
    root = write_package(
        tmp_path,
        {
            "__init__.py": "",
            "a.py": "def f():\n    # lazy: why\n    from pkg import b\n",
            "b.py": "import typing\nif typing.TYPE_CHECKING:\n    from pkg.c import C\n",
            "c.py": "from . import a\nclass C: ...\n",
        },
    )
    assert circles(read_package(root)) == [["pkg.a", "pkg.b", "pkg.c"]]
    assert package_circles(read_package(root)) == [["a", "b", "c"]]


def test_a_long_chain_and_an_unexplained_lazy_import_are_found(tmp_path):
    files = {"__init__.py": ""}
    for number in range(11):
        files[f"m{number}.py"] = f"from pkg.m{number + 1} import x\n" if number < 10 else "x = 1\n"
    files["lazy.py"] = "def f():\n    import json\n    from pkg import m10\n"
    package = read_package(write_package(tmp_path, files))
    assert len(longest_chain(package)) == 11
    assert len(longest_chain(package, within=lambda module: module != "pkg.m5")) == 5
    assert unexplained_lazy_imports(package) == ["pkg.lazy:2: import json"]


def test_a_long_file_and_a_reference_outside_the_repository_are_found(tmp_path):
    root = write_package(
        tmp_path,
        {
            "big.py": "x = 1\n" * (MAX_LINES + 1),
            "refs.py": '"""See CONTRACT §12, docs/nowhere.md and README.md."""\n',
        },
    )
    (tmp_path / "README.md").write_text("")
    assert long_files(root) == [f"big.py: {MAX_LINES + 1} lines"]
    found = outside_references(root, tmp_path)
    assert len(found) == 2
    assert "outside specification" in found[0] and "docs/nowhere.md" in found[1]


def test_the_architecture_picture_is_drawn_from_the_code():
    """docs/architecture.svg shows the layers the imports make; after moving a module, run
    ``python -m scripts.architecture_svg``."""
    from scripts.architecture_svg import TARGET, draw

    assert TARGET.read_text() == draw()
