"""The cost simulator (`bench/cost.py`, `bench/cost_model.py`): properties that could fail.

Everything here is the simulator itself (pure Python, no AWS): GPU instances, Lambda and SQS are
simulated because they cannot exist on this machine; the scaling rule is the real
`transcription.scaling.desired_workers`.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace

import pytest

from bench import common, cost
from bench.cost_model import (
    DAY,
    POLICIES,
    PROFILES,
    Chunks,
    CostParams,
    Workload,
    billed_seconds,
    make_chunks,
    make_sessions,
    run,
    simulate,
    transcribe_usd,
)
from transcription import scaling

# small but with everything in it: office hours, bursts, backfilled sessions, quiet nights
WORKLOAD = Workload(sessions=60, seed=7, backfill_share=0.15)
PARAMS = CostParams()


@pytest.fixture(scope="module")
def sessions():
    return make_sessions(WORKLOAD)


@pytest.fixture(scope="module")
def report(sessions):
    return run(PARAMS, sessions, WORKLOAD)


def one_chunk(at: float, duration: float = 30.0) -> Chunks:
    return Chunks([at], [duration], [0])


@pytest.mark.parametrize("chunk_s", [5.0, 30.0, 300.0])
def test_every_chunk_is_transcribed_exactly_once_in_every_policy(sessions, chunk_s) -> None:
    chunks = make_chunks(sessions, chunk_s)
    assert len(chunks) > 100
    for name in POLICIES:
        r = simulate(name, chunks, CostParams(chunk_s=chunk_s))
        assert r.counts == [1] * len(chunks), name
        fastest = [d / PARAMS.gpu_speed_x for d in chunks.duration]
        assert all(lat >= f for lat, f in zip(r.latency, fastest, strict=True)), name
        assert all(i.stop is not None and i.stop >= i.start for i in r.instances), name
        assert not any(i.busy for i in r.instances), name


def test_chunks_cover_the_sessions_whatever_their_length(sessions) -> None:
    total = math.fsum(s.length for s in sessions)
    for chunk_s in (5.0, 30.0, 300.0):
        chunks = make_chunks(sessions, chunk_s)
        assert chunks.audio_s == pytest.approx(total)
        assert max(chunks.duration) <= chunk_s
        assert chunks.upload == sorted(chunks.upload)


def test_no_policy_pays_fewer_gpu_hours_than_the_physical_minimum(report) -> None:
    minimum = report.minimum_gpu_hours
    assert minimum == pytest.approx(report.chunks.audio_s / 25.0 / 3600)
    for name, r in report.results.items():
        assert r.gpu_hours >= minimum, name
        # the work itself is exactly the minimum: audio seconds over engine speed
        assert sum(i.busy_s for i in r.instances) / 3600 == pytest.approx(minimum), name
    cheapest = min(r.gpu_hours for r in report.results.values())
    assert cheapest < 2 * minimum  # the drain comes close to it


@pytest.mark.parametrize("gpus", [1, 2])
def test_always_on_pays_24_hours_per_gpu(sessions, gpus) -> None:
    p = CostParams(always_on_gpus=gpus)
    r = simulate("always-on", make_chunks(sessions, p.chunk_s), p)
    assert r.gpu_hours == pytest.approx(24.0 * gpus)
    assert r.usd_gpu == pytest.approx(24.0 * gpus * 0.526)
    assert r.direct > 0


@pytest.mark.parametrize("drain_hour", [0, 6])
def test_midnight_drain_latency_is_bounded_by_the_next_drain_plus_processing(sessions, drain_hour) -> None:
    p = CostParams(drain_hour=drain_hour)
    chunks = make_chunks(sessions, p.chunk_s)
    r = simulate("queue-midnight", chunks, p)
    drains = [drain_hour * 3600 + k * DAY for k in range(4)]
    processing = chunks.audio_s / p.gpu_speed_x  # the whole backlog on one worker, the worst case
    router = (p.lambda_ms + p.lambda_cold_ms) / 1000
    waited_for_a_drain = 0
    for up, lat in zip(chunks.upload, r.latency, strict=True):
        drain = next(d for d in drains if d >= up + router - 1e-9)
        assert lat <= drain - up + p.cold_start_s + processing + router, (up, lat)
        if up + lat >= drain + p.cold_start_s:
            waited_for_a_drain += 1
    assert waited_for_a_drain >= 0.9 * len(chunks)
    # no GPU runs before the first drain that has a backlog
    first_drain = next(d for d in drains if chunks.upload[0] + router < d)
    assert min(i.start for i in r.instances) == first_drain
    assert max(r.latency) > 12 * 3600  # the morning's chunks really waited


def test_hybrid_sends_chunks_direct_while_the_server_is_up_and_queues_at_night() -> None:
    p = CostParams()
    ready = p.server_start_hour * 3600
    chunks = Chunks([3 * 3600.0, ready + 600.0], [30.0, 30.0], [0, 1])
    r = simulate("hybrid-idle", chunks, p)
    proc = 30.0 / p.gpu_speed_x
    assert r.direct == 1
    assert r.latency[0] >= ready - 3 * 3600  # the night chunk waited for the server
    router = (p.lambda_cold_ms + p.lambda_ms) / 1000  # hours after the last call: a cold Lambda
    assert r.latency[1] == pytest.approx(router + proc)  # idle server: direct, no queue
    server = next(i for i in r.instances if i.kind == "server")
    assert server.stop == pytest.approx(ready + 600 + router + proc + p.server_idle_timeout_s)


def test_the_60_second_minimum_billing_applies() -> None:
    assert billed_seconds(0.0, 5.0, 60.0) == 60.0
    assert billed_seconds(10.0, 70.0, 60.0) == 60.0
    assert billed_seconds(0.0, 60.4, 60.0) == 61.0  # per second, rounded up
    assert billed_seconds(0.0, 5.0, 0.0) == 5.0
    # one short job: 5 s cold start + 1.2 s of work, the worker stops at once, 60 s are paid
    chunks = one_chunk(3600.0)
    short = CostParams(cold_start_s=5.0, worker_idle_timeout_s=0.0)
    r = simulate("queue-midnight", chunks, short)
    (worker,) = r.instances
    assert worker.stop - worker.start == pytest.approx(5.0 + 30.0 / 25.0)
    assert r.gpu_hours * 3600 == pytest.approx(60.0)
    assert r.usd_gpu == pytest.approx(60.0 * 0.526 / 3600)
    without_minimum = simulate("queue-midnight", chunks, CostParams(cold_start_s=5.0, worker_idle_timeout_s=0.0,
                                                                    billing_minimum_s=0.0))
    assert without_minimum.gpu_hours * 3600 == pytest.approx(7.0)


def test_queue_depth_policies_use_desired_workers(sessions, monkeypatch) -> None:
    chunks = make_chunks(sessions, 30.0)
    params = replace(PARAMS, chunks_per_worker=1)  # a worker per waiting chunk, so bursts fill the fleet
    free = simulate("queue-depth", chunks, params)
    assert free.max_workers_seen == params.max_workers

    calls: list[tuple[int, int, int, int]] = []
    real = scaling.desired_workers

    def capped(visible: int, in_flight: int, maximum: int, chunks_per_worker: int = 1) -> int:
        calls.append((visible, in_flight, maximum, chunks_per_worker))
        return real(visible, in_flight, 1, chunks_per_worker)

    monkeypatch.setattr(scaling, "desired_workers", capped)
    for name in ("queue-depth", "hybrid-queue-depth"):
        calls.clear()
        r = simulate(name, chunks, params)
        assert r.max_workers_seen == 1, name
        last_done = max(u + lat for u, lat in zip(chunks.upload, r.latency, strict=True))
        assert len(calls) == r.scaler_calls >= last_done // params.scaling_interval_s  # every minute
        assert {c[2:] for c in calls} == {(params.max_workers, 1)}
        assert any(v > 0 for v, *_ in calls) and any(f > 0 for _, f, *_ in calls)
        assert r.counts == [1] * len(chunks)
    assert simulate("queue-midnight", chunks, params).scaler_calls >= 2  # the drain asks it too


def test_queue_depth_scales_to_zero_when_the_queue_is_empty(sessions) -> None:
    chunks = make_chunks(sessions, 30.0)
    r = simulate("queue-depth", chunks, PARAMS)
    last_done = max(u + lat for u, lat in zip(chunks.upload, r.latency, strict=True))
    assert all(i.stop <= last_done + 2 * PARAMS.scaling_interval_s for i in r.instances)
    # a chunk waits at most a tick, a cold start and a little work
    assert max(r.latency) <= PARAMS.scaling_interval_s + PARAMS.cold_start_s + 60


def test_a_rule_that_never_scales_up_fails_loudly(monkeypatch) -> None:
    monkeypatch.setattr(scaling, "desired_workers", lambda *a, **k: 0)
    with pytest.raises(RuntimeError, match="chunks left"):
        simulate("queue-depth", one_chunk(100.0), PARAMS)


def test_transcribe_pays_its_15_second_minimum_per_chunk() -> None:
    chunks = Chunks([1.0, 2.0, 3.0], [5.0, 30.0, 15.0], [0, 0, 0])
    usd = transcribe_usd(chunks, CostParams(lambda_usd_per_million=0, lambda_usd_per_gb_s=0))
    assert usd["usd_transcribe"] == pytest.approx(round((15 + 30 + 15) / 60 * 0.024, 4))
    assert usd["usd_lambda"] == 0


@pytest.mark.parametrize("bad", [
    {"gpu_speed_x": 0.0}, {"chunk_s": -1.0}, {"cold_start_s": -5.0}, {"max_workers": -1},
    {"chunks_per_worker": 0}, {"scale_in_ticks": 0},
])
def test_bad_parameters_are_refused(bad) -> None:
    with pytest.raises(ValueError):
        CostParams(**bad)


@pytest.mark.parametrize("bad", [{"sessions": 0}, {"profile": (1.0,) * 23}, {"burst_share": 1.5}])
def test_bad_workloads_are_refused(bad) -> None:
    with pytest.raises(ValueError):
        Workload(**bad)


# --- the command ----------------------------------------------------------------------------

@pytest.fixture
def results(tmp_path, monkeypatch):
    monkeypatch.setattr(common, "RESULTS", tmp_path)
    return tmp_path


def read(results) -> dict:
    out = json.loads((results / "cost.json").read_text())
    out.pop("machine")
    out.pop("run_s")
    return out


def test_json_has_the_documented_keys_and_the_plot_is_written(results) -> None:
    cost.main(["--sessions", "30", "--seed", "3"])
    out = json.loads((results / "cost.json").read_text())
    assert out["minimum_gpu_hours"] > 0
    assert set(out["policies"]) == set(POLICIES)
    for p in out["policies"].values():
        assert {"gpu_hours", "usd", "latency_p50_s", "latency_p95_s", "latency_max_s"} <= set(p)
        assert p["gpu_hours"] >= out["minimum_gpu_hours"]
        assert p["latency_p50_s"] <= p["latency_p95_s"] <= p["latency_max_s"]
    assert out["managed"]["aws-transcribe"]["usd"] > 0
    assert out["parameters"]["gpu_hourly_usd"] == 0.526
    assert out["parameters"]["cold_start_s"] == 120.0
    assert out["engine_speed"] == {"x": 25.0, "source": cost.DESIGN_SPEED_SOURCE}
    assert set(out["sensitivity"]) == set(cost.SENSITIVITY)
    spot = out["sensitivity"]["spot"]["policies"]["always-on"]
    assert spot["usd"] < out["policies"]["always-on"]["usd"]
    assert out["sensitivity"]["chunk-5s"]["chunks"] > 5 * out["chunks"]
    assert {"cpu", "cores", "date"} <= set(out["machine"])
    assert (results / "cost.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_deterministic_with_a_seed(results) -> None:
    args = ["--sessions", "25", "--no-sensitivity", "--no-plot"]
    cost.main([*args, "--seed", "5"])
    first = read(results)
    cost.main([*args, "--seed", "5"])
    assert read(results) == first
    cost.main([*args, "--seed", "6"])
    assert read(results)["audio_hours"] != first["audio_hours"]


def test_measured_engine_speed_times_a_gpu_factor(results) -> None:
    args = ["--sessions", "10", "--no-sensitivity", "--no-plot", "--measured-speed", "--gpu-speedup", "2"]
    cost.main(args)  # no engine.json yet: the design's speed, and it says so
    assert read(results)["engine_speed"]["x"] == 25.0
    assert "not found" in read(results)["engine_speed"]["source"]
    (results / "engine.json").write_text(json.dumps({"engines": {"whisperx": {"rtf_x": 6.5},
                                                                 "faster-whisper": {"rtf_x": 8.0}}}))
    cost.main(args)
    out = read(results)
    assert out["engine_speed"]["x"] == 13.0
    assert out["engine_speed"]["source"].startswith("measured: whisperx 6.5x")
    assert out["minimum_gpu_hours"] == pytest.approx(out["audio_hours"] / 13.0, abs=1e-3)
    cost.main([*args, "--instance", "g5.xlarge"])
    assert read(results)["engine_speed"]["x"] == 26.0
    assert read(results)["parameters"]["gpu_hourly_usd"] == 1.006


@pytest.mark.parametrize("argv", [
    ["--profile", "1,2,3"], ["--profile", "nights"], ["--policies", "always-on,cheapest"], ["--gpu-speed-x", "0"],
])
def test_bad_options_exit_with_a_reason(results, argv, capsys) -> None:
    with pytest.raises(SystemExit) as e:
        cost.main([*argv, "--no-sensitivity", "--no-plot"])
    assert e.value.code != 0
    assert not (results / "cost.json").exists()


def test_profile_option_takes_names_and_weights() -> None:
    assert cost.parse_profile("flat") == PROFILES["flat"]
    assert cost.parse_profile(",".join(["1"] * 12 + ["0"] * 12)) == (1.0,) * 12 + (0.0,) * 12
