"""POST /v1/audio/transcriptions: the reply text as the transcript of any upload.

gpt-4o-transcribe and gpt-4o-mini-transcribe answer ``json`` (with token usage) or
``text``, and stream ``transcript.text.delta`` events then ``transcript.text.done`` with
the usage. whisper-1 answers ``json`` with its usage in seconds, ``verbose_json`` (language,
duration, one segment and/or words), ``text``, ``srt`` and ``vtt``; it ignores ``stream``,
as the API reference says. The text is ``FakeOpenAI.reply``.

Token rule (documented in docs/testing.md): the upload is taken to be 16 kHz 16-bit mono
PCM, so it lasts ``size / 32000`` seconds whatever its format;

- gpt-4o-*-transcribe: input audio tokens ``ceil(size / 3200)`` (10 per second, at least
  1), input text tokens the ``prompt``'s ``ceil(len / 4)``, output tokens one per word or
  punctuation mark of the transcript (the reply rule);
- whisper-1: ``usage.seconds`` is the duration (to the millisecond) rounded up, at least 1.
"""

from __future__ import annotations

import math
import re
from typing import Any

from . import _errors
from ._multipart import Form
from ._request import Context, field_bool, field_list, field_str
from ._sse import Event, Reply, chunk_event
from ._text import count_text, split_tokens

#: Bytes of upload per second of audio (16 kHz, 16-bit, mono PCM).
BYTES_PER_SECOND = 32000
#: Bytes of upload per input audio token (10 tokens per second).
BYTES_PER_AUDIO_TOKEN = 3200

_EXTENSIONS = ("flac", "m4a", "mp3", "mp4", "mpeg", "mpga", "oga", "ogg", "wav", "webm")
_TOKEN_FORMATS = ("json", "text")
_WHISPER_FORMATS = ("json", "text", "srt", "verbose_json", "vtt")
_LANGUAGES = {
    "en": "english",
    "de": "german",
    "es": "spanish",
    "fr": "french",
    "it": "italian",
    "ja": "japanese",
    "nl": "dutch",
    "pt": "portuguese",
    "ru": "russian",
    "zh": "chinese",
}
_WORD = re.compile(r"[\w']+")


def wrong_content_type(content_type: str) -> _errors.APIErrorResponse:
    """What the endpoint says to a body that is not a form (a JSON body, say)."""
    return _errors.invalid_request(
        f"Invalid Content-Type header ({content_type or 'none'}), expected "
        "multipart/form-data. (HINT: If you're using curl, you can pass -H "
        "'Content-Type: multipart/form-data')"
    )


def transcription(ctx: Context, form: Form) -> Reply:
    model = ctx.model
    if model.kind != "transcription":
        raise _errors.invalid_request(
            f"The model `{model.name}` does not support transcriptions.", param="model"
        )
    uploads = form.files_named("file")
    if not uploads:
        raise _errors.missing_parameter("file")
    upload = uploads[0]
    extension = upload.filename.rsplit(".", 1)[-1].lower() if "." in upload.filename else ""
    if extension not in _EXTENSIONS:
        raise _errors.invalid_request(
            f"Invalid file format. Supported formats: {list(_EXTENSIONS)!r}"
        )
    response_format = field_str(ctx.body, "response_format", "json")
    formats = _TOKEN_FORMATS if model.media_tokens else _WHISPER_FORMATS
    if response_format not in formats:
        if response_format not in _WHISPER_FORMATS:
            raise _errors.invalid_value("response_format", response_format, _WHISPER_FORMATS)
        raise _errors.invalid_request(
            f"response_format '{response_format}' is not compatible with model "
            f"'{model.name}'. Use 'json' or 'text' instead.",
            param="response_format",
            code="unsupported_value",
        )
    if model.media_tokens:
        return _token_transcription(ctx, upload.size, response_format)
    return _whisper_transcription(ctx, upload.size, response_format)


def _token_transcription(ctx: Context, size: int, response_format: str) -> Reply:
    text = ctx.reply
    pieces = split_tokens(text)
    audio_tokens = max(1, -(-size // BYTES_PER_AUDIO_TOKEN))
    prompt = ctx.body.get("prompt")
    text_tokens = count_text(prompt) if isinstance(prompt, str) else 0
    usage = {
        "type": "tokens",
        "input_tokens": audio_tokens + text_tokens,
        "input_token_details": {"text_tokens": text_tokens, "audio_tokens": audio_tokens},
        "output_tokens": len(pieces),
        "total_tokens": audio_tokens + text_tokens + len(pieces),
    }
    logprobs = "logprobs" in field_list(ctx.body, "include") and response_format == "json"
    if field_bool(ctx.body, "stream"):
        events: list[Event] = []
        for piece in pieces:
            delta: dict[str, Any] = {"type": "transcript.text.delta", "delta": piece}
            if logprobs:
                delta["logprobs"] = [_logprob(piece)]
            events.append(chunk_event(delta))
        done: dict[str, Any] = {"type": "transcript.text.done", "text": text}
        if logprobs:
            done["logprobs"] = [_logprob(piece) for piece in pieces]
        done["usage"] = usage
        events.append(chunk_event(done))
        return Reply(events=events, usage=usage)
    if response_format == "text":
        return Reply(body=text + "\n")
    body: dict[str, Any] = {"text": text}
    if logprobs:
        body["logprobs"] = [_logprob(piece) for piece in pieces]
    body["usage"] = usage
    return Reply(body=body, usage=usage)


def _logprob(piece: str) -> dict[str, Any]:
    return {"token": piece, "logprob": 0.0, "bytes": list(piece.encode())}


def _whisper_transcription(ctx: Context, size: int, response_format: str) -> Reply:
    text = ctx.reply
    duration = round(size / BYTES_PER_SECOND, 3)
    usage = {"type": "duration", "seconds": max(1, math.ceil(duration))}
    if response_format == "text":
        return Reply(body=text + "\n")
    if response_format == "srt":
        return Reply(body=f"1\n00:00:00,000 --> {_timestamp(duration, ',')}\n{text}\n\n")
    if response_format == "vtt":
        return Reply(body=f"WEBVTT\n\n00:00:00.000 --> {_timestamp(duration, '.')}\n{text}\n\n")
    if response_format == "json":
        return Reply(body={"text": text, "usage": usage}, usage=usage)
    granularities = field_list(ctx.body, "timestamp_granularities") or ["segment"]
    language = field_str(ctx.body, "language", "en").lower()
    body: dict[str, Any] = {
        "task": "transcribe",
        "language": _LANGUAGES.get(language, language),
        "duration": duration,
        "text": text,
    }
    if "word" in granularities:
        words = _WORD.findall(text)
        step = duration / max(1, len(words))
        body["words"] = [
            {"word": word, "start": round(i * step, 2), "end": round((i + 1) * step, 2)}
            for i, word in enumerate(words)
        ]
    if "segment" in granularities:
        body["segments"] = [
            {
                "id": 0,
                "seek": 0,
                "start": 0.0,
                "end": duration,
                "text": f" {text}",
                "tokens": [50364 + i for i in range(len(split_tokens(text)))],
                "temperature": 0.0,
                "avg_logprob": -0.25,
                "compression_ratio": 1.2,
                "no_speech_prob": 0.01,
            }
        ]
    body["usage"] = usage
    return Reply(body=body, usage=usage)


def _timestamp(seconds: float, separator: str) -> str:
    millis = round(seconds * 1000)
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    return f"{hours:02d}:{minutes:02d}:{rest // 1000:02d}{separator}{rest % 1000:03d}"
