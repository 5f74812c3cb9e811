"""Every prompt id a flow can say exists in the Japanese and the English manifests.

The ids are read from the flows' source: every string written in the arguments of a call that
says something (play, say, menu, ask, confirm, ...), and what a name given there can hold (a
table such as `ADDED[result]`, a local list). The walks in tests/test_ivr_flows.py check the
same at run time for the paths they take; this finds an id on a path no walk takes."""

from __future__ import annotations

import ast
import json
from pathlib import Path

from softswitch.media.prompts import DEFAULT_DIRECTORY, LANGUAGES

IVR = Path(__file__).resolve().parents[1] / "softswitch" / "ivr"
SAYING = {"play", "say", "menu", "ask", "question", "number", "confirm", "failed", "_failed",
          "entry", "collect"}


def named_strings(tree: ast.Module) -> dict[str, set[str]]:
    """Names bound anywhere in the module (tables, locals) to strings: what they can say."""
    names: dict[str, set[str]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets, value = [node.target], node.value
        else:
            continue
        if isinstance(value, ast.Dict):  # a table: its values are said, its keys looked up
            found = set().union(*(strings_in(v, {}) for v in value.values))
        else:
            found = strings_in(value, {})
        for target in targets:
            if isinstance(target, ast.Name):
                names[target.id] = names.get(target.id, set()) | found
    return names


def prompt_ids_in(source: str) -> set[str]:
    tree = ast.parse(source)
    tables = named_strings(tree)
    ids: set[str] = set()
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr in SAYING):
            continue
        arguments = [*node.args, *(k.value for k in node.keywords if k.arg != "end")]
        for argument in arguments:
            ids |= strings_in(argument, tables)
    return ids


def strings_in(node: ast.AST, tables: dict[str, set[str]]) -> set[str]:
    """The strings an argument can be; a call inside it (a readout of digits or a number)
    makes ids that tests/test_prompts.py checks, and is not entered."""
    if isinstance(node, ast.Constant):
        return {node.value} if isinstance(node.value, str) else set()
    if isinstance(node, ast.Name):
        return tables.get(node.id, set())
    if isinstance(node, ast.Call):
        return set()
    if isinstance(node, ast.Subscript):  # TABLE[key]: what the table holds, not the key
        return strings_in(node.value, tables)
    found: set[str] = set()
    for child in ast.iter_child_nodes(node):
        found |= strings_in(child, tables)
    return found


def flow_prompt_ids() -> dict[str, set[str]]:
    return {path.name: prompt_ids_in(path.read_text()) for path in sorted(IVR.glob("*.py"))}


def test_every_prompt_a_flow_says_is_in_both_manifests() -> None:
    manifests = {language: set(json.loads(
        (DEFAULT_DIRECTORY / language / "manifest.json").read_text())["prompts"])
        for language in LANGUAGES}
    found = flow_prompt_ids()
    used = set().union(*found.values())
    for language, manifest in manifests.items():
        missing = {name: sorted(ids - manifest) for name, ids in found.items() if ids - manifest}
        assert missing == {}, f"not in the {language} manifest: {missing}"
    # the scan sees what the flows say, also through their tables and conditions
    assert {"enter_pin", "pin_locked", "try_later", "blocklist_full", "remote_auth_failed",
            "forwarding_mode_no_answer", "voicemail_from_withheld", "greeting_keep_or_retry",
            "no_input", "invalid_input", "goodbye", "not_available"} <= used
    assert len(used) > 60


def test_the_scan_finds_an_unknown_prompt() -> None:
    source = '''
TOLD = {1: "known_table_prompt"}
async def flow(guide):
    local = ["local_prompt"] if guide else []
    await guide.say("said_prompt" if guide else TOLD[1], readout(3, "ken"), local)
    await guide.menu(["menu_prompt", "menu_repeat"], keys(1))
    await guide.ask("question", end="#", invalid_prompt="told")
'''
    assert prompt_ids_in(source) == {"said_prompt", "known_table_prompt", "local_prompt",
                                     "menu_prompt",
                                     "menu_repeat", "question", "told"}
