"""The docs: the README stays short, every page is in the site's nav, and no page names a file that is not there.

`make test` also builds the site with `mkdocs build --strict` (`make docs-check`), which fails on a broken link
between pages or a missing anchor; these checks cover what MkDocs cannot see: the README (not part of the site),
paths and module names written in backticks, and the nav against the files. Pure Python, no server.
"""

from __future__ import annotations

import ast
import os
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
README_MAX_LINES = 160

# Paths the docs name that are generated at run time (git-ignored) or written by the user, never committed.
GENERATED = {
    ".venv",  # make setup
    ".npm",  # make setup: the hub's proxy
    ".airflow-venv",  # make airflow: Airflow's own virtual environment
    ".hub",  # the hub's state
    "lake",  # make lake / workbench lake init
    "site",  # mkdocs build
    "mlartifacts",  # MLflow's local artifact store
    "reports/index.html",  # the reports site
    "reports/runs",  # run folders
    "reports/.scheduler",  # the scheduler's lock files
    "airflow/dags",  # workbench jobs export-airflow
    "workbench.toml",  # optional local settings, git-ignored
    "10-oauth.py",  # an example site override in hub_config/jupyterhub_config.d/ (git-ignored there)
    "20-spawner.py",  # another example site override
}

# Dotted names in backticks that look like modules but are MLflow tag or metadata keys the workbench writes.
NOT_MODULES = {
    "workbench.history.champion",  # the alias history tag on a registered model (workbench.history.<alias>)
    "workbench.git_dirty",  # run tag
    "workbench.feature_function",  # version tag
    "workbench.explain.top_features",  # run tag written by log_explanation_summary
    "workbench.alert",  # the alert payload's event name
}

# Written for the layout after the parallel branches of issue 13 merge (model contract, runs layer).
# The lead empties this set once they are on main; then every name here must exist like any other.

FENCE_RE = re.compile(r"^(```|~~~).*?^\1", re.M | re.S)
CODE_SPAN_RE = re.compile(r"`([^`\n]+)`")
LINK_RE = re.compile(r"\]\(([^)\s]+)\)")
MKDOCSTRINGS_RE = re.compile(r"^:::\s+([\w.]+)", re.M)
TOP_LEVEL = ("workbench/", "notebooks/", "hub_config/", "benchmarks/", "tests/", "docs/", "reports/", "lake/")
FILE_SUFFIXES = (".py", ".yaml", ".yml", ".toml", ".ipynb", ".md", ".cfg", ".txt")
PLACEHOLDERS = re.compile(r"\b(TODO|TBD|FIXME|XXX|lorem ipsum|coming soon)\b", re.I)


def doc_files() -> list[Path]:
    """The root README, every README below the root (outside generated folders), and every page of the site."""
    readmes = [
        p
        for p in ROOT.rglob("README.md")
        if not any(
            part.startswith(".") or part in {"site", "lake", "node_modules"} for part in p.relative_to(ROOT).parts
        )
    ]
    return sorted(set(readmes) | set(DOCS.rglob("*.md")))


def prose(path: Path) -> str:
    """The text of a page without its fenced code blocks (commands and examples there are not claims about files)."""
    return FENCE_RE.sub("", path.read_text(encoding="utf-8"))


def path_like(span: str) -> str | None:
    """The repo path a code span names, or None when it names no file (a command, a template, a setting)."""
    text = span.strip().rstrip("/")
    if not text or any(c in text for c in " <>{}*$=|,()[]:'\"") or text.startswith(("-", "/", "http")):
        return None
    if text.startswith(TOP_LEVEL) or text in {t.rstrip("/") for t in TOP_LEVEL}:
        return text
    if "/" not in text and text.endswith(FILE_SUFFIXES) and not text.startswith("."):
        return text
    return None  # `.status` is an attribute, `.hub/` a generated folder: neither is checked


def _top_level_names(module_file: Path) -> set[str]:
    tree = ast.parse(module_file.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for t in targets:
                if isinstance(t, ast.Name):
                    names.add(t.id)
            if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__all__" for t in targets):
                if isinstance(node.value, ast.List | ast.Tuple):
                    names |= {e.value for e in node.value.elts if isinstance(e, ast.Constant)}
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
    return names


def module_name_exists(dotted: str) -> bool:
    """`workbench.a.b` is a module or package, or `workbench.a.NAME` a name defined or exported by one."""
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        base = ROOT.joinpath(*parts[:i])
        module = base.with_suffix(".py") if base.with_suffix(".py").is_file() else base / "__init__.py"
        if not module.is_file():
            continue
        rest = parts[i:]
        if not rest:
            return True
        return rest[0] in _top_level_names(module)  # deeper attributes (methods, fields) are not checked
    return False


def module_like(span: str) -> str | None:
    text = span.strip()
    if re.fullmatch(r"workbench(\.[A-Za-z_]\w*)+", text) and not text.endswith(FILE_SUFFIXES):
        return text
    return None


def _repo_file_names() -> set[str]:
    """Base names of the files in the checkout (outside generated and hidden folders)."""
    names = set()
    for folder, dirs, files in os.walk(ROOT):
        dirs[:] = [
            d for d in dirs if not d.startswith(".") and d not in {"site", "lake", "node_modules", "__pycache__"}
        ]
        if Path(folder) == ROOT:
            dirs[:] = [d for d in dirs if d not in {"reports", "mlartifacts"}]
        names.update(files)
    return names


REPO_FILE_NAMES = _repo_file_names()


def exists(name: str, page: Path) -> bool:
    """A path relative to the repo root or to the page; a bare file name anywhere in the checkout."""
    if (ROOT / name).exists() or (page.parent / name).exists():
        return True
    return "/" not in name and name in REPO_FILE_NAMES


def test_no_doc_names_a_missing_file():
    missing = []
    for page in doc_files():
        for span in CODE_SPAN_RE.findall(prose(page)):
            name = path_like(span)
            if name is None or name in GENERATED:
                continue
            if any(name.startswith(g + "/") for g in GENERATED):
                continue
            if not exists(name, page):
                missing.append(f"{page.relative_to(ROOT)}: `{span}`")
    assert not missing, "docs name files that do not exist (fix the page, or list generated paths in GENERATED):\n" + (
        "\n".join(sorted(set(missing)))
    )


def test_no_doc_names_a_missing_module():
    missing = []
    for page in doc_files():
        text = prose(page)
        names = [module_like(s) for s in CODE_SPAN_RE.findall(text)] + MKDOCSTRINGS_RE.findall(text)
        for name in filter(None, names):
            if name in NOT_MODULES:
                continue
            if not module_name_exists(name):
                missing.append(f"{page.relative_to(ROOT)}: `{name}`")
    assert not missing, "docs name modules or names that do not exist:\n" + "\n".join(sorted(set(missing)))


def test_readme_links_point_at_files():
    """The README is not part of the site, so MkDocs does not check its links: this does."""
    readme = ROOT / "README.md"
    broken = []
    for target in LINK_RE.findall(prose(readme)):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            continue
        if not (ROOT / target.split("#")[0]).exists():
            broken.append(target)
    assert not broken, f"README links to missing files: {broken}"


def test_readme_is_short():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, (
        f"README.md has {len(lines)} lines; keep it at most {README_MAX_LINES} and move the rest to a page in docs/"
    )


def _nav_files(entries) -> list[str]:
    files: list[str] = []
    for entry in entries:
        if isinstance(entry, str):
            files.append(entry)
        elif isinstance(entry, dict):
            for value in entry.values():
                files.extend(_nav_files(value) if isinstance(value, list) else [value])
    return files


def test_every_page_is_in_the_nav_and_every_nav_entry_is_a_page():
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))
    nav = [f for f in _nav_files(config["nav"]) if not re.match(r"^[a-z]+://", f)]
    pages = sorted(str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md"))
    assert sorted(set(pages) - set(nav)) == [], "pages in docs/ missing from the nav in mkdocs.yml"
    assert sorted(set(nav) - set(pages)) == [], "nav entries in mkdocs.yml without a page in docs/"
    assert len(nav) == len(set(nav)), "a page appears twice in the nav"


@pytest.mark.parametrize("page", sorted(DOCS.rglob("*.md")), ids=lambda p: str(p.relative_to(DOCS)))
def test_pages_hold_content_not_placeholders(page):
    text = page.read_text(encoding="utf-8")
    assert not PLACEHOLDERS.search(prose(page)), f"{page.name} holds a placeholder"
    body = [line for line in text.splitlines() if line.strip() and not line.startswith("#")]
    rendered = MKDOCSTRINGS_RE.findall(text)  # each block renders a module's docstring and members
    assert len(body) >= 5 or rendered, f"{page.name} has almost no content"


def test_the_checker_finds_what_it_should():
    """The path and module checks above can fail: they recognise a missing file and a missing module."""
    assert path_like("workbench/no_such_module.py") == "workbench/no_such_module.py"
    assert not exists("workbench/no_such_module.py", ROOT / "README.md")
    assert path_like("jobs.drift.yaml") == "jobs.drift.yaml" and not exists("jobs.drift.yaml", ROOT / "README.md")
    assert path_like("workbench run explore") is None and path_like("reports/runs/<notebook>/") is None
    assert module_name_exists("workbench.data.catalog") and module_name_exists("workbench.config.Settings")
    assert module_name_exists("workbench.hub.apply_config")  # exported through __all__ (loaded lazily)
    assert not module_name_exists("workbench.data.no_such_thing")
    assert not module_name_exists("workbench.no_such_module")


def test_settings_page_lists_every_setting():
    """The settings table is generated at build time (mkdocs_hooks.py) from the dataclass, one row per setting."""
    import dataclasses
    import importlib.util

    from workbench.config import Settings

    spec = importlib.util.spec_from_file_location("mkdocs_hooks", ROOT / "mkdocs_hooks.py")
    hooks = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hooks)
    page = (DOCS / "how-to" / "settings.md").read_text(encoding="utf-8")
    assert hooks.MARKER in page
    table = hooks.on_page_markdown(page, None, None, None)
    public = [f.name for f in dataclasses.fields(Settings) if not f.metadata.get("internal")]
    assert public and all(f"| `{name}` |" in table for name in public)
    assert "workbench-dev-salt-change-me" not in table  # secrets are not printed, not even the development default
