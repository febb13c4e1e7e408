"""mailtoken: OAuth2 token helper for mail clients."""

__version__ = "0.1.0"
