"""Model loading and the per-architecture table of hook sites."""

from halluscan.models.loading import LoadedModel, load_model
from halluscan.models.sites import SITE_TABLES, SiteTable, site_table

__all__ = ["LoadedModel", "load_model", "SITE_TABLES", "SiteTable", "site_table"]
