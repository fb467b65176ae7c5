"""The body of creating a job, as JSON or as ``multipart/form-data`` (the script as a file part, the other
fields as form fields: ``curl -F name=check_price -F script=@check_price.py -F every='daily 9am'``).

Both become the same :class:`models.JobCreate`, validated by the same model, so a refusal says the same
sentence whichever way the job came; the service then checks the script as for any other caller. The
body is already within the server's limit (:class:`~runner.http.serve.BodyLimit`) when it is parsed
here. An upload's file name is not used (the job's name names the file), but one with a path, a NUL or a
control character in it is refused: it is a sign of a client that means something else."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException

from . import models
from .problems import Problem
from .serve import MAX_BODY

JSON, FORM = "application/json", "multipart/form-data"
LISTS = {"allow_hosts"}  # form fields that may repeat (one value a field)
MAX_FIELDS = 64  # parts of a form; more is not a job


def _invalid(loc: str, msg: str, kind: str = "value_error") -> RequestValidationError:
    return RequestValidationError([{"type": kind, "loc": ("body", loc), "msg": msg}])


async def job_create(request: Request) -> models.JobCreate:
    """The JobCreate a request's body gives, as JSON (also with no Content-Type) or as a multipart form;
    415 for any other type, 422 (with the field and what to change) for what the model refuses."""
    kind = request.headers.get("content-type", JSON).split(";")[0].strip().lower()
    if kind == FORM:
        fields = await _form_fields(request)
        try:
            return models.JobCreate.model_validate(fields)
        except ValidationError as exc:
            raise RequestValidationError(exc.errors(include_url=False, include_context=False)) from None
    if kind == JSON or kind.endswith("+json"):
        try:
            return models.JobCreate.model_validate_json(await request.body())
        except ValidationError as exc:
            raise RequestValidationError(exc.errors(include_url=False, include_context=False)) from None
    raise Problem(415, f"a job is sent as {JSON} or {FORM} (the script as a file part), not {kind}")


async def _form_fields(request: Request) -> dict[str, Any]:
    try:
        form = await request.form(max_files=1, max_fields=MAX_FIELDS, max_part_size=MAX_BODY)
    except (MultiPartException, HTTPException) as exc:  # Starlette turns the parser's refusal into a 400
        said = str(exc.detail if isinstance(exc, HTTPException) else exc.message).rstrip(".")
        raise Problem(400, f"the form cannot be read ({said}): send multipart/form-data with the script as "
                      "one file part and the other fields as text parts") from None
    fields: dict[str, Any] = {}
    try:
        for key, value in form.multi_items():
            text = await _text(key, value)
            if key in LISTS:
                fields.setdefault(key, []).append(text)
            elif key in fields:
                raise _invalid(key, f"is given more than once: give {key} once")
            else:
                fields[key] = text
    finally:
        await form.close()  # the file part's spooled temporary file
    return fields


async def _text(key: str, value: UploadFile | str) -> str:
    """A form field's text: a file part's bytes as UTF-8 (refused, with where, if they are not)."""
    if isinstance(value, str):
        return value
    _check_filename(key, value.filename)
    data = await value.read()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _invalid(key, f"the uploaded file is not UTF-8 text (byte {exc.start}): save it as UTF-8") from None


def _check_filename(key: str, name: str | None) -> None:
    if not name:
        return
    if "/" in name or "\\" in name or name in (".", ".."):
        raise _invalid(key, f"the uploaded file's name {name[:80]!r} has a path in it: upload it under a plain "
                       "name such as check_price.py (the job's name names the saved script)")
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise _invalid(key, f"the uploaded file's name {name[:80]!r} has a control character in it: rename "
                       "the file (the job's name names the saved script)")


def form_schema() -> dict[str, Any]:
    """The OpenAPI schema of the multipart form: JobCreate's fields, with the script as a file part."""
    schema = models.JobCreate.model_json_schema()
    props = dict(schema["properties"])
    props["script"] = {**props["script"], "type": "string", "contentMediaType": "text/x-python"}
    props["script"].pop("maxLength", None)
    return {**schema, "title": "JobCreateForm", "properties": props}


# The request body of creating a job names two schemas; add_schemas() puts them in the document.
REQUEST_BODY = {"required": True, "content": {
    JSON: {"schema": {"$ref": "#/components/schemas/JobCreate"}},
    FORM: {"schema": {"$ref": "#/components/schemas/JobCreateForm"},
           "encoding": {"script": {"contentType": "text/x-python, text/plain, application/octet-stream"}}}}}


def add_schemas(spec: dict[str, Any]) -> None:
    """Put the schemas of :data:`REQUEST_BODY` into an OpenAPI document, made from the model as it is
    when the document is made."""
    schemas = spec.setdefault("components", {}).setdefault("schemas", {})
    made = models.JobCreate.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(made.pop("$defs", {}))
    schemas["JobCreate"], schemas["JobCreateForm"] = made, form_schema()
