"""UI texts by page; merged into one catalog by checkin_appliance.web.i18n."""
