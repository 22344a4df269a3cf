"""`workbench data publish`: materialise each dataset's governed views into the governed zone, and
(on a local or mounted lake) set filesystem permissions so the files themselves enforce the grants.

Layout (docs/how-to/data-governance.md gives the same on HDFS):

    <lake>/raw/<dataset>/                        service account + groups with `full`   (dirs 0750, files 0640)
    <governed>/<dataset>/masked/v<time>-<id>/    folders: service account only (0700); files: + groups with `masked`
    <governed>/<dataset>/filtered-<group>/v.../  the same, files: + that group (its level, its row filter)
    <reads>/<user>/<seq>-<random>/               vended per allowed read by the governance service: hard links
                                                 to the view's files, folders readable by that user alone
    <audit>/                                     service account, mode 0700 (only the governance service writes it)

No path reaches a view's files except a folder the governance service vended for one audited read
(`workbench.governance.reads`), so a plain `spark.read.parquet` of a view is refused by the filesystem.

A view is written to `_staging-<id>` beside its versions and renamed to `v<time>-<id>` when
complete: a rename to a new name is atomic on local filesystems and HDFS, so readers (who take the
newest `v*`) see the previous version or the new one, never a partial one. The two newest versions
are kept so a reader that started on the previous one can finish.

More than one group per folder needs POSIX ACLs; they are written as the `system.posix_acl_access`
extended attribute (the format of acl(5)), so no `setfacl` binary is needed.
"""

from __future__ import annotations

import datetime as dt
import errno
import grp
import logging
import os
import pwd
import struct
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .. import storage
from ..config import Settings, load_settings
from ..errors import AccessDenied, ConfigError, LakeError, SetupError
from ..identity import current_identity
from . import audit
from .catalog import LEVEL_FULL, Catalog, Dataset, load_catalog
from .keys import DEFAULT_SALT, HashKey, hash_key
from .policy import VIEW_RAW, Grant, effective_grant, govern, readers_of, views_of

log = logging.getLogger(__name__)

__all__ = ["publish", "PublishedView", "view_uri", "current_version_uri", "KEEP_VERSIONS", "DEFAULT_SALT"]

KEEP_VERSIONS = 2
DIR_MODE, FILE_MODE, ZONE_MODE, AUDIT_MODE, PRIVATE_DIR_MODE = 0o750, 0o640, 0o711, 0o700, 0o700


@dataclass
class PublishedView:
    dataset: str
    view: str
    uri: str
    readers: list[str]
    permissions: bool
    warnings: list[str] = field(default_factory=list)


def view_uri(settings: Settings, dataset: str, view: str) -> str:
    return f"{settings.governed_uri}/{dataset}/{view}"


def current_version_uri(settings: Settings, dataset: str, view: str, spark=None) -> str | None:
    """The newest complete version of a governed view, or None when it was never published."""
    base = view_uri(settings, dataset, view)
    versions = [name for name in storage.list_dir(base, spark) if name.startswith("v")]
    return f"{base}/{max(versions)}" if versions else None


def publish(
    settings: Settings | None = None,
    spark=None,
    datasets: Sequence[str] | None = None,
    permissions: bool | None = None,
    progress: Callable[[str], None] = print,
) -> list[PublishedView]:
    """Write the governed views of `datasets` (default: all) and return what was written.

    `permissions` (default: on in the production profile for a local lake) also sets owner, group,
    mode and ACLs on the raw dataset folders, the governed views and the audit folder; it needs root
    or the service account. The caller must have `full` access to every dataset it publishes.
    """
    from ..spark import get_spark

    settings = settings or load_settings()
    if settings.profile == "production" and not settings.mask_key_file and settings.mask_salt == DEFAULT_SALT:
        raise ConfigError(
            "setting 'mask_salt' still has its development default in the production profile: hashed columns "
            "would be reversible by anyone who knows it. Production hashes are HMAC-SHA256 with a key file: set "
            "WORKBENCH_MASK_KEY_FILE to a file only the data service account can read."
        )
    key = hash_key(settings)  # production: the HMAC key file, checked before any work
    catalog = load_catalog(settings)
    names = list(datasets) if datasets else sorted(catalog.datasets)
    chosen = [catalog.get(name) for name in names]
    identity = current_identity(settings)
    for ds in chosen:
        grant = effective_grant(catalog, ds, identity.groups)
        if grant is None or grant.level != LEVEL_FULL or grant.row_filter:
            raise AccessDenied(
                f"Publishing dataset '{ds.name}' needs unfiltered 'full' access; '{identity.user}' "
                f"(groups: {', '.join(identity.groups) or 'none'}) has {grant.level if grant else 'none'}. "
                f"Run it as the data service account or a member of a group the catalog grants 'full' (owner: {ds.owner})."
            )
    local = storage.is_local(settings.governed_uri)
    if permissions is None:
        permissions = settings.profile == "production" and local
    perms = _Permissions(settings) if permissions else None
    if perms and not local:
        raise SetupError(
            f"Filesystem permissions can be set here only on a local or mounted lake; {settings.governed_uri} is not. "
            "Apply the owner, group and ACL layout of docs/how-to/data-governance.md with `hdfs dfs -setfacl`, or run without --permissions."
        )
    if perms:
        perms.audit_folder(audit.audit_folder(settings))
        if storage.is_local(settings.reads_uri):
            perms.zone(storage.local_path(settings.reads_uri))  # where the governance service vends reads
    spark = spark or get_spark("workbench-data-publish", settings)
    written: list[PublishedView] = []
    for ds in chosen:
        raw = _read_raw(spark, ds)
        if perms and storage.is_local(ds.uri):
            perms.zone(storage.local_path(ds.uri).parent)
            perms.restrict(storage.local_path(ds.uri), readers_of(catalog, ds, VIEW_RAW), f"{ds.name}/raw")
        if perms:
            perms.zone(storage.local_path(settings.governed_uri))
            perms.zone(storage.local_path(f"{settings.governed_uri}/{ds.name}"))
        for grant in views_of(catalog, ds):
            readers = readers_of(catalog, ds, grant.view)
            uri = _write_view(settings, spark, catalog, ds, raw, grant, readers, perms, key)
            audit.record(
                settings,
                user=identity.user,
                groups=list(identity.groups),
                source=identity.source,
                dataset=ds.name,
                level=grant.level,
                view=grant.view,
                row_filter=grant.row_filter,
                purpose="publish",
                outcome="allowed",
            )
            written.append(
                PublishedView(ds.name, grant.view, uri, readers, bool(perms), perms.take_warnings() if perms else [])
            )
            progress(
                f"  {ds.name:<10} {grant.view:<24} -> {uri}  (readers: {', '.join(readers) or 'service account only'})"
            )
    return written


def _read_raw(spark, ds: Dataset):
    try:
        return spark.read.format(ds.format).load(ds.uri)
    except Exception as exc:
        raise LakeError(
            f"Dataset '{ds.name}' could not be read from {ds.uri} ({exc.__class__.__name__}). Run `workbench lake init` if this is the sample lake."
        ) from exc


def _write_view(
    settings: Settings,
    spark,
    catalog: Catalog,
    ds: Dataset,
    raw,
    grant: Grant,
    readers: list[str],
    perms: _Permissions | None,
    key: HashKey,
) -> str:
    base = view_uri(settings, ds.name, grant.view)
    if perms:
        storage.local_path(base).mkdir(parents=True, exist_ok=True)
        perms.restrict(storage.local_path(base), readers, f"{ds.name}/{grant.view}", recursive=False, private_dirs=True)
    df = govern(raw, catalog, ds, grant, key)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")
    token = uuid.uuid4().hex[:8]
    staging, final = f"{base}/_staging-{token}", f"{base}/v{stamp}-{token}"
    writer = df.write.mode("errorifexists")
    parts = [p for p in ds.partitioning if p in df.columns]
    if parts:
        writer = writer.partitionBy(*parts)
    try:
        writer.parquet(staging)
        if perms:
            perms.restrict(storage.local_path(staging), readers, f"{ds.name}/{grant.view}", private_dirs=True)
        storage.rename(staging, final, spark)
    except Exception as exc:
        storage.delete(staging, spark)
        if isinstance(exc, (SetupError, LakeError)):
            raise
        raise LakeError(
            f"Could not write the '{grant.view}' view of dataset '{ds.name}' to {base} ({exc.__class__.__name__}). "
            "Check that the governed zone (setting governed_dir) is writable by this account."
        ) from exc
    versions = sorted(name for name in storage.list_dir(base, spark) if name.startswith("v"))
    for old in versions[:-KEEP_VERSIONS]:
        storage.delete(f"{base}/{old}", spark)
    return final


# ---- local filesystem permissions ------------------------------------------------------------
ACL_XATTR = "system.posix_acl_access"
_ACL_VERSION, _UNDEFINED = 2, 0xFFFFFFFF
_USER_OBJ, _USER, _GROUP_OBJ, _GROUP, _MASK, _OTHER = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20


def posix_acl(
    owner_perm: int, group_perm: int, extra_gids: Sequence[int], uids: Sequence[int] = (), user_perm: int = 0
) -> bytes:
    """A POSIX access ACL in the kernel's xattr format: owner, named users, owning group, named groups,
    mask, no others (entries in the kernel's order: by tag, then id)."""
    entries = [(_USER_OBJ, owner_perm, _UNDEFINED)]
    entries += [(_USER, user_perm, uid) for uid in sorted(set(uids))]
    entries += [(_GROUP_OBJ, group_perm, _UNDEFINED)]
    entries += [(_GROUP, group_perm, gid) for gid in sorted(set(extra_gids))]
    mask = group_perm | (user_perm if uids else 0)
    entries += [(_MASK, mask, _UNDEFINED), (_OTHER, 0, _UNDEFINED)]
    return struct.pack("<I", _ACL_VERSION) + b"".join(struct.pack("<HHI", *e) for e in entries)


class _Permissions:
    """Owner, group, mode and ACLs on local paths, for the service account and the reader groups."""

    def __init__(self, settings: Settings):
        try:
            user = pwd.getpwnam(settings.service_user)
        except KeyError:
            raise SetupError(
                f"The data service account '{settings.service_user}' (setting service_user) is not a system user here. "
                f"Create it (`useradd --system {settings.service_user}`) or set WORKBENCH_SERVICE_USER."
            ) from None
        self.uid, self.gid = user.pw_uid, user.pw_gid
        self._warnings: list[str] = []

    def take_warnings(self) -> list[str]:
        out, self._warnings = self._warnings, []
        return out

    def _gids(self, groups: Sequence[str], what: str) -> list[int]:
        gids = []
        for name in groups:
            try:
                gids.append(grp.getgrnam(name).gr_gid)
            except KeyError:
                message = f"{what}: no system group '{name}'; its members cannot read it until the group exists (hub groups mirror Unix groups)."
                log.warning(message)
                self._warnings.append(message)
        return gids

    def zone(self, path: Path) -> None:
        """A zone root: the service account owns it; others may pass through but not list it."""
        path.mkdir(parents=True, exist_ok=True)
        os.chown(path, self.uid, self.gid)
        os.chmod(path, ZONE_MODE)

    def audit_folder(self, path: Path) -> None:
        """Owner-only, the service account's: the governance service is its only writer (see workbench.data.audit)."""
        path.mkdir(parents=True, exist_ok=True)
        os.chown(path, self.uid, self.gid, follow_symlinks=False)
        os.chmod(path, AUDIT_MODE, follow_symlinks=False)
        for child in path.iterdir():
            os.chown(child, self.uid, self.gid, follow_symlinks=False)
            if not child.is_symlink():
                os.chmod(child, 0o600)

    def restrict(
        self, root: Path, groups: Sequence[str], what: str, recursive: bool = True, private_dirs: bool = False
    ) -> None:
        """Files (and folders) readable by the service account and `groups`. With `private_dirs`, folders are the
        service account's alone (0700): the files are then reached only through the folders it vends per read."""
        gids = self._gids(groups, what)
        group = gids[0] if gids else self.gid
        paths = [root]
        if recursive and root.is_dir():
            for folder, dirs, files in os.walk(root):
                paths += [Path(folder, d) for d in dirs] + [Path(folder, f) for f in files]
        for path in paths:
            is_dir = path.is_dir()
            if is_dir and private_dirs:
                os.chown(path, self.uid, self.gid, follow_symlinks=False)
                os.chmod(path, PRIVATE_DIR_MODE)
                self._acl(path, is_dir, ())
                continue
            os.chown(path, self.uid, group, follow_symlinks=False)
            os.chmod(path, DIR_MODE if is_dir else FILE_MODE)
            self._acl(path, is_dir, gids[1:])

    @staticmethod
    def _acl(path: Path, is_dir: bool, extra_gids: Sequence[int]) -> None:
        if not extra_gids:
            try:
                os.removexattr(path, ACL_XATTR)
            except OSError as exc:
                if exc.errno not in (errno.ENODATA, errno.ENOTSUP, errno.EOPNOTSUPP):
                    raise
            return
        owner, group = (7, 5) if is_dir else (6, 4)
        try:
            os.setxattr(path, ACL_XATTR, posix_acl(owner, group, extra_gids))
        except OSError as exc:
            if exc.errno in (errno.ENOTSUP, errno.EOPNOTSUPP):
                raise SetupError(
                    f"{path}: this filesystem does not support POSIX ACLs, which are needed when more than one group may "
                    "read a folder. Mount it with ACL support (ext4/xfs have it by default) or grant one group per view."
                ) from exc
            raise
