// The mailboxes: system roles first, then the user's labels.
import { html, SYSTEM, ROLE_NAMES } from './util.js';

export function Sidebar({ mailboxes, view, go, compose, createLabel }) {
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
