"""Every command in README.md runs as written.

- ```sh blocks: each command runs, in order, with bash from a scratch folder that sees this checkout's tests/
  fixtures, ``sfc`` being this checkout's CLI. A command whose comment starts with ``long`` (``make test   # long:
  ...``) is left out: it needs a network, a fresh machine or minutes (CI runs ``make test`` itself).
- ```python blocks run as scripts from such a folder.
- The ```text synopsis: every command of the parser is listed, and every flag and every ``a|b|c`` list of choices
  it shows is the parser's.
"""

import argparse
import os
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def blocks(language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", README, re.MULTILINE | re.DOTALL)


def shell_commands() -> list[tuple[str, bool]]:
    """(command, long) of every line of the sh blocks, continuation lines joined."""
    commands = []
    for block in blocks("sh"):
        for line in block.replace("\\\n", " ").splitlines():
            if line.strip():
                _, _, comment = line.partition("#")
                commands.append((line.strip(), comment.strip().startswith("long")))
    return commands


@pytest.fixture
def scratch(tmp_path) -> tuple[pathlib.Path, dict[str, str]]:
    """A working folder with this checkout's tests/ in it and an ``sfc`` on PATH that runs this checkout's CLI."""
    (tmp_path / "tests").symlink_to(ROOT / "tests")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    sfc = bin_dir / "sfc"
    sfc.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m sfc_tf.cli "$@"\n')
    sfc.chmod(0o755)
    env = dict(os.environ)
    env["PATH"] = f"{bin_dir}{os.pathsep}{env['PATH']}"
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    return tmp_path, env


def test_readme_is_short():
    assert len(README.splitlines()) <= 300


def test_the_long_marker_is_used_for_long_commands_only():
    run = [command for command, long in shell_commands() if not long]
    assert run and all(command.startswith("sfc ") for command in run), run
    assert any(long for _, long in shell_commands())


def test_shell_commands_run(scratch):
    folder, env = scratch
    for command, long in shell_commands():
        if long:
            continue
        result = subprocess.run(["bash", "-c", command], cwd=folder, env=env, capture_output=True, text=True)
        assert result.returncode == 0, f"{command}\n{result.stdout}\n{result.stderr}"
        assert "Traceback" not in result.stderr, f"{command}\n{result.stderr}"


def test_python_api_runs(scratch):
    folder, env = scratch
    (snippet,) = blocks("python")
    script = folder / "api.py"
    script.write_text(snippet + "\nassert face.shape == (160, 160, 3) and feature.shape == (512,)\n")
    result = subprocess.run([sys.executable, str(script)], cwd=folder, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def synopsis() -> dict[str, str]:
    """Command name -> its synopsis line (continuation lines joined) of the README's sfc synopsis."""
    (block,) = [b for b in blocks("text") if b.startswith("sfc ")]
    lines: dict[str, str] = {}
    for line in re.sub(r"\n\s+", " ", block).splitlines():
        lines[line.split()[1]] = line
    return lines


def subparsers() -> dict[str, argparse.ArgumentParser]:
    from sfc_tf import cli

    (action,) = [a for a in cli.build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(action.choices)


def test_synopsis_lists_every_command():
    assert sorted(synopsis()) == sorted(subparsers())


def test_synopsis_flags_and_choices_exist():
    parsers = subparsers()
    for name, line in synopsis().items():
        options = {flag: action for action in parsers[name]._actions for flag in action.option_strings}
        for flag, value in re.findall(r"\[(-{1,2}[\w-]+)(?: ([^\]]+))?\]", line):
            assert flag in options, f"sfc {name}: no flag {flag}"
            if "|" in value:
                assert value.split("|") == list(options[flag].choices), f"sfc {name} {flag}: {value}"


def test_commands_in_the_text_exist():
    """`sfc X ...` quoted anywhere in the README names a real command."""
    parsers = subparsers()
    for name in re.findall(r"`sfc ([\w-]+)", README):
        assert name in parsers, name


def heading_anchors(path: pathlib.Path) -> set[str]:
    """GitHub's anchors of a markdown file's headings."""
    headings = re.findall(r"^#+ (.+)$", re.sub(r"^```.*?^```", "", path.read_text(), flags=re.M | re.S), re.M)
    return {"".join(c for c in h.lower() if c.isalnum() or c in " -_").replace(" ", "-") for h in headings}


def test_links_and_cited_result_files_exist():
    """Every relative link of README.md and docs/*.md (and its #anchor), and every eval/results file they name,
    exists."""
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = doc.read_text()
        for target, fragment in re.findall(r"\]\(([^)#:]+)(?:#([^)]*))?\)", text):
            assert (doc.parent / target).exists(), f"{doc.name}: link to {target}"
            if fragment:
                assert fragment in heading_anchors(doc.parent / target), f"{doc.name}: link to {target}#{fragment}"
        for name in re.findall(r"eval/results/([\w.-]+\.(?:json|png))", text):
            assert (ROOT / "eval" / "results" / name).exists(), f"{doc.name}: eval/results/{name}"


def test_architecture_lists_every_module():
    """docs/architecture.md's module map names every module of sfc_tf/ and every training binary."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    modules = [p for p in (ROOT / "sfc_tf").rglob("*.py") if "__pycache__" not in p.parts]
    missing = [str(p.relative_to(ROOT)) for p in modules if f"`{p.name}`" not in text]
    missing += [str(p.relative_to(ROOT)) for p in (ROOT / "train").glob("*.py") if f"`train/{p.name}`" not in text]
    assert not missing, f"docs/architecture.md does not list {missing}"
