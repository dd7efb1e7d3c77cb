"""Every command line of the project starts: `python -m X --help` builds X's parser, exits 0 and
prints X's usage; every `python -m X` the README shows is one of them."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# entry point -> the program name its usage line shows
ENTRY_POINTS = {
    "app.py": "python app.py",
    "core.index": "python -m core.index",
    "core.query": "python -m core.query",
    "core.detect": "python -m core.detect",
    "train.detector": "python -m train.detector",
    "train.detector_renders": "python -m train.detector_renders",
    "core.report": "python -m core.report",
    "core.batch": "python -m core.batch",
    "train.evaluate_detect": "python -m train.evaluate_detect",
    "train.build_dataset": "python -m train.build_dataset",
    "train.replay": "python -m train.replay",
    "train.pretrain_base": "python -m train.pretrain_base",
    "train.stage1": "python -m train.stage1",
    "train.stage2": "python -m train.stage2",
    "train.evaluate": "python -m train.evaluate",
    "train.caption_loss": "python -m train.caption_loss",
    "train.demo": "python -m train.demo",
    "train.probe": "python -m train.probe",
    "tests.benchmarks.bench_index_query": "bench_index_query.py",  # its parser sets no prog
    "tests.benchmarks.bench_detect": "python -m tests.benchmarks.bench_detect",
    "tests.benchmarks.bench_concurrency": "python -m tests.benchmarks.bench_concurrency",
    "tests.benchmarks.bench_upload": "python -m tests.benchmarks.bench_upload",
    "tests.benchmarks.bench_startup": "python -m tests.benchmarks.bench_startup",
    "tests.benchmarks.bench_decode": "python -m tests.benchmarks.bench_decode",
    "tests.benchmarks.bench_memory": "python -m tests.benchmarks.bench_memory",
    "tests.benchmarks.bench_batch": "python -m tests.benchmarks.bench_batch",
}
MAIN_GUARD = re.compile(r"""^if __name__ == ["']__main__["']:""", re.M)

# Runs each entry point as `python -m` does (runpy, as __main__, sys.argv = [X, "--help"]). One
# interpreter for all of them: most import torch and transformers, which take seconds each time.
DRIVER = """
import contextlib, io, json, runpy, sys, traceback
results, report = {}, sys.argv[1]
for name in sys.argv[2:]:
    out = io.StringIO()
    sys.argv = [name, "--help"]
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            if name.endswith(".py"):
                runpy.run_path(name, run_name="__main__")
            else:
                runpy.run_module(name, run_name="__main__", alter_sys=True)
        code = "returned without exiting"
    except SystemExit as exit:
        code = exit.code or 0
    except BaseException:
        out.write(traceback.format_exc())
        code = "raised"
    results[name] = {"code": code, "output": out.getvalue()}
with open(report, "w") as f:
    json.dump(results, f)
"""


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT)
    return rel.name if rel.parent == Path(".") else ".".join(rel.with_suffix("").parts)


@pytest.fixture(scope="module")
def helps(tmp_path_factory) -> dict:
    report = tmp_path_factory.mktemp("cli") / "help.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-c", DRIVER, str(report), *ENTRY_POINTS], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert report.is_file(), proc.stderr[-3000:]
    return json.loads(report.read_text())


@pytest.mark.parametrize("entry", sorted(ENTRY_POINTS))
def test_help_builds_the_parser_and_prints_the_usage(helps, entry):
    result = helps[entry]
    assert result["code"] == 0, result["output"][-3000:]
    assert f"usage: {ENTRY_POINTS[entry]} " in result["output"], result["output"][:500]
    assert "--help" in result["output"]


def test_every_main_module_is_listed():
    found = {_module_name(p) for pattern in ("core/*.py", "train/*.py", "ui/*.py", "tests/benchmarks/*.py", "*.py")
             for p in ROOT.glob(pattern) if MAIN_GUARD.search(p.read_text(encoding="utf-8"))}
    assert found == set(ENTRY_POINTS)


def test_every_command_of_the_readme_is_listed():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    modules = {m for m in re.findall(r"-m ([A-Za-z_][\w.]*)", readme) if (ROOT / m.split(".")[0]).is_dir()}
    scripts = set(re.findall(r"python\S* ([\w/]+\.py)\b", readme))
    assert modules and scripts
    assert modules | scripts <= set(ENTRY_POINTS), sorted((modules | scripts) - set(ENTRY_POINTS))
