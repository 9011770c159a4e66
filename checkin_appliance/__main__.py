"""Lets `python -m checkin_appliance` run the command-line interface."""

from checkin_appliance.cli import main

raise SystemExit(main())
