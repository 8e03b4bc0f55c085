"""Hand-built broker messages for tests: what a hostile producer could put on the queue."""

from __future__ import annotations

import base64
import json
import os
import pickle
import uuid


class Payload:
    """Unpickling this runs `touch <path>`: the side effect the tests look for."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


def pickle_envelope(queue: str, marker: str, task: str = "tasks.transcribe_chunk") -> dict:
    """A Celery protocol-2 task message whose body is a pickle (kombu's envelope, as JSON)."""
    task_id = str(uuid.uuid4())
    body = pickle.dumps(([Payload(marker), "sessions/x/chunks/0.wav"], {}, {"callbacks": None}))
    return {
        "body": base64.b64encode(body).decode(),
        "content-encoding": "binary",
        "content-type": "application/x-python-serialize",
        "headers": {"lang": "py", "task": task, "id": task_id, "root_id": task_id, "parent_id": None,
                    "retries": 0, "eta": None, "expires": None, "group": None, "argsrepr": "(...)",
                    "kwargsrepr": "{}", "origin": "attacker"},
        "properties": {"correlation_id": task_id, "reply_to": "", "delivery_mode": 2,
                       "delivery_info": {"exchange": "", "routing_key": queue}, "priority": 0,
                       "body_encoding": "base64", "delivery_tag": str(uuid.uuid4())},
    }


def sqs_body(envelope: dict) -> str:
    """kombu's SQS encoding: base64 of the JSON envelope."""
    return base64.b64encode(json.dumps(envelope).encode()).decode()
