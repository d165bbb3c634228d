"""POST /v1/images/generations and /v1/images/edits, shaped like the API reference.

GPT image models (gpt-image-1, gpt-image-1-mini, gpt-image-1.5, gpt-image-2,
chatgpt-image-latest) answer with base64 images, echo the resolved ``background``,
``output_format``, ``quality`` and ``size``, and report token usage; they stream
``image_generation.*`` (``image_edit.*``) events. dall-e-2 and dall-e-3 answer with URLs
(base64 with ``response_format: "b64_json"``), dall-e-3 adds a ``revised_prompt``, and
neither reports usage. Every image is the same tiny valid PNG, whatever the format asked.

Token rule (documented in docs/testing.md):

- input text tokens: the prompt's ``ceil(len(prompt) / 4)``, the general text rule;
- input image tokens: ``IMAGE_INPUT_TOKENS`` (85) per uploaded image (the mask is free);
- output tokens per image: each side of the image counts ``ceil(pixels * t / 1024)``
  tiles, ``t`` being 16 (low), 32 (medium) or 64 (high, and ``auto``), and an image costs
  ``height_tiles * (width_tiles + 1)``. That reproduces OpenAI's published table: 1024x1024
  is 272 / 1056 / 4160, 1024x1536 408 / 1584 / 6240, 1536x1024 400 / 1568 / 6208.
"""

from __future__ import annotations

import base64
import re
import struct
import zlib
from typing import Any

from . import _errors
from ._multipart import Form, UploadedFile
from ._request import Context, field_bool, field_int, field_str
from ._sse import Reply, typed_event
from ._text import NON_TEXT_PART_TOKENS, count_text, random_id

#: Input tokens one uploaded image adds to an edit (the same as an image part in a prompt).
IMAGE_INPUT_TOKENS = NON_TEXT_PART_TOKENS
#: Tiles a 1024-pixel side counts at each quality (``auto`` is answered as ``high``).
QUALITY_TILES = {"low": 16, "medium": 32, "high": 64}

_GPT_QUALITIES = ("low", "medium", "high", "auto")
_GPT_IMAGE_1_SIZES = ("1024x1024", "1024x1536", "1536x1024", "auto")
_BACKGROUNDS = ("transparent", "opaque", "auto")
_OUTPUT_FORMATS = ("png", "jpeg", "webp")
_DALLE_SIZES = {
    "dall-e-2": ("256x256", "512x512", "1024x1024"),
    "dall-e-3": ("1024x1024", "1792x1024", "1024x1792"),
}
_DALLE_QUALITIES = {"dall-e-2": ("standard",), "dall-e-3": ("standard", "hd")}
_GPT_MIMETYPES = ("image/jpeg", "image/png", "image/webp")
_SIZE = re.compile(r"^([1-9]\d{1,4})x([1-9]\d{1,4})$")


def _tiny_png() -> bytes:
    """A valid 1x1 opaque white RGBA PNG."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data)
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", 1, 1, 8, 6, 0, 0, 0)
    pixels = zlib.compress(b"\x00\xff\xff\xff\xff")
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


#: The image every answer carries (``b64_json``, partial images, and ``url`` downloads).
TINY_PNG = _tiny_png()
TINY_PNG_B64 = base64.b64encode(TINY_PNG).decode()


def output_tokens(width: int, height: int, quality: str) -> int:
    """Output tokens of one image of ``width`` x ``height`` pixels at ``quality``."""
    tiles = QUALITY_TILES[quality]
    width_tiles = -(-width * tiles // 1024)
    height_tiles = -(-height * tiles // 1024)
    return height_tiles * (width_tiles + 1)


def image_generation(ctx: Context, files_url: str) -> Reply:
    """``files_url``: where dall-e ``url`` answers point (the fake serves the PNG there)."""
    _require_kind(ctx, "image generation")
    return _images(ctx, "image_generation", 0, files_url)


def image_edit(ctx: Context, form: Form | None, files_url: str) -> Reply:
    _require_kind(ctx, "image edits")
    if ctx.model.name == "dall-e-3":
        raise _errors.invalid_request(
            "The model `dall-e-3` does not support image edits.", param="model"
        )
    if form is not None:
        images = form.files_named("image")
        allowed = _GPT_MIMETYPES if ctx.model.media_tokens else ("image/png",)
        for upload in images:
            _check_mimetype(upload, allowed)
        for mask in form.files_named("mask"):
            _check_mimetype(mask, ("image/png",))
        count = len(images)
    else:
        # The JSON form of the endpoint names images by URL or file id.
        references = ctx.body.get("images")
        count = len(references) if isinstance(references, list) else 0
    if count == 0:
        raise _errors.missing_parameter("image")
    return _images(ctx, "image_edit", count, files_url)


def _require_kind(ctx: Context, what: str) -> None:
    if ctx.model.kind != "image":
        raise _errors.invalid_request(
            f"The model `{ctx.model.name}` does not support {what}.", param="model"
        )


def _check_mimetype(upload: UploadedFile, allowed: tuple[str, ...]) -> None:
    if upload.content_type in allowed:
        return
    listed = ", ".join(f"'{kind}'" for kind in allowed[:-1])
    listed = f"{listed}, and '{allowed[-1]}'" if listed else f"'{allowed[-1]}'"
    raise _errors.invalid_request(
        f"Invalid file '{upload.field}': unsupported mimetype ('{upload.content_type}'). "
        f"Supported file formats are {listed}.",
        param=upload.field,
    )


def _images(ctx: Context, operation: str, input_images: int, files_url: str) -> Reply:
    body = ctx.body
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt:
        raise _errors.missing_parameter("prompt")
    n = field_int(body, "n", 1)
    error = _errors.out_of_range("n", n, 1, 10)
    if error is not None:
        raise error
    if ctx.model.media_tokens:
        return _gpt_images(ctx, operation, prompt, n, input_images)
    return _dalle_images(ctx, prompt, n, files_url)


def _gpt_images(ctx: Context, operation: str, prompt: str, n: int, input_images: int) -> Reply:
    body = ctx.body
    if body.get("response_format") is not None:
        raise _errors.unknown_parameter("response_format")
    quality = _choice(body, "quality", _GPT_QUALITIES, "auto")
    background = _choice(body, "background", _BACKGROUNDS, "auto")
    output_format = _choice(body, "output_format", _OUTPUT_FORMATS, "png")
    width, height = _gpt_size(ctx)
    partials = field_int(body, "partial_images", 0)
    error = _errors.out_of_range("partial_images", partials, 0, 3)
    if error is not None:
        raise error
    resolved = {
        "background": "opaque" if background == "auto" else background,
        "output_format": output_format,
        "quality": "high" if quality == "auto" else quality,
        "size": f"{width}x{height}",
    }
    text_tokens = count_text(prompt)
    image_tokens = IMAGE_INPUT_TOKENS * input_images
    output = output_tokens(width, height, resolved["quality"]) * n
    usage = {
        "input_tokens": text_tokens + image_tokens,
        "input_tokens_details": {"text_tokens": text_tokens, "image_tokens": image_tokens},
        "output_tokens": output,
        "total_tokens": text_tokens + image_tokens + output,
    }
    if field_bool(body, "stream"):
        events = []
        for _ in range(n):
            for index in range(partials):
                events.append(
                    typed_event(
                        {
                            "type": f"{operation}.partial_image",
                            "b64_json": TINY_PNG_B64,
                            "created_at": ctx.created,
                            **resolved,
                            "partial_image_index": index,
                        }
                    )
                )
            events.append(
                typed_event(
                    {
                        "type": f"{operation}.completed",
                        "b64_json": TINY_PNG_B64,
                        "created_at": ctx.created,
                        **resolved,
                        "usage": usage,
                    }
                )
            )
        return Reply(events=events, usage=usage)
    return Reply(
        body={
            "created": ctx.created,
            "background": resolved["background"],
            "data": [{"b64_json": TINY_PNG_B64} for _ in range(n)],
            "output_format": output_format,
            "quality": resolved["quality"],
            "size": resolved["size"],
            "usage": usage,
        },
        usage=usage,
    )


def _gpt_size(ctx: Context) -> tuple[int, int]:
    size = field_str(ctx.body, "size", "auto")
    if size == "auto":
        return 1024, 1024
    match = _SIZE.match(size)
    fixed = ctx.model.name.startswith("gpt-image-1")
    if match is None or (fixed and size not in _GPT_IMAGE_1_SIZES):
        raise _errors.invalid_value("size", size, _GPT_IMAGE_1_SIZES)
    return int(match.group(1)), int(match.group(2))


def _dalle_images(ctx: Context, prompt: str, n: int, files_url: str) -> Reply:
    body = ctx.body
    model = ctx.model.name
    if field_bool(body, "stream"):
        raise _errors.invalid_request(
            f"Streaming is not supported for the model `{model}`.", param="stream"
        )
    if model == "dall-e-3" and n != 1:
        raise _errors.invalid_request("You must provide n=1 for this model.", param="n")
    sizes = _DALLE_SIZES.get(model, _DALLE_SIZES["dall-e-2"])
    size = field_str(body, "size", "1024x1024")
    if size not in sizes:
        raise _errors.invalid_value("size", size, sizes)
    quality = field_str(body, "quality", "standard")
    qualities = _DALLE_QUALITIES.get(model, ("standard",))
    if quality != "auto" and quality not in qualities:
        raise _errors.invalid_value("quality", quality, qualities)
    response_format = _choice(body, "response_format", ("url", "b64_json"), "url")
    data: list[dict[str, Any]] = []
    for _ in range(n):
        item: dict[str, Any] = {}
        if model == "dall-e-3":
            item["revised_prompt"] = prompt
        if response_format == "b64_json":
            item["b64_json"] = TINY_PNG_B64
        else:
            item["url"] = f"{files_url}/img-{random_id('', 24)}.png"
        data.append(item)
    return Reply(body={"created": ctx.created, "data": data})


def _choice(body: dict[str, Any], name: str, allowed: tuple[str, ...], default: str) -> str:
    value = body.get(name)
    if value is None:
        return default
    if value not in allowed:
        raise _errors.invalid_value(name, value, allowed)
    return str(value)
