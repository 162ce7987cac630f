"""The suite's own rules, held as tests: every test can fail, and fails for the right reason.

Beside tests/test_layout.py (the package's shape), this reads the test files themselves: an
assert that is always true, a test that asserts nothing, a pgrep that reads its pattern as an
option. Each of these once hid a real defect (a leaked password, a gpg left running).
"""

from __future__ import annotations

import ast
import os
import time
from pathlib import Path

from testing.gitrepo import ROOT

TESTS = ROOT / "tests"


def _files() -> dict[Path, ast.Module]:
    return {p: ast.parse(p.read_text()) for p in sorted(TESTS.rglob("*.py"))}


def _always_true(test: ast.expr) -> bool:
    """``x or True``, ``x or "text"``, a literal itself: an assert that cannot fail."""
    if isinstance(test, ast.Constant):
        return bool(test.value)
    if isinstance(test, ast.BoolOp) and isinstance(test.op, ast.Or):
        return any(_always_true(v) for v in test.values)
    if isinstance(test, (ast.JoinedStr, ast.List, ast.Tuple, ast.Dict, ast.Set)):
        return not isinstance(test, ast.JoinedStr) or bool(test.values)
    return False


def _where(path: Path, node: ast.AST) -> str:
    return f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', '?')}"


def test_no_assert_is_always_true() -> None:
    bad = [_where(p, n) for p, tree in _files().items() for n in ast.walk(tree)
           if isinstance(n, ast.Assert) and _always_true(n.test)]
    assert bad == [], f"asserts that cannot fail: {bad}"


def _name(call: ast.Call) -> str:
    f = call.func
    return f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""


def _checks_itself(fn: ast.AST) -> bool:
    for n in ast.walk(fn):
        if isinstance(n, ast.Assert):
            return True
        if isinstance(n, ast.Raise) and n.exc is not None and "AssertionError" in ast.unparse(n.exc):
            return True
        if isinstance(n, ast.Call) and _name(n) in ("raises", "fail", "check_returncode"):
            return True
        # run(..., check=True) and run(...) by default in testing.gitrepo: a non-zero exit fails.
    return False


def test_every_test_asserts_or_expects_an_exception() -> None:
    files = _files()
    # Helpers (in the tests and the testing package) that assert on the test's behalf.
    checkers = {n.name for tree in files.values() for n in ast.walk(tree)
                if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and _checks_itself(n)}
    checkers.add("run")  # testing.gitrepo.run checks the exit status unless check=False
    bad = []
    for path, tree in files.items():
        if not path.name.startswith("test_"):
            continue
        for fn in tree.body:
            if not isinstance(fn, ast.FunctionDef) or not fn.name.startswith("test_"):
                continue
            calls = {_name(c) for c in ast.walk(fn) if isinstance(c, ast.Call)}
            if not _checks_itself(fn) and not calls & checkers:
                bad.append(f"{_where(path, fn)} {fn.name}")
    assert bad == [], f"tests that assert nothing: {bad}"


def test_pgrep_and_pkill_end_their_options() -> None:
    # `pgrep -f --decrypt` reads the pattern as an option, exits 2 and prints nothing: a
    # "nothing left running" check that always passes.
    bad = []
    for path, tree in _files().items():
        if path == Path(__file__):
            continue  # this file names them to find them
        for n in ast.walk(tree):
            if not isinstance(n, (ast.List, ast.Tuple)) or not n.elts:
                continue
            head = n.elts[0]
            if not (isinstance(head, ast.Constant) and head.value in ("pgrep", "pkill")):
                continue
            words = [e.value for e in n.elts if isinstance(e, ast.Constant)]
            if "--" not in words:
                bad.append(_where(path, n))
        for call in (c for c in ast.walk(tree) if isinstance(c, ast.Call)):
            args = call.args
            words = [a.value for a in args if isinstance(a, ast.Constant)]
            if words[:1] in (["pgrep"], ["pkill"]) and "--" not in words:
                bad.append(_where(path, call))
    assert bad == [], f"pgrep/pkill without --: {bad}"


def test_the_rules_catch_what_they_name() -> None:
    # The rules themselves, against the defects they were written for.
    broken = ast.parse("assert '2019' in x or True\nassert y or 'msg'\nassert 'x'\n")
    assert all(_always_true(n.test) for n in broken.body if isinstance(n, ast.Assert))
    assert not _always_true(ast.parse("assert a or b").body[0].test)  # type: ignore[attr-defined]
    silent = ast.parse("def test_x(snap):\n    if not snap.is_file:\n        return\n")
    assert not _checks_itself(silent.body[0])


def test_a_process_a_test_leaves_running_is_found_and_killed() -> None:
    import subprocess

    from testing import leftovers

    mark = os.environ[leftovers.MARK]  # this test's own, set by conftest
    # Detached as a background job of a shell that exits at once: nobody waits for it.
    subprocess.run(["sh", "-c", "sleep 300 >/dev/null 2>&1 & echo started"], check=True, timeout=30,
                   capture_output=True)
    left = leftovers.marked(mark)
    assert [cmd for cmd in left.values() if cmd == "sleep 300"], left
    leftovers.kill(left)
    deadline = time.monotonic() + 10
    while leftovers.marked(mark):
        assert time.monotonic() < deadline, "killed processes still alive"
        time.sleep(0.05)
