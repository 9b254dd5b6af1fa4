"""The docs keep their promises: every relative link resolves (file and heading), and every `make` target and
`zeroshape-w` command they quote exists, with options its parser accepts."""

from __future__ import annotations

import argparse
import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
USER_DOCS = [ROOT / "README.md", ROOT / "CONTRIBUTING.md", *sorted((ROOT / "docs").glob("*.md"))]
"""Where commands must run as written. The experiment logs (docs/experiments/) are history: their links must resolve,
but the commands they quote are those of their day."""
ALL_DOCS = [*USER_DOCS, ROOT / "CHANGELOG.md", *sorted((ROOT / "docs" / "experiments").glob("*.md"))]

LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
FENCE = re.compile(r"```([a-z]*)\n(.*?)```", re.S)
SHELL_BLOCKS = ("bash", "sh", "shell", "console", "")
"""Code blocks that hold commands; a block of a program's output is marked ```text and not read as commands."""
INLINE = re.compile(r"`([^`\n]+)`")


def github_anchor(heading: str) -> str:
    """The id GitHub gives a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]|\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(markdown: Path) -> set[str]:
    found, seen = set(), {}
    text = FENCE.sub("", markdown.read_text())
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*#*$", text, re.M):
        anchor = github_anchor(heading)
        count = seen.get(anchor, 0)
        seen[anchor] = count + 1
        found.add(anchor if count == 0 else f"{anchor}-{count}")
    return found


def relative_links(markdown: Path):
    text = FENCE.sub("", markdown.read_text())
    for target in LINK.findall(text):
        if not re.match(r"[a-z]+:", target):  # http:, https:, mailto:
            yield target


@pytest.mark.parametrize("markdown", ALL_DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(markdown):
    assert markdown.is_file(), markdown
    broken = []
    for target in relative_links(markdown):
        path, _, anchor = target.partition("#")
        file = (markdown.parent / path).resolve() if path else markdown
        if not file.exists():
            broken.append(f"{target}: no such file")
        elif anchor and file.suffix == ".md" and anchor not in anchors(file):
            broken.append(f"{target}: no heading #{anchor} in {file.name}")
    assert not broken, broken


def quoted_commands(markdown: Path) -> list[str]:
    """Command lines in code blocks (continuations joined, comments dropped) and in inline code."""
    text = markdown.read_text()
    lines = []
    for language, block in FENCE.findall(text):
        if language not in SHELL_BLOCKS:
            continue
        for line in block.replace("\\\n", " ").splitlines():
            lines.append(line.split(" #")[0].strip())
    lines += INLINE.findall(FENCE.sub("", text))
    return [line for line in lines if re.match(r"(\S*/)?(zeroshape-w|make)( |$)", line)]


def make_targets() -> set[str]:
    return set(re.findall(r"^([a-z][\w-]*):", (ROOT / "Makefile").read_text(), re.M))


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return actions[0].choices if actions else {}


def check_command(line: str, parser: argparse.ArgumentParser, targets: set[str]) -> str | None:
    """None when `line` is a command that exists as written; else why not."""
    try:
        words = shlex.split(line.split(" && ")[0].split(" | ")[0])
    except ValueError:
        words = line.split()
    program, *words = words
    if program == "make":
        missing = [w for w in words if not w.startswith("-") and "=" not in w and w not in targets]
        return f"no make target {missing}" if missing else None
    while words and words[0] in subcommands(parser):
        parser, words = subcommands(parser)[words[0]], words[1:]
    if words and not words[0].startswith("-") and subcommands(parser):
        return f"no subcommand {words[0]!r}"
    options = {s: a for a in parser._actions for s in a.option_strings}
    for index, word in enumerate(words):
        if not word.startswith("-") or word in ("-", "--") or re.match(r"-\d", word):
            continue
        name = word.split("=")[0]
        if name not in options:
            return f"{parser.prog}: no option {name}"
        action = options[name]
        value = word.partition("=")[2] or (words[index + 1] if index + 1 < len(words) else "")
        placeholder = re.fullmatch(r"[A-Z][A-Z0-9_]*", value)  # --config NAME
        if action.choices and value and not placeholder and re.fullmatch(r"[\w.-]+(\|[\w.-]+)*", value):
            wrong = [v for v in value.split("|") if v not in map(str, action.choices)]
            if wrong:
                return f"{parser.prog} {name}: {wrong} not among {list(action.choices)}"
    return None


@pytest.mark.parametrize("markdown", USER_DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_quoted_command_exists(markdown):
    from zeroshape_w.cli import build_parser

    parser, targets = build_parser(), make_targets()
    problems = {line: why for line in quoted_commands(markdown) if (why := check_command(line, parser, targets))}
    assert not problems, problems


def test_the_checker_catches_what_it_should():
    """The command check fails on a wrong subcommand, option, choice or make target, and passes the right ones."""
    from zeroshape_w.cli import build_parser

    parser, targets = build_parser(), make_targets()
    assert check_command("zeroshape-w reconstruct photo.jpg -o out/ --shape body", parser, targets) is None
    assert check_command(".venv/bin/zeroshape-w data render --source procedural --out d", parser, targets) is None
    assert check_command("zeroshape-w benchmark --mode reconstruct|forward|load", parser, targets) is None
    assert check_command("make run", parser, targets) is None
    assert "no option --nope" in check_command("zeroshape-w serve --nope", parser, targets)
    assert "not among" in check_command("zeroshape-w reconstruct x --shape round", parser, targets)
    assert "no subcommand" in check_command("zeroshape-w data paint --out d", parser, targets)
    assert "no make target" in check_command("make deploy", parser, targets)
    assert github_anchor("Run 8: the `small` model (issue 18)") == "run-8-the-small-model-issue-18"


def test_the_readme_is_a_front_page():
    """A picture first, under 8 KB: the rest lives in docs/."""
    readme = ROOT / "README.md"
    assert readme.stat().st_size <= 8192
    first_image = next(i for i, line in enumerate(readme.read_text().splitlines()) if line.startswith("!["))
    assert first_image < 15


def test_the_model_card_has_the_sections_of_a_model_card():
    """The shipped model only (the campaigns are docs/experiments/), with the sections a Hugging Face card has."""
    card = ROOT / "docs" / "MODEL_CARD.md"
    assert card.stat().st_size <= 12 * 1024
    sections = [h.lower() for h in re.findall(r"^## (.+)$", card.read_text(), re.M)]
    for wanted in ("model details", "intended use", "out-of-scope", "training data", "evaluation", "limitations"):
        assert any(s.startswith(wanted) for s in sections), (wanted, sections)
    for wanted in ("citation", "licence"):
        assert wanted in sections, (wanted, sections)
