// Mailyard webmail: Preact + htm, no build step. Talks only JMAP (jmap.js) to its own server.
// The views live in their own modules: list, reader, compose, sidebar, settings.
import { render } from './vendor/preact.mjs';
import { useState, useEffect, useRef, useCallback } from './vendor/hooks.mjs';
import { Client, CSRF, SessionEnded, gmailFilter, queryProblem } from './jmap.js';
import { html, PAGE, LIST_PROPS, READ_PROPS, ROLE_NAMES, sender, addresses } from './util.js';
import { Sidebar, labelTree, labelPath } from './sidebar.js';
import { SearchBox } from './search.js';
import { Row, VirtualList } from './list.js';
import { Message } from './reader.js';
import { Composer } from './compose.js';
import { Settings } from './settings.js';

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

const MAILBOX_PROPS = ['id', 'name', 'role', 'parentId', 'unreadThreads', 'totalThreads', 'sortOrder'];

const HELP = [['j / k', 'next / previous conversation'], ['o, Enter', 'open'], ['x', 'select (actions apply to all selected)'], ['u, Esc', 'back to the list'],
  ['e', 'archive'], ['#', 'delete'], ['s', 'star'], ['r', 'reply'], ['a', 'reply all'], ['f', 'forward'],
  ['c', 'compose'], ['/', 'search'], ['?', 'this help']];

function Mail({ client, username, logout }) {
  const [mailboxes, setMailboxes] = useState([]);
  const [identities, setIdentities] = useState([]);
  const [view, setView] = useState({ mailboxId: null, search: '' });
  // The list: its total, and the pages of PAGE conversations loaded so far (pages.loaded[n]),
  // of the view `pages.key` (a new view or a refresh starts a new key; late answers for an old
  // one are dropped). A refresh keeps the old key's pages as `stale`, shown until each page is
  // fetched anew, so it does not blank the list. `need` holds pages to fetch even when out of
  // view (the first, which carries the total). `version` only makes a render when a page arrives.
  const [list, setList] = useState({ total: null, version: 0 });  // total: null while unknown
  const pages = useRef({ key: 0, view: '', loaded: {}, stale: {}, loading: {}, failures: {}, need: new Set(), fetching: 0 });
  const range = useRef([0, PAGE - 1]);  // the rows the list shows now
  const scrollTop = useRef(0);
  const [cursor, setCursor] = useState(0);
  const [thread, setThread] = useState(null);
  const [draft, setDraft] = useState(null);
  const [help, setHelp] = useState(false);
  const [notice, setNotice] = useState('');
  const searchBox = useRef(null);
  const state = useRef({});
  state.current = { mailboxes, view, list, cursor, thread, draft };

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
    const [[, boxes]] = await client.call([['Mailbox/get', { properties: MAILBOX_PROPS }]]);
    setMailboxes(boxes.list);
    state.current.mailboxes = boxes.list;  // the list's total below reads them before a render
    return boxes.list;
  }, []);

  // One page of the view: PAGE conversations from `pos`, with their thread sizes and, for a
  // search, snippets; and the view's total.
  const fetchPage = async (v, boxes, pos) => {
    const filter = v.search ? gmailFilter(v.search, boxes) : { inMailbox: v.mailboxId };
    const [[, query], [, got], [, threads], [, snippets] = []] = await client.call([
      ['Email/query', { filter, sort: [{ property: 'receivedAt', isAscending: false }], collapseThreads: true, position: pos, limit: PAGE, calculateTotal: !!v.search && pos === 0 }],
      ['Email/get', { '#ids': { resultOf: 'c0', name: 'Email/query', path: '/ids' }, properties: LIST_PROPS }],
      ['Thread/get', { '#ids': { resultOf: 'c1', name: 'Email/get', path: '/list/*/threadId' } }],
      // Why each result matched, its terms marked (RFC 8621 §5); only a search has any.
      ...(v.search ? [['SearchSnippet/get', { filter, '#emailIds': { resultOf: 'c0', name: 'Email/query', path: '/ids' } }]] : []),
    ]);
    if (v.search && snippets) {
      const byEmail = Object.fromEntries(snippets.list.map((x) => [x.emailId, x]));
      got.list.forEach((e) => { e.snippet = byEmail[e.id]; });
    }
    const counts = Object.fromEntries(threads.list.map((x) => [x.id, x.emailIds.length]));
    got.list.forEach((e) => { e.count = counts[e.threadId] || 1; });
    // A mailbox's thread count is its collapsed total (RFC 8621 totalThreads), already known:
    // asking Email/query to count the threads again costs as much as the page itself.
    const box = boxes.find((b) => b.id === v.mailboxId);
    let total = v.search ? query.total : box?.totalThreads ?? query.total;
    if (got.list.length < PAGE) total = pos + got.list.length;  // the last page says where the end is
    return { emails: got.list, total };
  };
  const atRow = (i) => {
    const p = Math.floor(i / PAGE);
    const s = pages.current;
    return (s.loaded[p] || s.stale[p])?.[i % PAGE];
  };

  // The pages of the rows in view (and those `need`ed) that are not loaded yet, fetched for the
  // current view, at most FETCHES at a time (the server takes maxConcurrentRequests, 4, per
  // account, and a fast scroll passes many pages): each next one is chosen from the rows in view
  // when a fetch ends, so pages scrolled past are never asked for. A refused or failed fetch is
  // tried again, later each time, while its rows are still in view (the server may be busy with
  // another tab's requests). Every path that changes the pages or the range calls this, so a
  // page in view is always either loaded or on its way.
  const FETCHES = 2;
  const pump = () => {
    const s = pages.current;
    const [first, last] = range.current;
    const { view: v, mailboxes: boxes } = state.current;
    const key = s.key;
    const wanted = [...s.need];
    for (let p = Math.floor(first / PAGE); p <= Math.floor(last / PAGE); p += 1) wanted.push(p);
    for (const p of wanted) {
      if (s.fetching >= FETCHES) break;
      if (s.loaded[p] || s.loading[p]) continue;
      s.loading[p] = true;
      s.fetching += 1;
      fetchPage(v, boxes, p * PAGE).then(({ emails, total }) => {
        s.fetching -= 1;
        delete s.loading[p];
        if (pages.current.key !== key) {
          // A refresh began while this page was on its way: the page still stands in for the
          // refreshed one (fetched anew) until that arrives, rather than leaving a gap.
          const now = pages.current;
          if (now.view === s.view && !now.loaded[p]) {
            now.stale[p] = emails;
            setList((l) => ({ ...l, version: l.version + 1 }));
          }
          return;
        }
        s.loaded[p] = emails;
        s.need.delete(p);
        delete s.failures[p];
        // The first page carries a search's total; a short page says where the end is.
        setList((l) => ({ total: p === 0 || emails.length < PAGE ? total : l.total, version: l.version + 1 }));
        pump();
      }, () => {
        s.fetching -= 1;
        delete s.loading[p];
        s.failures[p] = (s.failures[p] || 0) + 1;
        if (pages.current.key === key) setTimeout(pump, Math.min(4000, 250 * s.failures[p]));
      });
    }
  };
  const want = useCallback((first, last) => {
    range.current = [first, last];
    pump();
  }, []);

  // The view from the start, or again after a change: a new key, whose pages in view are
  // fetched anew (the first page always: it carries the total); until each arrives, the same
  // view's old page stands in for it, so a refresh does not blank the list.
  const loadList = useCallback(async () => {
    const { view: v } = state.current;
    if (!v.mailboxId && !v.search) return;
    const old = pages.current;
    const name = JSON.stringify([v.mailboxId, v.search]);
    const stale = old.view === name ? { ...old.stale, ...old.loaded } : {};
    pages.current = { key: old.key + 1, view: name, loaded: {}, stale, loading: {}, failures: {}, need: new Set([0]), fetching: 0 };
    if (old.view !== name) setList((l) => ({ total: null, version: l.version + 1 }));
    pump();
  }, []);

  const openThread = useCallback(async (e) => {
    if (e.keywords.$draft && e.count === 1) { await openDraft(e.id); return; }
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

  // A saved draft opens in the composer again, where it goes on being saved.
  const openDraft = async (id) => {
    const [[, got]] = await client.call([['Email/get', { ids: [id], properties: [...READ_PROPS, 'bodyValues'], fetchAllBodyValues: true }]]);
    const m = got.list[0];
    if (!m) return;
    const value = (parts) => (parts || []).map((p) => m.bodyValues[p.partId]?.value || '').join('\n');
    const rich = (m.htmlBody || []).some((p) => p.type === 'text/html');
    setDraft({ to: addresses(m.to), cc: addresses(m.cc), subject: m.subject || '', body: value(m.textBody),
      html: rich ? value(m.htmlBody) : '', draftId: m.id, inReplyTo: m.inReplyTo, references: m.references,
      files: (m.attachments || []).map((a) => ({ blobId: a.blobId, type: a.type, size: a.size, name: a.name || 'attachment' })) });
  };

  // The people the user's mail names, for address completion: loaded when a composer first opens.
  const [contacts, setContacts] = useState(null);
  const loadContacts = async () => {
    const [, [, got]] = await client.call([
      ['Email/query', { sort: [{ property: 'receivedAt', isAscending: false }], limit: 500 }],
      ['Email/get', { '#ids': { resultOf: 'c0', name: 'Email/query', path: '/ids' }, properties: ['from', 'to', 'cc', 'replyTo'] }],
    ]);
    const me = new Set(identities.map((i) => i.email.toLowerCase()));
    const seen = {};
    for (const m of got.list) {
      for (const a of [...(m.from || []), ...(m.to || []), ...(m.cc || []), ...(m.replyTo || [])]) {
        const key = (a.email || '').toLowerCase();
        if (!key || me.has(key)) continue;
        const c = seen[key] || (seen[key] = { email: a.email, name: a.name || '', n: 0 });
        c.n += 1;
        if (!c.name && a.name) c.name = a.name;
      }
    }
    setContacts(Object.values(seen).sort((x, y) => y.n - x.n));
  };
  useEffect(() => { if (draft && contacts === null) loadContacts(); }, [draft]);

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
      // The mailboxes and identities in one request: the list waits for the mailboxes.
      const [[, got], [, ids]] = await client.call([['Mailbox/get', { properties: MAILBOX_PROPS }], ['Identity/get', {}]]);
      const boxes = got.list;
      setMailboxes(boxes);
      state.current.mailboxes = boxes;
      setIdentities(ids.list);
      setView({ mailboxId: boxes.find((b) => b.role === 'inbox')?.id, search: '' });
    })();
    let timer = null;
    const stop = client.listen(() => { clearTimeout(timer); timer = setTimeout(refresh, 100); });
    return stop;
  }, []);
  useEffect(() => { if (!view.settings) loadList(); }, [view]);

  const [menu, setMenu] = useState(false);
  const [checked, setChecked] = useState(new Set());  // thread ids ticked in the list
  const tick = (threadId) => setChecked((c) => { const n = new Set(c); if (n.has(threadId)) n.delete(threadId); else n.add(threadId); return n; });  // the mailboxes over the page, on a phone's width
  const go = (v) => { setMenu(false); setChecked(new Set()); setThread(null); setCursor(0); range.current = [0, PAGE - 1]; scrollTop.current = 0; setView({ search: '', ...v }); };
  const current = () => (thread ? thread.emails[thread.emails.length - 1] : atRow(cursor));
  // The conversations an action applies to: those ticked in the list, else the open or
  // highlighted one; each with the ids, mailboxes and keywords of all its emails.
  const targets = async () => {
    if (!thread && checked.size) {
      const ids = [...checked];
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
  // Rename, nest or delete a label; the problem as text, or null when done.
  const editLabel = async (box, { update: patch, destroy }) => {
    const call = destroy ? { destroy: [box.id], onDestroyRemoveEmails: true } : { update: { [box.id]: patch } };
    const [[, r]] = await client.call([['Mailbox/set', call]]);
    const problem = (r.notUpdated || {})[box.id] || (r.notDestroyed || {})[box.id];
    if (problem) return problem.type === 'mailboxHasChild' ? 'Move or delete the labels under it first.' : (problem.description || problem.type);
    notify(destroy ? `Label ${box.name} deleted.` : `Label ${patch.name || box.name} saved.`);
    if (destroy && state.current.view.mailboxId === box.id) go({ mailboxId: role('inbox')?.id });
    await loadMailboxes();
    return null;
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
      // The original's attachments go along: their blobs are reused as they are, not uploaded again.
      setDraft({ subject: /^fwd?:/i.test(subject) ? subject : `Fwd: ${subject}`,
        body: `\n\n---------- Forwarded message ----------\nFrom: ${addresses(last.from)}\nSubject: ${subject}\n\n${text}`,
        files: (last.attachments || []).map((a) => ({ blobId: a.blobId, type: a.type, size: a.size, name: a.name || 'attachment' })) });
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
      const n = s.list.total;
      const here = atRow(s.cursor);
      const keys = {
        j: () => setCursor((c) => Math.min(c + 1, n - 1)),
        k: () => setCursor((c) => Math.max(c - 1, 0)),
        o: () => here && openThread(here),
        Enter: () => here && openThread(here),
        u: () => setThread(null), Escape: () => { setThread(null); setHelp(false); },
        e: actions.archive, '#': actions.trash, s: actions.star,
        r: () => reply(false), a: () => reply(true), f: () => reply(false, true),
        c: () => setDraft({}), '/': () => searchBox.current && searchBox.current.focus(),
        '?': () => setHelp((x) => !x),
        x: () => here && tick(here.threadId),
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
  const userLabels = labelTree(mailboxes).map(({ box }) => box);
  const moveTargets = mailboxes.filter((b) => b.role !== 'all' && b.role !== 'drafts');
  const inJunk = view.mailboxId && byId[view.mailboxId]?.role === 'junk';

  return html`<div class=${menu ? 'mail menu' : 'mail'}>
    <header class="top">
      <button class="menu-button" aria-label="Mailboxes" aria-expanded=${menu} onClick=${() => setMenu(!menu)}>☰</button>
      <b class="brand">Mailyard</b>
      <${SearchBox} mailboxes=${mailboxes} inputRef=${searchBox} onSearch=${(q) => { const bad = queryProblem(q); if (bad) notify(bad); else go({ mailboxId: null, search: q }); }} />
      <span class="me">${username}</span>
      <button class="settings-button" onClick=${() => { setThread(null); setView({ settings: true }); }}>Settings</button>
      <button class="logout" onClick=${logout}>Log out</button>
    </header>
    <${Sidebar} mailboxes=${mailboxes} view=${view} go=${go} compose=${() => { setMenu(false); setDraft({}); }} createLabel=${createLabel} editLabel=${editLabel} />
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
          ${userLabels.map((b) => html`<option value=${b.id}>${labelPath(b, byId)}</option>`)}
        </select>
        <select data-action="move" aria-label="Move to" value="" onChange=${(ev) => { const b = byId[ev.target.value]; ev.target.value = ''; if (b) actions.move(b); }}>
          <option value="">Move to…</option>
          ${moveTargets.map((b) => html`<option value=${b.id}>${ROLE_NAMES[b.role] || labelPath(b, byId)}</option>`)}
        </select>
        ${!thread && html`<span class="paging">
          ${list.total ? `${list.total.toLocaleString()} conversation${list.total === 1 ? '' : 's'}` : ''}
        </span>`}
      </div>`}
      ${view.settings ? html`<${Settings} client=${client} notify=${notify} identitiesChanged=${setIdentities} />` : thread
        ? html`<section class="thread" aria-label="Conversation">
            <h1>${thread.emails[0]?.subject || '(no subject)'}</h1>
            ${thread.emails.map((e, i) => html`<${Message} key=${e.id} client=${client} e=${e} last=${i === thread.emails.length - 1} />`)}
            <div class="replies">
              <button data-action="reply" onClick=${() => reply(false)}>Reply</button>
              <button data-action="replyall" onClick=${() => reply(true)}>Reply all</button>
              <button data-action="forward" onClick=${() => reply(false, true)}>Forward</button>
            </div>
          </section>`
        : html`<${VirtualList} key=${view.search || view.mailboxId} total=${list.total} at=${atRow} want=${want} saved=${scrollTop} cursor=${cursor} generation=${pages.current.key}
            row=${(e, i, top) => html`<${Row} key=${e.id} e=${e} index=${i} top=${top} selected=${i === cursor} labels=${labelsOf(e)} ticked=${checked.has(e.threadId)} tick=${tick} open=${(x) => { setCursor(i); openThread(x); }} />`} />`}
    </main>
    ${draft && html`<${Composer} client=${client} identities=${identities} draft=${draft} mailboxes=${mailboxes}
        notify=${notify} contacts=${contacts || []} close=${() => { setDraft(null); refresh(); }} />`}
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
        const opened = await Client.open();
        opened.authservId = body.authservId;  // whose Authentication-Results the reader trusts
        setClient(opened);
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
    const ended = (ev) => { if (ev.reason instanceof SessionEnded) { ev.preventDefault(); setClient(null); setWho(null); } };
    window.addEventListener('unhandledrejection', ended);
    return () => window.removeEventListener('unhandledrejection', ended);
  }, []);
  const logout = async () => {
    // No request may still be on its way when the session's token is revoked (it would be
    // refused, and the page would log the refusal): stop new ones, let those running finish.
    if (client) await client.drain();
    await fetch('/logout', { method: 'POST', credentials: 'same-origin', headers: CSRF });
    setClient(null);
    setWho(null);
  };
  if (who === undefined) return html`<p class="loading">Loading…</p>`;
  if (!who || !client) return html`<${Login} onLogin=${check} />`;
  return html`<${Mail} client=${client} username=${who} logout=${logout} />`;
}

render(html`<${App} />`, document.getElementById('app'));
