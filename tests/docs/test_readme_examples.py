"""Every example in README.md runs as written, against a real `inferhub serve` with the embedded models.

The fenced blocks are taken from the README in order: ``sh``/``bash`` blocks run in bash (``-euo
pipefail``), ``python`` blocks in this interpreter, ``yaml`` blocks load as ``inferhub.yaml``; a block
without a language is sample output. A block that cannot run here says so in the README itself, on the
line before it: ``<!-- readme-test: skip (why) -->``. Nothing else is skipped.

They run as a new user runs them after `make run`: in the directory that holds the server's
``.inferhub`` (so the CLI finds it with no INFERHUB_* variable), with ``inferhub`` on PATH (the README's
`source .venv/bin/activate`) and ``KEY`` set to the bootstrap key the server printed on first start (the
README's `export KEY=...`). The one change made to a block: ``localhost:8888`` becomes the test server's
address.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from support import InferhubProcess
from support.inferhub_process import BIN

README = Path(__file__).resolve().parents[2] / "README.md"
SKIP = re.compile(r"^<!-- readme-test: skip \((?P<reason>[^)]+)\) -->$")
RUNNERS = {"sh": "bash", "bash": "bash", "shell": "bash", "python": "python", "yaml": "yaml", "": None}

# What a block's output must show, by a line of the block (beyond exit code 0 and no traceback).
EXPECTED = {
    "localhost:8888/generate": ['"response":', "data: {", "data: [DONE]"],
    "from openai import OpenAI": [" completion tokens", "2 384"],
    "import ollama": ["384", "smollm2"],
    "inferhub backends add": ["added backend 1: llama3.1:8b", "local:smollm2", "local:all-minilm-l6-v2"],
    "inferhub keys create billing-app": ["ops", "billing-app", "revoked"],
}


@dataclass(frozen=True)
class Block:
    line: int  # where the fence opens in README.md
    language: str
    code: str
    skip: str | None  # the reason given in the README's marker

    @property
    def id(self) -> str:
        return f"README.md:{self.line}:{self.language or 'text'}"


def readme_blocks(text: str) -> list[Block]:
    blocks: list[Block] = []
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        fence = re.match(r"^```(\w*)\s*$", lines[index])
        if not fence:
            index += 1
            continue
        start = index
        end = next(i for i in range(start + 1, len(lines)) if lines[i].startswith("```"))
        previous = next((lines[i].strip() for i in range(start - 1, -1, -1) if lines[i].strip()), "")
        marker = SKIP.match(previous)
        blocks.append(Block(start + 1, fence.group(1), "\n".join(lines[start + 1 : end]) + "\n",
                            marker.group("reason") if marker else None))  # fmt: skip
        index = end + 1
    return blocks


BLOCKS = readme_blocks(README.read_text())
RUNNABLE = [b for b in BLOCKS if RUNNERS.get(b.language) and not b.skip]


def test_every_block_is_run_or_marked() -> None:
    unknown = [b.id for b in BLOCKS if b.language not in RUNNERS]
    assert not unknown, f"blocks in a language this test cannot run; mark them with a skip comment: {unknown}"
    assert [b for b in BLOCKS if b.skip], "the README marks the blocks it cannot run (make run, make test)"
    assert len([b for b in RUNNABLE if RUNNERS[b.language] != "yaml"]) >= 5
    for snippet in EXPECTED:  # the expectations still match a block the README has
        assert any(snippet in b.code for b in RUNNABLE), snippet


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[InferhubProcess, dict[str, str]]]:
    """`make run` in a clone: the server's home is ./.inferhub of the directory the examples run in."""
    where = tmp_path_factory.mktemp("readme-clone")
    process = InferhubProcess(where / ".inferhub", api_key="")
    with process:
        key = re.search(r"^\s+(ih-\S+)\s*$", process.output(), re.MULTILINE)
        assert key, process.output()
        env = {k: v for k, v in os.environ.items() if not k.startswith("INFERHUB_")}
        env.update({"KEY": key.group(1), "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}", "HOME": str(where)})
        yield process, env


def _run(block: Block, process: InferhubProcess, env: dict[str, str]) -> subprocess.CompletedProcess:
    code = block.code.replace("localhost:8888", process.url.removeprefix("http://"))
    cwd = process.home.parent
    if RUNNERS[block.language] == "bash":
        command = ["bash", "-euo", "pipefail", "-c", code]
    else:
        command = [sys.executable, "-c", code]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("block", [b for b in RUNNABLE if RUNNERS[b.language] != "yaml"], ids=lambda b: b.id)
def test_readme_example_runs(block: Block, clone: tuple[InferhubProcess, dict[str, str]]) -> None:
    process, env = clone
    result = _run(block, process, env)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{block.id} failed ({result.returncode}):\n{block.code}\n{output}"
    assert result.stdout.strip(), f"{block.id} printed nothing"
    assert "Traceback" not in output and '"error"' not in result.stdout, output
    if block.language == "python":
        assert "None" not in result.stdout, f"{block.id} printed None:\n{result.stdout}"
    for snippet, expected in EXPECTED.items():
        if snippet in block.code:
            missing = [e for e in expected if e not in output]
            assert not missing, f"{block.id}: {missing} not in:\n{output}"


@pytest.mark.parametrize("block", [b for b in RUNNABLE if RUNNERS[b.language] == "yaml"], ids=lambda b: b.id)
def test_readme_configuration_loads(block: Block, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from inferhub.settings import Settings

    config = tmp_path / "inferhub.yaml"
    config.write_text(block.code)
    assert isinstance(yaml.safe_load(block.code), dict)
    for name in [k for k in os.environ if k.startswith("INFERHUB_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("INFERHUB_CONFIG_FILE", str(config))
    monkeypatch.chdir(tmp_path)
    settings = Settings()
    declared = yaml.safe_load(block.code).get("backends", [])
    assert [b.model_name for b in settings.backends] == [b["model_name"] for b in declared]
