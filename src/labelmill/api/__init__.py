"""FastAPI application: thin routers over :mod:`labelmill.services`."""

from labelmill.api.app import create_app

__all__ = ["create_app"]
