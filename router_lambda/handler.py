"""The Lambda entry point, `router_lambda.handler.handler(event, context)`.

Cold starts are paid on every scale-out, so this module's import graph is the router's only: the
settings, the key layout, S3 access, urllib3 and tenacity for the server, Celery's producer for SQS.
No torch, whisperx, FastAPI, numpy, PyAV or engine (a test imports it in a clean process and checks).

It returns the decisions. It raises only when a chunk could not be placed (queueing or the
completion check failed): Lambda then reports the invocation failed and EventBridge retries the
event (the template's retry policy, then its dead-letter queue), which is safe because every path
is idempotent. A malformed or poison event never raises: it is logged as `skipped` and dropped.
"""

from __future__ import annotations

import os
from typing import Any

# The router uses no pydantic plugin, and looking for one (when the settings model is built) reads the
# entry points of every installed distribution: 15-35 ms of a cold start in a full environment. Off
# while the handler's graph imports, then as it was (a process that imports the handler, such as the
# local stack, passes its environment on to others); an explicit PYDANTIC_DISABLE_PLUGINS wins.
_PLUGINS = "PYDANTIC_DISABLE_PLUGINS"
_plugins_given = os.environ.get(_PLUGINS)
os.environ[_PLUGINS] = "__all__" if _plugins_given is None else _plugins_given
try:
    from router_lambda.direct import Deadline
    from router_lambda.route import counts, errors, route_event
    from transcription.settings import get_settings
finally:
    if _plugins_given is None:
        del os.environ[_PLUGINS]


class RouterError(RuntimeError):
    """Some record could not be placed; the whole event is delivered again (all paths are idempotent)."""


def handler(event: Any, context: Any = None) -> dict[str, Any]:
    decisions = route_event(event, get_settings(), Deadline(context),
                            request_id=getattr(context, "aws_request_id", None))
    failed = list(errors(decisions))
    if failed:
        raise RouterError(f"{len(failed)} of {len(decisions)} records could not be routed: "
                          + "; ".join(f"{d.key}: {d.reason}" for d in failed)[:2000])
    return {"decisions": [d.as_dict() for d in decisions], "counts": counts(decisions)}
