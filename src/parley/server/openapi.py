"""OpenAPI 3.1 description of the OpenAI-compatible routes, served at `/openapi.json`.

Model and voice enums are filled from the running configuration, so generated clients and
API explorers offer what this server actually has."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import parley
from parley.audio.encode import FORMATS, MEDIA_TYPES

if TYPE_CHECKING:
    from parley.server.openai_routes import OpenAiRoutes

_ERROR = {
    "description": "OpenAI-shaped error",
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "properties": {
                    "error": {
                        "type": "object",
                        "properties": {
                            "message": {"type": "string"},
                            "type": {"type": "string"},
                            "param": {"type": ["string", "null"]},
                            "code": {"type": "string"},
                        },
                    }
                },
            }
        }
    },
}


def _errors(*codes: int) -> dict[str, Any]:
    return {str(c): _ERROR for c in codes}


def openapi_schema(api: OpenAiRoutes) -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {"title": "Parley OpenAI-compatible audio API", "version": parley.__version__},
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
        "paths": {
            "/v1/audio/speech": {"post": _speech_operation(api)},
            "/v1/audio/transcriptions": {"post": _transcription_operation(api)},
            "/v1/models": {"get": {"summary": "Model names", "responses": {"200": {}}}},
            "/v1/audio/voices": {
                "get": {"summary": "Voices and their aliases", "responses": {"200": {}}}
            },
        },
    }


def _speech_operation(api: OpenAiRoutes) -> dict[str, Any]:
    voices = sorted(api.tts.backend.voices) if api.tts else []
    aliases = sorted(api.tts.voice_names.alias_table()) if api.tts else []
    body = {
        "type": "object",
        "required": ["model", "input", "voice"],
        "properties": {
            "model": {"type": "string", "enum": api.tts_models()},
            "input": {"type": "string", "minLength": 1},
            "voice": {
                "type": "string",
                "description": "a configured voice, or an alias of one (voice_aliases; OpenAI's "
                "and Kokoro's names mean the default voice)",
                "examples": [*voices, *aliases],
            },
            "response_format": {"type": "string", "enum": list(FORMATS), "default": "mp3"},
            "speed": {"type": "number", "minimum": 0.25, "maximum": 4.0, "default": 1.0},
            "stream_format": {"type": "string", "enum": ["audio", "sse"], "default": "audio"},
            "instructions": {"type": "string", "description": "accepted; Piper ignores it"},
        },
    }
    binary = {"schema": {"type": "string", "format": "binary"}}
    audio = {MEDIA_TYPES[fmt]: binary for fmt in FORMATS}  # what the route answers
    return {
        "summary": "Text to speech, streamed as it is synthesised",
        "requestBody": {"required": True, "content": {"application/json": {"schema": body}}},
        "responses": {
            "200": {
                "description": "audio bytes, or SSE speech.audio.delta/done events",
                "content": {**audio, "text/event-stream": {}},
            },
            **_errors(400, 401, 413, 503),
        },
    }


def _transcription_operation(api: OpenAiRoutes) -> dict[str, Any]:
    from parley.server.openai_routes import TRANSCRIPT_FORMATS

    body = {
        "type": "object",
        "required": ["file", "model"],
        "properties": {
            "file": {"type": "string", "format": "binary"},
            "model": {"type": "string", "enum": api.stt_models()},
            "language": {"type": "string", "enum": ["en", "auto"]},
            "prompt": {"type": "string", "description": "accepted; not used"},
            "response_format": {
                "type": "string",
                "enum": list(TRANSCRIPT_FORMATS),
                "default": "json",
            },
            "timestamp_granularities[]": {
                "type": "array",
                "items": {"type": "string", "enum": ["word", "segment"]},
            },
            "stream": {"type": "boolean", "default": False},
        },
    }
    return {
        "summary": "Speech to text",
        "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": body}}},
        "responses": {
            "200": {
                "description": "json, verbose_json, text, srt, vtt, or SSE "
                "transcript.text.delta/done events when stream=true",
                "content": {"application/json": {}, "text/plain": {}, "text/event-stream": {}},
            },
            **_errors(400, 401, 413, 503),
        },
    }
