"""Backends by module type; heavy imports happen only for the types a config uses."""

from __future__ import annotations

import logging

from parley.config import ModuleConfig
from parley.engine.backend import Backend

log = logging.getLogger(__name__)


def build_backend(cfg: ModuleConfig) -> Backend:
    if cfg.type == "WhisperStreaming":
        from parley.backends.stt.whisper import WhisperOptions, WhisperStreamingBackend
        from parley.backends.stt.whisper_decoder import WhisperDecoder, resolve_model_path

        o = cfg.options
        model_path = resolve_model_path(o["model"])
        log.info(
            "module %s: loading faster-whisper %s from %s on %s (%s, %d threads)",
            cfg.name,
            o["model"],
            model_path,
            o["device"],
            o["compute_type"],
            o["cpu_threads"],
        )
        decoder = WhisperDecoder(
            model_path,
            device=o["device"],
            compute_type=o["compute_type"],
            cpu_threads=o["cpu_threads"],
            language=o["language"],
            beam_size=o["beam_size"],
            short_context=o["short_context"],
        )
        opts = WhisperOptions(
            decode_interval_s=float(o["decode_interval_s"]),
            endpoint_silence_s=float(o["endpoint_silence_s"]),
            vad_threshold=float(o["vad_threshold"]),
            max_window_s=float(o["max_window_s"]),
            max_lag_s=float(o["max_lag_s"]),
            context_s=float(o["context_s"]),
        )
        facts = {
            "model": o["model"],
            "model_path": model_path,
            "device": o["device"],
            "compute_type": o["compute_type"],
        }
        return WhisperStreamingBackend(decoder, cfg.batch_size, opts, describe=facts, name=cfg.name)
    if cfg.type == "PiperTts":
        from parley.backends.tts.piper import PiperOptions, PiperTtsBackend
        from parley.backends.tts.piper_voice import PiperSynth, resolve_voice

        o = cfg.options
        voices = {}
        for name, spec in o["voices"].items():
            model, config = resolve_voice(name, spec)
            log.info("module %s: loading Piper voice %s from %s", cfg.name, name, model)
            voices[name] = PiperSynth(name, model, config, cpu_threads=o["cpu_threads"])
        options = PiperOptions(
            default_voice=o["voice"],
            first_phrase_words=o["first_phrase_words"],
            max_phrase_words=o["max_phrase_words"],
            max_phrase_chars=o["max_phrase_chars"],
            workers=o["cpu_threads"],
        )
        return PiperTtsBackend(voices, cfg.batch_size, options, name=cfg.name)
    if cfg.type == "KyutaiStt":
        from parley.backends.kyutai.checkpoint import find_files
        from parley.backends.kyutai.stt import KyutaiSttBackend

        o = cfg.options
        files = find_files(o)
        log.info(
            "module %s: loading Kyutai STT %s (Mimi %s) on %s, %s",
            cfg.name,
            files.moshi_weight,
            files.mimi_weight,
            o["device"],
            o["dtype"],
        )
        delay = o["asr_delay_in_tokens"]
        return KyutaiSttBackend(
            files,
            cfg.batch_size,
            device=o["device"],
            dtype=o["dtype"],
            delay_tokens=None if delay < 0 else delay,
            cpu_threads=o["cpu_threads"],
        )
    if cfg.type == "KyutaiTts":
        from parley.backends.kyutai.checkpoint import find_files
        from parley.backends.kyutai.tts import KyutaiTtsBackend, find_voices

        o = cfg.options
        files = find_files(o)
        voice_files, default_voice = find_voices(o["voice"], o["voices_dir"])
        log.info(
            "module %s: loading Kyutai TTS %s on %s", cfg.name, files.moshi_weight, o["device"]
        )
        return KyutaiTtsBackend(
            files,
            voice_files,
            default_voice,
            cfg.batch_size,
            device=o["device"],
            dtype=o["dtype"],
            n_q=o["n_q"],
            temp=float(o["temp"]),
            cfg_coef=float(o["cfg_coef"]),
            cpu_threads=o["cpu_threads"],
            name=cfg.name,
        )
    if cfg.type == "MoshiChat":
        from parley.backends.kyutai.chat import MoshiChatBackend
        from parley.backends.kyutai.checkpoint import find_files

        o = cfg.options
        files = find_files(o)
        log.info("module %s: loading Moshi %s on %s", cfg.name, files.moshi_weight, o["device"])
        return MoshiChatBackend(
            files,
            cfg.batch_size,
            device=o["device"],
            dtype=o["dtype"],
            temp=float(o["temp"]),
            temp_text=float(o["temp_text"]),
            cpu_threads=o["cpu_threads"],
        )
    raise ValueError(f"unknown module type {cfg.type!r}")
