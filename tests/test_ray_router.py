"""`FreeSlotRouter`'s ranking on its own, with fake replicas (named as such: only the two
attributes the router reads) and fake requests carrying a pickled ASGI scope as Ray's proxy
sends it. The real proxy and replicas are in test_ray_serve.py."""

from __future__ import annotations

import asyncio
import pickle
import time
from dataclasses import dataclass, field
from typing import Any

import pytest

pytest.importorskip("ray.serve")

from parley.server.ray_router import FreeSlotRouter, request_path  # noqa: E402

PATHS = {"/api/asr-streaming": "asr", "/api/tts_streaming": "tts"}


@dataclass
class FakeReplica:
    replica_id: str
    routing_stats: dict[str, Any] = field(default_factory=dict)


@dataclass
class FakeScopeCarrier:
    asgi_scope: dict[str, Any]


@dataclass
class FakeMetadata:
    internal_request_id: str


@dataclass
class FakeRequest:
    args: list[Any]
    metadata: FakeMetadata


def report(free_asr: int, free_tts: int, at: float) -> dict[str, Any]:
    return {
        "reported_at": at,
        "free_slots": {"asr": free_asr, "tts": free_tts},
        "total_slots": {"asr": 2, "tts": 2},
        "module_paths": PATHS,
    }


def request(path: str, request_id: str) -> FakeRequest:
    scope = FakeScopeCarrier({"type": "websocket", "path": path})
    return FakeRequest([pickle.dumps(scope)], FakeMetadata(request_id))


def router() -> FreeSlotRouter:
    r = FreeSlotRouter.__new__(FreeSlotRouter)  # Ray's constructor wants a live deployment
    r.initialize_state()
    return r


def choose(r: FreeSlotRouter, replicas: list[FakeReplica], req: FakeRequest) -> list[list[str]]:
    ranks = asyncio.run(r.choose_replicas(replicas, req))  # type: ignore[arg-type]
    return [[x.replica_id for x in rank] for rank in ranks]


def test_request_path_from_the_proxy_pickle() -> None:
    assert request_path(request("/api/tts_streaming", "r")) == "/api/tts_streaming"  # type: ignore[arg-type]
    assert request_path(FakeRequest([b"not a pickle"], FakeMetadata("r"))) == ""  # type: ignore[arg-type]


def test_ranked_by_free_slots_of_the_module_the_path_needs() -> None:
    now = time.time()
    # A's TTS slots are taken, its STT slots free; B has one STT slot left.
    a, b = FakeReplica("A", report(2, 0, now)), FakeReplica("B", report(1, 2, now))
    r = router()
    assert choose(r, [b, a], request("/api/asr-streaming", "s1"))[0] == ["A"]
    assert choose(r, [a, b], request("/api/tts_streaming", "t1"))[0] == ["B"]
    # s1 is now held on A until a report after it: A and B have one STT slot each, and B
    # was sent none lately.
    assert choose(r, [a, b], request("/api/asr-streaming", "s2")) == [["B"], ["A"]]
    # s2 held on B: B is full, A has one; then every replica is full.
    assert choose(r, [a, b], request("/api/asr-streaming", "s3")) == [["A"], ["B"]]
    (full,) = choose(r, [a, b], request("/api/asr-streaming", "s4"))
    assert sorted(full) == ["A", "B"]


def test_a_hold_ends_with_its_request_or_with_a_newer_report() -> None:
    now = time.time()
    a = FakeReplica("A", report(1, 2, now))
    b = FakeReplica("B", report(0, 2, now))
    r = router()
    assert choose(r, [a, b], request("/api/asr-streaming", "s1"))[0] == ["A"]
    (full,) = choose(r, [a, b], request("/api/asr-streaming", "s2"))
    assert sorted(full) == ["A", "B"]
    r.on_request_completed("A", "s1")  # type: ignore[arg-type]
    assert choose(r, [a, b], request("/api/asr-streaming", "s3"))[0] == ["A"]
    # A later report showing A full supersedes the hold; B's says a slot freed.
    a.routing_stats = report(0, 2, now + 5)
    b.routing_stats = report(1, 2, now + 5)
    assert choose(r, [a, b], request("/api/asr-streaming", "s4"))[0] == ["B"]


def test_a_tie_goes_to_the_replica_sent_fewer_sessions_lately() -> None:
    """A's report still counts a session that has just ended (one STT slot free); B had two
    free and was just sent one. One free each: the next goes to A, not again to B."""
    now = time.time()
    a, b = FakeReplica("A", report(1, 2, now)), FakeReplica("B", report(2, 2, now))
    r = router()
    assert choose(r, [b, a], request("/api/asr-streaming", "s1"))[0] == ["B"]
    assert choose(r, [b, a], request("/api/asr-streaming", "s2"))[0] == ["A"]


def test_paths_without_a_slot_go_to_any_replica() -> None:
    now = time.time()
    replicas = [FakeReplica("A", report(0, 0, now)), FakeReplica("B", report(0, 0, now))]
    ranks = choose(router(), replicas, request("/readyz", "p"))
    assert sorted(x for rank in ranks for x in rank) == ["A", "B"] and len(ranks) == 2
