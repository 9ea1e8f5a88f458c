// The search box with hints for Gmail's operators as they are typed, and the highlighted
// snippets (SearchSnippet/get) shown with the results.
import { useState } from './vendor/hooks.mjs';
import { html } from './util.js';

export const OPERATORS = [
  ['from:', 'sender, by address or name'], ['to:', 'recipient'], ['cc:', 'copied recipient'],
  ['bcc:', 'blind-copied recipient'], ['subject:', 'words in the subject'], ['body:', 'words in the body'],
  ['is:unread', 'not read yet'], ['is:read', 'already read'], ['is:starred', 'starred'],
  ['has:attachment', 'with attachments'], ['in:', 'in a mailbox or label'], ['label:', 'with a label'],
  ['before:', 'before a date (2026/01/31)'], ['after:', 'after a date (2026/01/31)'],
  ['larger:', 'larger than a size (5M, 200K)'], ['smaller:', 'smaller than a size'],
];

// The hints for the word being typed: operators it begins, or for in:/label: the mailboxes.
export function hints(query, mailboxes) {
  const m = /(-?)(\S*)$/.exec(query);
  const word = m[2].toLowerCase();
  if (!word) return [];
  const place = /^(in|label):(.*)$/.exec(word);
  if (place) {
    return mailboxes.filter((b) => b.role !== 'all')
      .map((b) => `${place[1]}:${(b.role === 'junk' ? 'spam' : b.role || b.name).toLowerCase().replace(/\s/g, '-')}`)
      .filter((t) => t.startsWith(word) && t !== word).slice(0, 8)
      .map((t) => ({ text: t, about: '' }));
  }
  return OPERATORS.filter(([op]) => op.startsWith(word) && op !== word).map(([op, about]) => ({ text: op, about }));
}

function unescape(text) {
  return text.replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&quot;/g, '"').replace(/&#x27;|&#39;/g, "'").replace(/&amp;/g, '&');
}

// A snippet as the server writes it (escaped text, the terms in <mark>) made into nodes: the text
// is never parsed as HTML, only split at the marks.
export function Marked({ text }) {
  const out = [];
  const re = /<mark>(.*?)<\/mark>/g;
  let last = 0;
  let m;
  while ((m = re.exec(text)) !== null) {
    out.push(unescape(text.slice(last, m.index)));
    out.push(html`<mark>${unescape(m[1])}</mark>`);
    last = m.index + m[0].length;
  }
  out.push(unescape(text.slice(last)));
  return out;
}

export function SearchBox({ mailboxes, onSearch, inputRef }) {
  const [query, setQuery] = useState('');
  const [open, setOpen] = useState(false);
  const [active, setActive] = useState(-1);
  const found = open ? hints(query, mailboxes) : [];
  const take = (hint) => {
    const next = query.replace(/(-?)(\S*)$/, (_, neg) => neg + hint.text) + (hint.text.endsWith(':') ? '' : ' ');
    setQuery(next);
    setActive(-1);
    inputRef.current && inputRef.current.focus();
  };
  const submit = (ev) => {
    ev.preventDefault();
    if (active >= 0 && found[active]) { take(found[active]); return; }
    setOpen(false);
    if (query.trim()) onSearch(query.trim());
  };
  const key = (ev) => {
    if (!found.length) return;
    if (ev.key === 'ArrowDown') { ev.preventDefault(); setActive((a) => (a + 1) % found.length); }
    else if (ev.key === 'ArrowUp') { ev.preventDefault(); setActive((a) => (a <= 0 ? found.length - 1 : a - 1)); }
    else if (ev.key === 'Tab') { ev.preventDefault(); take(found[Math.max(active, 0)]); }
  };
  return html`<form class="search" role="search" onSubmit=${submit}>
    <input name="q" ref=${inputRef} type="search" value=${query} autocomplete="off"
      placeholder="Search mail (from: subject: is:unread has:attachment in: …)" aria-label="Search mail"
      role="combobox" aria-autocomplete="list" aria-expanded=${found.length > 0} aria-controls="search-hints"
      onInput=${(e) => { setQuery(e.target.value); setOpen(true); setActive(-1); }} onKeyDown=${key}
      onFocus=${() => setOpen(true)} onBlur=${() => setTimeout(() => setOpen(false), 150)} />
    ${found.length > 0 && html`<ul class="hints" id="search-hints" role="listbox" aria-label="Search operators">
      ${found.map((hint, i) => html`<li key=${hint.text} role="option" aria-selected=${i === active}
        onMouseDown=${(ev) => { ev.preventDefault(); take(hint); }}><code>${hint.text}</code> <span>${hint.about}</span></li>`)}
    </ul>`}
  </form>`;
}
