// Settings: vacation responder, identities and their signatures, filters, app tokens, quota.
import { useState, useEffect, useRef } from './vendor/hooks.mjs';
import { html, size, UNDO_CHOICES, undoSeconds, setUndoSeconds } from './util.js';
import { CSRF } from './jmap.js';

export function Settings({ client, notify, identitiesChanged }) {
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
    <${Identities} client=${client} notify=${notify} changed=${identitiesChanged} />
    <h2>Sending</h2>
    <label class="inline">Undo send: hold every message for
      <select name="undo" aria-label="Undo send window" value=${String(undoSeconds())}
        onChange=${(e) => { setUndoSeconds(Number(e.target.value)); notify(`Messages are held ${e.target.value} seconds.`); }}>
        ${UNDO_CHOICES.map((n) => html`<option value=${String(n)}>${n} seconds</option>`)}
      </select></label>
    <p class="hint">A sent message waits this long on the server before it leaves; Undo takes it back to Drafts. Kept in this browser.</p>
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
  const [editing, setEditing] = useState(null);  // the filter the form edits, or null for a new one
  const form = useRef(null);
  const load = async () => {
    const [[, r], [, boxes]] = await client.call([['Filters/get', { ids: null }], ['Mailbox/get', { properties: ['name', 'role'] }]]);
    setFilters(r.list);
    setLabels(boxes.list.filter((b) => !b.role).map((b) => b.name));
  };
  useEffect(() => { load(); }, []);
  // The form shows the filter being edited; a new filter starts from an empty form.
  const fill = (f) => {
    const el = form.current;
    for (const [k] of FILTER_TEXT) el.elements[k].value = f ? f[k] || '' : '';
    for (const [k] of FILTER_FLAGS) el.elements[k].checked = f ? !!f[k] : false;
    el.elements.label.value = f ? f.label || '' : '';
    el.elements.forwardTo.value = f ? f.forwardTo || '' : '';
  };
  const edit = (f) => { setEditing(f); setError(null); fill(f); form.current.elements.from.focus(); };
  const cancel = () => { setEditing(null); setError(null); fill(null); };
  const save = async (ev) => {
    ev.preventDefault();
    const data = new FormData(ev.target);
    const f = {};
    for (const [k] of FILTER_TEXT) f[k] = (data.get(k) || '').trim();
    for (const [k] of FILTER_FLAGS) f[k] = data.get(k) === 'on';
    f.label = (data.get('label') || '').trim();
    f.forwardTo = (data.get('forwardTo') || '').trim();
    const call = editing ? { update: { [editing.id]: f } } : { create: { n: f } };
    const [[, r]] = await client.call([['Filters/set', call]]);
    const problem = editing ? (r.notUpdated || {})[editing.id] : (r.notCreated || {}).n;
    if (problem) { setError(problem.description || problem.type); return; }
    setError(null);
    setEditing(null);
    fill(null);
    notify(editing ? 'Filter saved.' : 'Filter created.');
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
        <span>${describeFilter(f)}</span> <button onClick=${() => edit(f)} aria-label=${`Edit filter ${describeFilter(f)}`}>Edit</button>
        <button onClick=${() => remove(f)} aria-label=${`Delete filter ${describeFilter(f)}`}>Delete</button></li>`)}</ul>`
      : html`<p class="empty">No filters.</p>`)}
    <form class="newfilter" ref=${form} onSubmit=${save} aria-label=${editing ? 'Edit filter' : 'New filter'}>
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
      <div class="row-buttons"><button type="submit">${editing ? 'Save filter' : 'Create filter'}</button>
        ${editing && html`<button type="button" onClick=${cancel}>Cancel</button>`}</div>
    </form>
  </div>`;
}

// The names the user sends as, each with its signature (Identity/set): the account's own
// identity can be renamed and signed but not deleted; more can be added for the same address
// (a work signature and a private one, say).
function Identity({ identity, save, remove }) {
  const submit = (ev) => {
    ev.preventDefault();
    const f = new FormData(ev.target);
    save(identity, { name: f.get('name').trim(), textSignature: f.get('signature').replace(/\s+$/, '') });
  };
  const title = identity ? `Identity ${identity.name || identity.email}` : 'New identity';
  return html`<form class="identity" onSubmit=${submit} aria-label=${title}>
    ${identity && html`<p class="hint">${identity.email}</p>`}
    <label>Name<input name="name" maxlength="200" defaultValue=${identity?.name || ''} /></label>
    <label>Signature<textarea name="signature" rows="3" defaultValue=${identity?.textSignature || ''}></textarea></label>
    <div class="row-buttons"><button type="submit">${identity ? 'Save identity' : 'Add identity'}</button>
      ${identity?.mayDelete && html`<button type="button" onClick=${() => remove(identity)}>Delete identity</button>`}</div>
  </form>`;
}

function Identities({ client, notify, changed }) {
  const [list, setList] = useState(null);
  const [generation, setGeneration] = useState(0);  // remakes the forms with what is saved
  const load = async () => {
    const [[, r]] = await client.call([['Identity/get', {}]]);
    setList(r.list);
    setGeneration((g) => g + 1);
    if (changed) changed(r.list);
  };
  useEffect(() => { load(); }, []);
  const save = async (identity, values) => {
    const call = identity ? { update: { [identity.id]: values } } : { create: { n: { ...values, email: list[0].email } } };
    const [[, r]] = await client.call([['Identity/set', call]]);
    const problem = identity ? (r.notUpdated || {})[identity.id] : (r.notCreated || {}).n;
    if (problem) { notify(`Identity not saved: ${problem.description || problem.type}`); return; }
    notify(identity ? 'Identity saved.' : 'Identity added.');
    load();
  };
  const remove = async (identity) => {
    const [[, r]] = await client.call([['Identity/set', { destroy: [identity.id] }]]);
    notify((r.destroyed || []).length ? 'Identity deleted.' : 'Identity not deleted.');
    load();
  };
  return html`<div class="identities">
    <h2>Identities and signatures</h2>
    <p class="hint">A new message starts with the signature of the identity it is sent as.</p>
    ${list && html`<div key=${generation}>
      ${list.map((i) => html`<${Identity} key=${i.id} identity=${i} save=${save} remove=${remove} />`)}
      <details><summary>Add an identity</summary><${Identity} identity=${null} save=${save} /></details>
    </div>`}
  </div>`;
}
