// The conversation list, virtually scrolled: the scroller is as tall as every conversation of the
// mailbox or search, but only the rows in view (and a few either side) are in the page, and only
// the pages of PAGE threads that they fall in are fetched. Scrolling a mailbox of 100,000
// conversations costs what scrolling one of 50 does.
import { useState, useEffect, useRef } from './vendor/hooks.mjs';
import { html, sender, shortDate } from './util.js';
import { Marked } from './search.js';

const OVERSCAN = 10;  // rows rendered beyond each edge of the view
const PHONE = '(max-width: 700px)';

// The height of a row, which app.css fixes for the same widths: the list places rows by it.
export function rowHeight() {
  return window.matchMedia(PHONE).matches ? 64 : 37;
}

export function Row({ e, index, selected, labels, open, ticked, tick, top }) {
  const unread = !e.keywords.$seen;
  return html`<li class=${`row${unread ? ' unread' : ''}${selected ? ' selected' : ''}`} style=${{ transform: `translateY(${top}px)` }}
      data-email=${e.id} data-thread=${e.threadId} aria-rowindex=${index + 1} onClick=${() => open(e)} aria-selected=${selected}>
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

// total: how many conversations; at(i): the i-th if its page is loaded; want(first, last): load
// the pages of rows first..last; row(e, i, top): a Row. `saved` keeps the scroll position
// while a conversation is open; `cursor` is kept in view. A new `generation` (the list
// reloaded, its old pages dropped) asks again for the pages in view: a reload that began
// before a scroll did not fetch them, and an answer for the old generation was dropped.
export function VirtualList({ total, at, want, row, saved, cursor, generation }) {
  const scroller = useRef(null);
  const [top, setTop] = useState(saved.current || 0);
  const [height, setHeight] = useState(800);
  const [unit, setUnit] = useState(rowHeight());
  useEffect(() => {
    const node = scroller.current;
    node.scrollTop = saved.current || 0;
    const measure = () => { setHeight(node.clientHeight || 800); setUnit(rowHeight()); };
    measure();
    const observer = new ResizeObserver(measure);
    observer.observe(node);
    return () => observer.disconnect();
  }, []);
  const first = Math.max(0, Math.floor(top / unit) - OVERSCAN);
  const last = Math.min((total || 0) - 1, Math.ceil((top + height) / unit) + OVERSCAN);
  useEffect(() => { if (total > 0) want(first, last); }, [first, last, total, generation]);
  useEffect(() => {  // j/k move the cursor: keep its row in view
    const node = scroller.current;
    if (!node || cursor < 0) return;
    const y = cursor * unit;
    if (y < node.scrollTop) node.scrollTop = y;
    else if (y + unit > node.scrollTop + node.clientHeight) node.scrollTop = y + unit - node.clientHeight;
  }, [cursor]);
  const frame = useRef(0);
  const scrolled = () => {
    cancelAnimationFrame(frame.current);
    frame.current = requestAnimationFrame(() => {
      const y = scroller.current ? scroller.current.scrollTop : 0;
      saved.current = y;
      setTop(y);
    });
  };
  const rows = [];
  for (let i = first; i <= last; i += 1) {
    const e = at(i);
    rows.push(e ? row(e, i, i * unit)
      : html`<li key=${`wait-${i}`} class="placeholder" aria-busy="true" style=${{ transform: `translateY(${i * unit}px)` }}></li>`);
  }
  return html`<div class="scroller" ref=${scroller} onScroll=${scrolled}>
    <ul class="list" aria-label="Conversations" aria-rowcount=${total} aria-busy=${total === null} style=${{ height: total ? `${total * unit}px` : 'auto' }}>
      ${total === 0 ? html`<li class="empty">No conversations.</li>`
        : total === null ? html`<li class="empty" aria-busy="true">Loading…</li>` : rows}
    </ul>
  </div>`;
}
