"""`parley serve --ray`: the Parley app on every replica of one Ray Serve deployment, behind
Ray's HTTP proxy on one port.

Each replica builds its own modules (slot tables, model threads) from the same config and
serves every route, as `parley serve` does; Ray's proxy carries HTTP, streaming responses
and WebSockets to it. `FreeSlotRouter` (ray_router.py) picks the replica with the most free
slots in the module a request needs. Ray restarts a replica that dies or fails its health
check, and a replica being removed gets no new requests and keeps its open ones up to
`drain_timeout_s` (Ray's graceful shutdown) before its lifespan stops the modules.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time
from typing import Any

from parley.config import Config, RayConfig

log = logging.getLogger(__name__)
APP_NAME = "parley"
# Requests beyond the slots that a replica may hold at once: probes, modules_info, metrics,
# and sessions it refuses ("no free channels") when every replica is full.
EXTRA_ONGOING_REQUESTS = 32
# How often each replica reports its free slots to the routers: a slot freed counts as free
# again within about this long (the router's own count of what it sent covers the rest).
ROUTING_STATS_PERIOD_S = 1.0


class ParleyReplica:
    """One replica: the app of `create_app(config)`, built in the replica's process (its
    modules hold threads and models, which do not travel)."""

    def __init__(self, config: Config) -> None:
        self._config = config
        self._app: Any = None

    def __serve_build_asgi_app__(self) -> Any:
        from ray import serve

        from parley.server.app import create_app

        self._app = create_app(self._config)
        self._app.state.serving.replica = serve.get_replica_context().replica_id.unique_id
        return self._app

    def record_routing_stats(self) -> dict[str, Any]:
        """Free slots per module and the module of each path, for `FreeSlotRouter`."""
        if self._app is None:
            return {}
        modules = self._app.state.modules
        return {
            "reported_at": time.time(),  # wall clock: compared in the proxy's process
            "free_slots": {m.info.name: m.batch_size - m.used_slots for m in modules},
            "total_slots": {m.info.name: m.batch_size for m in modules},
            "module_paths": dict(self._app.state.module_paths),
        }

    def check_health(self) -> None:
        """Ray takes a replica out of rotation (and replaces it) when this raises."""
        if self._app is None:
            return
        for m in self._app.state.modules:
            if m.failed is not None:
                raise RuntimeError(f"module {m.info.name} failed: {m.failed}")


def deployment_options(config: Config) -> dict[str, Any]:
    """`serve.deployment` options from the `[ray]` table and the modules' slots."""
    ray_config: RayConfig = config.ray
    slots = sum(m.batch_size for m in config.modules)
    options: dict[str, Any] = {
        "name": "Parley",
        "ray_actor_options": {"num_cpus": ray_config.num_cpus, "num_gpus": ray_config.num_gpus},
        "max_ongoing_requests": slots + EXTRA_ONGOING_REQUESTS,
        "graceful_shutdown_timeout_s": ray_config.drain_timeout_s,
        "graceful_shutdown_wait_loop_s": 1.0,
        "health_check_period_s": 2.0,
        "request_router_config": {
            "request_router_class": "parley.server.ray_router:FreeSlotRouter",
            "request_routing_stats_period_s": ROUTING_STATS_PERIOD_S,
        },
    }
    if ray_config.autoscaled:
        # Ray scales on ongoing requests per replica; a session holds one request for its
        # life, so a target of occupancy x slots is a target slot occupancy.
        options["autoscaling_config"] = {
            "min_replicas": ray_config.min_replicas,
            "max_replicas": ray_config.max_replicas,
            "target_ongoing_requests": max(1.0, ray_config.target_occupancy * slots),
        }
    else:
        options["num_replicas"] = ray_config.replicas
    return options


def application(config: Config) -> Any:
    """The Ray Serve application: `config.ray`'s replicas of `ParleyReplica`."""
    from ray import serve

    deployment = serve.deployment(**deployment_options(config))(serve.ingress()(ParleyReplica))
    return deployment.bind(config)


def build_app(args: dict[str, str]) -> Any:
    """An application builder for Ray's config files (`serve run`, KubeRay's `serveConfigV2`):
    `import_path: parley.server.ray_serve:build_app`, `args: {config: /path/parley.toml}`
    (no `config`: the embedded defaults)."""
    from parley.config import load

    return application(load(args.get("config")))


def serve_on_ray(config: Config, host: str, port: int) -> int:
    """Starts (or joins) Ray, deploys the replicas behind Ray's proxy on `host:port`, and
    serves until SIGINT/SIGTERM, then removes the application and leaves Ray."""
    import ray
    from ray import serve

    ray.init(address=config.ray.address, include_dashboard=False, log_to_driver=True)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    try:
        serve.start(http_options={"host": host, "port": port})
        try:
            serve.run(application(config), name=APP_NAME, route_prefix="/")
        except RuntimeError as exc:  # Ray gave up on the replicas (the causes are logged above)
            print(f"parley: the replicas did not start: {exc}", file=sys.stderr)
            serve.shutdown()  # type: ignore[no-untyped-call]
            return 2
        log.info("parley ready on Ray Serve at http://%s:%d", host, port)
        stop.wait()
        log.info("parley: stopping the Ray Serve application")
        serve.delete(APP_NAME)
        serve.shutdown()  # type: ignore[no-untyped-call]
    finally:
        ray.shutdown()
    return 0
