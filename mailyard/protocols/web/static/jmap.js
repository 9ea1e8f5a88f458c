// The webmail's only way to the server: JMAP (RFC 8620, 8621) over the session cookie.
// Every state-changing request carries the CSRF header; the server refuses the cookie without it.

export const CSRF = { 'X-Mailyard-CSRF': '1' };
const USING = ['urn:ietf:params:jmap:core', 'urn:ietf:params:jmap:mail',
  'urn:ietf:params:jmap:submission', 'urn:ietf:params:jmap:vacationresponse',
  'urn:ietf:params:jmap:quota', 'urn:ietf:params:jmap:sieve', 'urn:mailyard:params:jmap:filters'];

export class SessionEnded extends Error {}

export class Client {
  constructor(session) {
    this.session = session;
    this.accountId = session.primaryAccounts['urn:ietf:params:jmap:mail'];
  }

  static async open() {
    const r = await fetch('/jmap/session', { credentials: 'same-origin' });
    if (r.status === 401) throw new SessionEnded();
    if (!r.ok) throw new Error(`session: ${r.status}`);
    return new Client(await r.json());
  }

  // Ends the client's traffic before a logout: push closed, no new call started (each is
  // refused with SessionEnded), and the calls already running finished.
  async drain() {
    this.closed = true;
    if (this.source) this.source.close();
    await Promise.allSettled([...(this.running || [])]);
  }

  // Calls: [[name, args], ...]; answers: a list of [name, args] in the same order.
  call(calls) {
    if (this.closed) return Promise.reject(new SessionEnded());
    this.running = this.running || new Set();
    const done = this.send(calls);
    this.running.add(done);
    const forget = () => this.running.delete(done);
    done.then(forget, forget);
    return done;
  }

  async send(calls) {
    const methodCalls = calls.map(([name, args], i) => [name, { accountId: this.accountId, ...args }, `c${i}`]);
    const r = await fetch('/jmap/api', {
      method: 'POST', credentials: 'same-origin',
      headers: { 'Content-Type': 'application/json', ...CSRF },
      body: JSON.stringify({ using: USING, methodCalls }),
    });
    if (r.status === 401) throw new SessionEnded();
    if (!r.ok) throw new Error(`JMAP request failed: ${r.status}`);
    const body = await r.json();
    for (const [name, args] of body.methodResponses) {
      if (name === 'error') throw new Error(`JMAP error: ${args.type} ${args.description || ''}`);
    }
    return body.methodResponses.map(([name, args]) => [name, args]);
  }

  // A blob upload (RFC 8620 §6.1); `onProgress(loaded, total)` follows it (XMLHttpRequest:
  // fetch reports no upload progress).
  upload(file, onProgress = null) {
    const url = this.session.uploadUrl.replace('{accountId}', encodeURIComponent(this.accountId));
    return new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      xhr.open('POST', url);
      xhr.withCredentials = true;
      xhr.responseType = 'json';
      xhr.setRequestHeader('Content-Type', file.type || 'application/octet-stream');
      for (const [name, value] of Object.entries(CSRF)) xhr.setRequestHeader(name, value);
      if (onProgress) xhr.upload.onprogress = (ev) => onProgress(ev.loaded, ev.lengthComputable ? ev.total : file.size);
      xhr.onload = () => {
        if (xhr.status === 401) reject(new SessionEnded());
        else if (xhr.status < 200 || xhr.status >= 300) reject(new Error(`upload failed: ${xhr.status}`));
        else resolve(xhr.response);
      };
      xhr.onerror = () => reject(new Error('upload failed'));
      xhr.send(file);
    });
  }

  downloadUrl(blobId, name, type) {
    return this.session.downloadUrl
      .replace('{accountId}', encodeURIComponent(this.accountId))
      .replace('{blobId}', encodeURIComponent(blobId))
      .replace('{name}', encodeURIComponent(name || 'attachment'))
      .replace('{type}', encodeURIComponent(type || 'application/octet-stream'));
  }

  // Push: calls `onChange` whenever the account's state moves (EventSource, RFC 8620 §7.3).
  listen(onChange) {
    const source = new EventSource('/jmap/eventsource?types=*&closeafter=no&ping=60');
    this.source = source;
    source.addEventListener('state', () => onChange());
    return () => source.close();
  }
}

// Gmail's query language, as far as a JMAP filter can say it; anything else is searched as text.
export function gmailFilter(query, mailboxes) {
  const conditions = [];
  const words = [];
  const re = /(-?)(\w+):("[^"]*"|\S+)|(-?)("[^"]*"|\S+)/g;
  let m;
  const byName = (name) => mailboxes.find((b) => b.name.toLowerCase() === name.toLowerCase()
    || (b.role && b.role === name.toLowerCase()) || (name === 'spam' && b.role === 'junk'));
  while ((m = re.exec(query)) !== null) {
    if (m[2] === undefined) {
      const word = m[5].replace(/^"|"$/g, '');
      conditions.push(m[4] ? { operator: 'NOT', conditions: [{ text: word }] } : null);
      if (!m[4]) words.push(m[5]);
      continue;
    }
    const [neg, op, raw] = [m[1], m[2].toLowerCase(), m[3].replace(/^"|"$/g, '')];
    let c = null;
    if (['from', 'to', 'cc', 'bcc', 'subject', 'body'].includes(op)) c = { [op]: raw };
    else if (op === 'is' && raw === 'unread') c = { notKeyword: '$seen' };
    else if (op === 'is' && raw === 'read') c = { hasKeyword: '$seen' };
    else if (op === 'is' && raw === 'starred') c = { hasKeyword: '$flagged' };
    else if (op === 'has' && raw === 'attachment') c = { hasAttachment: true };
    else if (op === 'in' || op === 'label') {
      const box = byName(raw);
      c = box ? { inMailbox: box.id } : { text: raw };
    } else if (op === 'before' || op === 'after') {
      const d = readDate(raw);
      if (d) c = { [op]: iso(d) };
    } else if (op === 'older_than' || op === 'newer_than') {
      const d = readAge(raw);
      if (d) c = { [op === 'older_than' ? 'before' : 'after']: iso(d) };
    } else if (op === 'larger' || op === 'smaller') {
      const n = parseSize(raw);
      if (n !== null) c = op === 'larger' ? { minSize: n + 1 } : { maxSize: n };
    }
    if (c === null) { words.push(m[0]); continue; }
    conditions.push(neg ? { operator: 'NOT', conditions: [c] } : c);
  }
  const all = conditions.filter(Boolean);
  if (words.length) all.push({ text: words.join(' ') });
  return all.length === 1 ? all[0] : { operator: 'AND', conditions: all };
}

function parseSize(text) {
  const m = /^(\d+)([kKmMgG]?)$/.exec(text);
  if (!m) return null;
  return Number(m[1]) * ({ k: 1024, m: 1024 ** 2, g: 1024 ** 3 }[m[2].toLowerCase()] || 1);
}

const iso = (d) => d.toISOString().replace(/\.\d+Z$/, 'Z');

// The date forms the server's query parser reads (core/query.py): 2026/11/28, 2026-11-28,
// 11/28/2026, or seconds since 1970; null for anything else (or a day that does not exist).
function readDate(text) {
  if (/^\d{9,}$/.test(text)) return new Date(Number(text) * 1000);
  let m = /^(\d{4})[/-](\d{1,2})[/-](\d{1,2})$/.exec(text);
  const [y, mo, d] = m ? [m[1], m[2], m[3]] : ((m = /^(\d{1,2})\/(\d{1,2})\/(\d{4})$/.exec(text)) ? [m[3], m[1], m[2]] : []);
  if (!y) return null;
  const day = new Date(Number(y), Number(mo) - 1, Number(d));
  return day.getMonth() === Number(mo) - 1 && day.getDate() === Number(d) ? day : null;
}

// older_than:/newer_than: 7d, 2m, 1y: the moment that long ago, or null.
function readAge(text) {
  const m = /^(\d+)([dmy])$/i.exec(text);
  if (!m) return null;
  const at = new Date();
  const n = Number(m[1]);
  const unit = m[2].toLowerCase();
  if (unit === 'd') at.setDate(at.getDate() - n);
  else if (unit === 'm') at.setMonth(at.getMonth() - n);
  else at.setFullYear(at.getFullYear() - n);
  return at;
}

const EXPECTED = {
  before: 'a date: 2026/11/28, 2026-11-28, 11/28/2026 or seconds since 1970',
  older_than: 'a number of days, months or years: 7d, 2m, 1y',
  larger: 'a size in bytes, or with K, M or G: 1000, 500K, 10M, 2G',
  is: 'one of unread, read, starred, important',
  has: 'only has:attachment',
};
const READS = {
  before: readDate, older_than: readAge, larger: parseSize,
  is: (v) => ['unread', 'read', 'starred', 'important'].includes(v.toLowerCase()) || null,
  has: (v) => v.toLowerCase() === 'attachment' || null,
};
const SAME = { after: 'before', newer_than: 'older_than', smaller: 'larger' };

// The first operator whose value cannot be read, said as the server says it to the CLI and
// IMAP ('before: cannot read "notadate", expected a date: ...'); null when every one reads.
// Searched as words instead, such a query would find nothing and not say why.
export function queryProblem(query) {
  const re = /(?:^|\s)-?(\w+):("[^"]*"|\S*)/g;
  let m;
  while ((m = re.exec(query)) !== null) {
    const op = m[1].toLowerCase();
    const kind = SAME[op] || op;
    if (!READS[kind]) continue;
    const value = m[2].replace(/^"|"$/g, '');
    if (READS[kind](value) === null) return `${op}: cannot read "${value}", expected ${EXPECTED[kind]}`;
  }
  return null;
}
