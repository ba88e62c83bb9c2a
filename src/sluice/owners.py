"""Owners: who a stored or streamed thing belongs to, as the string stored with it.

Every conversation, message (through its conversation), stream and usage record carries
one of these. Reading, changing, resuming or stopping it needs the same owner — or the
admin, who may reach anything explicitly. Another principal gets a 404, never a hint
that the thing exists.

- ``key:<id>``: an API key (and the browser sessions opened with it);
- ``admin``: the master key (and its sessions);
- ``local``: the person running the in-process CLI on the data directory;
- ``anonymous``: everyone, on an open gateway (no authentication required).
"""

from __future__ import annotations

ADMIN = "admin"
LOCAL = "local"
ANONYMOUS = "anonymous"
KEY_PREFIX = "key:"


def key_owner(key_id: str) -> str:
    return KEY_PREFIX + key_id


def visible_to(owner: str) -> tuple[str, ...]:
    """The owners whose things ``owner`` sees by default. The local CLI user also sees
    the open gateway's anonymous conversations: on loopback they are the same person,
    and ``sluice chat -c`` continues what the browser started."""
    if owner == LOCAL:
        return (LOCAL, ANONYMOUS)
    return (owner,)


def may_reach(principal_owner: str, thing_owner: str) -> bool:
    """Whether ``principal_owner`` may read or change a thing of ``thing_owner`` by id."""
    return principal_owner in (ADMIN, LOCAL) or thing_owner in visible_to(principal_owner)
