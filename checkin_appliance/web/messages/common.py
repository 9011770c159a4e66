"""Texts shared by every page, and the sign-in, setup and access pages."""

MESSAGES = {
    "en": {
        "common.product": "Patient check-in",
        "common.sign_out": "Sign out",
        "common.signed_in_as": "Signed in as {label}",
        "common.language": "Language",
        "common.lang.en": "English",
        "common.lang.es": "Español",
        "common.error.network": "The connection to the check-in box was lost. Retrying…",
        "common.error.generic": "Something went wrong. Please try again.",
        "common.reconnecting": "Reconnecting…",
        "common.minutes": "{n} min",
        "common.just_now": "just now",
        "login.title": "Sign in",
        "login.intro": "Enter this device's 8-digit access token and its password.",
        "login.token": "Access token",
        "login.password": "Password",
        "login.submit": "Sign in",
        "login.failed": "That token and password do not match an active credential.",
        "login.missing": "Please enter both the token and the password.",
        "login.throttled": "Too many failed attempts. Wait {seconds} seconds and try again.",
        "login.setup_hint": "First time? Use the one-time setup code printed when the box started.",
        "signin.cross_origin": "This sign-in did not come from this box's own page. Open the "
        "box's address yourself (type it, or use your bookmark) and sign in there.",
        "setup.title": "Set up this check-in box",
        "setup.intro": "Enter the one-time setup code printed when the box started, and choose "
        "the administrator's password.",
        "setup.code": "Setup code",
        "setup.password": "New administrator password",
        "setup.confirm": "Repeat the password",
        "setup.submit": "Create administrator",
        "setup.mismatch": "The two passwords are not the same.",
        "setup.password_required": "Please choose a password.",
        "setup.password_too_short": "The password must have at least 8 characters.",
        "setup.password_too_long": "The password is too long.",
        "setup.admin_password_too_short": "The administrator's password must have at least 12 "
        "characters.",
        "setup.password_too_weak": "That password is too easy to guess. Avoid common passwords, "
        "the clinic's name, names and dates, and repeated or sequential characters; a few "
        "unrelated words work well.",
        "setup.bad_code": "That setup code is not right. Check the box's start-up messages.",
        "setup.done_title": "The administrator is ready",
        "setup.done_token": "The administrator's access token is {token}. Write it down: you "
        "need it with the password to sign in again.",
        "setup.continue": "Continue to administration",
        "forbidden.title": "This page is not for this device",
        "forbidden.body": "This device is signed in as {label}, which cannot open this page.",
        "forbidden.go": "Go to this device's page",
        "signed_out.title": "This device was signed out by the administrator",
        "signed_out.body": "Please tell the reception staff. Nothing needs to be done here.",
        "signed_out.staff": "Staff: sign this device in",
        "role.form": "Check-in kiosk",
        "role.doctor": "Doctor",
        "role.queue": "Waiting-room display",
        "role.admin": "Administrator",
    },
    "es": {
        "common.product": "Registro de pacientes",
        "common.sign_out": "Cerrar sesión",
        "common.signed_in_as": "Sesión iniciada como {label}",
        "common.language": "Idioma",
        "common.lang.en": "English",
        "common.lang.es": "Español",
        "common.error.network": "Se perdió la conexión con el equipo de registro. Reintentando…",
        "common.error.generic": "Algo salió mal. Inténtelo de nuevo.",
        "common.reconnecting": "Reconectando…",
        "common.minutes": "{n} min",
        "common.just_now": "ahora mismo",
        "login.title": "Iniciar sesión",
        "login.intro": "Introduzca el código de acceso de 8 dígitos de este dispositivo y su "
        "contraseña.",
        "login.token": "Código de acceso",
        "login.password": "Contraseña",
        "login.submit": "Entrar",
        "login.failed": "El código y la contraseña no corresponden a una credencial activa.",
        "login.missing": "Introduzca el código y la contraseña.",
        "login.throttled": "Demasiados intentos fallidos. Espere {seconds} segundos e "
        "inténtelo de nuevo.",
        "signin.cross_origin": "Este inicio de sesión no vino de la página de esta caja. Abra "
        "usted mismo la dirección de la caja (escríbala o use su marcador) e inicie sesión allí.",
        "login.setup_hint": "¿Primera vez? Use el código de configuración que mostró el equipo "
        "al arrancar.",
        "setup.title": "Configurar este equipo de registro",
        "setup.intro": "Introduzca el código de configuración de un solo uso que mostró el "
        "equipo al arrancar y elija la contraseña del administrador.",
        "setup.code": "Código de configuración",
        "setup.password": "Nueva contraseña del administrador",
        "setup.confirm": "Repita la contraseña",
        "setup.submit": "Crear administrador",
        "setup.mismatch": "Las dos contraseñas no coinciden.",
        "setup.password_required": "Elija una contraseña.",
        "setup.password_too_short": "La contraseña debe tener al menos 8 caracteres.",
        "setup.password_too_long": "La contraseña es demasiado larga.",
        "setup.admin_password_too_short": "La contraseña del administrador debe tener al menos "
        "12 caracteres.",
        "setup.password_too_weak": "Esa contraseña es demasiado fácil de adivinar. Evite las "
        "contraseñas comunes, el nombre de la clínica, nombres y fechas, y caracteres repetidos "
        "o consecutivos; unas cuantas palabras sin relación entre sí funcionan bien.",
        "setup.bad_code": "Ese código de configuración no es correcto. Revise los mensajes de "
        "arranque del equipo.",
        "setup.done_title": "El administrador está listo",
        "setup.done_token": "El código de acceso del administrador es {token}. Anótelo: lo "
        "necesitará con la contraseña para volver a entrar.",
        "setup.continue": "Ir a la administración",
        "forbidden.title": "Esta página no es para este dispositivo",
        "forbidden.body": "Este dispositivo tiene la sesión de {label}, que no puede abrir "
        "esta página.",
        "forbidden.go": "Ir a la página de este dispositivo",
        "signed_out.title": "El administrador cerró la sesión de este dispositivo",
        "signed_out.body": "Avise al personal de recepción. No hace falta hacer nada aquí.",
        "signed_out.staff": "Personal: iniciar sesión en este dispositivo",
        "role.form": "Quiosco de registro",
        "role.doctor": "Médico",
        "role.queue": "Pantalla de sala de espera",
        "role.admin": "Administrador",
    },
}
