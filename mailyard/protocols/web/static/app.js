// Mailyard webmail: Preact + htm, no build step. Talks only JMAP (jmap.js) to its own server.
import { h, render } from './vendor/preact.mjs';
import { useState, useEffect, useRef, useCallback } from './vendor/hooks.mjs';
import htm from './vendor/htm.mjs';
import { Client, CSRF, SessionEnded, gmailFilter } from './jmap.js';

const html = htm.bind(h);
const PAGE = 50;
const UNDO_SECONDS = 10;  // how long "Undo" stays offered after Send
const LIST_PROPS = ['id', 'threadId', 'mailboxIds', 'keywords', 'from', 'subject', 'preview',
  'receivedAt', 'hasAttachment'];
const READ_PROPS = [...LIST_PROPS, 'to', 'cc', 'replyTo', 'messageId', 'references', 'sentAt',
  'textBody', 'htmlBody', 'attachments', 'bodyValues'];
const SYSTEM = ['inbox', 'drafts', 'sent', 'archive', 'junk', 'trash'];
const ROLE_NAMES = { inbox: 'Inbox', drafts: 'Drafts', sent: 'Sent', archive: 'Archive', junk: 'Spam', trash: 'Trash' };

function sender(e) {
  const f = (e.from || [])[0];
  return f ? (f.name || f.email) : '(no sender)';
}

function shortDate(iso) {
  const d = new Date(iso);
  const now = new Date();
  return d.toDateString() === now.toDateString()
    ? d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' })
    : d.toLocaleDateString([], { month: 'short', day: 'numeric', year: d.getFullYear() === now.getFullYear() ? undefined : 'numeric' });
}

function size(n) {
  return n < 1024 ? `${n} B` : n < 1048576 ? `${(n / 1024).toFixed(0)} KB` : `${(n / 1048576).toFixed(1)} MB`;
}

function addresses(list) {
  return (list || []).map((a) => (a.name ? `${a.name} <${a.email}>` : a.email)).join(', ');
}

function parseAddresses(text) {
  return text.split(/[,;]/).map((s) => s.trim()).filter(Boolean).map((s) => {
    const m = /^(.*)<([^>]+)>$/.exec(s);
    return m ? { name: m[1].trim().replace(/^"|"$/g, '') || null, email: m[2].trim() } : { name: null, email: s };
  });
}

// Plain text with its http(s) links made clickable; everything else stays text.
function Linked({ text }) {
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

function Login({ onLogin }) {
  const [error, setError] = useState('');
  const [useToken, setUseToken] = useState(false);
  const submit = async (ev) => {
    ev.preventDefault();
    const form = new FormData(ev.target);
    const body = useToken ? { token: form.get('token') }
      : { username: form.get('username'), password: form.get('password') };
    const r = await fetch('/login', {
      method: 'POST', credentials: 'same-origin',
      headers: { 'Content-Type': 'application/json', ...CSRF }, body: JSON.stringify(body),
    });
    if (r.ok) onLogin();
    else setError(r.status === 429 ? 'Too many failed logins; try later.' : 'Wrong address, password or token.');
  };
  return html`<form class="login" onSubmit=${submit}>
    <h1>Mailyard</h1>
    ${useToken
      ? html`<label>App token<input name="token" type="password" autocomplete="off" required /></label>`
      : html`<label>Address<input name="username" type="email" autocomplete="username" required /></label>
             <label>Password<input name="password" type="password" autocomplete="current-password" required /></label>`}
    <button type="submit">Log in</button>
    <button type="button" class="link" onClick=${() => setUseToken(!useToken)}>
      ${useToken ? 'Use a password' : 'Use an app token'}</button>
    ${error && html`<p class="error" role="alert">${error}</p>`}
  </form>`;
}

function Sidebar({ mailboxes, view, go, compose, createLabel }) {
  const system = SYSTEM.map((r) => mailboxes.find((b) => b.role === r)).filter(Boolean);
  const labels = mailboxes.filter((b) => !SYSTEM.includes(b.role) && b.role !== 'all')
    .sort((a, b) => a.name.localeCompare(b.name));
  const item = (b) => html`<li key=${b.id}>
    <button class=${view.mailboxId === b.id ? 'box current' : 'box'} data-mailbox=${b.role || b.name}
      onClick=${() => go({ mailboxId: b.id })}>
      <span>${ROLE_NAMES[b.role] || b.name}</span>
      ${b.unreadThreads > 0 && html`<span class="count" aria-label="unread">${b.unreadThreads}</span>`}
    </button></li>`;
  return html`<nav class="sidebar" aria-label="Mailboxes">
    <button class="compose" onClick=${compose}>Compose</button>
    <ul>${system.map(item)}</ul>
    <h2>Labels</h2>
    <ul>${labels.map(item)}</ul>
    <form class="newlabel" onSubmit=${(ev) => { ev.preventDefault(); const name = ev.target.label.value.trim(); if (name) createLabel(name); ev.target.reset(); }}>
      <input name="label" placeholder="New label" aria-label="New label" maxlength="255" />
    </form>
  </nav>`;
}

function Row({ e, selected, labels, open, ticked, tick }) {
  const unread = !e.keywords.$seen;
  return html`<li class=${`row${unread ? ' unread' : ''}${selected ? ' selected' : ''}`}
      data-email=${e.id} data-thread=${e.threadId} onClick=${() => open(e)} aria-selected=${selected}>
    <input type="checkbox" class="tick" aria-label=${`Select ${e.subject || 'conversation'}`} checked=${ticked}
      onClick=${(ev) => { ev.stopPropagation(); tick(e.threadId); }} />
    <span class=${e.keywords.$flagged ? 'star on' : 'star'} aria-label=${e.keywords.$flagged ? 'starred' : 'not starred'}>★</span>
    <span class="from">${sender(e)}${e.count > 1 ? html` <span class="n">${e.count}</span>` : ''}</span>
    <span class="subject">${labels.map((l) => html`<span class="chip" key=${l}>${l}</span>`)}
      <b>${e.subject || '(no subject)'}</b><span class="preview"> — ${e.preview}</span></span>
    ${e.hasAttachment ? html`<img class="clip" src="/web/static/clip.svg" alt="has attachment" />` : html`<span></span>`}
    <time datetime=${e.receivedAt}>${shortDate(e.receivedAt)}</time>
  </li>`;
}

function Message({ client, e, last }) {
  const [open, setOpen] = useState(last || !e.keywords.$seen);
  const [images, setImages] = useState(false);
  const [blocked, setBlocked] = useState(0);
  const hasHtml = (e.htmlBody || []).some((p) => p.type === 'text/html');
  const src = `/web/message/${encodeURIComponent(e.id)}/html${images ? '?images=1' : ''}`;
  useEffect(() => {
    if (!open || !hasHtml || images) return;
    fetch(src, { method: 'HEAD', credentials: 'same-origin' })
      .then((r) => setBlocked(Number(r.headers.get('X-Mailyard-Remote-Images') || 0)));
  }, [open, e.id]);
  const text = (e.textBody || []).map((p) => e.bodyValues[p.partId]?.value || '').join('\n');
  return html`<article class="message" data-email=${e.id}>
    <header onClick=${() => setOpen(!open)}>
      <b class="from">${sender(e)}</b> <span class="addr">${(e.from || [])[0]?.email || ''}</span>
      <time datetime=${e.receivedAt}>${new Date(e.receivedAt).toLocaleString()}</time>
      ${open && html`<div class="to">to ${addresses(e.to)}${e.cc ? `, cc ${addresses(e.cc)}` : ''}</div>`}
    </header>
    ${open && (hasHtml
      ? html`${blocked > 0 && !images && html`<p class="images">Remote images are hidden.${' '}
            <button class="link" onClick=${() => setImages(true)}>Show images</button></p>`}
          <iframe class="body" title="Message" sandbox="allow-popups allow-popups-to-escape-sandbox"
            referrerpolicy="no-referrer" src=${src}></iframe>`
      : html`<${Linked} text=${text} />`)}
    ${open && (e.attachments || []).length > 0 && html`<ul class="attachments">
      ${e.attachments.map((a) => html`<li key=${a.blobId}>
        <a href=${client.downloadUrl(a.blobId, a.name, a.type)} download=${a.name || 'attachment'}>
          <img src="/web/static/clip.svg" alt="" /> ${a.name || 'attachment'}</a> <span class="size">${size(a.size)}</span></li>`)}
    </ul>`}
  </article>`;
}

function Composer({ client, identities, draft, close, mailboxes, notify }) {
  const [to, setTo] = useState(draft.to || '');
  const [cc, setCc] = useState(draft.cc || '');
  const [subject, setSubject] = useState(draft.subject || '');
  const [body, setBody] = useState(draft.body || '');
  const [identity, setIdentity] = useState(identities[0]?.id || '');
  const [files, setFiles] = useState([]);
  const [busy, setBusy] = useState('');
  const first = useRef(null);
  useEffect(() => { first.current && first.current.focus(); }, []);
  const attach = async (ev) => {
    for (const file of ev.target.files) {
      setBusy(`Uploading ${file.name}…`);
      const up = await client.upload(file);
      setFiles((fs) => [...fs, { blobId: up.blobId, type: up.type, size: up.size, name: file.name }]);
    }
    ev.target.value = '';
    setBusy('');
  };
  const [when, setWhen] = useState('0');
  const send = async (ev) => {
    ev.preventDefault();
    const id = identities.find((i) => i.id === identity);
    const drafts = mailboxes.find((b) => b.role === 'drafts');
    const sent = mailboxes.find((b) => b.role === 'sent');
    const email = {
      mailboxIds: { [drafts.id]: true }, keywords: { $draft: true, $seen: true },
      from: [{ name: id.name || null, email: id.email }], to: parseAddresses(to), subject,
      bodyValues: { b: { value: body } }, textBody: [{ partId: 'b', type: 'text/plain' }],
    };
    if (cc.trim()) email.cc = parseAddresses(cc);
    if (draft.inReplyTo) { email.inReplyTo = draft.inReplyTo; email.references = draft.references; }
    if (files.length) email.attachments = files.map((f) => ({ blobId: f.blobId, type: f.type, name: f.name, disposition: 'attachment' }));
    // Every message is held UNDO_SECONDS (or until the chosen time) by FUTURERELEASE, so it
    // can be taken back: the server sends nothing before then.
    const hold = Number(when) || UNDO_SECONDS;
    const envelope = { mailFrom: { email: id.email, parameters: { HOLDFOR: String(hold) } },
      rcptTo: [...email.to, ...(email.cc || [])].map((a) => ({ email: a.email, parameters: null })) };
    setBusy('Sending…');
    try {
      const [[, set], [, sub]] = await client.call([
        ['Email/set', { create: { draft: email }, ...(draft.draftId ? { destroy: [draft.draftId] } : {}) }],
        ['EmailSubmission/set', {
          create: { send: { emailId: '#draft', identityId: id.id, envelope } },
          onSuccessUpdateEmail: { '#send': { [`mailboxIds/${drafts.id}`]: null, [`mailboxIds/${sent.id}`]: true, 'keywords/$draft': null } },
        }],
      ]);
      const problem = (set.notCreated || {}).draft || (sub.notCreated || {}).send;
      if (problem) { setBusy(`Not sent: ${problem.description || problem.type}`); return; }
      const again = { to, cc, subject, body, inReplyTo: draft.inReplyTo, references: draft.references, draftId: set.created.draft.id };
      notify(Number(when) ? `Scheduled for ${new Date(Date.now() + hold * 1000).toLocaleString()}.` : 'Message sent.',
        { submissionId: sub.created.send.id, again, seconds: Number(when) ? 0 : hold });
      close();
    } catch (err) {
      setBusy(`Not sent: ${err.message}`);
    }
  };
  return html`<form class="composer" onSubmit=${send} aria-label="Compose">
    <label>From<select value=${identity} onChange=${(e) => setIdentity(e.target.value)}>
      ${identities.map((i) => html`<option value=${i.id}>${i.name ? `${i.name} <${i.email}>` : i.email}</option>`)}
    </select></label>
    <label>To<input name="to" ref=${first} value=${to} onInput=${(e) => setTo(e.target.value)} required /></label>
    <label>Cc<input name="cc" value=${cc} onInput=${(e) => setCc(e.target.value)} /></label>
    <label>Subject<input name="subject" value=${subject} onInput=${(e) => setSubject(e.target.value)} /></label>
    <textarea name="body" rows="12" aria-label="Message" value=${body} onInput=${(e) => setBody(e.target.value)}></textarea>
    <ul class="attachments">${files.map((f) => html`<li key=${f.blobId}><img src="/web/static/clip.svg" alt="" /> ${f.name} <span class="size">${size(f.size)}</span></li>`)}</ul>
    <div class="actions">
      <button type="submit" disabled=${busy.endsWith('…')}>Send</button>
      <select aria-label="When" value=${when} onChange=${(e) => setWhen(e.target.value)}>
        <option value="0">now</option><option value="3600">in 1 hour</option>
        <option value="86400">in 1 day</option>
      </select>
      <label class="attach">Attach<input type="file" name="attachment" multiple onChange=${attach} /></label>
      <button type="button" onClick=${close}>Discard</button>
      <span class="status" role="status">${busy}</span>
    </div>
  </form>`;
}

function Settings({ client, notify }) {
  const [vacation, setVacation] = useState(null);
  const [tokens, setTokens] = useState([]);
  const [quota, setQuota] = useState(null);
  const [created, setCreated] = useState(null);
  const loadTokens = async () => {
    const r = await fetch('/web/tokens', { credentials: 'same-origin' });
    if (r.ok) setTokens(await r.json());
  };
  useEffect(() => {
    (async () => {
      const [[, v], [, q]] = await client.call([['VacationResponse/get', { ids: ['singleton'] }], ['Quota/get', { ids: null }]]);
      setVacation(v.list[0]);
      setQuota(q.list ? q.list[0] : null);
    })();
    loadTokens();
  }, []);
  const saveVacation = async (ev) => {
    ev.preventDefault();
    const f = new FormData(ev.target);
    const [[, r]] = await client.call([['VacationResponse/set', { update: { singleton: {
      isEnabled: f.get('enabled') === 'on', subject: f.get('subject') || null, textBody: f.get('text') || null } } }]]);
    notify(r.notUpdated ? 'Not saved.' : 'Vacation responder saved.');
  };
  const createToken = async (ev) => {
    ev.preventDefault();
    const f = new FormData(ev.target);
    const days = Number(f.get('days')) || null;
    const r = await fetch('/web/tokens', { method: 'POST', credentials: 'same-origin',
      headers: { 'Content-Type': 'application/json', ...CSRF }, body: JSON.stringify({ name: f.get('name'), days }) });
    if (r.ok) { setCreated(await r.json()); ev.target.reset(); loadTokens(); } else notify('Token not created.');
  };
  const revoke = async (t) => {
    const r = await fetch(`/web/tokens/${encodeURIComponent(t.id)}`, { method: 'DELETE', credentials: 'same-origin', headers: CSRF });
    if (r.ok) { notify(`Revoked ${t.name}.`); loadTokens(); }
  };
  const day = (t) => (t ? new Date(t * 1000).toLocaleDateString() : 'never');
  return html`<section class="settings" aria-label="Settings">
    <h1>Settings</h1>
    ${quota && html`<p class="quota">Storage: ${size(quota.used)} of ${size(quota.hardLimit)} used.</p>`}
    <h2>Vacation responder</h2>
    ${vacation && html`<form class="vacation" onSubmit=${saveVacation}>
      <label class="check"><input type="checkbox" name="enabled" defaultChecked=${vacation.isEnabled} /> Reply automatically</label>
      <label>Subject<input name="subject" defaultValue=${vacation.subject || ''} /></label>
      <label>Message<textarea name="text" rows="5" defaultValue=${vacation.textBody || ''}></textarea></label>
      <button type="submit">Save</button>
    </form>`}
    <${Filters} client=${client} notify=${notify} />
    <h2>App tokens</h2>
    <p class="hint">For IMAP-less JMAP clients and scripts: a token logs in as you until it expires or is revoked.</p>
    <table class="tokens"><thead><tr><th>Name</th><th>Created</th><th>Expires</th><th></th></tr></thead>
      <tbody>${tokens.map((t) => html`<tr key=${t.id} data-token=${t.name}><td>${t.name}${t.current ? ' (this session)' : ''}</td>
        <td>${day(t.created)}</td><td>${day(t.expires)}</td>
        <td>${!t.current && html`<button onClick=${() => revoke(t)}>Revoke</button>`}</td></tr>`)}</tbody></table>
    <form class="newtoken" onSubmit=${createToken}>
      <label>Name<input name="name" required maxlength="100" /></label>
      <label>Days<input name="days" type="number" min="1" max="3650" /></label>
      <button type="submit">Create token</button>
    </form>
    ${created && html`<p class="created" role="status">New token for ${created.name}, shown once: <code>${created.token}</code></p>`}
  </section>`;
}

// Gmail-style filters (Filters/get, /set): the server compiles them to the account's Sieve script.
const FILTER_TEXT = [['from', 'From'], ['to', 'To'], ['subject', 'Subject'], ['hasWords', 'Has the words'], ['doesntHave', "Doesn't have"]];
const FILTER_FLAGS = [['archive', 'Skip the Inbox (archive)'], ['star', 'Star it'], ['markRead', 'Mark as read'], ['neverSpam', 'Never send it to Spam']];

function describeFilter(f) {
  const when = FILTER_TEXT.filter(([k]) => f[k]).map(([k, name]) => `${name}: ${f[k]}`).join(', ');
  const then = [f.label && `label ${f.label}`, ...FILTER_FLAGS.filter(([k]) => f[k]).map(([, name]) => name.toLowerCase()),
    f.forwardTo && `forward to ${f.forwardTo}`].filter(Boolean).join(', ');
  return `${when} \u2192 ${then}`;
}

function Filters({ client, notify }) {
  const [filters, setFilters] = useState(null);
  const [labels, setLabels] = useState([]);
  const [error, setError] = useState(null);
  const load = async () => {
    const [[, r], [, boxes]] = await client.call([['Filters/get', { ids: null }], ['Mailbox/get', { properties: ['name', 'role'] }]]);
    setFilters(r.list);
    setLabels(boxes.list.filter((b) => !b.role).map((b) => b.name));
  };
  useEffect(() => { load(); }, []);
  const create = async (ev) => {
    ev.preventDefault();
    const form = new FormData(ev.target);
    const f = {};
    for (const [k] of FILTER_TEXT) f[k] = (form.get(k) || '').trim();
    for (const [k] of FILTER_FLAGS) f[k] = form.get(k) === 'on';
    f.label = (form.get('label') || '').trim();
    f.forwardTo = (form.get('forwardTo') || '').trim();
    const [[, r]] = await client.call([['Filters/set', { create: { n: f } }]]);
    if (r.notCreated) { setError(r.notCreated.n.description); return; }
    setError(null);
    ev.target.reset();
    notify('Filter created.');
    load();
  };
  const remove = async (f) => {
    const [[, r]] = await client.call([['Filters/set', { destroy: [f.id] }]]);
    notify(r.destroyed ? 'Filter deleted.' : 'Filter not deleted.');
    load();
  };
  return html`<div class="filters">
    <h2>Filters</h2>
    <p class="hint">Applied to new mail as it arrives (compiled to the account's Sieve script).</p>
    ${filters && (filters.length ? html`<ul class="filter-list" aria-label="Filters">${filters.map((f) => html`<li key=${f.id} data-filter=${f.id}>
        <span>${describeFilter(f)}</span> <button onClick=${() => remove(f)} aria-label=${`Delete filter ${describeFilter(f)}`}>Delete</button></li>`)}</ul>`
      : html`<p class="empty">No filters.</p>`)}
    <form class="newfilter" onSubmit=${create} aria-label="New filter">
      <fieldset><legend>Matches</legend>
        ${FILTER_TEXT.map(([k, name]) => html`<label key=${k}>${name}<input name=${k} maxlength="500" /></label>`)}
      </fieldset>
      <fieldset><legend>Then</legend>
        <label>Apply the label<input name="label" list="filter-labels" maxlength="200" /></label>
        <datalist id="filter-labels">${labels.map((l) => html`<option key=${l} value=${l} />`)}</datalist>
        ${FILTER_FLAGS.map(([k, name]) => html`<label key=${k} class="check"><input type="checkbox" name=${k} /> ${name}</label>`)}
        <label>Forward to<input name="forwardTo" type="email" maxlength="254" /></label>
      </fieldset>
      ${error && html`<p class="error" role="alert">${error}</p>`}
      <button type="submit">Create filter</button>
    </form>
  </div>`;
}

const HELP = [['j / k', 'next / previous conversation'], ['o, Enter', 'open'], ['x', 'select (actions apply to all selected)'], ['u, Esc', 'back to the list'],
  ['e', 'archive'], ['#', 'delete'], ['s', 'star'], ['r', 'reply'], ['a', 'reply all'], ['f', 'forward'],
  ['c', 'compose'], ['/', 'search'], ['?', 'this help']];

function Mail({ client, username, logout }) {
  const [mailboxes, setMailboxes] = useState([]);
  const [identities, setIdentities] = useState([]);
  const [view, setView] = useState({ mailboxId: null, search: '' });
  const [position, setPosition] = useState(0);
  const [list, setList] = useState({ emails: [], total: 0 });
  const [cursor, setCursor] = useState(0);
  const [thread, setThread] = useState(null);
  const [draft, setDraft] = useState(null);
  const [help, setHelp] = useState(false);
  const [notice, setNotice] = useState('');
  const searchBox = useRef(null);
  const state = useRef({});
  state.current = { mailboxes, view, position, list, cursor, thread, draft };

  const role = (r) => mailboxes.find((b) => b.role === r);
  const noticeTimer = useRef(null);
  const notify = (text, undo = null) => {
    clearTimeout(noticeTimer.current);
    setNotice({ text, undo });
    // A scheduled send keeps its Undo until dismissed; the undo window's goes with the window.
    if (!undo || undo.seconds) noticeTimer.current = setTimeout(() => setNotice(''), undo ? undo.seconds * 1000 : 4000);
  };
  const undoSend = async (undo) => {
    const drafts = role('drafts');
    const sent = role('sent');
    const [[, r]] = await client.call([['EmailSubmission/set', { update: { [undo.submissionId]: { undoStatus: 'canceled' } } }]]);
    if (r.notUpdated && r.notUpdated[undo.submissionId]) { notify('Too late: the message has left.'); return; }
    await client.call([['Email/set', { update: { [undo.again.draftId]: { [`mailboxIds/${sent.id}`]: null, [`mailboxIds/${drafts.id}`]: true, 'keywords/$draft': true } } }]]);
    notify('Sending undone.');
    setDraft(undo.again);
  };

  const loadMailboxes = useCallback(async () => {
    const [[, boxes]] = await client.call([['Mailbox/get', { properties: ['id', 'name', 'role', 'parentId', 'unreadThreads', 'totalThreads', 'sortOrder'] }]]);
    setMailboxes(boxes.list);
    return boxes.list;
  }, []);

  const loadList = useCallback(async () => {
    const { view: v, position: pos, mailboxes: boxes } = state.current;
    if (!v.mailboxId && !v.search) return;
    const filter = v.search ? gmailFilter(v.search, boxes) : { inMailbox: v.mailboxId };
    const [[, query], [, got], [, threads]] = await client.call([
      ['Email/query', { filter, sort: [{ property: 'receivedAt', isAscending: false }], collapseThreads: true, position: pos, limit: PAGE, calculateTotal: !!v.search }],
      ['Email/get', { '#ids': { resultOf: 'c0', name: 'Email/query', path: '/ids' }, properties: LIST_PROPS }],
      ['Thread/get', { '#ids': { resultOf: 'c1', name: 'Email/get', path: '/list/*/threadId' } }],
    ]);
    const counts = Object.fromEntries(threads.list.map((x) => [x.id, x.emailIds.length]));
    got.list.forEach((e) => { e.count = counts[e.threadId] || 1; });
    // A mailbox's thread count is its collapsed total (RFC 8621 totalThreads), already known:
    // asking Email/query to count the threads again costs as much as the page itself.
    const box = boxes.find((b) => b.id === v.mailboxId);
    setList({ emails: got.list, total: v.search ? query.total : box?.totalThreads ?? query.total ?? 0 });
  }, []);

  const openThread = useCallback(async (e) => {
    const [, [, emails]] = await client.call([
      ['Thread/get', { ids: [e.threadId] }],
      ['Email/get', { '#ids': { resultOf: 'c0', name: 'Thread/get', path: '/list/*/emailIds' }, properties: READ_PROPS, fetchTextBodyValues: true }],
    ]);
    setThread({ threadId: e.threadId, emails: emails.list });
    const unread = emails.list.filter((m) => !m.keywords.$seen);
    if (unread.length) {
      await client.call([['Email/set', { update: Object.fromEntries(unread.map((m) => [m.id, { 'keywords/$seen': true }])) }]]);
    }
  }, []);

  const refresh = useCallback(async () => {
    await loadMailboxes();
    await loadList();
    const t = state.current.thread;
    if (t) {
      const [, [, emails]] = await client.call([
        ['Thread/get', { ids: [t.threadId] }],
        ['Email/get', { '#ids': { resultOf: 'c0', name: 'Thread/get', path: '/list/*/emailIds' }, properties: READ_PROPS, fetchTextBodyValues: true }],
      ]);
      // Only if the reader is still on it: a refresh that began before "back" must not reopen it.
      if (emails.list.length && state.current.thread?.threadId === t.threadId) {
        setThread({ threadId: t.threadId, emails: emails.list });
      }
    }
  }, []);

  useEffect(() => {
    (async () => {
      const boxes = await loadMailboxes();
      const [[, ids]] = await client.call([['Identity/get', {}]]);
      setIdentities(ids.list);
      setView({ mailboxId: boxes.find((b) => b.role === 'inbox')?.id, search: '' });
    })();
    let timer = null;
    const stop = client.listen(() => { clearTimeout(timer); timer = setTimeout(refresh, 100); });
    return stop;
  }, []);
  useEffect(() => { if (!view.settings) loadList(); }, [view, position]);

  const [menu, setMenu] = useState(false);
  const [checked, setChecked] = useState(new Set());  // thread ids ticked in the list
  const tick = (threadId) => setChecked((c) => { const n = new Set(c); if (n.has(threadId)) n.delete(threadId); else n.add(threadId); return n; });  // the mailboxes over the page, on a phone's width
  const go = (v) => { setMenu(false); setChecked(new Set()); setThread(null); setPosition(0); setCursor(0); setView({ search: '', ...v }); };
  const current = () => thread ? list.emails.find((e) => e.threadId === thread.threadId) || thread.emails[thread.emails.length - 1] : list.emails[cursor];
  // The conversations an action applies to: those ticked in the list, else the open or
  // highlighted one; each with the ids, mailboxes and keywords of all its emails.
  const targets = async () => {
    if (!thread && checked.size) {
      const ids = list.emails.filter((e) => checked.has(e.threadId)).map((e) => e.threadId);
      const [[, threads], [, emails]] = await client.call([
        ['Thread/get', { ids }],
        ['Email/get', { '#ids': { resultOf: 'c0', name: 'Thread/get', path: '/list/*/emailIds' }, properties: ['id', 'threadId', 'mailboxIds', 'keywords'] }],
      ]);
      const byId = Object.fromEntries(emails.list.map((m) => [m.id, m]));
      return threads.list.map((t) => t.emailIds.map((id) => byId[id]).filter(Boolean));
    }
    const e = current();
    if (!e) return [];
    if (thread && thread.threadId === e.threadId) return [thread.emails];
    const [, [, emails]] = await client.call([
      ['Thread/get', { ids: [e.threadId] }],
      ['Email/get', { '#ids': { resultOf: 'c0', name: 'Thread/get', path: '/list/*/emailIds' }, properties: ['id', 'mailboxIds', 'keywords'] }],
    ]);
    return [emails.list];
  };
  const update = async (patch, message, leave = false, found = null) => {
    const threads = found || await targets();
    if (!threads.length) return;
    const updates = Object.fromEntries(threads.flatMap((emails) => emails.map((m) => [m.id, patch(m, emails)])));
    const [[, result]] = await client.call([['Email/set', { update: updates }]]);
    if (result.notUpdated && Object.keys(result.notUpdated).length) {
      notify(`Not done: ${Object.values(result.notUpdated)[0].description || Object.values(result.notUpdated)[0].type}`);
    } else if (message) notify(threads.length > 1 ? `${message} (${threads.length} conversations)` : message);
    if (leave) setThread(null);
    setChecked(new Set());
    await refresh();
  };
  const actions = {
    archive: () => update((m) => ({ [`mailboxIds/${role('inbox').id}`]: null, ...(role('archive') ? { [`mailboxIds/${role('archive').id}`]: true } : {}) }), 'Archived.', true),
    trash: () => update(() => ({ mailboxIds: { [role('trash').id]: true } }), 'Moved to Trash.', true),
    spam: () => update(() => ({ mailboxIds: { [role('junk').id]: true }, 'keywords/$junk': true, 'keywords/$notjunk': null }), 'Reported as spam.', true),
    notSpam: () => update(() => ({ mailboxIds: { [role('inbox').id]: true }, 'keywords/$notjunk': true, 'keywords/$junk': null }), 'Moved to Inbox.', true),
    read: () => update(() => ({ 'keywords/$seen': true }), 'Marked as read.'),
    unread: () => update(() => ({ 'keywords/$seen': null }), 'Marked as unread.', true),
    star: async () => {
      const threads = await targets();
      const on = threads.some((emails) => emails.some((m) => m.keywords.$flagged));
      await update((m, emails) => ({ 'keywords/$flagged': on ? null : (m.id === emails[emails.length - 1].id || null) }),
        on ? 'Unstarred.' : 'Starred.', false, threads);
    },
    label: (box) => update(() => ({ [`mailboxIds/${box.id}`]: true }), `Labelled ${box.name}.`),
    move: (box) => update(() => ({ mailboxIds: { [box.id]: true } }), `Moved to ${box.name}.`, true),
  };

  const createLabel = async (name) => {
    const [[, r]] = await client.call([['Mailbox/set', { create: { l: { name } } }]]);
    if (r.notCreated) notify(`Label not created: ${r.notCreated.l.description || r.notCreated.l.type}`);
    else { notify(`Label ${name} created.`); await loadMailboxes(); }
  };
  const reply = (all, forward) => {
    const t = thread;
    if (!t) return;
    const last = t.emails[t.emails.length - 1];
    const text = (last.textBody || []).map((p) => last.bodyValues[p.partId]?.value || '').join('\n').trimEnd();
    const quoted = text.split('\n').map((l) => `> ${l}`).join('\n');
    const me = identities.map((i) => i.email.toLowerCase());
    const subject = last.subject || '';
    if (forward) {
      setDraft({ subject: /^fwd?:/i.test(subject) ? subject : `Fwd: ${subject}`,
        body: `\n\n---------- Forwarded message ----------\nFrom: ${addresses(last.from)}\nSubject: ${subject}\n\n${text}` });
      return;
    }
    const to = addresses(last.replyTo || last.from);
    const cc = all ? addresses([...(last.to || []), ...(last.cc || [])].filter((a) => !me.includes(a.email.toLowerCase()))) : '';
    setDraft({ to, cc, subject: /^re:/i.test(subject) ? subject : `Re: ${subject}`,
      body: `\n\nOn ${new Date(last.receivedAt).toLocaleString()}, ${sender(last)} wrote:\n${quoted}`,
      inReplyTo: last.messageId, references: [...(last.references || []), ...(last.messageId || [])] });
  };

  useEffect(() => {
    const onKey = (ev) => {
      const tag = ev.target.tagName;
      if (tag === 'INPUT' || tag === 'TEXTAREA' || tag === 'SELECT' || ev.ctrlKey || ev.metaKey || ev.altKey) {
        if (ev.key === 'Escape') ev.target.blur();
        return;
      }
      const s = state.current;
      const n = s.list.emails.length;
      const keys = {
        j: () => setCursor((c) => Math.min(c + 1, n - 1)),
        k: () => setCursor((c) => Math.max(c - 1, 0)),
        o: () => s.list.emails[s.cursor] && openThread(s.list.emails[s.cursor]),
        Enter: () => s.list.emails[s.cursor] && openThread(s.list.emails[s.cursor]),
        u: () => setThread(null), Escape: () => { setThread(null); setHelp(false); },
        e: actions.archive, '#': actions.trash, s: actions.star,
        r: () => reply(false), a: () => reply(true), f: () => reply(false, true),
        c: () => setDraft({}), '/': () => searchBox.current && searchBox.current.focus(),
        '?': () => setHelp((x) => !x),
        x: () => s.list.emails[s.cursor] && tick(s.list.emails[s.cursor].threadId),
      };
      if (s.draft || !keys[ev.key]) return;
      ev.preventDefault();
      keys[ev.key]();
    };
    document.addEventListener('keydown', onKey);
    return () => document.removeEventListener('keydown', onKey);
  });

  const byId = Object.fromEntries(mailboxes.map((b) => [b.id, b]));
  const labelsOf = (e) => Object.keys(e.mailboxIds).map((id) => byId[id])
    .filter((b) => b && b.id !== view.mailboxId && b.role !== 'inbox' && b.role !== 'all' && b.role !== 'sent' && b.role !== 'drafts')
    .map((b) => ROLE_NAMES[b.role] || b.name);
  const userLabels = mailboxes.filter((b) => !SYSTEM.includes(b.role) && b.role !== 'all');
  const moveTargets = mailboxes.filter((b) => b.role !== 'all' && b.role !== 'drafts');
  const inJunk = view.mailboxId && byId[view.mailboxId]?.role === 'junk';
  const search = (ev) => { ev.preventDefault(); const q = new FormData(ev.target).get('q').trim(); if (q) go({ mailboxId: null, search: q }); };

  return html`<div class=${menu ? 'mail menu' : 'mail'}>
    <header class="top">
      <button class="menu-button" aria-label="Mailboxes" aria-expanded=${menu} onClick=${() => setMenu(!menu)}>☰</button>
      <b class="brand">Mailyard</b>
      <form class="search" role="search" onSubmit=${search}>
        <input name="q" ref=${searchBox} type="search" placeholder="Search mail (from: subject: is:unread has:attachment in: …)" aria-label="Search mail" />
      </form>
      <span class="me">${username}</span>
      <button class="settings-button" onClick=${() => { setThread(null); setView({ settings: true }); }}>Settings</button>
      <button class="logout" onClick=${logout}>Log out</button>
    </header>
    <${Sidebar} mailboxes=${mailboxes} view=${view} go=${go} compose=${() => setDraft({})} createLabel=${createLabel} />
    <main>
      ${!view.settings && html`<div class="toolbar" role="toolbar" aria-label="Actions">
        ${thread && html`<button onClick=${() => setThread(null)} title="Back (u)">←</button>`}
        <button data-action="archive" onClick=${actions.archive} title="Archive (e)">Archive</button>
        <button data-action="delete" onClick=${actions.trash} title="Delete (#)">Delete</button>
        ${inJunk ? html`<button data-action="notspam" onClick=${actions.notSpam}>Not spam</button>`
          : html`<button data-action="spam" onClick=${actions.spam}>Spam</button>`}
        <button data-action="read" onClick=${actions.read}>Mark read</button>
        <button data-action="unread" onClick=${actions.unread}>Mark unread</button>
        <button data-action="star" onClick=${actions.star} title="Star (s)">Star</button>
        <select data-action="label" aria-label="Label" value="" onChange=${(ev) => { const b = byId[ev.target.value]; ev.target.value = ''; if (b) actions.label(b); }}>
          <option value="">Label…</option>
          ${userLabels.map((b) => html`<option value=${b.id}>${b.name}</option>`)}
        </select>
        <select data-action="move" aria-label="Move to" value="" onChange=${(ev) => { const b = byId[ev.target.value]; ev.target.value = ''; if (b) actions.move(b); }}>
          <option value="">Move to…</option>
          ${moveTargets.map((b) => html`<option value=${b.id}>${ROLE_NAMES[b.role] || b.name}</option>`)}
        </select>
        ${!thread && html`<span class="paging">
          ${list.total ? `${position + 1}–${position + list.emails.length} of ${list.total}` : ''}
          <button aria-label="Newer" disabled=${position === 0} onClick=${() => setPosition(Math.max(0, position - PAGE))}>‹</button>
          <button aria-label="Older" disabled=${position + PAGE >= list.total} onClick=${() => setPosition(position + PAGE)}>›</button>
        </span>`}
      </div>`}
      ${view.settings ? html`<${Settings} client=${client} notify=${notify} />` : thread
        ? html`<section class="thread" aria-label="Conversation">
            <h1>${thread.emails[0]?.subject || '(no subject)'}</h1>
            ${thread.emails.map((e, i) => html`<${Message} key=${e.id} client=${client} e=${e} last=${i === thread.emails.length - 1} />`)}
            <div class="replies">
              <button data-action="reply" onClick=${() => reply(false)}>Reply</button>
              <button data-action="replyall" onClick=${() => reply(true)}>Reply all</button>
              <button data-action="forward" onClick=${() => reply(false, true)}>Forward</button>
            </div>
          </section>`
        : html`<ul class="list" aria-label="Conversations">
            ${list.emails.length === 0 && html`<li class="empty">No conversations.</li>`}
            ${list.emails.map((e, i) => html`<${Row} key=${e.id} e=${e} selected=${i === cursor} labels=${labelsOf(e)} ticked=${checked.has(e.threadId)} tick=${tick} open=${(x) => { setCursor(i); openThread(x); }} />`)}
          </ul>`}
    </main>
    ${draft && html`<${Composer} client=${client} identities=${identities} draft=${draft} mailboxes=${mailboxes}
        notify=${notify} close=${() => { setDraft(null); refresh(); }} />`}
    ${help && html`<div class="help" role="dialog" aria-label="Keyboard shortcuts">
        <h2>Keyboard shortcuts</h2><dl>${HELP.map(([k, d]) => html`<dt>${k}</dt><dd>${d}</dd>`)}</dl>
        <button onClick=${() => setHelp(false)}>Close</button></div>`}
    ${notice && html`<div class="notice" role="status">${notice.text}
      ${notice.undo && html` <button class="link undo" onClick=${() => undoSend(notice.undo)}>Undo</button>`}
      ${notice.undo && !notice.undo.seconds && html` <button class="link undo" aria-label="Dismiss" onClick=${() => setNotice('')}>×</button>`}</div>`}
  </div>`;
}

function App() {
  const [who, setWho] = useState(undefined);
  const [client, setClient] = useState(null);
  const check = async () => {
    const r = await fetch('/web/session', { credentials: 'same-origin' });
    const body = await r.json();
    if (body.username) {
      try {
        setClient(await Client.open());
      } catch (err) {
        if (!(err instanceof SessionEnded)) throw err;
        setWho(null);
        return;
      }
    }
    setWho(body.username);
  };
  useEffect(() => {
    check();
    const ended = (ev) => { if (ev.reason instanceof SessionEnded) { setClient(null); setWho(null); } };
    window.addEventListener('unhandledrejection', ended);
    return () => window.removeEventListener('unhandledrejection', ended);
  }, []);
  const logout = async () => {
    await fetch('/logout', { method: 'POST', credentials: 'same-origin', headers: CSRF });
    setClient(null);
    setWho(null);
  };
  if (who === undefined) return html`<p class="loading">Loading…</p>`;
  if (!who || !client) return html`<${Login} onLogin=${check} />`;
  return html`<${Mail} client=${client} username=${who} logout=${logout} />`;
}

render(html`<${App} />`, document.getElementById('app'));
