"""The idle worker's stop action: nothing, or stop/terminate the EC2 instance it runs on.

The instance id comes from the instance metadata service (IMDSv2: a session token, then the id),
at botocore's `AWS_EC2_METADATA_SERVICE_ENDPOINT` when set; the call goes through boto3, so the
instance role needs `ec2:StopInstances` / `ec2:TerminateInstances` on itself only.
"""

from __future__ import annotations

import logging
import os
import urllib.request

import boto3

from transcription.errors import NetworkError
from transcription.settings import Settings, get_settings

log = logging.getLogger(__name__)

IMDS_DEFAULT = "http://169.254.169.254"


def instance_id(timeout_s: float = 2.0) -> str:
    """This machine's EC2 instance id, from IMDSv2."""
    endpoint = os.environ.get("AWS_EC2_METADATA_SERVICE_ENDPOINT", IMDS_DEFAULT).rstrip("/")
    try:
        req = urllib.request.Request(f"{endpoint}/latest/api/token", method="PUT",
                                     headers={"X-aws-ec2-metadata-token-ttl-seconds": "60"})
        with urllib.request.urlopen(req, timeout=timeout_s) as r:
            token = r.read().decode()
        req = urllib.request.Request(f"{endpoint}/latest/meta-data/instance-id",
                                     headers={"X-aws-ec2-metadata-token": token})
        with urllib.request.urlopen(req, timeout=timeout_s) as r:
            iid = r.read().decode().strip()
    except OSError as e:
        raise NetworkError(f"instance metadata service at {endpoint} did not answer: {e}") from e
    if not iid.startswith("i-"):
        raise NetworkError(f"instance metadata returned an unexpected instance id {iid[:40]!r}")
    return iid


def run_stop_action(action: str | None = None, settings: Settings | None = None) -> str | None:
    """Carry out `WORKER_STOP_ACTION`; returns the instance id acted on (None for `none`)."""
    s = settings or get_settings()
    action = action or s.worker_stop_action
    if action == "none":
        return None
    if action not in ("stop", "terminate"):
        raise ValueError(f"unknown stop action {action!r}")

    iid = instance_id()
    ec2 = boto3.session.Session().client("ec2", region_name=s.aws_region)
    log.warning("idle_stop_action action=%s instance=%s", action, iid)
    if action == "stop":
        ec2.stop_instances(InstanceIds=[iid])
    else:
        ec2.terminate_instances(InstanceIds=[iid])
    return iid
