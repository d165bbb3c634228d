"""POST /v1/embeddings: deterministic unit vectors, as floats or base64 float32.

Each vector is seeded from the model and the input, so the same text always embeds the
same way and different texts differ; ``dimensions`` shortens text-embedding-3 vectors.
"""

from __future__ import annotations

import base64
import hashlib
import math
import random
import struct
from typing import Any

from . import _errors
from ._request import Context
from ._sse import Reply
from ._text import Prompt


def embeddings(ctx: Context) -> Reply:
    body = ctx.body
    model = ctx.model
    if model.kind != "embedding":
        raise _errors.invalid_request(
            f"The model `{model.name}` does not support embeddings.", param="model"
        )
    inputs = _inputs(body.get("input"))
    dimensions = body.get("dimensions")
    if dimensions is not None:
        if not model.custom_dimensions:
            raise _errors.invalid_request(
                "This model does not support specifying dimensions.", param="dimensions"
            )
        error = _errors.out_of_range("dimensions", dimensions, 1, model.dimensions)
        if error is not None:
            raise error
    size = int(dimensions) if dimensions is not None else model.dimensions
    encoding = body.get("encoding_format", "float")
    if encoding not in ("float", "base64"):
        raise _errors.invalid_request(
            f"Invalid value: '{encoding}'. Supported values are: 'float' and 'base64'.",
            param="encoding_format",
            code="invalid_value",
        )
    data = []
    for index, item in enumerate(inputs):
        vector = _vector(model.snapshot, repr(item), size)
        embedding: Any = (
            base64.b64encode(struct.pack(f"<{size}f", *vector)).decode()
            if encoding == "base64"
            else vector
        )
        data.append({"object": "embedding", "index": index, "embedding": embedding})
    tokens = sum(_tokens(item) for item in inputs)
    usage = {"prompt_tokens": tokens, "total_tokens": tokens}
    return Reply(
        body={"object": "list", "data": data, "model": model.snapshot, "usage": usage},
        usage=usage,
    )


def _inputs(value: Any) -> list[Any]:
    """One entry per embedding: a string, or a list of token ids (recorded forms)."""
    if isinstance(value, str) and value:
        return [value]
    if isinstance(value, list) and value:
        if all(isinstance(item, int) and not isinstance(item, bool) for item in value):
            return [value]
        if all(isinstance(item, str) and item for item in value) or all(
            isinstance(item, list) and item for item in value
        ):
            return list(value)
    raise _errors.invalid_request(
        "'$.input' is invalid. Please check the API reference: "
        "https://platform.openai.com/docs/api-reference.",
    )


def _tokens(item: Any) -> int:
    if isinstance(item, list):
        return len(item)
    prompt = Prompt(tokens=0)
    prompt.add_text(item)
    return prompt.total


def _vector(model: str, text: str, size: int) -> list[float]:
    seed = int.from_bytes(hashlib.sha256(f"{model}\x00{text}".encode()).digest()[:8], "big")
    rng = random.Random(seed)
    raw = [rng.gauss(0.0, 1.0) for _ in range(size)]
    norm = math.sqrt(sum(value * value for value in raw)) or 1.0
    # Round through float32 so JSON floats and base64 payloads carry the same numbers.
    packed = struct.pack(f"<{size}f", *(value / norm for value in raw))
    return list(struct.unpack(f"<{size}f", packed))
