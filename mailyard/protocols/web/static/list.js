// The conversation list.
import { html, sender, shortDate } from './util.js';
import { Marked } from './search.js';

export function Row({ e, selected, labels, open, ticked, tick }) {
  const unread = !e.keywords.$seen;
  return html`<li class=${`row${unread ? ' unread' : ''}${selected ? ' selected' : ''}`}
      data-email=${e.id} data-thread=${e.threadId} onClick=${() => open(e)} aria-selected=${selected}>
    <input type="checkbox" class="tick" aria-label=${`Select ${e.subject || 'conversation'}`} checked=${ticked}
      onClick=${(ev) => { ev.stopPropagation(); tick(e.threadId); }} />
    <span class=${e.keywords.$flagged ? 'star on' : 'star'} aria-label=${e.keywords.$flagged ? 'starred' : 'not starred'}>★</span>
    <span class="from">${sender(e)}${e.count > 1 ? html` <span class="n">${e.count}</span>` : ''}</span>
    <span class="subject">${labels.map((l) => html`<span class="chip" key=${l}>${l}</span>`)}
      <b>${e.snippet?.subject ? html`<${Marked} text=${e.snippet.subject} />` : e.subject || '(no subject)'}</b><span class="preview"> — ${e.snippet?.preview ? html`<${Marked} text=${e.snippet.preview} />` : e.preview}</span></span>
    ${e.hasAttachment ? html`<img class="clip" src="/web/static/clip.svg" alt="has attachment" />` : html`<span></span>`}
    <time datetime=${e.receivedAt}>${shortDate(e.receivedAt)}</time>
  </li>`;
}
