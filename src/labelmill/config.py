"""Runtime configuration, read from the environment (``LABELMILL_*``).

Kept tiny on purpose: every command takes ``--db`` so a setting here is only the default.
"""

from __future__ import annotations

from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LABELMILL_", extra="ignore")

    data_dir: Path = Path.home() / ".labelmill"
    database_url: str | None = None
    #: Where media files are kept, as a URL: ``file:///srv/labelmill/media`` or a plain folder
    #: (``LABELMILL_MEDIA_URL``; ``labelmill serve --media URL``). Only local folders for now.
    media_url: str | None = None
    #: The older way to name a local media folder (``LABELMILL_MEDIA_DIR``); ``media_url`` wins.
    media_dir: Path | None = None
    #: Largest accepted upload (bytes) for ``POST /imports``; bigger requests get 413.
    max_upload_bytes: int = 512 * 1024 * 1024
    #: Lifetime of a web session cookie, seconds.
    session_seconds: int = 14 * 24 * 3600

    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.data_dir / 'labelmill.db'}"

    def resolved_media_url(self) -> str:
        """The media store's URL: ``media_url``, else ``media_dir``, else ``<data_dir>/media``."""
        if self.media_url:
            return self.media_url
        return (self.media_dir or (self.data_dir / "media")).expanduser().resolve().as_uri()


def get_settings() -> Settings:
    return Settings()
