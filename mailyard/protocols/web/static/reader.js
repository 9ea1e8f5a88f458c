// Reading: one message of a conversation.
import { useState, useEffect } from './vendor/hooks.mjs';
import { html, sender, addresses, size, Linked } from './util.js';

export function Message({ client, e, last }) {
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
