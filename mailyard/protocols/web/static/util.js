// Shared by the webmail's modules: the htm binding, JMAP property lists, formatting helpers.
import { h } from './vendor/preact.mjs';
import htm from './vendor/htm.mjs';

export const html = htm.bind(h);
export const PAGE = 50;
export const UNDO_CHOICES = [5, 10, 20, 30];
const UNDO_KEY = 'mailyard.undoSeconds';
// How long every sent message is held so that Undo can take it back: a choice of this browser's
// (Settings), 10 s unless changed.
export function undoSeconds() {
  const n = Number(localStorage.getItem(UNDO_KEY));
  return UNDO_CHOICES.includes(n) ? n : 10;
}
export function setUndoSeconds(n) { localStorage.setItem(UNDO_KEY, String(n)); }
export const LIST_PROPS = ['id', 'threadId', 'mailboxIds', 'keywords', 'from', 'subject', 'preview',
  'receivedAt', 'hasAttachment'];
export const READ_PROPS = [...LIST_PROPS, 'to', 'cc', 'replyTo', 'messageId', 'references', 'sentAt',
  'textBody', 'htmlBody', 'attachments', 'bodyValues', 'header:Authentication-Results:asText:all'];
export const SYSTEM = ['inbox', 'drafts', 'sent', 'archive', 'junk', 'trash'];
export const ROLE_NAMES = { inbox: 'Inbox', drafts: 'Drafts', sent: 'Sent', archive: 'Archive', junk: 'Spam', trash: 'Trash' };

export function sender(e) {
  const f = (e.from || [])[0];
  return f ? (f.name || f.email) : '(no sender)';
}

export function shortDate(iso) {
  const d = new Date(iso);
  const now = new Date();
  return d.toDateString() === now.toDateString()
    ? d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' })
    : d.toLocaleDateString([], { month: 'short', day: 'numeric', year: d.getFullYear() === now.getFullYear() ? undefined : 'numeric' });
}

export function size(n) {
  return n < 1024 ? `${n} B` : n < 1048576 ? `${(n / 1024).toFixed(0)} KB` : `${(n / 1048576).toFixed(1)} MB`;
}

export function addresses(list) {
  return (list || []).map((a) => (a.name ? `${a.name} <${a.email}>` : a.email)).join(', ');
}

export function parseAddresses(text) {
  return text.split(/[,;]/).map((s) => s.trim()).filter(Boolean).map((s) => {
    const m = /^(.*)<([^>]+)>$/.exec(s);
    return m ? { name: m[1].trim().replace(/^"|"$/g, '') || null, email: m[2].trim() } : { name: null, email: s };
  });
}

// Plain text with its http(s) links made clickable; everything else stays text.
export function Linked({ text }) {
  const out = [];
  const re = /\bhttps?:\/\/[^\s<>"')\]]+/g;
  let last = 0;
  let m;
  while ((m = re.exec(text)) !== null) {
    out.push(text.slice(last, m.index));
    out.push(html`<a href=${m[0]} target="_blank" rel="noopener noreferrer">${m[0]}</a>`);
    last = m.index + m[0].length;
  }
  out.push(text.slice(last));
  return html`<pre class="text">${out}</pre>`;
}
