"""checkin-appliance: patient check-in and waiting-room queue for small clinics."""

__version__ = "0.1.0"
