"""SQLite persistence: the only place that speaks SQL."""

from checkin_appliance.store.database import Store, StoreDamaged, StoreUnavailable

__all__ = ["Store", "StoreDamaged", "StoreUnavailable"]
