"""Local-profile accounts: NativeAuthenticator's users (bcrypt password hashes) in the hub database.

People normally sign up at /hub/signup and an admin authorizes them at /hub/authorize. These
functions are for the first admin (created before the hub starts, so nobody can sign up under that
name first) and for an admin who sets a password for someone by command.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from ..config import Settings
from ..errors import ConfigError
from .configure import database_url
from .users import NAME_RE

__all__ = ["account_exists", "set_password", "check_password_strength", "MIN_PASSWORD_LENGTH"]

MIN_PASSWORD_LENGTH = 8  # the same minimum NativeAuthenticator is configured with


def check_password_strength(password: str) -> None:
    """Raise ConfigError if NativeAuthenticator (as configured by workbench.hub) would refuse this password."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ConfigError(f"The password must have at least {MIN_PASSWORD_LENGTH} characters.")
    common = (
        Path(importlib.util.find_spec("nativeauthenticator").submodule_search_locations[0]) / "common-credentials.txt"
    )
    if common.is_file() and password in set(common.read_text().splitlines()):
        raise ConfigError("That password is on the list of common passwords. Choose another.")


def _session(settings: Settings):
    if settings.profile != "local":
        raise ConfigError(
            "Hub accounts with passwords exist only in the local profile; in production people log in "
            "with their system (PAM) or OAuth accounts."
        )
    from jupyterhub import orm
    from nativeauthenticator.orm import UserInfo  # registers its table with the hub's metadata

    settings.path("hub_state_dir").mkdir(parents=True, exist_ok=True, mode=0o700)
    # The hub's own factory: creates or checks the schema exactly as the hub will at start.
    return orm.new_session_factory(database_url(settings))(), UserInfo


def account_exists(settings: Settings, username: str) -> bool:
    db, UserInfo = _session(settings)
    try:
        return UserInfo.find(db, username.lower()) is not None
    finally:
        _close(db)


def _close(db) -> None:
    engine = db.get_bind()
    db.close()
    engine.dispose()


def set_password(settings: Settings, username: str, password: str) -> bool:
    """Create an authorized account, or reset its password; True if it was created."""
    import bcrypt

    username = username.lower()
    if not NAME_RE.match(username):
        raise ConfigError(f"User name '{username}' is invalid: expected lowercase letters, digits, '.', '_' or '-'.")
    check_password_strength(password)
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt())
    db, UserInfo = _session(settings)
    try:
        info = UserInfo.find(db, username)
        created = info is None
        if created:
            db.add(UserInfo(username=username, password=hashed, is_authorized=True))
        else:
            info.password, info.is_authorized = hashed, True
        db.commit()
        return created
    finally:
        _close(db)
