"""Authenticators whose group membership comes from the users file.

`UsersFileGroups` wraps any JupyterHub authenticator: whoever the wrapped one lets in, the groups are
the ones the users file declares, applied by the hub (`manage_groups`) at login and at every auth
refresh, so removing someone from a group in the file takes effect without a restart.
"""

from __future__ import annotations

from jupyterhub.auth import Authenticator, PAMAuthenticator
from jupyterhub.utils import maybe_future
from nativeauthenticator import NativeAuthenticator
from traitlets import Unicode

from .users import CachedUsersFile

__all__ = ["UsersFileGroups", "NativeUsersFileAuthenticator", "PAMUsersFileAuthenticator"]


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


class NativeUsersFileAuthenticator(UsersFileGroups, NativeAuthenticator):
    """Local profile: each person has their own password (NativeAuthenticator, stored bcrypt-hashed in the hub DB)."""


class PAMUsersFileAuthenticator(UsersFileGroups, PAMAuthenticator):
    """Production profile: system accounts (PAM)."""
