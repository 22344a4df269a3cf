"""Local-profile accounts: one bcrypt hash per person in the hub's password file.

The file is FirstUseAuthenticator's `dbm` database (`passwords.dbm` in the hub state folder, owner-only),
read by the hub's login (`workbench.hub.auth.LocalPasswordAuthenticator`). Accounts exist only once an
admin made them here: `workbench hub user NAME` (works while the hub runs) and the first admin, created
before the hub starts. Nobody claims a name by logging in first.
"""

from __future__ import annotations

import dbm
import os
import time
from pathlib import Path

from ..config import Settings
from ..errors import ConfigError
from .users import NAME_RE

__all__ = [
    "account_exists",
    "set_password",
    "check_password",
    "check_password_strength",
    "password_file",
    "stored_hash",
    "MIN_PASSWORD_LENGTH",
]

MIN_PASSWORD_LENGTH = 8
PASSWORD_FILE = "passwords.dbm"  # in the hub state folder (a dbm base name: the files add their own suffixes)
# The 10,000 most common passwords (SecLists, as shipped by jupyterhub-nativeauthenticator, BSD-3-Clause).
COMMON_PASSWORDS = Path(__file__).with_name("common-passwords.txt")
DBM_SUFFIXES = ("", ".db", ".dat", ".dir", ".bak", ".pag")
OPEN_ATTEMPTS = 20  # a dbm file another process holds open for writing: retry for about a second


def check_password_strength(password: str) -> None:
    """Raise ConfigError if the password is too short or on the list of common passwords."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ConfigError(f"The password must have at least {MIN_PASSWORD_LENGTH} characters.")
    if password in set(COMMON_PASSWORDS.read_text().splitlines()):
        raise ConfigError("That password is on the list of common passwords. Choose another.")


def password_file(settings: Settings) -> Path:
    return settings.path("hub_state_dir") / PASSWORD_FILE


def _local(settings: Settings) -> Path:
    if settings.profile != "local":
        raise ConfigError(
            "Hub accounts with passwords exist only in the local profile; in production people log in "
            "with their system (PAM) or OAuth accounts."
        )
    path = password_file(settings)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def _open(path: Path, flag: str):
    for attempt in range(OPEN_ATTEMPTS):
        try:
            return dbm.open(str(path), flag, 0o600)
        except (*dbm.error, OSError) as exc:  # the file does not exist yet (flag "r"), or is locked
            if flag == "r" and not any(Path(f"{path}{s}").exists() for s in DBM_SUFFIXES):
                return None
            if attempt == OPEN_ATTEMPTS - 1:
                raise ConfigError(f"Cannot open the hub's password file {path}: {exc}") from None
            time.sleep(0.05)
    return None


def stored_hash(path: str | Path, username: str) -> bytes | None:
    """The bcrypt hash stored for `username` in the password file at `path`, or None."""
    db = _open(Path(path), "r")
    if db is None:
        return None
    with db:
        return db.get(username.encode())


def check_password(path: str | Path, username: str, password: str) -> bool:
    """True when `username` has an account whose hash matches `password` (constant-time bcrypt check)."""
    import bcrypt

    stored = stored_hash(path, username)
    return stored is not None and bcrypt.checkpw(password.encode(), stored)


def account_exists(settings: Settings, username: str) -> bool:
    return stored_hash(_local(settings), username.lower()) is not None


def set_password(settings: Settings, username: str, password: str) -> bool:
    """Create an account, or reset its password; True if it was created."""
    import bcrypt

    username = username.lower()
    if not NAME_RE.match(username):
        raise ConfigError(f"User name '{username}' is invalid: expected lowercase letters, digits, '.', '_' or '-'.")
    check_password_strength(password)
    path = _local(settings)
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt())
    with _open(path, "c") as db:
        created = db.get(username.encode()) is None
        db[username.encode()] = hashed
    for suffix in DBM_SUFFIXES:  # owner-only, whatever the umask and the dbm flavour
        if (f := Path(f"{path}{suffix}")).is_file():
            os.chmod(f, 0o600)
    return created
