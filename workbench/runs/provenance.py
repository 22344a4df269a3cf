"""Where code came from: the git commit of the project home and whether its tracked files were modified.

One helper for the run record (`git_commit`, `git_dirty` in run.json) and the training run's MLflow tags.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import NamedTuple

__all__ = ["GitState", "git_state"]

GIT_TIMEOUT_S = 10


class GitState(NamedTuple):
    commit: str | None  # None: not a git checkout, or git is missing
    dirty: bool | None  # tracked files modified; None when it could not be told

    def or_unknown(self) -> tuple[str, bool]:
        """(commit or 'unknown', dirty as a bool): the form the MLflow tags take."""
        return self.commit or "unknown", bool(self.dirty)


def git_state(home: str | Path) -> GitState:
    """The HEAD commit of `home` and whether tracked files differ from it (untracked files do not count)."""
    try:
        commit = subprocess.run(
            ["git", "-C", str(home), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=GIT_TIMEOUT_S
        )
        if commit.returncode != 0:
            return GitState(None, None)
        status = subprocess.run(
            ["git", "-C", str(home), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT_S,
        )
        return GitState(commit.stdout.strip() or None, bool(status.stdout.strip()) if status.returncode == 0 else None)
    except (OSError, subprocess.SubprocessError):
        return GitState(None, None)
