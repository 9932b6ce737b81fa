"""The chat socket's error texts, in the visitor's language (en, fr, de, like the widget; English for any other):
the `message` of every `error` frame a visitor's widget may show."""

from chatbot.answers.texts import text_language

__all__ = ["chat_text", "text_language"]

CHAT_TEXTS: dict[str, dict[str, str]] = {
    "not_json_text": {
        "en": "Only JSON text frames are accepted.",
        "fr": "Seules les trames texte JSON sont acceptées.",
        "de": "Nur JSON-Textframes werden akzeptiert.",
    },
    "too_long": {
        "en": "Messages can be at most {max} characters.",
        "fr": "Un message peut contenir au plus {max} caractères.",
        "de": "Nachrichten dürfen höchstens {max} Zeichen lang sein.",
    },
    "bad_json": {
        "en": "That frame is not valid JSON.",
        "fr": "Cette trame n'est pas du JSON valide.",
        "de": "Dieser Frame ist kein gültiges JSON.",
    },
    "not_an_object": {
        "en": "A frame is a JSON object with a string 'type'.",
        "fr": "Une trame est un objet JSON avec un champ texte 'type'.",
        "de": "Ein Frame ist ein JSON-Objekt mit einem Textfeld 'type'.",
    },
    "too_deep": {
        "en": "Frames nest at most {max} levels deep.",
        "fr": "Un frame ne peut pas être imbriqué sur plus de {max} niveaux.",
        "de": "Ein Frame darf höchstens {max} Ebenen tief verschachtelt sein.",
    },
    "nul": {
        "en": "Text may not contain NUL characters.",
        "fr": "Le texte ne peut pas contenir de caractères NUL.",
        "de": "Der Text darf keine NUL-Zeichen enthalten.",
    },
    "empty_message": {
        "en": "A message needs some text.",
        "fr": "Un message doit contenir du texte.",
        "de": "Eine Nachricht braucht etwas Text.",
    },
    "bad_client_id": {
        "en": "client_id must be a string of at most {max} characters.",
        "fr": "client_id doit être un texte d'au plus {max} caractères.",
        "de": "client_id muss ein Text mit höchstens {max} Zeichen sein.",
    },
    "bad_feedback": {
        "en": "Feedback needs a message_id and a value of 'up' or 'down'.",
        "fr": "Un avis demande un message_id et une valeur 'up' ou 'down'.",
        "de": "Feedback braucht eine message_id und den Wert 'up' oder 'down'.",
    },
    "bad_lead_fields": {
        "en": "lead_submit needs 'fields', an object of the form's values.",
        "fr": "lead_submit demande 'fields', un objet avec les valeurs du formulaire.",
        "de": "lead_submit braucht 'fields', ein Objekt mit den Werten des Formulars.",
    },
    "no_such_chat": {
        "en": "This chat does not exist (any more).",
        "fr": "Cette discussion n'existe pas (ou plus).",
        "de": "Diesen Chat gibt es nicht (mehr).",
    },
    "origin_forbidden": {
        "en": "This website is not allowed to use this chat.",
        "fr": "Ce site n'est pas autorisé à utiliser cette discussion.",
        "de": "Diese Website darf diesen Chat nicht verwenden.",
    },
    "too_many_chats": {
        "en": "Too many chats are open from your network.",
        "fr": "Trop de discussions sont ouvertes depuis votre réseau.",
        "de": "Von Ihrem Netzwerk aus sind zu viele Chats geöffnet.",
    },
    "busy": {
        "en": "Please wait until the current answer is finished, or stop it.",
        "fr": "Veuillez attendre la fin de la réponse en cours, ou l'arrêter.",
        "de": "Bitte warten Sie, bis die aktuelle Antwort fertig ist, oder stoppen Sie sie.",
    },
    "unknown_type": {
        "en": "Unknown frame type {type}.",
        "fr": "Type de trame inconnu : {type}.",
        "de": "Unbekannter Frame-Typ {type}.",
    },
    "hello_first": {
        "en": "Send a 'hello' frame first.",
        "fr": "Envoyez d'abord une trame 'hello'.",
        "de": "Senden Sie zuerst einen 'hello'-Frame.",
    },
    "server_error": {
        "en": "Something went wrong on our side. Please try again.",
        "fr": "Un problème est survenu de notre côté. Veuillez réessayer.",
        "de": "Auf unserer Seite ist etwas schiefgelaufen. Bitte versuchen Sie es noch einmal.",
    },
    "too_fast": {
        "en": "You're sending messages very quickly. Please wait a moment and try again.",
        "fr": "Vous envoyez des messages très rapidement. Veuillez patienter un instant et réessayer.",
        "de": "Sie senden sehr schnell Nachrichten. Bitte warten Sie einen Moment und versuchen Sie es erneut.",
    },
    "not_in_conversation": {
        "en": "That answer is not part of this conversation.",
        "fr": "Cette réponse ne fait pas partie de cette discussion.",
        "de": "Diese Antwort gehört nicht zu diesem Gespräch.",
    },
    "new_conversation_too_fast": {
        "en": "You've started several new conversations in a row. Please wait a moment and try again.",
        "fr": "Vous avez commencé plusieurs nouvelles discussions d'affilée. Veuillez patienter un instant et "
        "réessayer.",
        "de": "Sie haben mehrere neue Gespräche hintereinander begonnen. Bitte warten Sie einen Moment und versuchen "
        "Sie es erneut.",
    },
    "lead_too_fast": {
        "en": "Please wait a moment before sending the form again.",
        "fr": "Veuillez patienter un instant avant de renvoyer le formulaire.",
        "de": "Bitte warten Sie einen Moment, bevor Sie das Formular erneut senden.",
    },
}


def chat_text(key: str, language: str = "en", **values) -> str:
    """The text `key` in `language` (one of chatbot.answers.texts.LANGUAGES, else English), {values} filled in."""
    texts = CHAT_TEXTS[key]
    return texts.get(language, texts["en"]).format(**values)
