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
