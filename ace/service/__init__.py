"""ACE as a service for agents outside Python: the HTTP API over the store (:mod:`ace.service.app`, ``ace serve``)
with bearer tokens bound to namespaces and roles (:mod:`ace.service.auth`). FastAPI is imported by
:mod:`ace.service.app` only."""

from ace.service.auth import Grant, Tokens

__all__ = ["Grant", "Tokens"]
