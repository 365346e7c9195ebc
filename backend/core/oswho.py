"""Who is at the keyboard: the OS user the audit log names for console and CLI actions."""

from __future__ import annotations

import getpass
import os


def os_user(environ: dict[str, str] | None = None) -> str:
    """`SUDO_USER` when run through sudo (the person, not root), else the login name.

    Falls back through the login name of the controlling terminal, the password database
    (via `getpass.getuser`, which reads LOGNAME/USER/LNAME/USERNAME first), and finally the
    numeric uid, so that it always answers something an auditor can trace.
    """
    env = os.environ if environ is None else environ
    sudo_user = (env.get("SUDO_USER") or "").strip()
    if sudo_user:
        return sudo_user
    try:
        name = os.getlogin()
        if name:
            return name
    except OSError:
        pass  # no controlling terminal (systemd, cron, tests)
    try:
        name = getpass.getuser()
        if name:
            return name
    except (KeyError, OSError):
        pass
    return f"uid:{os.getuid()}" if hasattr(os, "getuid") else "unknown"
