"""The files of a thread's jobs/ directory: how a remote assistant writes a job's input and reads its
``<name>_output.json``. Bodies are raw bytes (``application/octet-stream``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from ..service.filestore import FileBackend
from . import models
from .auth import CallerDep

router = APIRouter(prefix="/v1/threads/{thread}", tags=["files"])
OCTETS = {"content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}


class FileList(BaseModel):
    files: list[models.FileInfo]
    other: int = 0  # entries not shown: directories, links, FIFOs, names not of the plain shape


async def _files(request: Request) -> FileBackend:  # async: no thread pool hop for a lookup
    files: FileBackend = request.app.state.files
    return files


FilesDep = Annotated[FileBackend, Depends(_files)]


@router.get("/files", response_model=FileList, summary="The plain files of the thread's jobs/")
def list_files(thread: str, caller: CallerDep, files: FilesDep) -> FileList:
    listing = files.list(caller.thread(thread))
    return FileList(files=[models.FileInfo(name=f.name, size=f.size, modified=f.modified) for f in listing.files],
                    other=listing.other)


@router.get("/files/{name}", response_class=Response, responses={200: OCTETS}, summary="A file's bytes")
def read_file(thread: str, name: str, caller: CallerDep, files: FilesDep) -> Response:
    data = files.read(caller.thread(thread), name)
    return Response(data, media_type="application/octet-stream")


@router.put("/files/{name}", status_code=204, openapi_extra={"requestBody": {"required": True, **OCTETS}},
            summary="Write a file (replaced whole, atomically)")
async def write_file(request: Request, thread: str, name: str, caller: CallerDep, files: FilesDep) -> Response:
    tid = caller.thread(thread)
    caller.writing()
    data = await request.body()  # at most the server's body limit, already counted
    await run_in_threadpool(files.write, tid, name, data)
    return Response(status_code=204)


@router.delete("/files/{name}", status_code=204, summary="Delete a file")
def delete_file(thread: str, name: str, caller: CallerDep, files: FilesDep) -> Response:
    tid = caller.thread(thread)
    caller.writing()
    files.delete(tid, name)
    return Response(status_code=204)
