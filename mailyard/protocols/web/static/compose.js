// Compose, reply, forward.
import { useState, useEffect, useRef } from './vendor/hooks.mjs';
import { html, size, parseAddresses, UNDO_SECONDS } from './util.js';

export function Composer({ client, identities, draft, close, mailboxes, notify }) {
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
