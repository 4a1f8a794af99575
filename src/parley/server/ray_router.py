"""Ray Serve's request router for Parley replicas: a request goes to the replica with the most
free slots in the module its path needs, not to the one with the fewest ongoing requests
(Ray's default), so TTS sessions on a replica never keep an STT session from its STT slots.

Each replica reports, through Ray's routing stats, its free slots per module and which module
each path takes a slot of (`ParleyReplica.record_routing_stats`), about once a second. A
report is up to a second old, so the router also counts the sessions it has sent to each
replica's module since its last report (taken on top of it) and in the moments before it
(which the report may not show yet). With one proxy (one Ray node) that is exact once a freed
slot has been reported; each further proxy routes on the reports and its own count.
"""

from __future__ import annotations

import logging
import pickle
import random
import time
from collections.abc import Mapping
from typing import Any

from ray.serve.request_router import (
    PendingRequest,
    ReplicaID,
    RequestRouter,
    RunningReplica,
)

log = logging.getLogger(__name__)
# A session routed this long before a replica's report is in that report (its admission,
# a WebSocket upgrade or a POST's upload, has happened by then); the clocks of the proxy and
# the replicas' nodes are taken to agree to well within it.
ADMISSION_GRACE_S = 2.0
FORGET_HOLD_S = 60.0


def request_path(pending_request: PendingRequest | None) -> str:
    """The HTTP path of a request from Ray's proxy. The proxy sends the replica its ASGI scope
    pickled (as bytes, which the router sees); `metadata.route` holds only the matched route
    prefix ("/") for WebSockets, so it cannot tell the modules apart."""
    if pending_request is None or not pending_request.args:
        return ""
    arg = pending_request.args[0]
    if not isinstance(arg, bytes):
        return ""
    try:  # the proxy's own serialisation of the request, in the proxy's process
        scope = getattr(pickle.loads(arg), "asgi_scope", None)
    except Exception:
        return ""
    path = scope.get("path") if isinstance(scope, dict) else None
    return path if isinstance(path, str) else ""


def module_of(route: str, stats: Mapping[str, Any]) -> str | None:
    """The module whose slot a request to `route` takes, by a replica's report (None: none,
    e.g. `/readyz`)."""
    paths = stats.get("module_paths", {})
    name = paths.get(route)
    return name if isinstance(name, str) else None


def free_slots(stats: Mapping[str, Any], module: str, held_before: int, held_after: int) -> int:
    """A replica's free slots in `module`: its report, less the sessions this router sent it
    after the report (`held_after`) and those sent just before it (`held_before`), which the
    report may or may not show yet: it counts at least that many as taken."""
    total = int(stats.get("total_slots", {}).get(module, 0))
    used_reported = total - int(stats.get("free_slots", {}).get(module, 0))
    return total - max(used_reported, held_before) - held_after


class FreeSlotRouter(RequestRouter):
    def initialize_state(self, **kwargs: Any) -> None:
        # request id -> (replica, module, wall-clock time it was ranked): a slot counted as
        # taken until the replica reports after it (the report then shows it, or its end).
        self._holds: dict[str, tuple[ReplicaID, str, float]] = {}

    def _held(self, replica: RunningReplica, module: str) -> tuple[int, int]:
        """Sessions this router sent to the replica's module within ADMISSION_GRACE_S before
        its last report, and after it."""
        reported_at = float((replica.routing_stats or {}).get("reported_at", 0.0))
        times = [
            held_at
            for replica_id, held_module, held_at in self._holds.values()
            if replica_id == replica.replica_id and held_module == module
        ]
        after = sum(t > reported_at for t in times)
        return sum(reported_at - ADMISSION_GRACE_S < t <= reported_at for t in times), after

    async def choose_replicas(
        self,
        candidate_replicas: list[RunningReplica],
        pending_request: PendingRequest | None = None,
    ) -> list[list[RunningReplica]]:
        report = next((r.routing_stats for r in candidate_replicas if r.routing_stats), {})
        module = module_of(request_path(pending_request), report)
        if module is None or pending_request is None:
            # No slot needed (/readyz, /metrics, ...): any replica, at random, so a probe
            # reaches each in turn (one rank of all would go to the shortest queue).
            return [[r] for r in random.sample(candidate_replicas, len(candidate_replicas))]
        request_id = pending_request.metadata.internal_request_id
        self._holds.pop(request_id, None)  # ranked again (a retry): its last pick is void
        now = time.time()
        for stale in [r for r, h in self._holds.items() if now - h[2] > FORGET_HOLD_S]:
            del self._holds[stale]  # long since in the reports (or never routed)
        # A replica that has not reported yet (just started) has the same modules as the
        # others (one config) and none of its slots in use but those this router sent it.
        unreported = {"free_slots": report["total_slots"], "total_slots": report["total_slots"]}

        held = {r.replica_id: self._held(r, module) for r in candidate_replicas}

        def free(replica: RunningReplica) -> int:
            return free_slots(
                replica.routing_stats or unreported, module, *held[replica.replica_id]
            )

        def rank(replica: RunningReplica) -> tuple[int, int]:
            # Equal free slots: the replica this router sent fewer sessions to lately first. A
            # report may still count a session that just ended, and a burst would otherwise
            # tie onto the replica it last went to.
            return free(replica), -sum(held[replica.replica_id])

        ranked = sorted(candidate_replicas, key=rank, reverse=True)
        with_room = [r for r in ranked if free(r) > 0]
        if not with_room:
            # Every replica is full: one of them answers, with the module's own refusal
            # ("no free channels"; a POST waits for a slot there, then 503).
            return [ranked]
        self._holds[request_id] = (with_room[0].replica_id, module, now)
        full = [r for r in ranked if r not in with_room]
        return [[r] for r in with_room] + ([full] if full else [])

    def on_request_routed(
        self, pending_request: PendingRequest, replica_id: ReplicaID, result: object
    ) -> None:
        request_id = pending_request.metadata.internal_request_id
        held = self._holds.get(request_id)
        if held is not None and held[0] != replica_id:  # Ray took a lower-ranked replica
            self._holds[request_id] = (replica_id, held[1], held[2])

    def on_request_completed(self, replica_id: ReplicaID, internal_request_id: str) -> None:
        self._holds.pop(internal_request_id, None)
