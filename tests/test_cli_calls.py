"""Command functions are called by Typer only.

Called from Python, a command function keeps `typer.Option(...)` objects as the defaults of every argument
its caller leaves out, and those objects then reach library code or the environment (this is how `snapid demo`
once crashed at its last step). So: no module of snapid calls a function registered as a command, and the
library entry points that commands share refuse such placeholder objects.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import typer

import snapid
from snapid.cli import app

PACKAGE = Path(snapid.__file__).parent


def command_functions(typer_app: typer.Typer) -> set[tuple[str, str]]:
    """(module, function name) of every command and group callback, walked through every sub-app."""
    found = set()
    for command in typer_app.registered_commands:
        found.add((command.callback.__module__, command.callback.__name__))
    for group in typer_app.registered_groups:
        found |= command_functions(group.typer_instance)
        if group.typer_instance.registered_callback is not None:
            callback = group.typer_instance.registered_callback.callback
            found.add((callback.__module__, callback.__name__))
    return found


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def calls_of_commands(source: str, module: str, commands: set[tuple[str, str]]) -> list[str]:
    """Calls in MODULE's SOURCE of a command function: by its own name, an imported name, or module_alias.name."""
    tree = ast.parse(source, filename=module)
    names = {fn: (module, fn) for (mod, fn) in commands if mod == module}  # local name → (module, function)
    modules: dict[str, str] = {}  # local alias → module
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                local = alias.asname or alias.name
                names[local] = (node.module, alias.name)
                modules[local] = f"{node.module}.{alias.name}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    modules[alias.asname] = alias.name
    bad = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        target = None
        if isinstance(node.func, ast.Name):
            target = names.get(node.func.id)
        elif isinstance(node.func, ast.Attribute) and isinstance(node.func.value, ast.Name):
            target = (modules.get(node.func.value.id, ""), node.func.attr)
        if target in commands:
            bad.append(f"{module}:{node.lineno} calls the command {target[0]}.{target[1]}")
    return bad


def test_the_walk_finds_the_commands():
    commands = command_functions(app)
    assert ("snapid.cli.serve", "serve") in commands and ("snapid.cli.demo", "demo") in commands
    assert ("snapid.cli.data", "import_") in commands and ("snapid.cli.detect", "train") in commands
    assert len(commands) >= 25


def test_the_check_sees_a_command_called_from_python():
    """The check itself: the shape of the old bug in snapid/cli/demo.py is found (and a registration is not)."""
    sample = ("from snapid.cli import serve as serve_cli\nfrom snapid.cli.serve import serve\n"
              "def demo():\n    serve_cli.serve(target='x')\n    serve('y')\n"
              "def register(app):\n    app.command('serve')(serve_cli.serve)\n")
    found = calls_of_commands(sample, "snapid.cli.sample", command_functions(app))
    assert len(found) == 2 and all("snapid.cli.serve.serve" in line for line in found)


def test_no_module_calls_a_command_function():
    commands = command_functions(app)
    bad = [line for path in sorted(PACKAGE.rglob("*.py"))
           for line in calls_of_commands(path.read_text(), module_name(path), commands)]
    assert bad == [], "call the library function behind the command instead:\n" + "\n".join(bad)


def test_the_serving_entry_point_refuses_command_line_placeholders(tmp_path):
    from snapid.config import Settings
    from snapid.serve.launch import serve_forever

    with pytest.raises(TypeError, match="keep_days"):
        serve_forever(None, settings=Settings(home=tmp_path), keep_days=typer.Option(None, "--keep-days"))


def test_every_command_a_message_names_exists():
    """`snapid calibrate`, `snapid evaluate`: commands the messages once told users to run, which did not exist."""
    import re

    from typer.main import get_command

    root = get_command(app)
    named = set()
    for path in PACKAGE.rglob("*.py"):
        named |= set(re.findall(r"`snapid ((?:[a-z][a-z-]*)(?: [a-z][a-z-]*)?)", path.read_text(encoding="utf-8")))
    missing = []
    for words in sorted(named):
        first, _, second = words.partition(" ")
        command = root.commands.get(first)
        if command is None:
            missing.append(words)
        elif second and hasattr(command, "commands") and second not in command.commands:
            missing.append(words)
    assert missing == [], f"messages name commands that do not exist: {missing}"
