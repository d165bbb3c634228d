"""A small ``multipart/form-data`` reader for the upload endpoints (image edits, audio).

The SDK sends uploads as multipart forms: plain fields (``model``, ``prompt``, ``n``,
``include[]``) and file parts (``image``/``image[]``, ``mask``, ``file``). ``parse_form``
turns the plain fields into a dict shaped like a JSON body, so the endpoint builders and
the request log treat both alike, and keeps only the size, name and type of each file:
file contents are never stored.

Field names follow the SDK's bracket convention: ``name[]`` (sent once per item) becomes a
list under ``name``, ``name[key]`` a nested object; values stay the strings that were sent.
"""

from __future__ import annotations

import email.policy
from dataclasses import dataclass, field
from email.message import Message
from email.parser import BytesHeaderParser
from typing import Any

_HEADER_PARSER = BytesHeaderParser(policy=email.policy.HTTP)


@dataclass(frozen=True, slots=True)
class UploadedFile:
    """One file part: its field (brackets stripped), file name, declared type and size."""

    field: str
    filename: str
    content_type: str
    size: int


@dataclass(slots=True)
class Form:
    """A parsed form: the plain fields as a JSON-like dict, and the uploaded files."""

    fields: dict[str, Any] = field(default_factory=dict)
    files: list[UploadedFile] = field(default_factory=list)

    def files_named(self, name: str) -> list[UploadedFile]:
        return [upload for upload in self.files if upload.field == name]


def is_multipart(content_type: str) -> bool:
    return content_type.split(";", 1)[0].strip().lower() == "multipart/form-data"


def parse_form(content_type: str, raw: bytes) -> Form | None:
    """The form in ``raw``, or None when it is not well-formed multipart/form-data."""
    header = Message()
    header["content-type"] = content_type
    boundary = header.get_boundary()
    if not boundary:
        return None
    delimiter = b"\r\n--" + boundary.encode("latin-1")
    segments = (b"\r\n" + raw).split(delimiter)
    if len(segments) < 2 or not segments[-1].startswith(b"--"):
        return None  # no closing delimiter: a truncated or foreign body
    form = Form()
    for segment in segments[1:-1]:
        # After the delimiter: optional transport padding, CRLF, headers, CRLF CRLF, content.
        _, _, part = segment.partition(b"\r\n")
        if part.startswith(b"\r\n"):
            head, content = b"", part[2:]
        else:
            head, separator, content = part.partition(b"\r\n\r\n")
            if not separator:
                return None
        headers = _HEADER_PARSER.parsebytes(head + b"\r\n\r\n")
        name = headers.get_param("name", header="content-disposition")
        if not isinstance(name, str) or not name:
            return None
        filename = headers.get_filename()
        if filename is not None:
            form.files.append(
                UploadedFile(
                    field=_base_name(name),
                    filename=filename,
                    content_type=headers.get_content_type()
                    if headers.get("content-type")
                    else "application/octet-stream",
                    size=len(content),
                )
            )
        else:
            _store(form.fields, name, content.decode("utf-8", errors="replace"))
    return form


def _base_name(name: str) -> str:
    return name.split("[", 1)[0] if name.endswith("]") else name


def _store(fields: dict[str, Any], name: str, value: str) -> None:
    """Put ``value`` under ``name``, honouring ``name[]`` and ``name[key]``."""
    if name.endswith("[]"):
        existing = fields.setdefault(name[:-2], [])
        if isinstance(existing, list):
            existing.append(value)
        return
    base, bracket, rest = name.partition("[")
    if bracket and rest.endswith("]") and "[" not in rest:
        nested = fields.setdefault(base, {})
        if isinstance(nested, dict):
            nested[rest[:-1]] = value
        return
    previous = fields.get(name)
    if previous is None:
        fields[name] = value
    elif isinstance(previous, list):
        previous.append(value)
    else:
        fields[name] = [previous, value]
