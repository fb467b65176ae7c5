"""The runner's HTTP surface (issue 14): the request and response models first; the server, its
authentication and the typed client are built on them."""
