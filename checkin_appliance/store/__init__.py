"""SQLite persistence: the only place that speaks SQL."""

from checkin_appliance.store.database import Store
from checkin_appliance.store.errors import DiskFull, StoreDamaged, StoreUnavailable

__all__ = ["DiskFull", "Store", "StoreDamaged", "StoreUnavailable"]
