// Interface strings of the chat page. Add a language by adding a dictionary with the same keys;
// a missing key falls back to English.

const STRINGS = {
  en: {
    close: "Close chat",
    newConversation: "New conversation",
    online: "Online",
    messages: "Conversation",
    placeholder: "Type your message…",
    composerLabel: "Your message",
    send: "Send",
    stop: "Stop",
    stopping: "Stopping…",
    handoff: "Talk to a person",
    connecting: "Connecting…",
    reconnecting: "Reconnecting…",
    unavailable: "This chat is not available right now.",
    typing: "{name} is typing",
    you: "You",
    sources: "Sources",
    source: "Source {n}: {title}",
    helpful: "Helpful",
    notHelpful: "Not helpful",
    feedbackThanks: "Thanks for your feedback!",
    retry: "Retry",
    notSent: "Not sent.",
    stopped: "Answer stopped.",
    answerFailed: "The answer could not be completed.",
    tooLong: "Your message is too long ({count} of {max} characters).",
    counter: "{count} of {max} characters",
    staffJoined: "{name} joined the conversation",
    staffLeft: "The agent left the conversation",
    staffDefault: "Support agent",
    genericError: "Something went wrong. Please try again.",
    leadTitle: "Leave your details",
    leadSubmit: "Send",
    leadDismiss: "No thanks",
    leadChoose: "Choose…",
    leadSending: "Sending…",
    leadFixErrors: "Please correct the fields marked below.",
    leadNotSent: "Your details could not be sent. Please try again.",
    leadSaved: "Thanks! We'll get back to you.",
  },
  fr: {
    close: "Fermer la discussion",
    newConversation: "Nouvelle conversation",
    online: "En ligne",
    messages: "Conversation",
    placeholder: "Écrivez votre message…",
    composerLabel: "Votre message",
    send: "Envoyer",
    stop: "Arrêter",
    stopping: "Arrêt…",
    handoff: "Parler à une personne",
    connecting: "Connexion…",
    reconnecting: "Reconnexion…",
    unavailable: "Cette discussion n’est pas disponible pour le moment.",
    typing: "{name} écrit",
    you: "Vous",
    sources: "Sources",
    source: "Source {n} : {title}",
    helpful: "Utile",
    notHelpful: "Pas utile",
    feedbackThanks: "Merci pour votre avis !",
    retry: "Réessayer",
    notSent: "Non envoyé.",
    stopped: "Réponse interrompue.",
    answerFailed: "La réponse n’a pas pu être terminée.",
    tooLong: "Votre message est trop long ({count} sur {max} caractères).",
    counter: "{count} sur {max} caractères",
    staffJoined: "{name} a rejoint la conversation",
    staffLeft: "L’agent a quitté la conversation",
    staffDefault: "Agent du support",
    genericError: "Une erreur est survenue. Veuillez réessayer.",
    leadTitle: "Laissez vos coordonnées",
    leadSubmit: "Envoyer",
    leadDismiss: "Non merci",
    leadChoose: "Choisir…",
    leadSending: "Envoi…",
    leadFixErrors: "Veuillez corriger les champs indiqués ci-dessous.",
    leadNotSent: "Vos coordonnées n’ont pas pu être envoyées. Veuillez réessayer.",
    leadSaved: "Merci ! Nous vous recontacterons.",
  },
  de: {
    close: "Chat schließen",
    newConversation: "Neues Gespräch",
    online: "Online",
    messages: "Unterhaltung",
    placeholder: "Nachricht eingeben…",
    composerLabel: "Ihre Nachricht",
    send: "Senden",
    stop: "Stopp",
    stopping: "Wird gestoppt…",
    handoff: "Mit einem Menschen sprechen",
    connecting: "Verbindung wird hergestellt…",
    reconnecting: "Verbindung wird wiederhergestellt…",
    unavailable: "Dieser Chat ist derzeit nicht verfügbar.",
    typing: "{name} schreibt",
    you: "Sie",
    sources: "Quellen",
    source: "Quelle {n}: {title}",
    helpful: "Hilfreich",
    notHelpful: "Nicht hilfreich",
    feedbackThanks: "Danke für Ihr Feedback!",
    retry: "Erneut versuchen",
    notSent: "Nicht gesendet.",
    stopped: "Antwort gestoppt.",
    answerFailed: "Die Antwort konnte nicht fertiggestellt werden.",
    tooLong: "Ihre Nachricht ist zu lang ({count} von {max} Zeichen).",
    counter: "{count} von {max} Zeichen",
    staffJoined: "{name} ist dem Gespräch beigetreten",
    staffLeft: "Der Mitarbeiter hat das Gespräch verlassen",
    staffDefault: "Support-Mitarbeiter",
    genericError: "Etwas ist schiefgelaufen. Bitte versuchen Sie es erneut.",
    leadTitle: "Hinterlassen Sie Ihre Daten",
    leadSubmit: "Senden",
    leadDismiss: "Nein danke",
    leadChoose: "Auswählen…",
    leadSending: "Wird gesendet…",
    leadFixErrors: "Bitte korrigieren Sie die unten markierten Felder.",
    leadNotSent: "Ihre Daten konnten nicht gesendet werden. Bitte versuchen Sie es erneut.",
    leadSaved: "Danke! Wir melden uns bei Ihnen.",
  },
};

let current = STRINGS.en;
let currentLang = "en";

/** Picks the dictionary for a language tag ("fr", "de-CH"); unknown languages get English. */
export function setLanguage(lang) {
  const base = String(lang || "en").slice(0, 2).toLowerCase();
  currentLang = STRINGS[base] ? base : "en";
  current = STRINGS[currentLang];
  return currentLang;
}

/** The interface string `key` with {placeholders} filled from `vars`. */
export function t(key, vars = {}) {
  const template = current[key] ?? STRINGS.en[key] ?? key;
  return template.replace(/\{(\w+)\}/g, (_, name) => (name in vars ? String(vars[name]) : `{${name}}`));
}

/** A number formatted for the current language (the character counter). */
export function formatNumber(n) {
  return new Intl.NumberFormat(currentLang).format(n);
}
