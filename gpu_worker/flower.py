"""`stt-router flower`: Flower reading the task events wherever the workers send them, behind basic auth.

With the SQS broker the workers and beat publish their events over Redis (`tasks.monitoring`), so Flower
runs with `--broker <REDIS_URL>`; with a Redis broker it reads the broker itself. Basic auth is on
by default: Flower reads `FLOWER_BASIC_AUTH` (`user:password[,user2:password2]`) from the
environment itself, so the password never appears on a command line; without it the command
refuses to start unless `--insecure-no-auth` is given.
"""

from __future__ import annotations

import os
import sys

from tasks.monitoring import events_broker_url
from transcription.settings import Settings

APP = "tasks.celery_app:app"


class FlowerAuthError(ValueError):
    pass


def check_basic_auth(value: str | None) -> list[str]:
    """The users in a `FLOWER_BASIC_AUTH` value; raises with the reason when it would not protect Flower."""
    if not value:
        raise FlowerAuthError("FLOWER_BASIC_AUTH is not set: Flower would be open to anyone who can reach it. "
                              "Set FLOWER_BASIC_AUTH=user:password, or pass --insecure-no-auth (local use only)")
    users = []
    for entry in value.split(","):
        user, sep, password = entry.partition(":")
        if not sep or not user.strip() or not password:
            raise FlowerAuthError("FLOWER_BASIC_AUTH must be user:password (comma-separated for several users; "
                                  "a password cannot contain a comma)")
        users.append(user)
    return users


def flower_command(settings: Settings, *, port: int, address: str, url_prefix: str | None = None,
                   insecure_no_auth: bool = False) -> tuple[list[str], dict[str, str]]:
    """The argv and environment that run Flower for this deployment (checked; nothing started)."""
    auth = settings.flower_basic_auth.get_secret_value() if settings.flower_basic_auth else None
    env = dict(os.environ)
    if auth or not insecure_no_auth:
        check_basic_auth(auth)
        env["FLOWER_BASIC_AUTH"] = auth or ""
    broker = events_broker_url(settings)
    env["CELERY_BROKER_URL"] = broker  # the Flower process's app reads the settings too
    argv = [sys.executable, "-m", "celery", "--broker", broker, "-A", APP, "flower",
            f"--port={port}", f"--address={address}"]
    if url_prefix:
        argv.append(f"--url_prefix={url_prefix.strip('/')}")
    return argv, env


def exec_flower(argv: list[str], env: dict[str, str]) -> None:
    """Replace this process with Flower (signals such as Ctrl-C reach it directly)."""
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(argv[0], argv, env)
