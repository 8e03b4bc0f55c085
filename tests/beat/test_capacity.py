"""The capacity step against moto's SQS, EC2 and Auto Scaling: the queue read as the rule reads it,
instances started, the group's desired capacity set (capped, falling to 0, never below the busy
workers, never raised outside the drain under the midnight policy), and the drain's own request.

GPU instances and Auto Scaling groups cannot exist on this machine: moto's server stands in for
EC2 and Auto Scaling (its instances never boot anything); SQS, S3 and Redis are the real test ones.
"""

from __future__ import annotations

import pytest

from tasks import capacity, locks
from tasks.broker import QueueDepth, ensure_queues, queue_depth, sqs_client
from tasks.drain import run_drain
from tests.support.services import unique
from transcription.errors import NotFoundError
from transcription.settings import Settings


@pytest.fixture(scope="module")
def aws(moto):
    ec2 = moto.client("ec2")
    image = ec2.describe_images()["Images"][0]["ImageId"]
    template = unique("gpu-worker")
    ec2.create_launch_template(LaunchTemplateName=template,
                               LaunchTemplateData={"ImageId": image, "InstanceType": "g4dn.xlarge"})
    return {"ec2": ec2, "asg": moto.client("autoscaling"), "image": image, "template": template}


def make_group(aws, max_size: int = 10, desired: int = 0) -> str:
    name = unique("gpu-workers")
    aws["asg"].create_auto_scaling_group(AutoScalingGroupName=name, MinSize=0, MaxSize=max_size,
                                         DesiredCapacity=desired, AvailabilityZones=["us-east-1a"],
                                         LaunchTemplate={"LaunchTemplateName": aws["template"]})
    return name


def desired(aws, name: str) -> int:
    return aws["asg"].describe_auto_scaling_groups(AutoScalingGroupNames=[name])["AutoScalingGroups"][0][
        "DesiredCapacity"]


def queue_settings(moto, bucket: str = "unused", **kw) -> Settings:
    s = Settings(celery_broker_url="sqs://", transcribe_queue=unique("transcribe"),
                 dead_letter_queue=unique("transcribe-dlq"), control_queue=unique("control"), s3_bucket=bucket,
                 visibility_timeout_s=30, **kw)
    ensure_queues(s)
    return s


def fill(s: Settings, visible: int, in_flight: int) -> None:
    """`visible + in_flight` messages, `in_flight` of them received (held invisible, as a busy worker does)."""
    client = sqs_client(s)
    url = client.get_queue_url(QueueName=s.transcribe_queue)["QueueUrl"]
    for n in range(visible + in_flight):
        client.send_message(QueueUrl=url, MessageBody=f"m{n}")
    held = 0
    while held < in_flight:
        held += len(client.receive_message(QueueUrl=url, MaxNumberOfMessages=in_flight - held,
                                           VisibilityTimeout=300).get("Messages", []))


def test_queue_counts_are_visible_and_in_flight(moto) -> None:
    s = queue_settings(moto)
    assert queue_depth(s.transcribe_queue, s) == QueueDepth(0, 0)
    fill(s, visible=3, in_flight=2)
    assert queue_depth(s.transcribe_queue, s) == QueueDepth(3, 2)


def test_queue_depth_policy_sets_the_group_from_the_queue(moto, aws) -> None:
    group = make_group(aws, max_size=10)
    s = queue_settings(moto, scaling_policy="queue-depth", capacity_mode="asg", asg_name=group, max_gpu_workers=4,
                       chunks_per_worker=2)
    assert capacity.run_scale(s)["desired"] == 0  # empty queue: nothing
    fill(s, visible=5, in_flight=0)
    out = capacity.run_scale(s)
    assert out["visible"] == 5 and out["wanted"] == 3 and out["desired"] == 3 == desired(aws, group)  # ceil(5/2)


def test_capped_by_max_gpu_workers_and_the_group(moto, aws) -> None:
    group = make_group(aws, max_size=2)
    s = queue_settings(moto, scaling_policy="queue-depth", capacity_mode="asg", asg_name=group, max_gpu_workers=4,
                       chunks_per_worker=1)
    fill(s, visible=9, in_flight=0)
    assert capacity.run_scale(s)["desired"] == 2 == desired(aws, group)  # the group's MaxSize
    capped = s.model_copy(update={"max_gpu_workers": 1})
    assert capacity.run_scale(capped)["desired"] == 1 == desired(aws, group)


def test_falls_to_zero_but_never_below_the_busy_workers(moto, aws) -> None:
    group = make_group(aws, desired=4)
    s = queue_settings(moto, scaling_policy="queue-depth", capacity_mode="asg", asg_name=group, max_gpu_workers=4,
                       chunks_per_worker=100)
    fill(s, visible=0, in_flight=3)
    # the rule alone says ceil(3/100) = 1; three workers are busy, so three stay
    assert capacity.run_scale(s)["desired"] == 3 == desired(aws, group)
    empty = queue_settings(moto, scaling_policy="queue-depth", capacity_mode="asg", asg_name=group)
    assert capacity.run_scale(empty)["desired"] == 0 == desired(aws, group)


def test_midnight_policy_only_lowers_the_group(moto, aws) -> None:
    group = make_group(aws, desired=0)
    s = queue_settings(moto, scaling_policy="midnight", capacity_mode="asg", asg_name=group)
    fill(s, visible=6, in_flight=0)
    out = capacity.run_scale(s)
    assert out["wanted"] == 1 and out["desired"] == 0 == desired(aws, group)  # waits for the drain
    aws["asg"].set_desired_capacity(AutoScalingGroupName=group, DesiredCapacity=3)  # the drain's fleet
    empty = queue_settings(moto, scaling_policy="midnight", capacity_mode="asg", asg_name=group)
    assert capacity.run_scale(empty)["desired"] == 0 == desired(aws, group)  # done: back to nothing


def test_no_scale_in_while_a_drain_is_queueing(moto, aws) -> None:
    group = make_group(aws, desired=2)
    s = queue_settings(moto, unique("bucket"), scaling_policy="queue-depth", capacity_mode="asg", asg_name=group)
    lease = locks.Lease(locks.drain_name(s.s3_bucket), 10, s)
    assert lease.acquire()
    try:
        assert capacity.run_scale(s)["desired"] == 2  # the drain asked for them; its chunks are on the way
    finally:
        lease.release()
    assert capacity.run_scale(s)["desired"] == 0


def test_ec2_mode_starts_stopped_instances_up_to_the_wish(moto, aws) -> None:
    ec2 = aws["ec2"]
    ids = [i["InstanceId"] for i in ec2.run_instances(ImageId=aws["image"], MinCount=3, MaxCount=3,
                                                      InstanceType="g4dn.xlarge")["Instances"]]
    ec2.stop_instances(InstanceIds=ids)
    s = Settings(capacity_mode="ec2", ec2_instance_ids=ids, max_gpu_workers=4)

    def states() -> list[str]:
        found = {i["InstanceId"]: i["State"]["Name"] for r in ec2.describe_instances(InstanceIds=ids)["Reservations"]
                 for i in r["Instances"]}
        return [found[i] for i in ids]

    out = capacity.apply_capacity(2, settings=s)
    assert out["started"] == ids[:2] and states() == ["running", "running", "stopped"]
    assert capacity.apply_capacity(2, settings=s)["started"] == []  # two are up already
    assert capacity.apply_capacity(9, settings=s)["started"] == ids[2:]  # at most the three there are
    assert states() == ["running"] * 3
    assert capacity.apply_capacity(5, allow_up=False, settings=s)["started"] == []


def test_a_missing_group_is_a_clear_error(moto) -> None:
    s = Settings(capacity_mode="asg", asg_name="no-such-group")
    with pytest.raises(NotFoundError, match="no-such-group"):
        capacity.apply_capacity(1, settings=s)


def test_the_drain_asks_for_capacity_for_its_backlog_and_never_less(moto, aws) -> None:
    """No worker here: the chords' messages stay in this test's own queue."""
    bucket = unique("drain-cap")
    s3 = moto.client("s3")
    s3.create_bucket(Bucket=bucket)
    for sid, n in (("a", 3), ("b", 2)):
        for i in range(n):
            s3.put_object(Bucket=bucket, Key=f"sessions/{sid}/chunks/{i}.wav", Body=b"RIFF....")
    s3.put_object(Bucket=bucket, Key="transcripts/b/chunks/1.json", Body=b"{}")  # done: not queued again
    s3.put_object(Bucket=bucket, Key="failed/a/chunks/2.json", Body=b"{}")  # failed: not queued again
    group = make_group(aws, desired=0)
    s = queue_settings(moto, bucket, capacity_mode="asg", asg_name=group, max_gpu_workers=4, chunks_per_worker=1)
    out = run_drain(bucket, settings=s, celery=_app(s))
    assert out["status"] == "drained" and out["backlog"] == {"a": 2, "b": 1} and out["chunks"] == 3
    assert out["capacity"]["desired"] == 3 == desired(aws, group)
    # one run task per session backlog (RUN_MAX_S > 0, the default): a's two chunks and b's one
    assert s.run_max_s > 0 and queue_depth(s.transcribe_queue, s) == QueueDepth(2, 0)
    aws["asg"].set_desired_capacity(AutoScalingGroupName=group, DesiredCapacity=4)
    again = run_drain(bucket, settings=s, celery=_app(s))
    assert again["capacity"]["wanted"] == 3 and again["capacity"]["desired"] == 4  # never lowered by a drain


def _app(s: Settings):
    from tasks.celery_app import make_app

    return make_app(s)


def test_queue_counts_on_a_redis_broker(redis_url: str) -> None:
    """The Redis transport: waiting messages in the queue's list, in-flight ones in kombu's `unacked` hash."""
    from kombu import Connection

    from tests.support.worker import REDIS_BROKER_DB

    s = Settings(celery_broker_url=f"redis://127.0.0.1:6379/{REDIS_BROKER_DB}", transcribe_queue=unique("transcribe"))
    app = _app(s)
    for n in range(3):
        app.send_task("tasks.transcribe_chunk", args=["b", f"sessions/s/chunks/{n}.wav"], queue=s.transcribe_queue)
    assert queue_depth(s.transcribe_queue, s) == QueueDepth(3, 0)
    with Connection(s.celery_broker_url) as conn:
        queue = conn.SimpleQueue(s.transcribe_queue)
        message = queue.get(timeout=5)  # delivered, not acknowledged: a busy worker's message
        assert queue_depth(s.transcribe_queue, s) == QueueDepth(2, 1)
        message.ack()
        assert queue_depth(s.transcribe_queue, s) == QueueDepth(2, 0)
        for _ in range(2):
            queue.get(timeout=5).ack()
        queue.close()


def test_the_scaler_task_reports_an_error_instead_of_failing(moto, env) -> None:
    s = queue_settings(moto)
    for name, value in {"CELERY_BROKER_URL": "sqs://", "TRANSCRIBE_QUEUE": s.transcribe_queue,
                        "SCALING_POLICY": "queue-depth", "CAPACITY_MODE": "asg", "ASG_NAME": "missing-group"}.items():
        env.setenv(name, value)
    from tasks.capacity import scale_workers

    out = scale_workers.run()
    assert out["status"] == "error" and "missing-group" in out["reason"]
