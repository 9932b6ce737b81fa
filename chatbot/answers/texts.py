"""What the bot says when it cannot answer, in the visitor's language (en, fr, de, like the widget; English for
any other). The English texts are the ones the rest of the code names (STRICT_NO_ANSWER, ...)."""

LANGUAGES = ("en", "fr", "de")

ANSWER_TEXTS: dict[str, dict[str, str]] = {
    "strict_no_answer": {
        "en": (
            "I'm sorry, I couldn't find anything about that in our documentation, so I'd rather not guess. "
            "You can ask for a person from our team, or leave your details and we'll get back to you."
        ),
        "fr": (
            "Désolé, je n'ai rien trouvé à ce sujet dans notre documentation, et je préfère ne pas deviner. "
            "Vous pouvez demander à parler à une personne de notre équipe, ou laisser vos coordonnées pour que nous "
            "vous recontactions."
        ),
        "de": (
            "Das tut mir leid, dazu habe ich in unserer Dokumentation nichts gefunden, und ich möchte nicht raten. "
            "Sie können nach einer Person aus unserem Team fragen oder Ihre Kontaktdaten hinterlassen, dann melden "
            "wir uns bei Ihnen."
        ),
    },
    "from_our_documentation": {
        "en": "From our documentation:",
        "fr": "D'après notre documentation :",
        "de": "Aus unserer Dokumentation:",
    },
    "model_down_notice": {
        "en": "I can't write a full answer right now, so here is what our documentation says.",
        "fr": "Je ne peux pas rédiger de réponse complète pour le moment ; voici ce que dit notre documentation.",
        "de": "Ich kann gerade keine vollständige Antwort schreiben; hier steht, was unsere Dokumentation sagt.",
    },
    "nothing_in_documentation": {
        "en": (
            "I couldn't find anything in our documentation that answers this. You can ask for a person from our "
            "team, or leave your details and we'll get back to you."
        ),
        "fr": (
            "Je n'ai rien trouvé dans notre documentation qui réponde à cette question. Vous pouvez demander à "
            "parler à une personne de notre équipe, ou laisser vos coordonnées pour que nous vous recontactions."
        ),
        "de": (
            "In unserer Dokumentation habe ich nichts gefunden, das diese Frage beantwortet. Sie können nach einer "
            "Person aus unserem Team fragen oder Ihre Kontaktdaten hinterlassen, dann melden wir uns bei Ihnen."
        ),
    },
    "model_down_no_passages": {
        "en": (
            "I'm sorry, I can't answer right now. Please try again in a few minutes, or ask for a person from our team."
        ),
        "fr": (
            "Désolé, je ne peux pas répondre pour le moment. Veuillez réessayer dans quelques minutes, ou demander à "
            "parler à une personne de notre équipe."
        ),
        "de": (
            "Das tut mir leid, ich kann gerade nicht antworten. Bitte versuchen Sie es in ein paar Minuten noch "
            "einmal, oder fragen Sie nach einer Person aus unserem Team."
        ),
    },
    "answer_cut_off": {
        "en": "The answer was cut off by a problem on our side. Please try again.",
        "fr": "La réponse a été interrompue par un problème de notre côté. Veuillez réessayer.",
        "de": "Die Antwort wurde durch ein Problem auf unserer Seite unterbrochen. Bitte versuchen Sie es noch einmal.",
    },
    "answer_lost": {
        "en": "The answer was cut off by a problem on our side. Please ask again.",
        "fr": "La réponse a été interrompue par un problème de notre côté. Veuillez reposer votre question.",
        "de": (
            "Die Antwort wurde durch ein Problem auf unserer Seite unterbrochen. Bitte stellen Sie Ihre Frage noch "
            "einmal."
        ),
    },
}


def text_language(*candidates: str | None) -> str:
    """The first of `candidates` (language tags: "fr", "de-CH") there are texts in, else English. Pass the
    visitor's language (what the widget shows) before the bot's."""
    for candidate in candidates:
        code = (candidate or "").strip().lower()[:2]
        if code in LANGUAGES:
            return code
    return "en"


def answer_text(key: str, language: str = "en") -> str:
    texts = ANSWER_TEXTS[key]
    return texts.get(language, texts["en"])
