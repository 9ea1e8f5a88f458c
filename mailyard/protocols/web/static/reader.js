// Reading: one message of a conversation, with its sender's authentication mark and its
// attachments (images and PDFs previewed, every one downloadable).
import { useState, useEffect } from './vendor/hooks.mjs';
import { html, sender, addresses, size, Linked } from './util.js';

export const AUTH_HEADER = 'header:Authentication-Results:asText:all';
const IMAGES = ['image/png', 'image/jpeg', 'image/gif', 'image/webp'];
const PDF = 'application/pdf';
// Senders whose remote images the reader chose to always see: kept in this browser only.
const IMAGE_SENDERS = 'mailyard.imagesFrom';
function imageSenders() {
  try { return JSON.parse(localStorage.getItem(IMAGE_SENDERS) || '[]'); } catch { return []; }
}
function trustImagesFrom(address) {
  localStorage.setItem(IMAGE_SENDERS, JSON.stringify([...new Set([...imageSenders(), address.toLowerCase()])]));
}

// What our own Authentication-Results (RFC 8601) says of a message: only a field whose
// authserv-id is our hostname counts; the server removed any the sender forged under that id,
// and fields of other hosts prove nothing. Returns null when none of ours is there (mail that
// never crossed our MX, such as a local user's).
export function authVerdict(values, ours) {
  if (!ours) return null;
  for (const value of values || []) {
    const text = value.replace(/\([^()]*\)/g, ' ').trim();
    const [id, ...rest] = text.split(';');
    if (id.trim().toLowerCase().replace(/\.$/, '') !== ours.toLowerCase()) continue;
    const results = {};
    let domain = '';
    for (const part of rest) {
      const m = /^\s*(spf|dkim|dmarc)\s*=\s*([a-z]+)/i.exec(part);
      if (!m) continue;
      const [method, result] = [m[1].toLowerCase(), m[2].toLowerCase()];
      if (!results[method] || result === 'pass') results[method] = result;
      if (method === 'dmarc') domain = (/header\.from=("?)([^\s";]+)\1/i.exec(part) || [])[2] || domain;
    }
    const summary = ['spf', 'dkim', 'dmarc'].map((k) => `${k.toUpperCase()} ${results[k] || 'none'}`).join(', ');
    if (results.dmarc === 'pass') return { kind: 'verified', domain, summary };
    if (results.dmarc === 'fail') return { kind: 'failed', domain, summary };
    if (results.spf !== 'pass' && results.dkim !== 'pass') return { kind: 'unverified', domain, summary };
    return { kind: 'partial', domain, summary };
  }
  return null;
}

function AuthMark({ verdict, from }) {
  if (!verdict) return null;
  const domain = verdict.domain || (from.split('@')[1] || '');
  if (verdict.kind === 'verified') {
    return html`<span class="auth verified" title=${verdict.summary} aria-label=${`Verified sender: ${domain}`}>✔ ${domain}</span>`;
  }
  if (verdict.kind === 'partial') return null;
  const text = verdict.kind === 'failed'
    ? `This message failed ${domain}'s authentication (DMARC): it may not be from ${from}.`
    : `This message could not be verified as coming from ${domain}.`;
  return html`<p class="auth warning" role="note" title=${verdict.summary}>⚠ ${text}</p>`;
}

function Attachment({ client, a }) {
  const [showing, setShowing] = useState(false);
  const type = (a.type || '').toLowerCase();
  const name = a.name || 'attachment';
  const preview = `/web/attachment/${encodeURIComponent(a.blobId)}/${encodeURIComponent(name)}?type=${encodeURIComponent(type)}`;
  return html`<li key=${a.blobId} class="attachment" data-name=${name}>
    ${IMAGES.includes(type) && html`<a class="thumb" href=${preview} target="_blank" rel="noopener noreferrer"
      aria-label=${`Preview ${name}`}><img src=${preview} alt=${name} loading="lazy" /></a>`}
    <a href=${client.downloadUrl(a.blobId, name, a.type)} download=${name}>
      <img src="/web/static/clip.svg" alt="" /> ${name}</a> <span class="size">${size(a.size)}</span>
    ${type === PDF && html` <button class="link" aria-expanded=${showing} onClick=${() => setShowing(!showing)}>
      ${showing ? 'Hide preview' : 'Preview'}</button>`}
    ${showing && html`<iframe class="pdf" title=${`Preview of ${name}`} src=${preview}></iframe>`}
  </li>`;
}

export function Message({ client, e, last }) {
  const [open, setOpen] = useState(last || !e.keywords.$seen);
  const from = (e.from || [])[0]?.email || '';
  // Remote images stay hidden unless shown for this message, or always for this sender.
  const [images, setImages] = useState(() => !!from && imageSenders().includes(from.toLowerCase()));
  const [blocked, setBlocked] = useState(0);
  const hasHtml = (e.htmlBody || []).some((p) => p.type === 'text/html');
  const src = `/web/message/${encodeURIComponent(e.id)}/html${images ? '?images=1' : ''}`;
  useEffect(() => {
    if (!open || !hasHtml || images) return;
    fetch(src, { method: 'HEAD', credentials: 'same-origin' })
      .then((r) => setBlocked(Number(r.headers.get('X-Mailyard-Remote-Images') || 0)));
  }, [open, e.id]);
  const text = (e.textBody || []).map((p) => e.bodyValues[p.partId]?.value || '').join('\n');
  const verdict = authVerdict(e[AUTH_HEADER], client.authservId);
  return html`<article class="message" data-email=${e.id}>
    <header onClick=${() => setOpen(!open)}>
      <b class="from">${sender(e)}</b> <span class="addr">${from}</span>
      ${verdict?.kind === 'verified' && html` <${AuthMark} verdict=${verdict} from=${from} />`}
      <time datetime=${e.receivedAt}>${new Date(e.receivedAt).toLocaleString()}</time>
      ${open && html`<div class="to">to ${addresses(e.to)}${e.cc ? `, cc ${addresses(e.cc)}` : ''}</div>`}
    </header>
    ${open && verdict && verdict.kind !== 'verified' && html`<${AuthMark} verdict=${verdict} from=${from} />`}
    ${open && (hasHtml
      ? html`${blocked > 0 && !images && html`<p class="images">Remote images are hidden.${' '}
            <button class="link" onClick=${() => setImages(true)}>Show images</button>
            ${from && html` · <button class="link" onClick=${() => { trustImagesFrom(from); setImages(true); }}>Always show images from ${from}</button>`}</p>`}
          <iframe class="body" title="Message" sandbox="allow-popups allow-popups-to-escape-sandbox"
            referrerpolicy="no-referrer" src=${src}></iframe>`
      : html`<${Linked} text=${text} />`)}
    ${open && (e.attachments || []).length > 0 && html`<ul class="attachments">
      ${e.attachments.map((a) => html`<${Attachment} key=${a.blobId} client=${client} a=${a} />`)}
    </ul>`}
  </article>`;
}
