// Compose, reply, forward: plain text or rich text (a contenteditable with a small toolbar, sent
// as multipart/alternative with a plain-text part), attachments by upload or carried over by a
// forward, the draft saved to Drafts as it is typed (Email/set), addresses completed from the
// user's mail, and every send held for the undo window (FUTURERELEASE) or until a chosen time.
import { useState, useEffect, useRef } from './vendor/hooks.mjs';
import { html, size, parseAddresses, undoSeconds } from './util.js';

const SAVE_AFTER_MS = 1500;  // a pause in typing this long saves the draft
const TOOLS = [['bold', 'Bold', 'B'], ['italic', 'Italic', 'I'], ['underline', 'Underline', 'U'],
  ['insertUnorderedList', 'Bulleted list', '•'], ['insertOrderedList', 'Numbered list', '1.'],
  ['removeFormat', 'Clear formatting', 'T̸']];
const LINK_SCHEMES = /^(https?:|mailto:)/i;
const BLOCKS = new Set(['DIV', 'P', 'BLOCKQUOTE', 'H1', 'H2', 'H3', 'H4', 'PRE']);

// The plain-text part of a rich message, from the editor's nodes: lines kept, list items as
// "- " or "1. ", a link's address after its text ("the site <https://...>").
export function htmlToText(root) {
  let out = '';
  const newline = () => { if (out && !out.endsWith('\n')) out += '\n'; };
  const walk = (node, marker) => {
    for (const c of node.childNodes) {
      if (c.nodeType === Node.TEXT_NODE) { out += c.nodeValue.replace(/\u00a0/g, ' '); continue; }
      if (c.nodeType !== Node.ELEMENT_NODE) continue;
      const tag = c.tagName;
      if (tag === 'BR') out += '\n';
      else if (tag === 'UL') { newline(); walk(c, () => '- '); newline(); }
      else if (tag === 'OL') { newline(); let n = 0; walk(c, () => `${n += 1}. `); newline(); }
      else if (tag === 'LI') { newline(); out += marker ? marker() : '- '; walk(c); newline(); }
      else if (tag === 'A') {
        walk(c, marker);
        const href = c.getAttribute('href') || '';
        const shown = href.replace(/^mailto:/i, '');
        if (href && shown !== c.textContent.trim()) out += ` <${shown}>`;
      } else if (BLOCKS.has(tag)) { newline(); walk(c, marker); newline(); }
      else walk(c, marker);
    }
  };
  walk(root);
  return out.replace(/\n+$/, '');
}

// The signature block an identity adds to a new message ("-- " on its own line, RFC 3676 §4.3).
export function signatureBlock(identity) {
  const sig = (identity?.textSignature || '').trimEnd();
  return sig ? `\n\n-- \n${sig}` : '';
}

function escapeHtml(text) {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

export function textToHtml(text) {
  return escapeHtml(text).replace(/\n/g, '<br>');
}

// Address completion: the people the user's mail names (from, to, cc of recent mail), most
// frequent first, found by any word of the name or the address.
function completions(contacts, typed) {
  const word = typed.split(/[,;]/).pop().trim().toLowerCase();
  if (!word) return [];
  return contacts.filter((c) => c.email.toLowerCase().startsWith(word)
    || (c.name || '').toLowerCase().split(/\s+/).some((w) => w.startsWith(word))
    || c.email.toLowerCase().split(/[@.]/).some((w) => w.startsWith(word))).slice(0, 6);
}

function AddressInput({ label, name, value, setValue, contacts, inputRef, required }) {
  const [focused, setFocused] = useState(false);
  const [active, setActive] = useState(0);
  // Offered while typing only (not for an address a reply filled in), never one already there.
  const there = value.toLowerCase();
  const found = focused ? completions(contacts, value).filter((c) => !there.includes(c.email.toLowerCase())) : [];
  const pick = (c) => {
    const parts = value.split(/[,;]/);
    parts.pop();
    const chosen = c.name ? `${c.name} <${c.email}>` : c.email;
    setValue([...parts.map((p) => p.trim()).filter(Boolean), chosen].join(', ') + ', ');
    setActive(0);
  };
  const key = (ev) => {
    if (!found.length) return;
    if (ev.key === 'ArrowDown') { ev.preventDefault(); setActive((a) => (a + 1) % found.length); }
    else if (ev.key === 'ArrowUp') { ev.preventDefault(); setActive((a) => (a + found.length - 1) % found.length); }
    else if (ev.key === 'Enter' || ev.key === 'Tab') { ev.preventDefault(); pick(found[Math.min(active, found.length - 1)]); }
    else if (ev.key === 'Escape') { ev.stopPropagation(); setFocused(false); }
  };
  const listId = `complete-${name}`;
  return html`<div class="address">
    <label>${label}<input name=${name} ref=${inputRef} value=${value} required=${required} autocomplete="off"
      role="combobox" aria-autocomplete="list" aria-expanded=${found.length > 0} aria-controls=${listId}
      onInput=${(e) => { setValue(e.target.value); setActive(0); setFocused(true); }} onKeyDown=${key}
      onBlur=${() => setTimeout(() => setFocused(false), 150)} /></label>
    ${found.length > 0 && html`<ul class="completions" id=${listId} role="listbox" aria-label="Suggested addresses">
      ${found.map((c, i) => html`<li key=${c.email} role="option" aria-selected=${i === active}
        onMouseDown=${(ev) => { ev.preventDefault(); pick(c); }}>${c.name ? html`<b>${c.name}</b> ` : ''}${c.email}</li>`)}
    </ul>`}
  </div>`;
}

// The address of a link, typed in the formatting toolbar (Enter adds it, Escape gives up).
function LinkField({ error, add, cancel }) {
  const input = useRef(null);
  useEffect(() => { input.current && input.current.focus(); }, []);
  const key = (ev) => {
    if (ev.key === 'Enter') { ev.preventDefault(); add(input.current.value); }
    else if (ev.key === 'Escape') { ev.preventDefault(); ev.stopPropagation(); cancel(); }
  };
  return html`<div class="linkform" role="group" aria-label="Add a link">
    <label>Link address<input name="href" type="url" ref=${input} placeholder="https://" onKeyDown=${key} /></label>
    <button type="button" onClick=${() => add(input.current.value)}>Add link</button>
    <button type="button" onClick=${cancel}>Cancel</button>
    ${error && html`<span class="error" role="alert">${error}</span>`}
  </div>`;
}

export function Composer({ client, identities, draft, close, mailboxes, notify, contacts }) {
  const [to, setTo] = useState(draft.to || '');
  const [cc, setCc] = useState(draft.cc || '');
  const [subject, setSubject] = useState(draft.subject || '');
  // A new message (not a saved draft, nor one taken back by Undo) gets its identity's signature.
  const [body, setBody] = useState(draft.draftId ? draft.body || ''
    : signatureBlock(identities[0]) + (draft.body || ''));
  const [rich, setRich] = useState(!!draft.html);
  const [richHtml, setRichHtml] = useState(draft.html || '');
  const [identity, setIdentity] = useState(identities[0]?.id || '');
  const [files, setFiles] = useState(draft.files || []);
  const [uploads, setUploads] = useState([]);  // files on their way: {key, name, loaded, total}
  const [busy, setBusy] = useState('');
  const [linking, setLinking] = useState(null);  // the editor's selection while a link is typed
  const [when, setWhen] = useState('0');
  const first = useRef(null);
  const editor = useRef(null);
  const saved = useRef({ id: draft.draftId || null, pending: Promise.resolve(), edited: false, gone: false });
  const drafts = mailboxes.find((b) => b.role === 'drafts');
  const sent = mailboxes.find((b) => b.role === 'sent');
  useEffect(() => { first.current && first.current.focus(); }, []);
  useEffect(() => {
    if (rich && editor.current) editor.current.innerHTML = richHtml;
  }, [rich]);

  const toRich = () => { setRichHtml(textToHtml(body)); setRich(true); };
  const toPlain = () => { setBody(editor.current ? htmlToText(editor.current) : body); setRich(false); };
  // Another identity: its signature replaces the one the message has (when it is still there).
  const changeIdentity = (next) => {
    const before = signatureBlock(identities.find((i) => i.id === identity));
    const after = signatureBlock(identities.find((i) => i.id === next));
    setIdentity(next);
    if (!rich && before !== after) {
      setBody((b) => (before && b.includes(before) ? b.replace(before, after) : !before && after ? after + b : b));
    }
  };

  const compose = () => {
    const id = identities.find((i) => i.id === identity);
    const email = {
      mailboxIds: { [drafts.id]: true }, keywords: { $draft: true, $seen: true },
      from: [{ name: id.name || null, email: id.email }], to: parseAddresses(to), subject,
    };
    if (rich) {
      const node = editor.current;
      email.bodyValues = { b: { value: node ? htmlToText(node) : body }, h: { value: node ? node.innerHTML : richHtml } };
      email.textBody = [{ partId: 'b', type: 'text/plain' }];
      email.htmlBody = [{ partId: 'h', type: 'text/html' }];
    } else {
      email.bodyValues = { b: { value: body } };
      email.textBody = [{ partId: 'b', type: 'text/plain' }];
    }
    if (cc.trim()) email.cc = parseAddresses(cc);
    if (draft.inReplyTo) { email.inReplyTo = draft.inReplyTo; email.references = draft.references; }
    if (files.length) email.attachments = files.map((f) => ({ blobId: f.blobId, type: f.type, name: f.name, disposition: 'attachment' }));
    return { id, email };
  };

  // The draft in Drafts, replaced by each save (an email cannot change once made); saves run
  // one after another so that only the newest stays.
  const saveDraft = () => {
    const s = saved.current;
    s.pending = s.pending.then(async () => {
      if (s.gone) return;
      const { email } = compose();
      const old = s.id;
      const [[, r]] = await client.call([['Email/set', { create: { d: email }, ...(old ? { destroy: [old] } : {}) }]]);
      if (r.created?.d) { s.id = r.created.d.id; setBusy('Draft saved.'); } else setBusy('Draft not saved.');
    }).catch((err) => setBusy(`Draft not saved: ${err.message}`));
    return s.pending;
  };
  useEffect(() => {
    if (!saved.current.edited) { saved.current.edited = true; return undefined; }
    const timer = setTimeout(saveDraft, SAVE_AFTER_MS);
    return () => clearTimeout(timer);
  }, [to, cc, subject, body, richHtml, rich, files]);

  // Each file is uploaded (JMAP upload) with its progress shown; up to the server's
  // maxSizeUpload (35 MB by default, so that a 25 MB attachment fits).
  const attach = async (ev) => {
    const chosen = [...ev.target.files];
    ev.target.value = '';
    const limit = client.session.capabilities['urn:ietf:params:jmap:core']?.maxSizeUpload;
    for (const file of chosen) {
      if (limit && file.size > limit) { setBusy(`${file.name} is too large (at most ${size(limit)}).`); continue; }
      const key = `${file.name}-${Date.now()}-${Math.random()}`;
      setUploads((us) => [...us, { key, name: file.name, loaded: 0, total: file.size }]);
      setBusy(`Uploading ${file.name}…`);
      try {
        const up = await client.upload(file, (loaded, total) => setUploads((us) => us.map((u) => (u.key === key ? { ...u, loaded, total } : u))));
        setFiles((fs) => [...fs, { blobId: up.blobId, type: up.type, size: up.size, name: file.name }]);
        setBusy('');
      } catch (err) {
        setBusy(`${file.name} not uploaded: ${err.message}`);
      } finally {
        setUploads((us) => us.filter((u) => u.key !== key));
      }
    }
  };

  const send = async (ev) => {
    ev.preventDefault();
    const s = saved.current;
    await s.pending;
    s.gone = true;  // no save may start now: the send owns the draft
    const { id, email } = compose();
    // Every message is held for the undo window (or until the chosen time) by FUTURERELEASE,
    // so it can be taken back: the server sends nothing before then.
    const hold = Number(when) || undoSeconds();
    const envelope = { mailFrom: { email: id.email, parameters: { HOLDFOR: String(hold) } },
      rcptTo: [...email.to, ...(email.cc || [])].map((a) => ({ email: a.email, parameters: null })) };
    setBusy('Sending…');
    try {
      const [[, set], [, sub]] = await client.call([
        ['Email/set', { create: { draft: email }, ...(s.id ? { destroy: [s.id] } : {}) }],
        ['EmailSubmission/set', {
          create: { send: { emailId: '#draft', identityId: id.id, envelope } },
          onSuccessUpdateEmail: { '#send': { [`mailboxIds/${drafts.id}`]: null, [`mailboxIds/${sent.id}`]: true, 'keywords/$draft': null } },
        }],
      ]);
      const problem = (set.notCreated || {}).draft || (sub.notCreated || {}).send;
      if (problem) {
        s.id = set.created?.draft?.id || s.id;
        s.gone = false;
        setBusy(`Not sent: ${problem.description || problem.type}`);
        return;
      }
      const again = { to, cc, subject, body, html: rich ? email.bodyValues.h.value : '', files,
        inReplyTo: draft.inReplyTo, references: draft.references, draftId: set.created.draft.id };
      notify(Number(when) ? `Scheduled for ${new Date(Date.now() + hold * 1000).toLocaleString()}.` : 'Message sent.',
        { submissionId: sub.created.send.id, again, seconds: Number(when) ? 0 : hold });
      close();
    } catch (err) {
      s.gone = false;
      setBusy(`Not sent: ${err.message}`);
    }
  };
  const discard = async () => {
    const s = saved.current;
    s.gone = true;
    await s.pending;
    if (s.id) await client.call([['Email/set', { destroy: [s.id] }]]);
    close();
  };
  const keep = async () => {
    const blank = !to.trim() && !cc.trim() && !subject.trim() && !files.length
      && !(rich ? editor.current?.innerText.trim() : body.trim());
    if (!(blank && !saved.current.id)) await saveDraft();  // an untouched composer leaves no draft
    saved.current.gone = true;
    close();
  };
  const format = (command, value = null) => {
    if (!editor.current) return;
    editor.current.focus();
    document.execCommand(command, false, value);
    setRichHtml(editor.current.innerHTML);
  };
  // A link: the selected text (or the address itself when nothing is selected) links to an
  // http(s) or mailto address typed in the toolbar's field.
  const startLink = () => {
    const sel = window.getSelection();
    const inside = sel.rangeCount && editor.current && editor.current.contains(sel.anchorNode);
    setLinking({ range: inside ? sel.getRangeAt(0).cloneRange() : null, error: '' });
  };
  const addLink = (typed) => {
    const url = typed.trim();
    if (!LINK_SCHEMES.test(url)) { setLinking({ ...linking, error: 'A link is an http(s) or mailto: address.' }); return; }
    editor.current.focus();
    const sel = window.getSelection();
    if (linking.range) { sel.removeAllRanges(); sel.addRange(linking.range); }
    if (sel.isCollapsed) format('insertHTML', `<a href="${escapeHtml(url)}">${escapeHtml(url)}</a>`);
    else format('createLink', url);
    setLinking(null);
  };

  return html`<form class="composer" onSubmit=${send} aria-label="Compose">
    <label>From<select value=${identity} onChange=${(e) => changeIdentity(e.target.value)}>
      ${identities.map((i) => html`<option value=${i.id}>${i.name ? `${i.name} <${i.email}>` : i.email}</option>`)}
    </select></label>
    <${AddressInput} label="To" name="to" value=${to} setValue=${setTo} contacts=${contacts} inputRef=${first} required=${true} />
    <${AddressInput} label="Cc" name="cc" value=${cc} setValue=${setCc} contacts=${contacts} />
    <label>Subject<input name="subject" value=${subject} onInput=${(e) => setSubject(e.target.value)} /></label>
    ${rich
      ? html`<div class="format" role="toolbar" aria-label="Formatting">
          ${TOOLS.map(([command, label, text]) => html`<button type="button" key=${command} aria-label=${label} title=${label}
            onMouseDown=${(ev) => ev.preventDefault()} onClick=${() => format(command)}>${text}</button>`)}
          <button type="button" aria-label="Link" title="Link" aria-expanded=${!!linking}
            onMouseDown=${(ev) => ev.preventDefault()} onClick=${linking ? () => setLinking(null) : startLink}>🔗</button>
        </div>
        ${linking && html`<${LinkField} error=${linking.error} add=${addLink}
          cancel=${() => { setLinking(null); editor.current?.focus(); }} />`}
        <div class="editor" ref=${editor} contenteditable="true" role="textbox" aria-multiline="true" aria-label="Message"
          onInput=${(e) => setRichHtml(e.currentTarget.innerHTML)}></div>`
      : html`<textarea name="body" rows="12" aria-label="Message" value=${body} onInput=${(e) => setBody(e.target.value)}></textarea>`}
    <ul class="attachments">${files.map((f) => html`<li key=${f.blobId}><img src="/web/static/clip.svg" alt="" /> ${f.name} <span class="size">${size(f.size)}</span>
      <button type="button" class="link" aria-label=${`Remove ${f.name}`} onClick=${() => setFiles((fs) => fs.filter((x) => x !== f))}>×</button></li>`)}
      ${uploads.map((u) => html`<li key=${u.key} class="uploading">${u.name}
        <progress max=${u.total || 1} value=${u.loaded} aria-label=${`Uploading ${u.name}`}></progress>
        <span class="size">${u.total ? Math.floor((100 * u.loaded) / u.total) : 0}%</span></li>`)}</ul>
    <div class="actions">
      <button type="submit" disabled=${busy.endsWith('…') || uploads.length > 0}>Send</button>
      <select aria-label="When" value=${when} onChange=${(e) => setWhen(e.target.value)}>
        <option value="0">now</option><option value="3600">in 1 hour</option>
        <option value="86400">in 1 day</option>
      </select>
      <label class="attach">Attach<input type="file" name="attachment" multiple onChange=${attach} /></label>
      <button type="button" onClick=${rich ? toPlain : toRich} aria-pressed=${rich}>${rich ? 'Plain text' : 'Rich text'}</button>
      <button type="button" onClick=${keep} title="Keep it in Drafts">Close</button>
      <button type="button" onClick=${discard}>Discard</button>
      <span class="status" role="status">${busy}</span>
    </div>
  </form>`;
}
