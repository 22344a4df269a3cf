"""Vended read folders: how a reader reaches a governed view's files, one audited read at a time.

In production `workbench data publish --permissions` leaves a view's folders to the data service
account alone (0700); its files stay readable by the groups the view is for, but no path a reader can
traverse leads to them. For each read it allows, the governance service (running as that account)
makes a folder of its own

    <reads>/<user>/<seq>-<token>/   seq: the audit record of the decision (the grant it names);
                                    token: random, so a folder is never shared or reused (two services
                                    on one lake, or an audit log started afresh, count seq again)

holding hard links to the newest version's files (sub-folders such as partitions re-created), and
answers with its URI. `<reads>` is 0711, `<reads>/<user>` and every folder below it belong to the
service account with an ACL that lets that user alone list and enter them. So a plain
`spark.read.parquet` of the view, or of another user's vended folder, is refused by the filesystem;
a read of one's own vended folder re-reads a grant already on record. Folders expire after
`governed_read_ttl_hours` and are swept when the service starts and, at most once a minute, when it
vends. Hard links need the reads folder on the governed zone's filesystem, and (with Linux's
protected_hardlinks) the service account owning the view's files, which publish --permissions sees to.

The pattern is Unity Catalog's credential vending, with the filesystem as the credential: the
enforcing side hands out access per read instead of the reader holding standing access.
"""

from __future__ import annotations

import errno
import logging
import os
import secrets
import shutil
import stat
import threading
import time
from pathlib import Path

from .. import storage
from ..config import Settings
from ..data.publish import ACL_XATTR, current_version_uri, posix_acl
from ..errors import ConfigError, LakeError, SetupError

__all__ = ["ReadVendor"]

log = logging.getLogger("workbench.governance")
ROOT_MODE, FOLDER_MODE = 0o711, 0o700
SWEEP_EVERY = 60.0  # seconds between sweeps triggered by vending


class ReadVendor:
    """Makes and sweeps the vended read folders under `governed_reads_dir` (local or mounted lakes only)."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.enabled = storage.is_local(settings.reads_uri) and storage.is_local(settings.governed_uri)
        self.root = storage.local_path(settings.reads_uri) if self.enabled else None
        self.ttl = settings.governed_read_ttl_hours * 3600.0
        self._lock = threading.Lock()
        self._last_sweep = 0.0

    def vend(self, user: str, uid: int, dataset: str, view: str, seq: int) -> str | None:
        """The URI of a new folder holding the current version of `view`, readable by `uid` alone; None when the
        view has never been published (or the lake is not local, where hard links cannot be made)."""
        if not self.enabled:
            return None
        source = current_version_uri(self.settings, dataset, view)
        if source is None:
            return None
        if time.time() - self._last_sweep >= SWEEP_EVERY:
            self.sweep()
        target = self._new_folder(self._user_folder(user, uid), int(seq))
        try:
            self._copy_tree(storage.local_path(source), target, uid)
        except BaseException:
            shutil.rmtree(target, ignore_errors=True)
            raise
        return target.as_uri()

    @staticmethod
    def _new_folder(parent: Path, seq: int) -> Path:
        """A folder made here and now for one read (never one that existed before: mkdir is the test)."""
        while True:
            target = parent / f"{seq}-{secrets.token_hex(4)}"
            try:
                target.mkdir(mode=FOLDER_MODE)
                return target
            except FileExistsError:
                continue

    def sweep(self, now: float | None = None) -> list[Path]:
        """Remove vended folders older than the TTL; returns what was removed."""
        if not self.enabled or not self.root.is_dir():
            return []
        now = time.time() if now is None else now
        removed = []
        with self._lock:
            self._last_sweep = time.time()
            for user_dir in _real_dirs(self.root):
                for read in _real_dirs(user_dir):
                    if now - read.lstat().st_mtime > self.ttl:
                        shutil.rmtree(read, ignore_errors=True)
                        removed.append(read)
        if removed:
            log.info("removed %d expired read folder(s) from %s", len(removed), self.root)
        return removed

    # ---- folders ---------------------------------------------------------------------------------
    def _user_folder(self, user: str, uid: int) -> Path:
        if not user or "/" in user or user in (".", ".."):
            raise ConfigError(f"cannot vend a read folder for the account name {user!r}")
        self._own_dir(self.root, ROOT_MODE, None)
        folder = self.root / user
        self._own_dir(folder, FOLDER_MODE, uid)
        return folder

    def _own_dir(self, path: Path, mode: int, uid: int | None) -> None:
        """A folder of this account (made if missing; never a link or someone else's), with `uid` let in."""
        try:
            path.mkdir(mode=mode)
        except FileExistsError:
            pass
        st = path.lstat()
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
            raise SetupError(
                f"{path} is not a folder of the data service account (uid {os.geteuid()}): remove it, or point "
                "setting governed_reads_dir at a folder this account owns."
            )
        if stat.S_IMODE(st.st_mode) != mode and uid is None:
            os.chmod(path, mode)
        if uid is not None:
            _let_in(path, uid)

    def _copy_tree(self, source: Path, target: Path, uid: int) -> None:
        """`target` (new, empty) mirrors `source`: the same folders (this account's, `uid` let in), hard links to
        its files."""
        for folder, dirs, files in os.walk(source):
            rel = Path(folder).relative_to(source)
            into = target / rel
            if rel != Path("."):
                into.mkdir(mode=FOLDER_MODE)
            for name in files:
                src = Path(folder, name)
                if not stat.S_ISREG(src.lstat().st_mode):
                    continue  # only regular files: a link in the view is never followed
                try:
                    os.link(src, into / name, follow_symlinks=False)
                except OSError as exc:
                    raise self._link_error(exc, src) from None
            _let_in(into, uid)

    def _link_error(self, exc: OSError, src: Path) -> Exception:
        if exc.errno == errno.EXDEV:
            return ConfigError(
                f"Read folders are hard links to the governed views, but {self.root} (setting governed_reads_dir) is on "
                f"another filesystem than {src.parent}. Put it on the governed zone's filesystem (default <lake_root>/reads)."
            )
        if exc.errno in (errno.EPERM, errno.EACCES):
            return SetupError(
                f"The data service account (uid {os.geteuid()}) may not link {src}: with protected_hardlinks it must own "
                "the view's files. Run `workbench data publish --permissions` as root or the service account."
            )
        return LakeError(f"Could not make a read folder from {src} ({exc.strerror or exc.__class__.__name__}).")


def _let_in(path: Path, uid: int) -> None:
    """Owner rwx, `uid` r-x, nobody else: the ACL of a vended folder."""
    try:
        os.setxattr(path, ACL_XATTR, posix_acl(7, 0, (), uids=(uid,), user_perm=5), follow_symlinks=False)
    except OSError as exc:
        if exc.errno in (errno.ENOTSUP, errno.EOPNOTSUPP):
            raise SetupError(
                f"{path}: this filesystem does not support POSIX ACLs, which vended read folders need (one reader per "
                "folder). Mount it with ACL support (ext4/xfs have it by default)."
            ) from exc
        raise


def _real_dirs(path: Path) -> list[Path]:
    out = []
    for child in path.iterdir():
        try:
            if stat.S_ISDIR(child.lstat().st_mode):
                out.append(child)
        except FileNotFoundError:
            pass
    return out
