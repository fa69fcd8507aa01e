"""Virtualenvs for tests that install a package: layered over the one running the suite,
so what they install never reaches the developer's venv, or the tests running beside."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
from pathlib import Path


def layered_venv(root: Path) -> Path:
    """The ``bin`` of a new virtualenv layered over the one running the tests (whose
    packages it sees through a .pth file), with a ``tenantry`` command of its own: what it
    installs goes into it alone, and a server it starts runs on its interpreter (so it
    serves what was installed there)."""
    subprocess.run([sys.executable, "-m", "venv", str(root)], check=True, timeout=120)
    python = root / "bin" / "python"
    code = "import sysconfig; print(sysconfig.get_path('purelib'))"
    site = subprocess.run([python, "-c", code], capture_output=True, text=True, check=True)
    ours = sysconfig.get_path("purelib")  # with its .pth files: the editable installs
    layer = Path(site.stdout.strip()) / "tenantry-tests.pth"
    layer.write_text(f"import site; site.addsitedir({ours!r})\n")
    command = root / "bin" / "tenantry"
    command.write_text(f"#!{python}\nimport sys\nfrom tenantry.cli import main\nsys.exit(main())\n")
    command.chmod(0o755)
    return root / "bin"
