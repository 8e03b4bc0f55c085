"""The CloudFormation template: cfn-lint clean, and its IAM is least privilege."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

TEMPLATE = Path(__file__).resolve().parents[2] / "deploy" / "template.yaml"


@pytest.fixture(scope="module")
def template() -> dict:
    from cfnlint.decode import decode

    tpl, errors = decode(str(TEMPLATE))
    assert not errors, errors
    return tpl


def _statements(tpl: dict, role: str) -> list[dict]:
    props = tpl["Resources"][role]["Properties"]
    docs = [p["PolicyDocument"] for p in props.get("Policies", [])] or [props["PolicyDocument"]]
    return [s for d in docs for s in d["Statement"]]


def _actions(stmt: dict) -> list[str]:
    a = stmt["Action"]
    return [a] if isinstance(a, str) else list(a)


def test_cfn_lint_passes() -> None:
    proc = subprocess.run([str(Path(sys.executable).parent / "cfn-lint"), str(TEMPLATE)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_router_role_is_least_privilege(template) -> None:
    stmts = _statements(template, "RouterRole")
    actions = sorted({a for s in stmts for a in _actions(s)})
    assert actions == sorted({"logs:CreateLogStream", "logs:PutLogEvents", "s3:GetObject", "s3:ListBucket",
                              "s3:PutObject", "sqs:SendMessage", "secretsmanager:GetSecretValue"})
    assert all(s["Effect"] == "Allow" and "*" not in str(s.get("Resource")) .replace("/*", "")
               for s in stmts)
    puts = [s for s in stmts if "s3:PutObject" in _actions(s)]
    assert len(puts) == 1 and str(puts[0]["Resource"]).count("/failed/*") == 1  # writes failed/ only
    gets = [str(s["Resource"]) for s in stmts if "s3:GetObject" in _actions(s)]
    assert all("/sessions/*" in g or "/transcripts/*" in g or "/failed/*" in g for g in gets)
    sends = next(s for s in stmts if "sqs:SendMessage" in _actions(s))["Resource"]  # transcribe and its DLQ only
    assert sorted(r["Fn::GetAtt"][0] for r in sends) == ["TranscribeDeadLetterQueue", "TranscribeQueue"]
    listing = next(s for s in stmts if "s3:ListBucket" in _actions(s))
    assert listing["Resource"] == {"Fn::GetAtt": ["TranscriptBucket", "Arn"]}  # this bucket only


def test_queue_has_a_dead_letter_queue_and_a_long_visibility_timeout(template) -> None:
    q = template["Resources"]["TranscribeQueue"]["Properties"]
    assert q["RedrivePolicy"]["deadLetterTargetArn"] == {"Fn::GetAtt": ["TranscribeDeadLetterQueue", "Arn"]}
    assert q["RedrivePolicy"]["maxReceiveCount"] == {"Ref": "MaxReceiveCount"}
    assert template["Parameters"]["QueueVisibilityTimeout"]["Default"] >= 1800


def test_rule_targets_the_router_for_session_uploads_only(template) -> None:
    pattern = template["Resources"]["ChunkUploadedRule"]["Properties"]["EventPattern"]
    assert pattern["detail-type"] == ["Object Created"]
    assert pattern["detail"]["object"]["key"] == [{"prefix": "sessions/"}]


def test_worker_fleet_scales_from_zero(template) -> None:
    asg = template["Resources"]["WorkerGroup"]["Properties"]
    assert asg["MinSize"] == "0" and asg["DesiredCapacity"] == "0"
    user_data = str(template["Resources"]["WorkerLaunchTemplate"]["Properties"]["LaunchTemplateData"]["UserData"])
    assert "stt-router worker" in user_data
    stmts = _statements(template, "WorkerRole")
    stop = next(s for s in stmts if "ec2:StopInstances" in _actions(s))
    assert stop["Condition"]["StringEquals"]["aws:ResourceTag/stt-router-role"] == "gpu-worker"


def test_beat_can_run_its_control_queue_and_start_only_fleet_instances(template) -> None:
    stmts = _statements(template, "BeatPolicy")
    control = next(s for s in stmts if s["Resource"] == {"Fn::GetAtt": ["ControlQueue", "Arn"]})
    assert {"sqs:ReceiveMessage", "sqs:DeleteMessage"} <= set(_actions(control))
    start = next(s for s in stmts if "ec2:StartInstances" in _actions(s))
    assert start["Condition"]["StringEquals"]["aws:ResourceTag/stt-router-role"] == "gpu-worker"
    scale = next(s for s in stmts if "autoscaling:SetDesiredCapacity" in _actions(s))
    assert "autoScalingGroupName/" in str(scale["Resource"])


def test_workers_put_session_events_on_the_stack_bus_only_and_a_rule_routes_them(template) -> None:
    stmts = _statements(template, "WorkerRole")
    puts = [s for s in stmts if any(a.startswith("events:") for a in _actions(s))]
    assert len(puts) == 1 and _actions(puts[0]) == ["events:PutEvents"]
    assert puts[0]["Resource"] == {"Fn::GetAtt": ["SessionEventBus", "Arn"]}
    user_data = str(template["Resources"]["WorkerLaunchTemplate"]["Properties"]["LaunchTemplateData"]["UserData"])
    assert "EVENT_BUS_NAME=${SessionEventBus}" in user_data
    rule = template["Resources"]["SessionTranscriptReadyRule"]["Properties"]
    assert rule["EventBusName"] == {"Ref": "SessionEventBus"}
    assert rule["EventPattern"] == {"source": ["stt-router"], "detail-type": ["Session Transcript Ready"]}
    assert rule["Targets"][0]["Arn"] == {"Fn::GetAtt": ["SessionEventsQueue", "Arn"]}
    [allow] = template["Resources"]["SessionEventsQueuePolicy"]["Properties"]["PolicyDocument"]["Statement"]
    assert allow["Principal"] == {"Service": "events.amazonaws.com"} and allow["Action"] == "sqs:SendMessage"
    assert allow["Condition"]["ArnEquals"]["aws:SourceArn"] == {"Fn::GetAtt": ["SessionTranscriptReadyRule", "Arn"]}
