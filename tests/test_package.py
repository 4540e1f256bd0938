"""A non-editable install works from any folder: tools, prompts, graphs and gene sets ship in the wheel."""

from __future__ import annotations

import json
import subprocess
import sys
import venv
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _install_wheel(tmp_path: Path, spec: str = "", *, no_deps: bool = True) -> Path:
    """Build the wheel, install it (``spec`` = extras such as ``[data]``) into a fresh venv; returns the venv.

    The venv sees the system site-packages, so dependencies already there are not downloaded again.
    """
    wheels = tmp_path / "wheels"
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), str(REPO)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    wheel = next(wheels.glob("proteus_discovery-*.whl"))
    env_dir = tmp_path / "venv"
    venv.create(env_dir, system_site_packages=True, with_pip=True)
    cmd = [str(env_dir / "bin" / "python"), "-m", "pip", "install", "-q", "--force-reinstall", "--no-deps"] if no_deps else \
        [str(env_dir / "bin" / "python"), "-m", "pip", "install", "-q"]
    r = subprocess.run([*cmd, f"{wheel}{spec}"], capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr
    return env_dir


@pytest.mark.slow
def test_wheel_install_runs_from_another_folder(tmp_path: Path):
    env_dir = _install_wheel(tmp_path)
    py = env_dir / "bin" / "python"
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


_COMMANDS_AND_IMPORTS = """
import json, sys
from importlib import metadata
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from proteus.cli import app

status = []
for args in json.loads(sys.argv[1]):
    try:
        app(args, standalone_mode=False)
        status.append(0)
    except SystemExit as e:
        status.append(e.code or 0)

def declared(name, extras):
    seen, todo = set(), [(name, tuple(extras))]
    while todo:
        n, ex = todo.pop()
        if canonicalize_name(n) in seen:
            continue
        seen.add(canonicalize_name(n))
        try:
            reqs = metadata.requires(n) or []
        except metadata.PackageNotFoundError:
            continue
        for r in map(Requirement, reqs):
            if r.marker is None or any(r.marker.evaluate({"extra": e}) for e in ("", *ex)):
                todo.append((r.name, tuple(r.extras)))
    return sorted(seen)

dists = metadata.packages_distributions()
loaded = {m.split(".")[0]: sorted({canonicalize_name(d) for d in dists.get(m.split(".")[0], [])}) for m in list(sys.modules)}
print(json.dumps({"status": status, "loaded": loaded, "declared": declared("proteus-discovery", ["data"])}))
"""


def _third_party_imports() -> set[str]:
    """Top-level names of the modules the shipped code imports (anywhere in a file), other than its own."""
    import ast
    import tomllib

    dirs = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    names = set()
    for folder in set(dirs.values()):
        for f in (REPO / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
                if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    names.add(node.module.split(".")[0])
                elif isinstance(node, ast.Import):
                    names.update(a.name.split(".")[0] for a in node.names)
    return names - {"proteus"} - set(sys.stdlib_module_names)


@pytest.mark.slow
def test_readme_install_makes_every_readme_command_work(tmp_path: Path):
    """The README's install (the wheel with its ``[data]`` extra, in a fresh venv): every registry dataset
    fetches or prints the one ``pip install`` line that fixes it, ``proteus eval`` runs on a small dataset,
    and every third-party module PROTEUS imported along the way comes from a declared dependency."""
    env_dir = _install_wheel(tmp_path, "[data]", no_deps=False)
    proteus = str(env_dir / "bin" / "proteus")
    from proteus.datasets import list_datasets

    for d in list_datasets():
        dest = tmp_path / "data" / d.name
        r = subprocess.run([proteus, "datasets", "fetch", d.name, str(dest)], capture_output=True, text=True, timeout=600)
        if r.returncode == 0:
            assert {p.name for p in dest.iterdir()} >= set(d.files), d.name
        else:
            lines = [x for x in r.stderr.splitlines() if x.strip()]
            assert len(lines) == 1 and "Traceback" not in r.stderr, (d.name, r.stderr[-2000:])
            assert "pip install " in lines[0] or "PROTEUS_SHARED" in lines[0], (d.name, lines)
    commands = [["eval", "gse7390-breast", "--out", str(tmp_path / "eval"), "--workers", "1", "--max-objectives", "2", "--quiet"]]
    r = subprocess.run([str(env_dir / "bin" / "python"), "-c", _COMMANDS_AND_IMPORTS, json.dumps(commands)],
                       capture_output=True, text=True, cwd=tmp_path, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["status"] == [0], r.stderr[-3000:]
    assert json.loads((tmp_path / "eval" / "eval.json").read_text())["overall"]["finished"] == 1
    ours = _third_party_imports()
    assert "distributed" in out["loaded"] and "distributed" in ours  # the eval scheduler was really used
    undeclared = {m: d for m, d in out["loaded"].items() if m in ours and d and not set(d) & set(out["declared"])}
    assert not undeclared, f"imported at run time but not declared in dependencies or [data]: {undeclared}"
    # the README's export: the evaluation's run as MuData, with the installed dependencies
    run_dir = next(p.parent for p in (tmp_path / "eval").rglob("run.json") if (p.parent / "state.json").exists())
    r = subprocess.run([proteus, "export", "h5mu", str(run_dir)], capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert r.returncode == 0 and (run_dir / "study.h5mu").stat().st_size > 0, r.stderr[-3000:]
