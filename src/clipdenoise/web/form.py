"""Parsing the demo's form posts entirely in memory.

Starlette's form parser spools any part over 1 MB to a temporary file; the demo promises that
nothing a visitor sends touches the disk, so requests are parsed here instead, from the body
already held in memory (its size is bounded by the server's upload limit before it is read).
Accepted: ``multipart/form-data`` (what browsers and ``curl -F`` send) and
``application/x-www-form-urlencoded`` (``curl -d sample=scene``). Anything malformed is an
:class:`~clipdenoise.web.upload.UploadRejectedError` with a message for the visitor.

Example:
    >>> body = (b"--b\\r\\nContent-Disposition: form-data; name=\\"seed\\"\\r\\n\\r\\n7\\r\\n"
    ...         b"--b--\\r\\n")
    >>> parse_form("multipart/form-data; boundary=b", body).fields
    {'seed': '7'}
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import parse_qsl

from clipdenoise.web.upload import UploadRejectedError

#: Form fields (not files) accepted in one request, and the longest value of one (bytes).
MAX_FIELDS = 16
MAX_FIELD_BYTES = 64 * 1024
#: Files accepted in one request.
MAX_FILES = 1
_MAX_PART_HEADERS = 8


@dataclass(frozen=True)
class FormFile:
    """An uploaded file, in memory."""

    filename: str | None
    data: bytes


@dataclass
class Form:
    """A parsed form: text fields by name (the first of repeated names) and files by name."""

    fields: dict[str, str] = field(default_factory=dict)
    files: dict[str, FormFile] = field(default_factory=dict)


def parse_form(content_type: str | None, body: bytes) -> Form:
    """Parse a form post held in memory.

    Args:
        content_type: The request's ``Content-Type`` header.
        body: The whole request body.

    Returns:
        The :class:`Form`.

    Raises:
        UploadRejectedError: not a form, malformed, more than :data:`MAX_FIELDS` fields or
            :data:`MAX_FILES` files, or a field longer than :data:`MAX_FIELD_BYTES`.
    """
    kind, options = _parse_options(content_type or "")
    if kind == "application/x-www-form-urlencoded":
        return _parse_urlencoded(body)
    if kind == "multipart/form-data":
        boundary = options.get(b"boundary", b"")
        if not boundary or len(boundary) > 200:
            raise UploadRejectedError("the multipart form has no valid boundary")
        return _parse_multipart(boundary, body)
    raise UploadRejectedError("the request is not a valid multipart form upload", 415)


def _parse_options(header: str) -> tuple[str, dict[bytes, bytes]]:
    from python_multipart.multipart import parse_options_header

    try:
        kind, options = parse_options_header(header)
    except Exception as error:  # noqa: BLE001 - a malformed header is the client's fault
        raise UploadRejectedError("the request has a malformed Content-Type header") from error
    return kind.decode("latin-1").lower(), options


def _parse_urlencoded(body: bytes) -> Form:
    try:
        text = body.decode("utf-8")
        pairs = parse_qsl(text, keep_blank_values=True, max_num_fields=MAX_FIELDS)
    except (UnicodeDecodeError, ValueError) as error:
        raise UploadRejectedError(
            f"the form is malformed or has too many fields ({error})"
        ) from None
    form = Form()
    for name, value in pairs:
        if len(value) > MAX_FIELD_BYTES:
            raise UploadRejectedError(f"the form field {name[:40]!r} is too long")
        form.fields.setdefault(name, value)
    return form


class _MultipartCollector:
    """Callbacks of ``python_multipart``'s streaming parser, keeping every part in memory."""

    def __init__(self) -> None:
        self.form = Form()
        self.count_fields = 0
        self.count_files = 0
        self._header_name = bytearray()
        self._header_value = bytearray()
        self._headers: dict[bytes, bytes] = {}
        self._data = bytearray()
        self._is_file = False
        self._name = ""
        self._filename: str | None = None

    def callbacks(self) -> dict:
        return {
            "on_part_begin": self.on_part_begin,
            "on_part_data": self.on_part_data,
            "on_part_end": self.on_part_end,
            "on_header_field": self.on_header_field,
            "on_header_value": self.on_header_value,
            "on_header_end": self.on_header_end,
            "on_headers_finished": self.on_headers_finished,
        }

    def on_part_begin(self) -> None:
        self._headers, self._data = {}, bytearray()

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def on_header_end(self) -> None:
        if len(self._headers) >= _MAX_PART_HEADERS:
            raise UploadRejectedError("a part of the multipart form has too many headers")
        self._headers[bytes(self._header_name).lower()] = bytes(self._header_value)
        self._header_name, self._header_value = bytearray(), bytearray()

    def on_headers_finished(self) -> None:
        from python_multipart.multipart import parse_options_header

        disposition, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        if disposition.lower() != b"form-data" or b"name" not in options:
            raise UploadRejectedError("a part of the multipart form has no field name")
        self._name = options[b"name"].decode("utf-8", errors="replace")
        self._is_file = b"filename" in options
        self._filename = (
            options[b"filename"].decode("utf-8", errors="replace") if self._is_file else None
        )
        if self._is_file:
            self.count_files += 1
            if self.count_files > MAX_FILES:
                raise UploadRejectedError(f"send at most {MAX_FILES} file per request")
        else:
            self.count_fields += 1
            if self.count_fields > MAX_FIELDS:
                raise UploadRejectedError(f"the form has more than {MAX_FIELDS} fields")

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        self._data += data[start:end]
        if not self._is_file and len(self._data) > MAX_FIELD_BYTES:
            raise UploadRejectedError(f"the form field {self._name[:40]!r} is too long")

    def on_part_end(self) -> None:
        if self._is_file:
            self.form.files.setdefault(self._name, FormFile(self._filename, bytes(self._data)))
        else:
            value = bytes(self._data).decode("utf-8", errors="replace")
            self.form.fields.setdefault(self._name, value)
        self._data = bytearray()


def _parse_multipart(boundary: bytes, body: bytes) -> Form:
    from python_multipart.multipart import MultipartParser

    collector = _MultipartCollector()
    try:
        parser = MultipartParser(boundary, collector.callbacks())
        parser.write(body)
        parser.finalize()
    except UploadRejectedError:
        raise
    except Exception as error:  # noqa: BLE001 - the parser raises several types for bad input
        raise UploadRejectedError("the multipart form is malformed") from error
    return collector.form


__all__ = ["MAX_FIELDS", "MAX_FIELD_BYTES", "MAX_FILES", "Form", "FormFile", "parse_form"]
