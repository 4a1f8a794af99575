"""The `parley` command: `serve`, `bench`, and the client commands `transcribe` and `speak`."""

from __future__ import annotations

import argparse
import logging
import sys


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from parley.config import ConfigError, check_exposure, load
    from parley.server.app import create_app
    from parley.server.http_protocol import (
        MAX_CONNECTIONS,
        ClientFaultsAreNotErrors,
        HeadersDeadlineH11,
        raise_file_limit,
    )

    try:
        config = load(args.config)
        check_exposure(config, args.host)
        if args.wyoming_port is not None:
            config.wyoming.port = args.wyoming_port
        if args.wyoming_host is not None:
            config.wyoming.host = args.wyoming_host
        if args.replicas is not None and not args.ray:
            raise ConfigError("--replicas: only with --ray")
        if args.replicas is not None and args.replicas < 1:
            raise ConfigError(f"--replicas: must be at least 1, got {args.replicas}")
        if args.replicas is not None:
            config.ray.replicas = args.replicas
            config.ray.min_replicas = config.ray.max_replicas = None
    except ConfigError as exc:
        print(f"parley: bad config: {exc}", file=sys.stderr)
        return 2
    log = logging.getLogger("parley")
    log.info(
        "config: %s; modules: %s",
        config.source,
        ", ".join(f"{m.name} ({m.type} at {m.path}, {m.batch_size} slots)" for m in config.modules),
    )
    if args.ray:
        from parley.server.ray_serve import serve_on_ray

        return serve_on_ray(config, args.host, args.port)
    raise_file_limit()
    logging.getLogger("uvicorn.error").addFilter(ClientFaultsAreNotErrors())
    try:
        app = create_app(config)
    except (ValueError, FileNotFoundError, ImportError) as exc:
        print(f"parley: cannot load a model: {exc}", file=sys.stderr)
        return 2
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_level=args.log_level.lower(),
        ws_ping_interval=10.0,
        ws_ping_timeout=20.0,
        ws_max_size=16 * 1024 * 1024,
        # No permessage-deflate: audio barely compresses, and deflating every TTS frame was
        # half the event loop's time at 24 streams (py-spy), with the client inflating it.
        ws_per_message_deflate=False,
        timeout_graceful_shutdown=5,
        http=HeadersDeadlineH11,  # idle and half-sent requests are closed (http_protocol.py)
        # asyncio's own loop, whether or not uvloop is installed (the `ray` extra brings it):
        # the server behaves the same with and without the extra.
        loop="asyncio",
        limit_concurrency=MAX_CONNECTIONS,  # beyond it: HTTP 503, not a server out of files
    )
    return 0


def _bench(args: argparse.Namespace) -> int:
    if args.target == "tts":
        from parley.bench.tts import run_tts_bench

        return run_tts_bench(args)
    from parley.bench.stt import run_stt_bench

    return run_stt_bench(args)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="parley", description="Parley real-time voice server")
    parser.add_argument("--log-level", default="INFO")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the server")
    serve.add_argument("--config", help="TOML config file (default: embedded defaults)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument(
        "--wyoming-port", type=int, help="also serve Home Assistant's Wyoming protocol (TCP)"
    )
    serve.add_argument(
        "--wyoming-host", help="the Wyoming server's address (default 127.0.0.1; no keys)"
    )
    serve.add_argument(
        "--ray", action="store_true", help="serve through Ray Serve replicas ([ray] table)"
    )
    serve.add_argument("--replicas", type=int, help="with --ray: this many replicas, fixed")
    serve.set_defaults(func=_serve)
    bench = sub.add_parser("bench", help="benchmarks against a running server")
    bench_sub = bench.add_subparsers(dest="target", required=True)
    stt = bench_sub.add_parser("stt", help="N concurrent real-time STT streams of the eval clips")
    stt.add_argument("--url", default="ws://127.0.0.1:8080")
    stt.add_argument("--api-key", default="public_token")
    stt.add_argument("--streams", default="1,2,4,6,8", help="comma-separated stream counts")
    stt.add_argument("--eval-dir", default="../shared/eval")
    stt.add_argument("--clips", type=int, default=6, help="clips per stream (played back to back)")
    stt.add_argument(
        "--clip-ids",
        default="",
        help="comma-separated clip ids to play (default: every English clip up to 30 s); "
        "stream i starts at clip i * --clips, wrapping",
    )
    stt.add_argument("--show-text", action="store_true", help="print each stream's transcript")
    stt.add_argument(
        "--protocols",
        default="moshi",
        help="comma-separated: moshi (/api/asr-streaming), realtime (/v1/realtime), together "
        "(half the streams on each, the same audio at once)",
    )
    stt.add_argument("--no-baseline", action="store_true", help="skip offline tiny.en baseline")
    stt.add_argument(
        "--modes",
        default="realtime,fast",
        help="realtime (paced as it plays), fast (each stream's audio sent at once)",
    )
    stt.set_defaults(func=_bench)
    tts = bench_sub.add_parser("tts", help="N concurrent TTS streams fed word by word")
    tts.add_argument("--url", default="ws://127.0.0.1:8080")
    tts.add_argument("--api-key", default="public_token")
    tts.add_argument("--streams", default="1,2,4,8,12,16", help="comma-separated stream counts")
    tts.add_argument("--words-per-s", type=float, default=20.0, help="text feed rate per stream")
    tts.add_argument("--eval-dir", default="../shared/eval", help="texts: the clip transcripts")
    tts.add_argument("--no-baseline", action="store_true", help="skip raw PiperVoice baseline")
    tts.add_argument(
        "--start-gap-s", type=float, default=0.0, help="start the streams this far apart"
    )
    tts.add_argument(
        "--paired",
        type=int,
        default=0,
        metavar="R",
        help="R rounds of one stream right after raw Piper on its first phrase, 6 texts each",
    )
    tts.add_argument(
        "--round-trip",
        type=int,
        default=0,
        metavar="N",
        help="WER of N texts spoken word by word, whole and by raw Piper, heard by tiny.en",
    )
    tts.add_argument(
        "--compare-openai",
        action="store_true",
        help="also compare first audio of /v1/audio/speech (pcm) with the moshi TTS socket",
    )
    tts.set_defaults(func=_bench)
    from parley.bench.wyoming import add_parser as add_wyoming_bench

    add_wyoming_bench(bench_sub)
    from parley.client.cli_commands import add_client_commands

    add_client_commands(sub)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
