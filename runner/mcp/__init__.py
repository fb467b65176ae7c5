"""The runner as an MCP server (issue 15), on the official SDK: agents schedule and follow jobs with the
same tools on every runner.

* :mod:`.tools` — the tools, their input schemas (the HTTP API's models) and how a call is refused;
* :mod:`.describe` — their descriptions and the prompt, with this runner's limits;
* :mod:`.inputs` — the input models the HTTP API has no body for;
* :mod:`.actions` — the HTTP routes' calls of the service layer, made the same way;
* :mod:`.backend` — what they act on: this runner's service layer, or a remote runner's API;
* :mod:`.server` — the MCP server (tools, the system prompt as a prompt, the thread's files as resources);
* :mod:`.http` — streamable HTTP at /mcp of the runner's HTTP server, behind the API's tokens;
* :mod:`.stdio` — ``runner mcp`` over stdio.
"""
