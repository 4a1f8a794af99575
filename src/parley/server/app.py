"""The ASGI application: modules started in the lifespan, routes wired from the config."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import platform
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from prometheus_client.metrics_core import Metric
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket

import parley
from parley.backends.registry import BACKEND_TYPES
from parley.config import WYOMING_ROLES, Config
from parley.engine.module import Module, ModuleInfo
from parley.server.asr_routes import AsrRoutes
from parley.server.auth import API_KEY_HEADER, Keys, bearer_authorized, is_authorized
from parley.server.chat_routes import ChatRoutes
from parley.server.openai_routes import OpenAiRoutes
from parley.server.openapi import openapi_schema
from parley.server.origins import OriginCheck
from parley.server.realtime_routes import RealtimeRoutes
from parley.server.route_options import ROUTE_OPTIONS, SpeechRouteOptions
from parley.server.services import RecognitionService, SpeechService
from parley.server.token_socket import TokenSocket
from parley.server.tts_routes import TtsRoutes
from parley.server.wyoming_server import WyomingServer, catalog

log = logging.getLogger(__name__)
WEB_DIR = Path(__file__).resolve().parents[1] / "web"
SPEECH_PATH = "/v1/audio/speech"  # OpenAI's; on the first speech module
TRANSCRIPTION_PATH = "/v1/audio/transcriptions"  # on the first recognition module
REALTIME_PATH = "/v1/realtime"  # OpenAI's Realtime transcription, on the same module


class ModuleStartError(RuntimeError):
    pass


def build_modules(config: Config) -> list[Module]:
    modules = []
    for mc in config.modules:
        btype = BACKEND_TYPES[mc.type]
        backend = btype.build(mc.name, mc.batch_size, mc.options or btype.options())
        info = ModuleInfo(mc.name, mc.type, mc.path, mc.batch_size, backend.describe())
        modules.append(Module(info, backend))
    return modules


def _route_options(config: Config, module: Module) -> Any:
    """The module's route options from the config, or the role's defaults (modules built by
    a test around a fake backend)."""
    mc = next((m for m in config.modules if m.name == module.info.name), None)
    if mc is not None and mc.routes is not None:
        return mc.routes
    return ROUTE_OPTIONS[module.backend.role]()


def _web_page() -> ASGIApp:
    """The static web page for HTTP; a WebSocket to any path without a route gets HTTP 404
    before the upgrade (the static mount would refuse it with 403, which reads as a bad key)."""
    static = StaticFiles(directory=WEB_DIR, html=True)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            ws = WebSocket(scope, receive, send)
            await ws.send_denial_response(PlainTextResponse("no such route\n", status_code=404))
            return
        await static(scope, receive, send)

    return app


@dataclass
class _Wiring:
    """The routes of every module, by the role its backend declares (a new backend class gets
    its routes), and what the OpenAI routes and modules_info need from them."""

    routes: list[Any] = field(default_factory=list)
    first_speech: SpeechService | None = None
    first_recognition: RecognitionService | None = None
    public: dict[str, dict[str, Any]] = field(default_factory=dict)  # shown in modules_info
    # Which module's slot a request to each path takes (the Ray router ranks replicas by it).
    module_paths: dict[str, str] = field(default_factory=dict)

    def add(self, module: Module, keys: Keys, options: Any) -> None:
        role, path = module.backend.role, module.info.path
        self.module_paths[path] = module.info.name
        if role == "recognition":
            recognition = RecognitionService(module, keys, options)
            asr = AsrRoutes(recognition)
            self.routes += [
                WebSocketRoute(path, asr.websocket),
                Route(path, asr.post, methods=["POST"]),
            ]
            if self.first_recognition is None:
                self.first_recognition = recognition
                self.module_paths[TRANSCRIPTION_PATH] = module.info.name
                self.module_paths[REALTIME_PATH] = module.info.name
        elif role == "chat":
            self.routes.append(WebSocketRoute(path, ChatRoutes(module, keys).websocket))
        elif role == "speech":
            speech = SpeechService(module, keys, options)
            tts = TtsRoutes(speech)
            self.routes += [
                WebSocketRoute(path, tts.websocket),
                Route(path, tts.post_streaming, methods=["POST"]),
            ]
            if self.first_speech is None:
                self.first_speech = speech
                self.routes.append(Route("/api/tts", tts.post_tts, methods=["POST"]))
                self.module_paths["/api/tts"] = self.module_paths[SPEECH_PATH] = module.info.name
            if options.token_socket_path:
                socket = TokenSocket(speech)
                self.routes.append(WebSocketRoute(options.token_socket_path, socket.websocket))
                self.module_paths[options.token_socket_path] = module.info.name
                self.public[module.info.name] = {"token_socket_path": options.token_socket_path}
        else:
            raise ModuleStartError(f"module {module.info.name}: backend declares no role")


def _without_paths(details: dict[str, Any]) -> dict[str, Any]:
    """A file's name instead of its absolute path (where the models live is not for anyone)."""
    return {
        k: Path(v).name if isinstance(v, str) and Path(v).is_absolute() else v
        for k, v in details.items()
    }


@dataclass
class Serving:
    """What `/readyz` reads beside the modules: set `draining` when this server is about to
    go (shutdown begun, or a replica being removed), so load balancers stop sending to it."""

    draining: bool = False
    replica: str | None = None  # under Ray Serve: this replica's id, named in /readyz


def readiness(modules: list[Module], serving: Serving, module_name: str | None) -> dict[str, Any]:
    """`/readyz`'s answer: `status` is "ok" only when every module (or the one named) is warm
    and has a free slot; otherwise "failed", "warming", "draining" or "full", first that
    applies. Free slots per module come with it either way."""
    chosen = [m for m in modules if module_name is None or m.info.name == module_name]
    if not chosen:
        return {"status": "unknown_module", "modules": {}}
    free = {m.info.name: m.batch_size - m.used_slots for m in chosen}
    if any(m.failed is not None for m in chosen):
        status = "failed"
    elif not all(m.ready.is_set() for m in chosen):
        status = "warming"
    elif serving.draining:
        status = "draining"
    elif not all(free.values()):
        status = "full"
    else:
        status = "ok"
    return {
        "status": status,
        **({"replica": serving.replica} if serving.replica else {}),
        "modules": {
            m.info.name: {"free_slots": free[m.info.name], "total_slots": m.batch_size}
            for m in chosen
        },
    }


class _Labelled:
    """The process's metrics with a `replica` label on every sample (under Ray Serve, where
    several replicas answer the same /metrics)."""

    def __init__(self, replica: str) -> None:
        self.replica = replica

    def collect(self) -> Iterator[Metric]:
        for family in REGISTRY.collect():
            labelled = Metric(family.name, family.documentation, family.type, family.unit)
            labelled.samples = [
                s._replace(labels={**s.labels, "replica": self.replica}) for s in family.samples
            ]
            yield labelled


def _info_routes(
    modules: list[Module], wiring: _Wiring, openai: OpenAiRoutes, keys: Keys, serving: Serving
) -> list[Any]:
    async def openapi(_: Request) -> Response:
        return JSONResponse(openapi_schema(openai))

    async def modules_info(request: Request) -> Response:
        keyed = keys is None or is_authorized(request, keys) or bearer_authorized(request, keys)
        return JSONResponse(
            [
                {
                    "name": m.info.name,
                    "type": m.info.kind,
                    "path": m.info.path,
                    "used_slots": m.used_slots,
                    "total_slots": m.batch_size,
                    **(m.info.details if keyed else _without_paths(m.info.details)),
                    **wiring.public.get(m.info.name, {}),
                }
                for m in modules
            ]
        )

    async def build_info(_: Request) -> Response:
        return JSONResponse(
            {"name": "parley", "version": parley.__version__, "python": platform.python_version()}
        )

    async def readyz(request: Request) -> Response:
        answer = readiness(modules, serving, request.query_params.get("module"))
        status_code = {"ok": 200, "unknown_module": 404}.get(answer["status"], 503)
        return JSONResponse(answer, status_code=status_code)

    async def prometheus(_: Request) -> Response:
        registry = REGISTRY if serving.replica is None else _Labelled(serving.replica)
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return [
        Route("/api/modules_info", modules_info),
        Route("/api/build_info", build_info),
        Route("/metrics", prometheus),
        Route("/readyz", readyz),
        Route("/openapi.json", openapi),
    ]


def _middleware(allowed_origins: list[str]) -> list[Middleware]:
    """The origin check for WebSockets; for HTTP, CORS for the pages listed (browsers enforce
    it for fetch, so with none listed only Parley's own page reads the answers)."""
    middleware = [Middleware(OriginCheck, allowed_origins=allowed_origins)]
    if allowed_origins:
        middleware.append(
            Middleware(
                CORSMiddleware,
                allow_origins=allowed_origins,
                allow_methods=["GET", "POST"],
                allow_headers=["authorization", "content-type", API_KEY_HEADER],
            )
        )
    return middleware


def _wyoming_server(config: Config, modules: list[Module]) -> WyomingServer | None:
    """The `[wyoming]` server on the modules it exposes (None when no port is set)."""
    if config.wyoming.port is None:
        return None
    names = config.wyoming.modules
    exposed = [
        m
        for m in modules
        if (names is None and m.backend.role in WYOMING_ROLES)
        or (names is not None and m.info.name in names)
    ]
    aliases: dict[str, dict[str, str]] = {}
    for m in exposed:
        options = _route_options(config, m)
        if isinstance(options, SpeechRouteOptions):
            aliases[m.info.name] = dict(options.voice_aliases)
    return WyomingServer(exposed, catalog(exposed, aliases))


async def _advertise(host: str, port: int) -> Any:
    """`_wyoming._tcp` over mDNS, as the wyoming-* servers do (their `--zeroconf`); the config
    has checked that the zeroconf package is installed."""
    from wyoming.zeroconf import HomeAssistantZeroconf

    announcer = HomeAssistantZeroconf(port=port, host=None if host in ("0.0.0.0", "") else host)
    await announcer.register_server()
    log.info("wyoming: advertised as %s._wyoming._tcp.local.", announcer.name)
    return announcer._aiozc  # noqa: SLF001 - the helper exposes no close


def create_app(config: Config, modules: list[Module] | None = None) -> Starlette:
    """The app for `config`; `modules` may be given pre-built (tests with fake backends)."""
    modules = modules if modules is not None else build_modules(config)
    keys = frozenset(config.authorized_ids) if config.authorized_ids else None
    serving = Serving()
    wiring = _Wiring()
    for module in modules:
        wiring.add(module, keys, _route_options(config, module))
    openai = OpenAiRoutes(keys, wiring.first_speech, wiring.first_recognition)
    routes = [
        *wiring.routes,
        Route(SPEECH_PATH, openai.speech, methods=["POST"]),
        Route(TRANSCRIPTION_PATH, openai.transcriptions, methods=["POST"]),
        WebSocketRoute(REALTIME_PATH, RealtimeRoutes(openai).websocket),
        Route("/v1/models", openai.models),
        Route("/v1/audio/voices", openai.voices),
        *_info_routes(modules, wiring, openai, keys, serving),
        # Anything else is the web page (static files shipped in the package; no CDN).
        Mount("/", app=_web_page(), name="web"),
    ]

    wyoming = _wyoming_server(config, modules)

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        for m in modules:
            m.start()
        for m in modules:
            await asyncio.to_thread(m.ready.wait)
            if m.failed is not None:
                raise ModuleStartError(f"module {m.info.name} failed: {m.failed}")
            log.info(
                "module %s ready: %s at %s, %d slots",
                m.info.name,
                m.info.kind,
                m.info.path,
                m.batch_size,
            )
        advertised = None
        if wyoming is not None:
            port = await wyoming.start(config.wyoming.host, config.wyoming.port or 0)
            if config.wyoming.zeroconf:
                advertised = await _advertise(config.wyoming.host, port)
        log.info("parley ready (config: %s)", config.source)
        try:
            yield
        finally:
            serving.draining = True
            if advertised is not None:
                await advertised.async_close()
            if wyoming is not None:
                await wyoming.stop()
            for m in modules:
                await asyncio.to_thread(m.stop)

    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        middleware=_middleware(config.allowed_origins),
    )
    app.state.serving = serving
    app.state.modules = modules
    app.state.module_paths = wiring.module_paths
    return app
