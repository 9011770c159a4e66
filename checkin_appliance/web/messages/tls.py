"""Texts of the "trust this box" section (setup and admin pages) while HTTPS uses a local CA."""

MESSAGES: dict[str, dict[str, str]] = {
    "en": {
        "tls.heading": "Trust this box on your devices",
        "tls.intro": "This box serves its pages over HTTPS with a certificate it made for "
        "itself. Each tablet, display and computer must trust the box's certificate once; "
        "until then the browser warns that the connection is not private, and the kiosk camera "
        "and the live queue may not work.",
        "tls.download": "Download the certificate",
        "tls.address": "On another device, open this address to download it:",
        "tls.fingerprint": "SHA-256 fingerprint",
        "tls.check": "Where a device shows the certificate's SHA-256 fingerprint, check that it "
        "is exactly this one before you trust it.",
        "tls.steps": "Steps for each kind of device",
        "tls.ipad": "iPad",
        "tls.ipad_1": "Open the address above in Safari and allow the configuration profile to "
        "download.",
        "tls.ipad_2": "Open Settings → General → VPN & Device Management, tap the "
        "“checkin-appliance local CA” profile and install it.",
        "tls.ipad_3": "Open Settings → General → About → Certificate Trust Settings and turn on "
        "full trust for “checkin-appliance local CA”.",
        "tls.android": "Android tablet",
        "tls.android_1": "Open the address above in Chrome to download the file.",
        "tls.android_2": "Open Settings → Security → More security settings → Encryption & "
        "credentials → Install a certificate → CA certificate (the names vary a little between "
        "makers).",
        "tls.android_3": "Tap “Install anyway” and choose the downloaded file.",
        "tls.chromebook": "Chromebook",
        "tls.chromebook_1": "Download the file with the button or the address above.",
        "tls.chromebook_2": "Open Settings → Privacy and security → Security → Manage "
        "certificates, go to Authorities and choose Import.",
        "tls.chromebook_3": "Choose the downloaded file and tick “Trust this certificate for "
        "identifying websites”.",
        "tls.windows": "Windows PC",
        "tls.windows_1": "Download the file, open it and choose Install Certificate.",
        "tls.windows_2": "Choose Local Machine, then “Place all certificates in the following "
        "store” → Browse → Trusted Root Certification Authorities, and finish.",
        "tls.windows_3": "Restart the browser. Firefox keeps its own list: Settings → Privacy & "
        "Security → Certificates → View Certificates → Authorities → Import.",
        "tls.after": "Then reload the box's pages: the browser stops warning and the address "
        "starts with https://.",
    },
    "es": {
        "tls.heading": "Confiar en este equipo desde sus dispositivos",
        "tls.intro": "Este equipo sirve sus páginas por HTTPS con un certificado que ha creado "
        "él mismo. Cada tableta, pantalla y ordenador debe confiar una vez en el certificado del "
        "equipo; hasta entonces el navegador avisa de que la conexión no es privada, y la cámara "
        "del quiosco y la cola en directo pueden no funcionar.",
        "tls.download": "Descargar el certificado",
        "tls.address": "En otro dispositivo, abra esta dirección para descargarlo:",
        "tls.fingerprint": "Huella digital SHA-256",
        "tls.check": "Si un dispositivo muestra la huella SHA-256 del certificado, compruebe que "
        "es exactamente esta antes de confiar en él.",
        "tls.steps": "Pasos para cada tipo de dispositivo",
        "tls.ipad": "iPad",
        "tls.ipad_1": "Abra la dirección de arriba en Safari y permita descargar el perfil de "
        "configuración.",
        "tls.ipad_2": "Abra Ajustes → General → VPN y gestión de dispositivos, toque el perfil "
        "«checkin-appliance local CA» e instálelo.",
        "tls.ipad_3": "Abra Ajustes → General → Información → Ajustes de confianza de "
        "certificados y active la confianza total para «checkin-appliance local CA».",
        "tls.android": "Tableta Android",
        "tls.android_1": "Abra la dirección de arriba en Chrome para descargar el archivo.",
        "tls.android_2": "Abra Ajustes → Seguridad → Más ajustes de seguridad → Cifrado y "
        "credenciales → Instalar un certificado → Certificado de CA (los nombres cambian un poco "
        "según el fabricante).",
        "tls.android_3": "Toque «Instalar de todos modos» y elija el archivo descargado.",
        "tls.chromebook": "Chromebook",
        "tls.chromebook_1": "Descargue el archivo con el botón o la dirección de arriba.",
        "tls.chromebook_2": "Abra Configuración → Privacidad y seguridad → Seguridad → Gestionar "
        "certificados, vaya a Autoridades y elija Importar.",
        "tls.chromebook_3": "Elija el archivo descargado y marque «Confiar en este certificado "
        "para identificar sitios web».",
        "tls.windows": "PC con Windows",
        "tls.windows_1": "Descargue el archivo, ábralo y elija Instalar certificado.",
        "tls.windows_2": "Elija Equipo local y luego «Colocar todos los certificados en el "
        "siguiente almacén» → Examinar → Entidades de certificación raíz de confianza, y "
        "finalice.",
        "tls.windows_3": "Reinicie el navegador. Firefox tiene su propia lista: Ajustes → "
        "Privacidad y seguridad → Certificados → Ver certificados → Autoridades → Importar.",
        "tls.after": "Después vuelva a cargar las páginas del equipo: el navegador deja de avisar "
        "y la dirección empieza por https://.",
    },
}
