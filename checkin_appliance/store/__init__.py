"""SQLite persistence: the only place that speaks SQL."""

from checkin_appliance.store.database import Store, StoreUnavailable

__all__ = ["Store", "StoreUnavailable"]
