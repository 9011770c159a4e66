"""Texts of the kiosk page(s)."""

MESSAGES: dict[str, dict[str, str]] = {
    "en": {
        "kiosk.title": "Check in",
        "kiosk.welcome": "Welcome",
        "kiosk.intro": "Please tell us your name. A photo is optional.",
        "kiosk.name_label": "Your full name",
        "kiosk.name_hint": "First name and last name.",
        "kiosk.name_missing": "Please type your name.",
        "kiosk.photo_heading": "Your photo (optional)",
        "kiosk.photo_none": "No photo",
        "kiosk.camera_start": "Use the camera",
        "kiosk.camera_starting": "Starting the camera…",
        "kiosk.camera_preview": "Camera preview",
        "kiosk.camera_unavailable": "The camera is not available. You can take or choose a "
        "photo instead, or check in without one.",
        "kiosk.take_photo": "Take photo",
        "kiosk.retake": "Retake",
        "kiosk.no_photo": "No photo",
        "kiosk.choose_photo": "Take or choose a photo",
        "kiosk.choose_another": "Choose another photo",
        "kiosk.your_photo": "Your photo",
        "kiosk.photo_chosen": "Photo chosen",
        "kiosk.photo_taken": "Your photo is ready.",
        "kiosk.photo_dropped": "No photo will be sent.",
        "kiosk.privacy_heading": "About your photo",
        "kiosk.privacy_why": "It helps our staff recognise you when it is your turn.",
        "kiosk.privacy_who_staff": "Only the clinic's staff see it.",
        "kiosk.privacy_who_display": "The clinic's staff see it, and it is shown next to your "
        "name on the waiting-room screen.",
        "kiosk.privacy_clean": "Hidden details such as the date and place are removed before it "
        "is stored.",
        "kiosk.privacy_optional": "You can check in without a photo.",
        "kiosk.submit": "Check in",
        "kiosk.sending": "Checking you in…",
        "kiosk.still_trying": "Still trying… The connection is slow. Please wait a moment; "
        "there is no need to press again.",
        "kiosk.gave_up": "We could not reach the check-in system. Please press “Check in” "
        "again, or let the front desk know.",
        "kiosk.error_photo_type": "This file is not a photo we can use. Please take the photo "
        "again, choose another one, or check in without a photo.",
        "kiosk.error_photo_damaged": "We could not read this photo. Please take it again, choose "
        "another one, or check in without a photo.",
        "kiosk.error_photo_too_large": "This photo is too big. Please take it again, choose a "
        "smaller one, or check in without a photo.",
        "kiosk.error_name_too_long": "That name is too long. Please shorten it.",
        "kiosk.error_other": "We could not check you in: {message}",
        "kiosk.error_disk_full": "We could not check you in: the check-in box has run out of "
        "storage space. Please tell the front desk. (Staff: see System in Administration.)",
        "kiosk.error_refused": "This kiosk may not check patients in right now. Please let the "
        "front desk know.",
        "kiosk.thanks": "Thank you!",
        "kiosk.checked_in": "You are checked in.",
        "kiosk.position": "You are number {n} in line.",
        "kiosk.position_next": "You are next in line.",
        "kiosk.take_seat": "Please take a seat; your name will appear on the screen.",
        "kiosk.resets_in": "This screen clears in {n} s.",
        "kiosk.choose_line": "What are you here for?",
        "kiosk.choose_line_hint": "Touch one to continue.",
        "kiosk.line_chosen": "You are checking in for",
        "kiosk.change_line": "Change",
        "kiosk.priority_question": "Do you need priority? (elderly, pregnant, disability)",
        "kiosk.priority_yes": "Yes",
        "kiosk.priority_no": "No",
        "kiosk.your_ticket": "Your ticket",
        "kiosk.on_the_screen": "On the waiting-room screen you appear as",
        "kiosk.position_line": "You are number {n} in line for {line}.",
        "kiosk.position_next_line": "You are next in line for {line}.",
        "kiosk.error_line_unavailable": "That service is not open right now. Please choose "
        "another one, or ask at the front desk.",
        "kiosk.error_priority": "We could not record your answer about priority. Please press "
        "“Check in” again.",
        "kiosk.done": "Done",
        "kiosk.scan_status": "Scan to follow your place on your phone",
        "kiosk.estimate": "Estimated wait: {low}\u2013{high} min",
    },
    "es": {
        "kiosk.title": "Registro",
        "kiosk.welcome": "Le damos la bienvenida",
        "kiosk.intro": "Escriba su nombre, por favor. La foto es opcional.",
        "kiosk.name_label": "Su nombre completo",
        "kiosk.name_hint": "Nombre y apellidos.",
        "kiosk.name_missing": "Escriba su nombre, por favor.",
        "kiosk.photo_heading": "Su foto (opcional)",
        "kiosk.photo_none": "Sin foto",
        "kiosk.camera_start": "Usar la cámara",
        "kiosk.camera_starting": "Encendiendo la cámara…",
        "kiosk.camera_preview": "Vista de la cámara",
        "kiosk.camera_unavailable": "La cámara no está disponible. Puede hacer o elegir una foto "
        "de otra forma, o registrarse sin foto.",
        "kiosk.take_photo": "Hacer la foto",
        "kiosk.retake": "Repetir",
        "kiosk.no_photo": "Sin foto",
        "kiosk.choose_photo": "Hacer o elegir una foto",
        "kiosk.choose_another": "Elegir otra foto",
        "kiosk.your_photo": "Su foto",
        "kiosk.photo_chosen": "Foto elegida",
        "kiosk.photo_taken": "Su foto está lista.",
        "kiosk.photo_dropped": "No se enviará ninguna foto.",
        "kiosk.privacy_heading": "Sobre su foto",
        "kiosk.privacy_why": "Ayuda a nuestro personal a reconocerle cuando llegue su turno.",
        "kiosk.privacy_who_staff": "Solo la ve el personal de la clínica.",
        "kiosk.privacy_who_display": "La ve el personal de la clínica y aparece junto a su "
        "nombre en la pantalla de la sala de espera.",
        "kiosk.privacy_clean": "Antes de guardarla se eliminan los datos ocultos, como la fecha "
        "y el lugar.",
        "kiosk.privacy_optional": "Puede registrarse sin foto.",
        "kiosk.submit": "Registrarme",
        "kiosk.sending": "Registrándole…",
        "kiosk.still_trying": "Seguimos intentándolo… La conexión va lenta. Espere un momento, "
        "por favor; no hace falta volver a pulsar.",
        "kiosk.gave_up": "No hemos podido conectar con el sistema de registro. Pulse "
        "«Registrarme» otra vez o avise en recepción.",
        "kiosk.error_photo_type": "Este archivo no es una foto que podamos usar. Haga la foto "
        "otra vez, elija otra o regístrese sin foto.",
        "kiosk.error_photo_damaged": "No hemos podido leer esta foto. Hágala otra vez, elija "
        "otra o regístrese sin foto.",
        "kiosk.error_photo_too_large": "Esta foto es demasiado grande. Hágala otra vez, elija "
        "una más pequeña o regístrese sin foto.",
        "kiosk.error_name_too_long": "Ese nombre es demasiado largo. Acórtelo, por favor.",
        "kiosk.error_other": "No hemos podido registrarle: {message}",
        "kiosk.error_disk_full": "No hemos podido registrarle: el equipo de registro se ha "
        "quedado sin espacio de almacenamiento. Avise en recepción, por favor. (Personal: vea "
        "Sistema en Administración.)",
        "kiosk.error_refused": "Este quiosco no puede registrar pacientes ahora mismo. Avise en "
        "recepción, por favor.",
        "kiosk.thanks": "¡Gracias!",
        "kiosk.checked_in": "Registro completado.",
        "kiosk.position": "Tiene el número {n} de la fila.",
        "kiosk.position_next": "Su turno es el siguiente.",
        "kiosk.take_seat": "Tome asiento, por favor; su nombre aparecerá en la pantalla.",
        "kiosk.resets_in": "Esta pantalla se borrará en {n} s.",
        "kiosk.choose_line": "¿A qué viene hoy?",
        "kiosk.choose_line_hint": "Toque una opción para continuar.",
        "kiosk.line_chosen": "Se está registrando para",
        "kiosk.change_line": "Cambiar",
        "kiosk.priority_question": "¿Necesita atención preferente? (personas mayores, embarazo, "
        "discapacidad)",
        "kiosk.priority_yes": "Sí",
        "kiosk.priority_no": "No",
        "kiosk.your_ticket": "Su número",
        "kiosk.on_the_screen": "En la pantalla de la sala de espera aparecerá como",
        "kiosk.position_line": "Tiene el número {n} de la fila de {line}.",
        "kiosk.position_next_line": "Su turno es el siguiente en {line}.",
        "kiosk.error_line_unavailable": "Ese servicio no está abierto ahora. Elija otro, por "
        "favor, o pregunte en recepción.",
        "kiosk.error_priority": "No hemos podido guardar su respuesta sobre la atención "
        "preferente. Pulse «Registrarme» otra vez.",
        "kiosk.done": "Listo",
        "kiosk.scan_status": "Escanee para seguir su lugar en la fila en su teléfono",
        "kiosk.estimate": "Espera estimada: {low}\u2013{high} min",
    },
}
