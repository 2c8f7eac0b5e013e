"""Site configuration: models, loading, overrides and error reporting."""

from ems.config.loader import ConfigError, LoadedSite, load_site
from ems.config.models import SiteConfig

__all__ = ["ConfigError", "LoadedSite", "SiteConfig", "load_site"]
