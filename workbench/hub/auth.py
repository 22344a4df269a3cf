"""Authenticators whose group membership comes from the users file.

`UsersFileGroups` wraps any JupyterHub authenticator: whoever the wrapped one lets in, the groups are
the ones the users file declares, applied by the hub (`manage_groups`) at login, at every auth refresh
and at hub start (every user the hub knows, so the admin panel shows the file's groups before anyone
logs in), so removing someone from a group in the file takes effect without a restart.

`LocalPasswordAuthenticator` (local profile) is jupyterhub-firstuseauthenticator without its first use:
the password file (`workbench.hub.accounts`) holds one bcrypt hash per person, written only by
`workbench hub user`, so a name nobody created cannot be claimed by logging in under it first. People
change their own password at /hub/auth/change-password; five failed logins lock a name for two minutes.
"""

from __future__ import annotations

import time

from firstuseauthenticator import FirstUseAuthenticator
from firstuseauthenticator.firstuseauthenticator import ResetPasswordHandler
from jupyterhub import orm
from jupyterhub.auth import Authenticator, PAMAuthenticator
from jupyterhub.utils import maybe_future
from sqlalchemy.orm import object_session
from tornado import web
from traitlets import Integer, Unicode

from ..errors import ConfigError
from . import accounts
from .users import CachedUsersFile

__all__ = ["UsersFileGroups", "LocalPasswordAuthenticator", "LocalUsersFileAuthenticator", "PAMUsersFileAuthenticator"]


class UsersFileGroups(Authenticator):
    users_file = Unicode("", config=True, help="Path of the users file (YAML) that declares each user's groups.")

    _users: CachedUsersFile | None = None

    def declared_groups(self, name: str) -> list[str]:
        if self._users is None or str(self._users.path) != self.users_file:
            self._users = CachedUsersFile(self.users_file)
        return self._users.get().groups_for(name)

    async def authenticate(self, handler, data):
        result = await maybe_future(super().authenticate(handler, data))
        if not result:
            return result
        model = {"name": result} if isinstance(result, str) else dict(result)
        model["groups"] = self.declared_groups(model["name"])
        return model

    async def refresh_user(self, user, handler=None):
        result = await maybe_future(super().refresh_user(user, handler))
        if not result:
            return result
        model = {} if result is True else dict(result)
        model["name"] = user.name
        model["groups"] = self.declared_groups(user.name)
        return model

    def add_user(self, user):
        """At hub start, for every user in its database (the users file's are there: `allowed_users`), and
        when an admin adds one: the file's groups, every declared group created even while empty."""
        result = super().add_user(user)
        user = getattr(user, "orm_user", user)  # the hub passes its orm.User at start, a wrapper from the API
        db = object_session(user) if isinstance(user, orm.User) else None
        if db is not None and self.users_file:
            declared = self._users_file().groups
            groups = {}
            for name in declared:
                groups[name] = orm.Group.find(db, name) or orm.Group(name=name)
                db.add(groups[name])
            user.groups = [
                *(g for g in user.groups if g.name not in declared),
                *(groups[name] for name in self.declared_groups(user.name)),
            ]
            db.commit()
        return result

    def _users_file(self):
        self.declared_groups("")  # loads (or reloads) the file
        return self._users.get()


class LocalPasswordAuthenticator(FirstUseAuthenticator):
    allowed_failed_logins = Integer(5, config=True, help="Failed logins in a row that lock a name.")
    lockout_seconds = Integer(120, config=True, help="How long a locked name stays locked.")

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._failures: dict[str, tuple[int, float]] = {}  # name -> (failures in a row, time of the last)

    async def authenticate(self, handler, data):
        name = self.normalize_username(data.get("username", ""))
        count, last = self._failures.get(name, (0, 0.0))
        if count >= self.allowed_failed_logins and time.monotonic() - last < self.lockout_seconds:
            raise web.HTTPError(
                429, f"Too many failed logins for '{name}'. Try again in {self.lockout_seconds // 60} minutes."
            )
        if accounts.check_password(self.dbm_path, name, data.get("password", "")):
            self._failures.pop(name, None)
            return name
        self._failures[name] = (count + 1 if count < self.allowed_failed_logins else 1, time.monotonic())
        return None

    def reset_password(self, username, new_password):
        try:
            accounts.check_password_strength(new_password)
        except ConfigError as exc:
            return str(exc)
        return super().reset_password(username, new_password)

    def get_handlers(self, app):
        # the hub's own login page (FirstUse's replaces it with one that predates JupyterHub 6), and FirstUse's
        # change-password page
        return [(r"/auth/change-password", ResetPasswordHandler)]


class LocalUsersFileAuthenticator(UsersFileGroups, LocalPasswordAuthenticator):
    """Local profile: each person has their own password (bcrypt, in the hub's password file)."""


class PAMUsersFileAuthenticator(UsersFileGroups, PAMAuthenticator):
    """Production profile: system accounts (PAM)."""
