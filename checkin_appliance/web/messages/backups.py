"""Texts of /admin's backups section (web/backups.py's API, static/js/backups.js)."""

MESSAGES: dict[str, dict[str, str]] = {
    "en": {
        "backups.heading": "Backups",
        "backups.intro": "A backup holds every patient's name and photo, encrypted with a "
        "passphrase. Keep the passphrase away from the box: without it no backup can be "
        "restored.",
        "backups.download_heading": "Download a backup now",
        "backups.passphrase": "Passphrase",
        "backups.passphrase_again": "The passphrase again",
        "backups.passphrase_hint": "At least 12 characters; four random words are good.",
        "backups.download": "Download a backup",
        "backups.downloading": "Making the backup…",
        "backups.downloaded": "Saved as {name}.",
        "backups.nightly_heading": "Nightly backups",
        "backups.folder": "Folder (a mounted USB stick or network share)",
        "backups.folder_hint": "The box writes a marker file there; a night when the folder "
        "has no marker (the stick is not plugged in) is reported, and nothing is written.",
        "backups.at": "Time of day",
        "backups.keep": "Keep",
        "backups.keep_unit": "Keep by",
        "backups.keep_days": "days",
        "backups.keep_copies": "copies",
        "backups.schedule_passphrase_hint": "Kept on the box so it can run at night; "
        "leave empty to keep the one set before.",
        "backups.schedule_save": "Save the schedule",
        "backups.run_now": "Run now",
        "backups.schedule_off": "Turn off",
        "backups.saved": "Saved.",
        "backups.running": "Writing the backup…",
        "backups.ran": "Backup written.",
        "backups.turned_off": "Nightly backups are off.",
        "backups.state_off": "No nightly backups are set.",
        "backups.state_on": "Next backup: {next}.",
        "backups.not_ready": "The folder's disk is not there (no marker file): plug it in.",
        "backups.not_mount_point": "This folder is not a mount point: check it is the stick "
        "or share and not the box's own disk.",
        "backups.last_ok": "Last backup: {at}, {size}.",
        "backups.last_failed": "Last backup failed: {at}.",
        "backups.last_none": "No backup made from this page yet.",
        "backups.restore_heading": "Restore a backup",
        "backups.restore_intro": "The file is checked first (passphrase, every checksum, the "
        "database); then the box restarts with it. The current data is moved aside, not "
        "deleted. Everyone signs in again with the backup's credentials.",
        "backups.restore_file": "Backup file (.tar.age)",
        "backups.restore_confirm": "Replace the current data with this backup",
        "backups.restore": "Restore",
        "backups.uploading": "Sending the backup: {percent}%",
        "backups.checking": "Checking the backup…",
        "backups.restarting": "Restored. The box is restarting…",
        "backups.staged": "Checked. Restart the server to put it in place.",
        "backups.back": "The box is back. Reloading…",
        "backups.error.mismatch": "The two passphrases differ.",
        "backups.error.backup_passphrase_invalid": "The passphrase must be at least 12 "
        "characters, on one line.",
        "backups.error.backup_failed": "The backup could not be written (is the disk full?).",
        "backups.error.backup_folder_invalid": "That folder does not exist or the box cannot "
        "write in it.",
        "backups.error.backup_schedule_invalid": "Check the time and how many to keep.",
        "backups.error.backup_not_scheduled": "Save a schedule first.",
        "backups.error.backup_target_missing": "The folder's disk is not there: plug it in.",
        "backups.error.restore_too_large": "The file is larger than any backup the box makes.",
        "backups.error.restore_refused": "This file cannot be restored: wrong passphrase, "
        "or not a complete, unaltered backup of this program. Nothing was changed.",
        "backups.error.other": "That did not work. Please try again.",
    },
    "es": {
        "backups.heading": "Copias de seguridad",
        "backups.intro": "Una copia contiene el nombre y la foto de cada paciente, cifrados "
        "con una frase de contraseña. Guárdela lejos del equipo: sin ella ninguna copia se "
        "puede restaurar.",
        "backups.download_heading": "Descargar una copia ahora",
        "backups.passphrase": "Frase de contraseña",
        "backups.passphrase_again": "Repita la frase de contraseña",
        "backups.passphrase_hint": "Al menos 12 caracteres; cuatro palabras al azar van bien.",
        "backups.download": "Descargar una copia",
        "backups.downloading": "Haciendo la copia…",
        "backups.downloaded": "Guardada como {name}.",
        "backups.nightly_heading": "Copias cada noche",
        "backups.folder": "Carpeta (una memoria USB o un recurso de red montados)",
        "backups.folder_hint": "El equipo deja allí un archivo marcador; una noche en que la "
        "carpeta no lo tenga (la memoria no está conectada) se avisa y no se escribe nada.",
        "backups.at": "Hora del día",
        "backups.keep": "Conservar",
        "backups.keep_unit": "Conservar por",
        "backups.keep_days": "días",
        "backups.keep_copies": "copias",
        "backups.schedule_passphrase_hint": "Se guarda en el equipo para poder copiar de "
        "noche; déjela vacía para conservar la anterior.",
        "backups.schedule_save": "Guardar la programación",
        "backups.run_now": "Copiar ahora",
        "backups.schedule_off": "Desactivar",
        "backups.saved": "Guardado.",
        "backups.running": "Escribiendo la copia…",
        "backups.ran": "Copia escrita.",
        "backups.turned_off": "Las copias nocturnas están desactivadas.",
        "backups.state_off": "No hay copias nocturnas programadas.",
        "backups.state_on": "Próxima copia: {next}.",
        "backups.not_ready": "El disco de la carpeta no está (no hay archivo marcador): conéctelo.",
        "backups.not_mount_point": "Esta carpeta no es un punto de montaje: compruebe que es "
        "la memoria o el recurso de red y no el disco del propio equipo.",
        "backups.last_ok": "Última copia: {at}, {size}.",
        "backups.last_failed": "La última copia falló: {at}.",
        "backups.last_none": "Aún no se ha hecho ninguna copia desde esta página.",
        "backups.restore_heading": "Restaurar una copia",
        "backups.restore_intro": "Primero se comprueba el archivo (frase, cada suma de "
        "control, la base de datos); después el equipo se reinicia con ella. Los datos "
        "actuales se apartan, no se borran. Todos vuelven a entrar con las credenciales de "
        "la copia.",
        "backups.restore_file": "Archivo de copia (.tar.age)",
        "backups.restore_confirm": "Sustituir los datos actuales por esta copia",
        "backups.restore": "Restaurar",
        "backups.uploading": "Enviando la copia: {percent} %",
        "backups.checking": "Comprobando la copia…",
        "backups.restarting": "Restaurada. El equipo se está reiniciando…",
        "backups.staged": "Comprobada. Reinicie el servidor para aplicarla.",
        "backups.back": "El equipo ha vuelto. Recargando…",
        "backups.error.mismatch": "Las dos frases no coinciden.",
        "backups.error.backup_passphrase_invalid": "La frase debe tener al menos 12 "
        "caracteres, en una línea.",
        "backups.error.backup_failed": "No se pudo escribir la copia (¿está lleno el disco?).",
        "backups.error.backup_folder_invalid": "Esa carpeta no existe o el equipo no puede "
        "escribir en ella.",
        "backups.error.backup_schedule_invalid": "Revise la hora y cuántas conservar.",
        "backups.error.backup_not_scheduled": "Guarde primero una programación.",
        "backups.error.backup_target_missing": "El disco de la carpeta no está: conéctelo.",
        "backups.error.restore_too_large": "El archivo es mayor que cualquier copia que haga "
        "el equipo.",
        "backups.error.restore_refused": "Este archivo no se puede restaurar: frase "
        "incorrecta, o no es una copia completa e inalterada de este programa. No se cambió "
        "nada.",
        "backups.error.other": "No funcionó. Inténtelo de nuevo.",
    },
}
