"""The secret behind `hash` masks.

Production: HMAC-SHA256 with a key read from the file named by the `mask_key_file` setting, which
only the data service account may read (a regular file it owns, mode 0600 or 0400; `publish`, run as
that account, is the only reader). Without it the production profile refuses to hash, and a key that is
short or equal to the development salt is refused too: a known or guessable key lets anyone hash a
dictionary of likely values (FAA-shaped tail numbers) and reverse the pseudonyms.

Development (`local` profile, no key file): SHA-256 of `mask_salt` + the value, with the
development salt by default. Good enough to exercise the masks, not to protect anything.

The key never appears in a message, a repr or the audit log.
"""

from __future__ import annotations

import os
import pwd
import stat
from dataclasses import dataclass, field
from pathlib import Path

from ..config import Settings
from ..errors import ConfigError

__all__ = ["HashKey", "hash_key", "read_key_file", "DEFAULT_SALT", "MIN_KEY_BYTES"]

DEFAULT_SALT = "workbench-dev-salt-change-me"
MIN_KEY_BYTES = 32


@dataclass(frozen=True)
class HashKey:
    """How `hash` masks are computed: HMAC-SHA256 with `secret` (hmac=True) or SHA-256 of secret + value."""

    secret: bytes = field(repr=False)
    hmac: bool
    source: str  # where the secret came from, for messages (never the secret)


def hash_key(settings: Settings) -> HashKey:
    """The hash key the settings call for. Raises ConfigError naming the setting and what to do."""
    if settings.mask_key_file:
        path = settings.path("mask_key_file")
        owner = settings.service_user if settings.profile == "production" else None
        return HashKey(read_key_file(path, owner), True, f"mask_key_file {path}")
    if settings.profile == "production":
        raise ConfigError(
            "setting 'mask_key_file' is empty in the production profile: hash masks there are HMAC-SHA256 with a "
            "secret key, read from a file only the data service account can read. Create one (e.g. `head -c 32 "
            "/dev/urandom | base64 > /etc/workbench/mask.key; chmod 600 /etc/workbench/mask.key`, owned by the "
            "service account) and set WORKBENCH_MASK_KEY_FILE."
        )
    return HashKey(settings.mask_salt.encode(), False, "mask_salt")


def read_key_file(path: Path, owner: str | None = None) -> bytes:
    """The key in `path` (surrounding whitespace stripped), refusing a file others could read or replace,
    and, when `owner` is given (production: the service account), a file another account owns."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        raise ConfigError(
            f"setting 'mask_key_file': {path} does not exist. Create the key file or fix the setting."
        ) from None
    except PermissionError:
        raise ConfigError(
            f"setting 'mask_key_file': this account cannot read {path}. Only the data service account reads the hash "
            "key: publish governed views as that account (`workbench data publish`); readers never need it."
        ) from None
    except OSError as exc:  # ELOOP: a symbolic link
        raise ConfigError(
            f"setting 'mask_key_file': {path} could not be opened ({exc.strerror}); it must be a regular file, not a link."
        ) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ConfigError(f"setting 'mask_key_file': {path} is not a regular file.")
        if owner is not None and st.st_uid != _uid(owner):
            raise ConfigError(
                f"setting 'mask_key_file': {path} is owned by uid {st.st_uid}, not by the data service account "
                f"'{owner}' (setting service_user); its owner can read the hash key. `chown {owner}` it."
            )
        if st.st_mode & 0o077:
            raise ConfigError(
                f"setting 'mask_key_file': {path} has mode {stat.S_IMODE(st.st_mode):04o}, so other accounts can read "
                "or change the hash key. Make it readable by its owner (the data service account) alone: chmod 600."
            )
        data = b""
        while chunk := os.read(fd, 65536):
            data += chunk
    finally:
        os.close(fd)
    key = data.strip()
    if key == DEFAULT_SALT.encode():
        raise ConfigError(
            f"setting 'mask_key_file': {path} holds the development salt, which is public; hashed columns would be "
            "reversible by anyone. Write a random key into it."
        )
    if len(key) < MIN_KEY_BYTES:
        raise ConfigError(
            f"setting 'mask_key_file': the key in {path} has {len(key)} bytes; use at least {MIN_KEY_BYTES} random "
            "bytes (e.g. `head -c 32 /dev/urandom | base64`)."
        )
    return key


def _uid(user: str) -> int:
    try:
        return pwd.getpwnam(user).pw_uid
    except KeyError:
        raise ConfigError(
            f"setting 'service_user': '{user}' is not a system user here, so the owner of the hash key file cannot "
            "be checked. Create the account or fix the setting."
        ) from None
