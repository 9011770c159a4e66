"""Texts of the waiting-room display (/display)."""

MESSAGES: dict[str, dict[str, str]] = {
    "en": {
        "display.title": "Waiting room",
        "display.now_called": "Now calling",
        "display.please_come_in": "Please come in",
        "display.earlier": "Earlier",
        "display.no_calls": "No one has been called yet",
        "display.no_calls_hint": "When the doctor is ready for you, your name appears here.",
        "display.waiting": "Waiting",
        "display.count_one": "1 waiting",
        "display.count_many": "{n} waiting",
        "display.page": "{n}/{of}",
        "display.column_empty": "No one waiting",
        "display.empty": "No one is waiting",
        "display.empty_hint": "Please check in at the tablet by the entrance.",
        "display.loading": "Loading the queue…",
        "display.reconnecting_hint": "The list may be a moment out of date.",
        "display.enable_sound": "Tap to enable sound",
        "display.say_call_room": "{name}, please go to {room}.",
        "display.say_call": "{name}, please come in.",
        # Spoken calls the box could not render (console only: nothing for patients).
        "display.speech_error.speech_unavailable": "Spoken calls: the box cannot speak "
        "(espeak-ng missing or failing); using the browser's voice or the chime alone.",
        "display.speech_error.speech_entry_not_found": "Spoken calls: that call is gone.",
        "display.speech_error.speech_request_invalid": "Spoken calls: this page asked wrongly.",
        "display.speech_error.network": "Spoken calls: the box did not answer; using the "
        "browser's voice or the chime alone.",
    },
    "es": {
        "display.title": "Sala de espera",
        "display.now_called": "Llamando ahora",
        "display.please_come_in": "Puede pasar",
        "display.earlier": "Anteriores",
        "display.no_calls": "Todavía no se ha llamado a nadie",
        "display.no_calls_hint": "Cuando el médico esté listo para atenderle, su nombre aparecerá "
        "aquí.",
        "display.waiting": "En espera",
        "display.count_one": "1 en espera",
        "display.count_many": "{n} en espera",
        "display.page": "{n}/{of}",
        "display.column_empty": "Nadie en espera",
        "display.empty": "No hay nadie esperando",
        "display.empty_hint": "Por favor, regístrese en la tableta de la entrada.",
        "display.loading": "Cargando la lista…",
        "display.reconnecting_hint": "Es posible que la lista no esté al día por un momento.",
        "display.enable_sound": "Toque para activar el sonido",
        "display.say_call_room": "{name}, por favor, pase a {room}.",
        "display.say_call": "{name}, por favor, pase.",
        "display.speech_error.speech_unavailable": "Llamadas habladas: el equipo no puede "
        "hablar (falta espeak-ng o falla); se usa la voz del navegador o solo el timbre.",
        "display.speech_error.speech_entry_not_found": "Llamadas habladas: esa llamada ya no "
        "existe.",
        "display.speech_error.speech_request_invalid": "Llamadas habladas: la página pidió "
        "algo no válido.",
        "display.speech_error.network": "Llamadas habladas: el equipo no respondió; se usa la "
        "voz del navegador o solo el timbre.",
    },
}
