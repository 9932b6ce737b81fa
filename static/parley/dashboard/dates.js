// One way to show a date on every dashboard page, in the staff member's time zone: rows rendered by the server
// (a <time datetime>) and rows that arrive live use the same formatter, so they never look different.
const STYLES = {
  datetime: { day: "2-digit", month: "short", hour: "2-digit", minute: "2-digit" },
  time: { hour: "2-digit", minute: "2-digit", second: "2-digit" },
  long: { day: "2-digit", month: "short", year: "numeric", hour: "2-digit", minute: "2-digit" },
};

export function formatDate(iso, style = "datetime") {
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? "" : date.toLocaleString([], STYLES[style] || STYLES.datetime);
}

/** A <time> element for `iso`, formatted like the server-rendered ones once localiseTimes has run. */
export function timeElement(iso, style = "datetime") {
  const time = document.createElement("time");
  time.dateTime = iso;
  time.dataset.format = style;
  time.textContent = formatDate(iso, style);
  return time;
}

/** Re-format every server-rendered <time datetime> under `root` (the server's text stays for no-JS readers). */
export function localiseTimes(root = document) {
  for (const time of root.querySelectorAll("time[datetime]")) {
    const text = formatDate(time.dateTime, time.dataset.format);
    if (text) time.textContent = text;
  }
}
