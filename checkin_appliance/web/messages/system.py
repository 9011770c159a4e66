"""Texts of /admin's System section (the box's health) and its warnings, by code."""

MESSAGES: dict[str, dict[str, str]] = {
    "en": {
        "admin.nav_system": "System",
        "admin.system.heading": "System",
        "admin.system.intro": "The box's health: what it runs, its clock, disk, database, "
        "certificate and last backup. Warnings come first.",
        "admin.system.version": "Version",
        "admin.system.uptime": "Running for",
        "admin.system.clock": "Clock",
        "admin.system.disk": "Disk",
        "admin.system.database": "Database size",
        "admin.system.health": "Database health",
        "admin.system.certificate": "Certificate",
        "admin.system.backup": "Last backup",
        "admin.system.uptime_days": "{days} d {hours} h",
        "admin.system.uptime_hours": "{hours} h {minutes} min",
        "admin.system.clock_value": "{time} ({zone})",
        "admin.system.disk_value": "{free} free of {total}",
        "admin.system.database_value": "{db} (+ {wal} log)",
        "admin.system.health_ok": "Sound (checked in {seconds} s)",
        "admin.system.health_damaged": "Damaged",
        "admin.system.cert_off": "None: plain HTTP",
        "admin.system.cert_value": "{mode}, valid until {date}",
        "admin.system.cert_unreadable": "{mode}, cannot be read",
        "admin.system.cert_mode.self-signed": "The box's own",
        "admin.system.cert_mode.own": "The clinic's",
        "admin.system.backup_none": "Never",
        "admin.system.backup_ok": "{age} ago, {size}, to {where}",
        "admin.system.backup_failed": "Failed {age} ago ({where}): {error}",
        "admin.system.age_days": "{n} d",
        "admin.system.age_hours": "{n} h",
        "admin.system.age_minutes": "{n} min",
        "admin.system.error": "The box's health cannot be read right now.",
        "admin.system.warning.disk_low": "The disk is nearly full ({free} free). Delete old "
        "backups or photos kept on the box, or move to a larger card.",
        "admin.system.warning.disk_full": "The disk is full ({free} free): check-ins are "
        "refused. Free space on the box now.",
        "admin.system.warning.database_damaged": "The database is damaged. Restore the latest "
        "backup (see the README) and keep the damaged file for support.",
        "admin.system.warning.backup_never": "No backup has been made yet.",
        "admin.system.warning.backup_old": "The last backup is {days} days old.",
        "admin.system.warning.backup_failed": "The last backup failed.",
        "admin.system.warning.certificate_expiring": "The certificate ends in {days} days.",
        "admin.system.warning.certificate_expired": "The certificate has expired: browsers "
        "warn when they open the box.",
        "admin.system.warning.clock_implausible": "The box's clock is wrong ({reason}): "
        "set it below from this browser's time, or check the box's network time.",
        "admin.system.warning.clock_jumped.forward": "The box's clock jumped forward by "
        "{amount} ({at}): sign-ins and open visits were adjusted to it.",
        "admin.system.warning.clock_jumped.back": "The box's clock jumped back by {amount} "
        "({at}): sign-ins and open visits were adjusted to it.",
        "admin.system.warning.replica_failing": "Replication to {where} is failing: {error}. "
        "The box keeps working; check that the share or server is reachable.",
        "admin.system.warning.replica_behind": "The replica at {where} is behind: recent "
        "check-ins are not copied yet.",
        "admin.system.warning.replica_stopped": "Replication to {where} is stopped; the box "
        "is restarting it.",
        "admin.system.clock_reason.before_build": "earlier than this program's release",
        "admin.system.clock_reason.behind_database": "earlier than times it already recorded",
        "admin.system.clock_compare": "The box's clock says {box}; this browser says {browser}.",
        "admin.system.clock_set": "Set the box's clock to this browser's time",
        "admin.system.clock_confirm": "Set the box's clock to {browser}? Check first that this "
        "device's clock is right. Nobody is signed out; waiting times are adjusted.",
        "admin.system.clock_asked": "Asked: the box sets its clock to {time} within a few seconds.",
        "admin.system.clock_error.clock_helper_missing": "This box cannot set its own clock: "
        "the helper that does it (checkin-appliance-clock) comes with the checkin-appliance "
        "package, and it is not installed here. Install the package, or set the clock on the "
        "box itself (timedatectl set-time).",
        "admin.system.clock_error.clock_time_invalid": "The box refused this browser's time as "
        "implausible: check this device's date and time.",
        "admin.system.clock_error.other": "The box's clock cannot be set right now ({code}).",
        "admin.system.warning.other": "Warning: {code}",
    },
    "es": {
        "admin.nav_system": "Sistema",
        "admin.system.heading": "Sistema",
        "admin.system.intro": "El estado del equipo: qué versión ejecuta, su reloj, disco, "
        "base de datos, certificado y última copia de seguridad. Los avisos van primero.",
        "admin.system.version": "Versión",
        "admin.system.uptime": "En marcha desde hace",
        "admin.system.clock": "Reloj",
        "admin.system.disk": "Disco",
        "admin.system.database": "Tamaño de la base de datos",
        "admin.system.health": "Estado de la base de datos",
        "admin.system.certificate": "Certificado",
        "admin.system.backup": "Última copia de seguridad",
        "admin.system.uptime_days": "{days} d {hours} h",
        "admin.system.uptime_hours": "{hours} h {minutes} min",
        "admin.system.clock_value": "{time} ({zone})",
        "admin.system.disk_value": "{free} libres de {total}",
        "admin.system.database_value": "{db} (+ {wal} de registro)",
        "admin.system.health_ok": "Correcta (comprobada en {seconds} s)",
        "admin.system.health_damaged": "Dañada",
        "admin.system.cert_off": "Ninguno: HTTP sin cifrar",
        "admin.system.cert_value": "{mode}, válido hasta el {date}",
        "admin.system.cert_unreadable": "{mode}, no se puede leer",
        "admin.system.cert_mode.self-signed": "El del propio equipo",
        "admin.system.cert_mode.own": "El de la clínica",
        "admin.system.backup_none": "Nunca",
        "admin.system.backup_ok": "Hace {age}, {size}, en {where}",
        "admin.system.backup_failed": "Falló hace {age} ({where}): {error}",
        "admin.system.age_days": "{n} d",
        "admin.system.age_hours": "{n} h",
        "admin.system.age_minutes": "{n} min",
        "admin.system.error": "No se puede leer el estado del equipo ahora mismo.",
        "admin.system.warning.disk_low": "El disco está casi lleno ({free} libres). Borre "
        "copias o fotos antiguas guardadas en el equipo, o use una tarjeta mayor.",
        "admin.system.warning.disk_full": "El disco está lleno ({free} libres): no se admiten "
        "registros. Libere espacio en el equipo ya.",
        "admin.system.warning.database_damaged": "La base de datos está dañada. Restaure la "
        "última copia de seguridad (vea el README) y guarde el archivo dañado para soporte.",
        "admin.system.warning.backup_never": "Todavía no se ha hecho ninguna copia de seguridad.",
        "admin.system.warning.backup_old": "La última copia de seguridad tiene {days} días.",
        "admin.system.warning.backup_failed": "La última copia de seguridad falló.",
        "admin.system.warning.certificate_expiring": "El certificado caduca dentro de {days} días.",
        "admin.system.warning.certificate_expired": "El certificado ha caducado: los "
        "navegadores avisan al abrir el equipo.",
        "admin.system.warning.clock_implausible": "El reloj del equipo está mal ({reason}): "
        "póngalo en hora abajo con la hora de este navegador, o revise la hora de red del "
        "equipo.",
        "admin.system.warning.clock_jumped.forward": "El reloj del equipo saltó {amount} hacia "
        "delante ({at}): las sesiones y las visitas abiertas se ajustaron.",
        "admin.system.warning.clock_jumped.back": "El reloj del equipo saltó {amount} hacia "
        "atrás ({at}): las sesiones y las visitas abiertas se ajustaron.",
        "admin.system.warning.replica_failing": "La réplica en {where} está fallando: {error}. "
        "El equipo sigue funcionando; compruebe que la carpeta o el servidor están accesibles.",
        "admin.system.warning.replica_behind": "La réplica en {where} va retrasada: los "
        "registros recientes aún no están copiados.",
        "admin.system.warning.replica_stopped": "La réplica en {where} está parada; el equipo "
        "la está reiniciando.",
        "admin.system.clock_reason.before_build": "anterior a la publicación de este programa",
        "admin.system.clock_reason.behind_database": "anterior a horas que ya registró",
        "admin.system.clock_compare": "El reloj del equipo dice {box}; este navegador dice "
        "{browser}.",
        "admin.system.clock_set": "Poner el reloj del equipo a la hora de este navegador",
        "admin.system.clock_confirm": "¿Poner el reloj del equipo a {browser}? Compruebe antes "
        "que la hora de este dispositivo es correcta. Nadie pierde la sesión; los tiempos de "
        "espera se ajustan.",
        "admin.system.clock_asked": "Pedido: el equipo pone su reloj a {time} en unos segundos.",
        "admin.system.clock_error.clock_helper_missing": "Este equipo no puede poner en hora "
        "su propio reloj: el asistente que lo hace (checkin-appliance-clock) viene con el "
        "paquete checkin-appliance y aquí no está instalado. Instale el paquete, o ponga la "
        "hora en el propio equipo (timedatectl set-time).",
        "admin.system.clock_error.clock_time_invalid": "El equipo rechazó la hora de este "
        "navegador por inverosímil: revise la fecha y la hora de este dispositivo.",
        "admin.system.clock_error.other": "Ahora no se puede poner en hora el reloj del equipo "
        "({code}).",
        "admin.system.warning.other": "Aviso: {code}",
    },
}
