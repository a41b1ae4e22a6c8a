"""labelmill: a self-hosted, open data-labeling platform."""

from typing import TYPE_CHECKING

__version__ = "0.1.0"
__all__ = ["Client", "__version__"]

if TYPE_CHECKING:
    from labelmill.client import Client


def __getattr__(name: str) -> object:
    # Lazy, so `import labelmill` (and every CLI command) does not pay for httpx.
    if name == "Client":
        from labelmill.client import Client

        return Client
    raise AttributeError(f"module 'labelmill' has no attribute {name!r}")
