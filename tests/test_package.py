"""A non-editable install works from any folder: tools, prompts, graphs and gene sets ship in the wheel."""

from __future__ import annotations

import subprocess
import sys
import venv
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_install_runs_from_another_folder(tmp_path: Path):
    wheels = tmp_path / "wheels"
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), str(REPO)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    wheel = next(wheels.glob("proteus_discovery-*.whl"))
    env_dir = tmp_path / "venv"
    venv.create(env_dir, system_site_packages=True, with_pip=True)
    py = env_dir / "bin" / "python"
    r = subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-deps", "--force-reinstall", str(wheel)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    code = (
        "import proteus, proteus.tools, proteus.graphs.research, proteus.genesets as gs\n"
        "from importlib import resources\n"
        "assert 'site-packages' in proteus.__file__, proteus.__file__\n"
        "assert len(proteus.tools.list_tools()) >= 20\n"
        "assert len(gs.load('reactome')) > 1000 and len(gs.load('go_bp')) > 1000\n"
        "prompts = [p.name for p in resources.files('proteus.prompts').iterdir()]\n"
        "assert 'plan_objectives.md' in prompts and 'judge_rubric.md' in prompts, prompts\n"
        "proteus.graphs.research.build_research_graph().compile()\n"
        "from proteus.datasets import list_datasets\n"
        "assert {'cptac-ucec', 'nafld-plasma'} <= {d.name for d in list_datasets()}\n"
    )
    r = subprocess.run([str(py), "-c", code], capture_output=True, text=True, cwd=elsewhere, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    r = subprocess.run([str(env_dir / "bin" / "proteus"), "tools", "list"], capture_output=True, text=True, cwd=elsewhere, timeout=600)
    assert r.returncode == 0 and "differential_abundance" in r.stdout, r.stderr[-2000:]


def _module_imports() -> dict[str, set[str]]:
    """Every shipped module and the shipped modules it imports anywhere in its file (lazy imports too).

    Importing ``a.b.c`` also runs the packages ``a.b``; a module's own ancestor packages are skipped
    (they are already being imported when it runs). Folders map to packages as in pyproject.toml.
    """
    import ast
    import tomllib

    dirs = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    files: dict[str, Path] = {}
    for prefix, folder in dirs.items():
        for f in (REPO / folder).rglob("*.py"):
            parts = [p for p in f.relative_to(REPO / folder).with_suffix("").parts if p != "__init__"]
            files[".".join([prefix, *parts])] = f
    deps: dict[str, set[str]] = {m: set() for m in files}
    for name, f in files.items():
        for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [next((t for t in [f"{node.module}.{a.name}" for a in node.names] if t in files), node.module)]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                continue
            for t in targets:
                parts = t.split(".")
                for k in range(2, len(parts) + 1):
                    dep = ".".join(parts[:k])
                    if dep in files and dep != name and not name.startswith(dep + "."):
                        deps[name].add(dep)
    return deps


def test_no_import_cycles():
    """No two shipped modules import each other, directly or around a loop (lazy imports count)."""
    import networkx as nx

    deps = _module_imports()
    assert "proteus.report" in deps["proteus.review"]  # the walk sees real imports
    g = nx.DiGraph([(a, b) for a, bs in deps.items() for b in bs])
    cycles = sorted(sorted(c) for c in nx.simple_cycles(g))
    assert cycles == [], cycles
