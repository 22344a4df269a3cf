"""The repository's notebooks in every server: a read-only shared copy refreshed at each start and a
personal working copy made once, never overwritten; JupyterLab's news off."""

from __future__ import annotations

import json
import os
from pathlib import Path

from workbench.config import load_settings
from workbench.hub.notebooks import LAB_SETTINGS, PERSONAL, SHARED, PreSpawnHooks, ProvideNotebooks, provide_notebooks

REPO = Path(__file__).resolve().parent.parent


def test_first_start_copies_the_notebooks_and_later_starts_keep_the_users_edits(tmp_path):
    source = tmp_path / "repo-notebooks"
    source.mkdir()
    (source / "01_explore.ipynb").write_text('{"v": 1}')
    (source / "scratch.txt").write_text("not a notebook")
    home = tmp_path / "home"
    home.mkdir()

    copied = provide_notebooks(source, home)
    assert [p.name for p in copied] == ["01_explore.ipynb"]
    assert (home / PERSONAL / "01_explore.ipynb").read_text() == '{"v": 1}'
    assert sorted(p.name for p in (home / SHARED).iterdir()) == ["01_explore.ipynb"]
    shared = home / SHARED / "01_explore.ipynb"
    assert not shared.stat().st_mode & 0o222 and not (home / SHARED).stat().st_mode & 0o222  # read-only
    assert json.loads((home / LAB_SETTINGS).read_text())["fetchNews"] == "false"

    # The user edits their copy; the repository changes and gains a notebook; the server restarts.
    (home / PERSONAL / "01_explore.ipynb").write_text('{"mine": true}')
    (source / "01_explore.ipynb").write_text('{"v": 2}')
    (source / "02_train.ipynb").write_text('{"v": 1}')
    copied = provide_notebooks(source, home)
    assert [p.name for p in copied] == ["02_train.ipynb"]
    assert (home / PERSONAL / "01_explore.ipynb").read_text() == '{"mine": true}'  # never overwritten
    assert (home / SHARED / "01_explore.ipynb").read_text() == '{"v": 2}'  # the shared copy follows the repo
    assert os.access(home / PERSONAL / "01_explore.ipynb", os.W_OK)


def test_the_hub_config_runs_the_hook_with_the_group_limits(tmp_path):
    from traitlets.config import Config

    from workbench.hub import apply_config

    settings = load_settings(env={"WORKBENCH_HOME": str(REPO), "WORKBENCH_HUB_STATE_DIR": str(tmp_path)})
    c = Config()
    apply_config(settings, c)
    hook = c.Spawner.pre_spawn_hook
    assert isinstance(hook, PreSpawnHooks)
    [provide] = [h for h in hook.hooks if isinstance(h, ProvideNotebooks)]
    assert provide.source == REPO / "notebooks" and (provide.source / "01_explore.ipynb").is_file()
