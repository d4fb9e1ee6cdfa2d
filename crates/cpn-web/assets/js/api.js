// The console's only door to the server: JSON calls to /api/v1 with the bearer token, errors
// turned into ApiError (the API's {"error": {code, message}}), and streaming readers for
// Server-Sent Events and followed logs. fetch is used for streams, not EventSource, because
// EventSource cannot send the Authorization header.

import { t } from './i18n.js';

const TOKEN_KEY = 'cpn.token';

export class ApiError extends Error {
  /** `field` is the path of the offending input when the server names one (422, 400). */
  constructor(status, code, message, field) {
    super(message);
    this.status = status;
    this.code = code;
    this.field = field;
  }
}

export function token() {
  return localStorage.getItem(TOKEN_KEY);
}

export function setToken(t) {
  if (t) localStorage.setItem(TOKEN_KEY, t);
  else localStorage.removeItem(TOKEN_KEY);
}

/** Paths that need no token. */
const PUBLIC = ['/api/v1/auth/login'];
/** The code of the error a call gets when made after logging out (never sent). */
export const LOGGED_OUT = 'logged_out';

/** Called when the server says the token is no longer good (set by app.js). */
let onUnauthenticated = () => {};
export function whenUnauthenticated(fn) {
  onUnauthenticated = fn;
}

function headers(extra = {}) {
  const h = { Accept: 'application/json', ...extra };
  const t = token();
  if (t) h.Authorization = `Bearer ${t}`;
  return h;
}

async function errorOf(res) {
  let code = `http_${res.status}`;
  let message = res.statusText || `HTTP ${res.status}`;
  let field;
  try {
    const body = await res.json();
    if (body && body.error) {
      code = body.error.code || code;
      message = body.error.message || message;
      field = body.error.field;
    }
  } catch {
    // not JSON: keep the status line
  }
  return new ApiError(res.status, code, message, field);
}

/** Calls sent and not yet answered (their headers), which logging out lets finish. */
const inFlight = new Set();

/**
 * Waits (at most `ms`) until every call already sent has its answer. Logging out forgets the
 * token first and then waits here before revoking it, so no call in flight reaches the
 * server after its token is gone (the browser would log that 401 as an error).
 */
export async function settled(ms = 3000) {
  await Promise.race([Promise.allSettled([...inFlight]), new Promise((r) => setTimeout(r, ms))]);
}

/**
 * One API call. `body` is sent as JSON unless it is a string (sent as text, e.g. YAML);
 * `headers` adds request headers (If-Match, say).
 * Resolves to the parsed JSON (or text with {text: true}; null for 204).
 */
export async function api(method, path, body, { text = false, signal, contentType, headers: extra } = {}) {
  // Logged out: a page still loading must not reach the server with a revoked token.
  if (!token() && !extra?.Authorization && !PUBLIC.includes(path)) {
    throw new ApiError(401, LOGGED_OUT, t('auth.expired'));
  }
  const init = { method, headers: headers(extra), signal };
  if (body !== undefined) {
    if (typeof body === 'string') {
      init.headers['Content-Type'] = contentType || 'text/plain';
      init.body = body;
    } else {
      init.headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
  }
  let res;
  const sent = fetch(path, init);
  inFlight.add(sent);
  try {
    res = await sent;
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    throw new ApiError(0, 'network', t('common.network'));
  } finally {
    inFlight.delete(sent);
  }
  if (res.status === 401 && token()) {
    setToken(null);
    onUnauthenticated();
  }
  if (!res.ok) throw await errorOf(res);
  if (res.status === 204) return null;
  if (text) return res.text();
  const type = res.headers.get('Content-Type') || '';
  return type.includes('json') ? res.json() : res.text();
}

export const get = (path, opts) => api('GET', path, undefined, opts);
export const post = (path, body, opts) => api('POST', path, body ?? {}, opts);
export const put = (path, body, opts) => api('PUT', path, body, opts);
export const del = (path, opts) => api('DELETE', path, undefined, opts);

/** The items of a list answer, whether the endpoint returns {items: [...]} or a bare array. */
export function items(answer) {
  return Array.isArray(answer) ? answer : (answer?.items ?? []);
}

/** Reads a streaming response body line by line until stopped. */
async function readLines(res, onLine, signal) {
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  let buf = '';
  while (!signal.aborted) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += decoder.decode(value, { stream: true });
    let nl;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, nl).replace(/\r$/, '');
      buf = buf.slice(nl + 1);
      onLine(line);
    }
  }
}

/**
 * Follows GET /api/v1/events (SSE), resuming after the last seen id when the connection
 * drops. `onEvent` gets each EventView; `onState` gets 'open' | 'retrying'. Returns stop().
 */
export function streamEvents({ types, after, onEvent, onState = () => {} }) {
  const ctl = new AbortController();
  let lastId = after;
  let delay = 500;
  const run = async () => {
    // Logged out (the token forgotten): never reconnect without one.
    while (!ctl.signal.aborted && token()) {
      try {
        const q = new URLSearchParams();
        if (types) q.set('types', types);
        const h = headers({ Accept: 'text/event-stream' });
        if (lastId !== undefined && lastId !== null) h['Last-Event-ID'] = String(lastId);
        const res = await fetch(`/api/v1/events?${q}`, { headers: h, signal: ctl.signal });
        if (!res.ok) throw await errorOf(res);
        onState('open');
        delay = 500;
        let data = [];
        let id = null;
        await readLines(res, (line) => {
          if (line === '') {
            if (data.length) {
              if (id !== null) lastId = id;
              try {
                onEvent(JSON.parse(data.join('\n')));
              } catch (e) {
                console.warn('event not understood', e);
              }
            }
            data = [];
            id = null;
          } else if (line.startsWith('data:')) data.push(line.slice(5).trimStart());
          else if (line.startsWith('id:')) id = line.slice(3).trim();
        }, ctl.signal);
      } catch (e) {
        if (ctl.signal.aborted) return;
        if (e instanceof ApiError && e.status === 401) return;
      }
      if (ctl.signal.aborted) return;
      onState('retrying');
      await new Promise((r) => setTimeout(r, delay));
      delay = Math.min(delay * 2, 10000);
    }
  };
  run();
  return () => ctl.abort();
}

/** Follows a task's output (`?follow=true`), calling onText with each chunk. Returns stop(). */
export function followLogs(taskId, { stream = 'stdout', onText, onEnd = () => {} }) {
  const ctl = new AbortController();
  (async () => {
    try {
      if (!token()) throw new ApiError(401, LOGGED_OUT, t('auth.expired'));
      const res = await fetch(`/api/v1/tasks/${encodeURIComponent(taskId)}/logs?follow=true&stream=${stream}`, {
        headers: headers({ Accept: 'text/plain' }),
        signal: ctl.signal,
      });
      if (!res.ok) throw await errorOf(res);
      const reader = res.body.getReader();
      const decoder = new TextDecoder();
      while (!ctl.signal.aborted) {
        const { value, done } = await reader.read();
        if (done) break;
        onText(decoder.decode(value, { stream: true }));
      }
      onEnd(null);
    } catch (e) {
      if (!ctl.signal.aborted) onEnd(e);
    }
  })();
  return () => ctl.abort();
}

/**
 * Every item of a paged list (GET path?limit=…&cursor=…, answering {items, next_cursor}),
 * following the cursor; `path` may carry its own query (a selector, say).
 */
export async function listAll(path, { limit = 1000, max = 50000 } = {}) {
  const out = [];
  let cursor = null;
  const sep = path.includes('?') ? '&' : '?';
  do {
    const page = await get(`${path}${sep}limit=${limit}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`);
    if (Array.isArray(page)) return page;
    out.push(...(page.items || []));
    cursor = page.next_cursor;
  } while (cursor && out.length < max);
  return out;
}
