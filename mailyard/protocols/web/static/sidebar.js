// The mailboxes: system roles first, then the user's labels as a tree (a label nests under
// another through Mailbox parentId). Each label can be renamed, moved under another, or deleted
// (Mailbox/set; its mail stays in All Mail and any other label it has).
import { useState } from './vendor/hooks.mjs';
import { html, SYSTEM, ROLE_NAMES } from './util.js';

export function userLabels(mailboxes) {
  return mailboxes.filter((b) => !SYSTEM.includes(b.role) && b.role !== 'all');
}

// The labels in tree order, each with its depth: parents before their children, siblings by name.
export function labelTree(mailboxes) {
  const labels = userLabels(mailboxes);
  const ids = new Set(labels.map((b) => b.id));
  const children = {};
  for (const b of labels) {
    const parent = b.parentId && ids.has(b.parentId) ? b.parentId : '';
    (children[parent] = children[parent] || []).push(b);
  }
  const out = [];
  const walk = (parent, depth) => {
    for (const b of (children[parent] || []).sort((x, y) => x.name.localeCompare(y.name))) {
      out.push({ box: b, depth });
      walk(b.id, depth + 1);
    }
  };
  walk('', 0);
  return out;
}

// "Parent/Child": a label's path, for menus where depth cannot be shown.
export function labelPath(box, byId) {
  const parts = [];
  for (let b = box, n = 0; b && n < 20; b = byId[b.parentId], n += 1) parts.unshift(b.name);
  return parts.join('/');
}

function descendants(id, mailboxes) {
  const out = new Set([id]);
  let grew = true;
  while (grew) {
    grew = false;
    for (const b of mailboxes) if (b.parentId && out.has(b.parentId) && !out.has(b.id)) { out.add(b.id); grew = true; }
  }
  return out;
}

function LabelEditor({ box, mailboxes, byId, editLabel, close }) {
  const [name, setName] = useState(box.name);
  const [parent, setParent] = useState(box.parentId || '');
  const [error, setError] = useState('');
  const [confirming, setConfirming] = useState(false);
  const own = descendants(box.id, mailboxes);
  const parents = labelTree(mailboxes).filter(({ box: b }) => !own.has(b.id));
  const save = async (ev) => {
    ev.preventDefault();
    const patch = {};
    if (name.trim() !== box.name) patch.name = name.trim();
    if ((parent || null) !== (box.parentId || null)) patch.parentId = parent || null;
    const problem = Object.keys(patch).length ? await editLabel(box, { update: patch }) : null;
    if (problem) setError(problem); else close();
  };
  const remove = async () => {
    const problem = await editLabel(box, { destroy: true });
    if (problem) setError(problem); else close();
  };
  return html`<form class="labeledit" onSubmit=${save} aria-label=${`Edit label ${box.name}`}>
    <label>Name<input name="name" value=${name} maxlength="255" required onInput=${(e) => setName(e.target.value)} /></label>
    <label>Nest under<select name="parent" value=${parent} onChange=${(e) => setParent(e.target.value)}>
      <option value="">(top level)</option>
      ${parents.map(({ box: b }) => html`<option value=${b.id}>${labelPath(b, byId)}</option>`)}
    </select></label>
    <div class="row-buttons">
      <button type="submit">Save</button>
      ${confirming
        ? html`<button type="button" class="danger" onClick=${remove}>Delete for good</button>`
        : html`<button type="button" onClick=${() => setConfirming(true)}>Delete</button>`}
      <button type="button" onClick=${close}>Cancel</button>
    </div>
    ${confirming && html`<p class="hint">The label goes; its mail stays in All Mail.</p>`}
    ${error && html`<p class="error" role="alert">${error}</p>`}
  </form>`;
}

export function Sidebar({ mailboxes, view, go, compose, createLabel, editLabel }) {
  const [editing, setEditing] = useState(null);
  const byId = Object.fromEntries(mailboxes.map((b) => [b.id, b]));
  const system = SYSTEM.map((r) => mailboxes.find((b) => b.role === r)).filter(Boolean);
  const item = (b, depth = 0, editable = false) => html`<li key=${b.id} class=${`depth-${Math.min(depth, 4)}`}>
    <div class="boxline">
      <button class=${view.mailboxId === b.id ? 'box current' : 'box'} data-mailbox=${b.role || b.name}
        onClick=${() => go({ mailboxId: b.id })}>
        <span>${ROLE_NAMES[b.role] || b.name}</span>
        ${b.unreadThreads > 0 && html`<span class="count" aria-label="unread">${b.unreadThreads}</span>`}
      </button>
      ${editable && html`<button class="edit" aria-label=${`Edit label ${b.name}`} title="Rename, nest or delete" aria-expanded=${editing === b.id}
        onClick=${() => setEditing(editing === b.id ? null : b.id)}>⋮</button>`}
    </div>
    ${editing === b.id && html`<${LabelEditor} box=${b} mailboxes=${mailboxes} byId=${byId} editLabel=${editLabel}
      close=${() => setEditing(null)} />`}
  </li>`;
  return html`<nav class="sidebar" aria-label="Mailboxes">
    <button class="compose" onClick=${compose}>Compose</button>
    <ul>${system.map((b) => item(b))}</ul>
    <h2>Labels</h2>
    <ul class="labels">${labelTree(mailboxes).map(({ box, depth }) => item(box, depth, true))}</ul>
    <form class="newlabel" onSubmit=${(ev) => { ev.preventDefault(); const name = ev.target.label.value.trim(); if (name) createLabel(name); ev.target.reset(); }}>
      <input name="label" placeholder="New label" aria-label="New label" maxlength="255" />
    </form>
  </nav>`;
}
