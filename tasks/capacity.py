"""GPU capacity: how many workers the queue asks for, and asking EC2 or Auto Scaling for them.

Two callers, one rule (`transcription.scaling.desired_workers`, the function the cost simulator
runs): the drain asks for capacity for its backlog (never less than the group has), and
`tasks.scale_workers`, every minute on beat, sets the group from the queue's visible and in-flight
messages. `CAPACITY_MODE` picks the mechanism:

- `none`: nothing is started (workers are run by hand or always on); the wish is only logged.
- `ec2`: start stopped instances of `EC2_INSTANCE_IDS`, as many as wanted. Never stops any: an
  idle worker stops its own instance (`WORKER_STOP_ACTION`).
- `asg`: set `ASG_NAME`'s desired capacity, capped at `MAX_GPU_WORKERS` and the group's MaxSize.
  Also lowered, down to 0 with an empty queue: a worker that terminates itself in a group would
  otherwise be replaced at once. Never below the messages in flight, so a busy worker is not
  scaled in when `CHUNKS_PER_WORKER` > 1 (the rule alone would allow it).

`SCALING_POLICY=midnight` never raises capacity outside the drain; the scaler only lowers it.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

import boto3

from tasks import locks
from tasks.broker import queue_depth
from tasks.celery_app import SCALE_TASK, app
from transcription import scaling
from transcription.errors import NetworkError, NotFoundError, OptionError, PermanentError, TranscriptionError
from transcription.settings import Settings, get_settings

log = logging.getLogger(__name__)


def wanted_workers(visible: int, in_flight: int, settings: Settings | None = None) -> int:
    """The rule with this deployment's settings, never below the busy workers (up to the cap)."""
    s = settings or get_settings()
    rule = scaling.desired_workers(visible, in_flight, s.max_gpu_workers, s.chunks_per_worker)
    return max(rule, min(in_flight, s.max_gpu_workers))


def apply_capacity(wanted: int, *, allow_up: bool = True, allow_down: bool = True,
                   settings: Settings | None = None) -> dict[str, Any]:
    """Ask `CAPACITY_MODE` for `wanted` workers; what was asked and done, for logs and summaries."""
    s = settings or get_settings()
    if s.capacity_mode == "none":
        return {"mode": "none", "wanted": wanted}
    if s.capacity_mode == "asg":
        if not s.asg_name:
            raise OptionError("CAPACITY_MODE=asg needs ASG_NAME")
        return set_group_capacity(s.asg_name, wanted, allow_up=allow_up, allow_down=allow_down, settings=s)
    if not s.ec2_instance_ids:
        raise OptionError("CAPACITY_MODE=ec2 needs EC2_INSTANCE_IDS")
    if not allow_up:
        return {"mode": "ec2", "wanted": wanted, "started": []}
    return start_instances(s.ec2_instance_ids, wanted, settings=s)


def _client(service: Literal["autoscaling", "ec2"], s: Settings) -> Any:
    return boto3.session.Session().client(service, region_name=s.aws_region)


def _aws_error(what: str, e: Exception) -> TranscriptionError:
    """Refusals (no permission, a bad id or value) are permanent; the rest (network, throttling) may pass."""
    code = getattr(e, "response", {}).get("Error", {}).get("Code", "")
    reason = f"{what}: {type(e).__name__}: {e}"
    if "AccessDenied" in code or "Unauthorized" in code or "NotFound" in code or code.startswith(
            ("Validation", "InvalidInstanceID", "InvalidParameter")):
        return PermanentError(reason)
    return NetworkError(reason)


def set_group_capacity(name: str, wanted: int, *, allow_up: bool = True, allow_down: bool = True,
                       settings: Settings | None = None) -> dict[str, Any]:
    """Set an Auto Scaling group's desired capacity to `wanted` within [MinSize, min(MaxSize, cap)]."""
    s = settings or get_settings()
    client = _client("autoscaling", s)
    try:
        groups = client.describe_auto_scaling_groups(AutoScalingGroupNames=[name])["AutoScalingGroups"]
    except Exception as e:
        raise _aws_error(f"cannot read Auto Scaling group {name}", e) from e
    if not groups:
        raise NotFoundError(f"Auto Scaling group {name!r} does not exist")
    group = groups[0]
    previous = int(group["DesiredCapacity"])
    target = max(int(group["MinSize"]), min(wanted, s.max_gpu_workers, int(group["MaxSize"])))
    if (target > previous and not allow_up) or (target < previous and not allow_down):
        target = previous
    if target != previous:
        try:
            client.set_desired_capacity(AutoScalingGroupName=name, DesiredCapacity=target, HonorCooldown=False)
        except Exception as e:
            raise _aws_error(f"cannot set the desired capacity of {name} to {target}", e) from e
        log.info("capacity_set group=%s desired=%d previous=%d wanted=%d", name, target, previous, wanted)
    return {"mode": "asg", "group": name, "wanted": wanted, "previous": previous, "desired": target}


def start_instances(instance_ids: list[str], wanted: int, *, settings: Settings | None = None) -> dict[str, Any]:
    """Start stopped instances until `wanted` (capped) are pending or running; stops none."""
    s = settings or get_settings()
    client = _client("ec2", s)
    try:
        reservations = client.describe_instances(InstanceIds=list(instance_ids))["Reservations"]
    except Exception as e:
        raise _aws_error(f"cannot read instances {', '.join(instance_ids)}", e) from e
    states = {i["InstanceId"]: i["State"]["Name"] for r in reservations for i in r["Instances"]}
    active = [i for i in instance_ids if states.get(i) in ("pending", "running")]
    stopped = [i for i in instance_ids if states.get(i) == "stopped"]
    goal = min(wanted, s.max_gpu_workers, len(instance_ids))
    to_start = stopped[:max(0, goal - len(active))]
    if to_start:
        try:
            client.start_instances(InstanceIds=to_start)
        except Exception as e:
            raise _aws_error(f"cannot start instances {', '.join(to_start)}", e) from e
        log.info("capacity_started instances=%s wanted=%d already_active=%d", ",".join(to_start), wanted, len(active))
    busy = {i: states.get(i, "missing") for i in instance_ids if i not in active and i not in stopped}
    return {"mode": "ec2", "wanted": wanted, "active": active, "started": to_start,
            **({"unavailable": busy} if busy else {})}


def run_scale(settings: Settings | None = None) -> dict[str, Any]:
    """One tick of the scaler: read the queue, apply the rule (see the module docstring)."""
    s = settings or get_settings()
    depth = queue_depth(s.transcribe_queue, s)
    visible, in_flight = depth.waiting, depth.in_flight
    wanted = wanted_workers(visible, in_flight, s)
    queue_depth_policy = s.scaling_policy == "queue-depth"
    # a drain asks for capacity before it has queued its chunks: do not take it back meanwhile
    allow_down = not _draining(s)
    result = apply_capacity(wanted, allow_up=queue_depth_policy, allow_down=allow_down, settings=s)
    summary = {"visible": visible, "in_flight": in_flight, "policy": s.scaling_policy, **result}
    log.info("scale visible=%d in_flight=%d wanted=%d %s", visible, in_flight, wanted,
             " ".join(f"{k}={v}" for k, v in result.items() if k != "wanted"))
    return summary


def _draining(s: Settings) -> bool:
    try:
        return locks.is_held(locks.drain_name(s.s3_bucket), s)
    except NetworkError:  # no Redis: assume not
        return False


@app.task(name=SCALE_TASK, ignore_result=True, acks_on_failure_or_timeout=True, soft_time_limit=45, time_limit=55)
def scale_workers() -> dict[str, Any]:
    """Every minute on beat: the queue-depth rule applied to the GPU fleet."""
    try:
        return run_scale()
    except Exception as e:  # the next tick tries again; nothing is lost meanwhile
        reason = getattr(e, "reason", None) or f"{type(e).__name__}: {e}"
        log.error("scale_failed reason=%s", reason)
        return {"status": "error", "reason": reason}
