"""The web side of ``postroom server``: pages for people, the runner API for bots."""

from postroom.server.web.app import create_app

__all__ = ["create_app"]
