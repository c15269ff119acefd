"""The ACE console: a playbook's life in a browser, served by ``ace serve`` at ``/ui`` and by ``ace ui``.

Server-rendered pages (Jinja2, :mod:`ace.service.console.app`) over :class:`~ace.service.core.Service`, behind the
service's tokens: a sign-in page keeps the token in an HttpOnly, SameSite=Strict cookie; every form carries a CSRF
token (an HMAC of the session's nonce under the token) and every POST must come from the console's own origin. A
read token sees no write or review controls and is refused (403) by the service's own role check if it posts
anyway. Every asset ships in this package (no CDN); a few lines of JavaScript enhance what works without it.

The data each page shows is gathered by :mod:`ace.service.console.views`, through the service's methods only (the same
namespace and role checks as the HTTP routes), never the store. It is part of the service package because
:func:`ace.service.app.create_app` mounts it (a package imports only from the layers below it: tests/test_layout.py).
"""

from ace.service.console.app import create_console

__all__ = ["create_console"]
