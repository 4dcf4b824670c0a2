"""The README and docs/: short, every relative link resolves, every command shown is valid."""
import re
import shlex
import subprocess
import sys

import click
import pytest

from conftest import REPO

PAGES = [REPO / "README.md"] + sorted((REPO / "docs").glob("*.md"))
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"```(?:sh|bash)\n(.*?)```", re.S)


def _commands(prefix: str):
    """(page, command line) for every line of a shell block starting with ``prefix`` (``&&`` splits)."""
    for page in PAGES:
        for block in FENCE.findall(page.read_text(encoding="utf-8")):
            for line in block.splitlines():
                for part in line.split("&&"):
                    part = part.split(" #")[0].strip()
                    if part.startswith(prefix):
                        yield page.name, part


def test_the_readme_is_short_and_names_the_two_commands():
    text = (REPO / "README.md").read_text(encoding="utf-8")
    assert len(text.encode("utf-8")) <= 12 * 1024
    assert "```sh\nreportgen run --preset lite\n```" in text and "```sh\npython -m pytest -q\n```" in text
    for page in ("usage", "decision", "analyses", "scaling", "performance", "design", "security"):
        assert f"(docs/{page}.md)" in text


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_relative_link_resolves(page):
    links = [link for link in LINK.findall(page.read_text(encoding="utf-8"))
             if not link.startswith(("http://", "https://", "#", "mailto:"))]
    for link in links:
        target = (page.parent / link.split("#")[0]).resolve()
        assert target.exists(), f"{page.name}: {link}"


def test_every_reportgen_command_shown_parses():
    from reportgen.cli import main

    shown = list(_commands("reportgen "))
    assert len(shown) >= 20
    for page, line in shown:
        args = shlex.split(line)[1:]
        command = main.get_command(click.Context(main), args[0])
        assert command is not None, (page, line)
        try:
            command.make_context(args[0], args[1:])  # parses every option and argument; runs nothing
        except click.exceptions.Exit:
            pass
        except click.ClickException as exc:
            raise AssertionError(f"{page}: {line}: {exc.format_message()}") from None


def test_every_help_example_parses():
    """Each command's --help shows examples; each example is a valid command line."""
    from reportgen.cli import main

    for name, command in main.commands.items():
        examples = [line.split(" #")[0].strip() for line in (command.help or "").splitlines()
                    if line.strip().startswith("reportgen ")]
        assert examples, name
        for example in examples:
            for part in example.split("&&"):
                args = shlex.split(part)[1:]
                main.get_command(click.Context(main), args[0]).make_context(args[0], args[1:])


def test_every_benchmark_and_tool_shown_runs_its_help():
    shown = {line.split()[1] for _, line in _commands("python ") if line.split()[1].endswith(".py")}
    assert {"bench/run_time.py", "bench/cam_engine.py", "bench/scale.py", "bench/ray_overhead.py"} <= shown
    for script in sorted(shown):
        done = subprocess.run([sys.executable, str(REPO / script), "--help"], capture_output=True, text=True,
                              timeout=120, cwd=REPO)
        assert done.returncode == 0 and "usage" in done.stdout.lower(), (script, done.stderr[-500:])


def test_every_battery_file_and_ci_job_shown_parses(tmp_path):
    """The TOML blocks of the docs that are battery files load (their keys and values checked); the YAML blocks (the
    CI jobs of usage.md "In CI") are valid YAML."""
    import yaml

    from reportgen.inputs.battery import load_battery

    batteries = jobs = 0
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        for number, block in enumerate(re.findall(r"```toml\n(.*?)```", text, re.S)):
            path = tmp_path / f"{page.stem}-{number}.toml"
            path.write_text(block)
            load_battery(path)
            batteries += 1
        for block in re.findall(r"```yaml\n(.*?)```", text, re.S):
            assert isinstance(yaml.safe_load(block), dict), page.name
            jobs += 1
    assert batteries >= 1 and jobs >= 2
