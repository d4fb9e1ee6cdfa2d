// The console's shell: login, the role-aware layout, a hash router (#/page/arg…), the one
// shared event stream pages subscribe to, and the language toggle. Pages are ES modules in
// pages/ whose default export is {render(main, ctx)}; render may return a cleanup function.
import { api, get, post, setToken, settled, token, whenUnauthenticated, streamEvents, ApiError, LOGGED_OUT } from './api.js';
import { t, lang, setLang } from './i18n.js';
import { h, clear, errorState, field, disposeCharts, toast } from './ui.js';

const ALL = ['operator', 'supplier', 'user'];

/** The pages, in navigation order, with the roles that see them. */
const ROUTES = [
  { path: 'overview', nav: 'nav.overview', roles: ALL, load: () => import('./pages/overview.js') },
  { path: 'topology', nav: 'nav.topology', roles: ALL, load: () => import('./pages/topology.js') },
  { path: 'resources', nav: 'nav.resources', roles: ['operator', 'supplier'], load: () => import('./pages/resources.js') },
  { path: 'tasks', nav: 'nav.tasks', roles: ['operator', 'user'], load: () => import('./pages/tasks.js') },
  { path: 'policies', nav: 'nav.policies', roles: ['operator', 'user'], load: () => import('./pages/policies.js') },
  { path: 'design', nav: 'nav.design', roles: ['operator', 'user'], load: () => import('./pages/design.js') },
  { path: 'flows', nav: 'nav.flows', roles: ['operator', 'user'], load: () => import('./pages/flows.js') },
  { path: 'market', nav: 'nav.market', roles: ALL, load: () => import('./pages/market.js') },
  { path: 'listings', nav: 'nav.listings', roles: ['operator', 'supplier'], load: () => import('./pages/listings.js') },
  { path: 'leases', nav: 'nav.leases', roles: ALL, load: () => import('./pages/leases.js') },
  { path: 'billing', nav: 'nav.billing', roles: ALL, load: () => import('./pages/billing.js') },
  { path: 'reviews', nav: 'nav.reviews', roles: ['operator'], load: () => import('./pages/reviews.js') },
  { path: 'audit', nav: 'nav.audit', roles: ['operator'], load: () => import('./pages/audit.js') },
];

const app = document.getElementById('app');
let user = null;
let cleanup = null;
let stopEvents = null;
const listeners = new Set();
let streamState = 'retrying';

/** The route in the address bar: #/tasks/abc?x=1 → {path: 'tasks', params: ['abc'], query}. */
function current() {
  const raw = location.hash.replace(/^#\/?/, '');
  const [pathPart, queryPart = ''] = raw.split('?');
  const [path = '', ...params] = pathPart.split('/').filter(Boolean).map(decodeURIComponent);
  return { path, params, query: new URLSearchParams(queryPart) };
}

export function navigate(hash) {
  if (location.hash === hash) render();
  else location.hash = hash;
}

function allowed(route) {
  return user && route.roles.includes(user.role);
}

function loginPage(message) {
  const username = h('input', { name: 'username', autocomplete: 'username', required: true });
  const password = h('input', { name: 'password', type: 'password', autocomplete: 'current-password', required: true });
  const totp = h('input', { name: 'totp', inputmode: 'numeric', autocomplete: 'one-time-code', pattern: '[0-9]{6}', maxlength: 6 });
  const error = h('div', { class: 'form-error', role: 'alert' }, message || '');
  const submit = h('button', { type: 'submit' }, t('auth.login'));
  const form = h('form', {
    class: 'panel login',
    on: {
      submit: async (e) => {
        e.preventDefault();
        submit.disabled = true;
        error.textContent = '';
        try {
          const body = { username: username.value.trim(), password: password.value };
          if (totp.value.trim()) body.totp = totp.value.trim();
          const res = await post('/api/v1/auth/login', body);
          setToken(res.token);
          user = res.user;
          start();
        } catch (err) {
          error.textContent = t('auth.failed', { message: err.message });
          password.select();
        } finally {
          submit.disabled = false;
        }
      },
    },
  },
  h('h1', {}, t('auth.title')),
  h('p', { class: 'muted' }, t('app.subtitle')),
  field(t('auth.username'), username),
  field(t('auth.password'), password),
  field(t('auth.totp'), totp),
  error,
  h('div', { class: 'form-actions' }, submit, langButton()),
  h('p', { class: 'muted', style: { fontSize: '12px' } }, t('auth.hint')));
  clear(app, h('main', { id: 'main' }, form));
  document.title = t('auth.title');
  username.focus();
}

/** Texts outside the app's root (the skip link) follow the language too. */
function translateStatic() {
  const skip = document.querySelector('.skip-link');
  if (skip) skip.textContent = t('app.skip');
}

// The skip link must not change the hash (the router's); it moves focus instead.
document.querySelector('.skip-link')?.addEventListener('click', (e) => {
  e.preventDefault();
  document.getElementById('main')?.focus();
});

function langButton() {
  // The visible text is the other language's own name, marked with its language so screen
  // readers pronounce it right; the title says what the button does.
  return h('button', {
    type: 'button', class: 'secondary lang-toggle', title: t('lang.toggle.label'), lang: lang === 'zh' ? 'en' : 'zh',
    on: { click: () => setLang(lang === 'zh' ? 'en' : 'zh') },
  }, t('lang.toggle'));
}

function layout() {
  const nav = h('nav', { class: 'side', 'aria-label': t('nav.main') },
    ROUTES.filter(allowed).map((r) => h('a', { href: `#/${r.path}`, dataset: { path: r.path } }, t(r.nav))));
  const main = h('main', { id: 'main', tabindex: '-1' });
  const live = h('span', { class: 'badge stream-state', title: 'event stream' });
  const top = h('header', { class: 'topbar' },
    h('a', { class: 'brand', href: '#/overview' }, t('app.title')),
    live,
    h('span', { class: 'who' }, `${user.display_name || user.username} · ${t(`role.${user.role}`)} · ${user.tenant}`),
    langButton(),
    h('button', { type: 'button', class: 'logout', on: { click: logout } }, t('auth.logout')));
  clear(app, h('div', { class: 'shell' }, top, nav, main));
  showStreamState();
  return main;
}

function showStreamState() {
  const el = app.querySelector('.stream-state');
  if (!el) return;
  el.textContent = streamState === 'open' ? t('common.live') : t('common.reconnecting');
  el.className = `badge stream-state ${streamState === 'open' ? 'ok' : 'warn'}`;
}

async function logout() {
  // Forget the token first, so nothing still loading can use it after it is revoked.
  const revoked = token();
  setToken(null);
  user = null;
  stop();
  // Calls already sent still carry it: let them be answered before it is revoked.
  await settled();
  try {
    await api('POST', '/api/v1/auth/logout', {}, { headers: { Authorization: `Bearer ${revoked}` } });
  } catch {
    // the token may already be gone; logging out locally is what matters
  }
  location.hash = '#/overview';
  loginPage();
}

function stop() {
  stopEvents?.();
  stopEvents = null;
  runCleanup();
}

function runCleanup() {
  try {
    cleanup?.();
  } catch (e) {
    console.error(e);
  }
  cleanup = null;
  listeners.clear();
  disposeCharts();
}

async function render() {
  if (!user) return;
  runCleanup();
  let { path, params, query } = current();
  if (!path) {
    location.replace('#/overview');
    return;
  }
  const main = layout();
  for (const a of app.querySelectorAll('nav.side a')) {
    if (a.dataset.path === path) a.setAttribute('aria-current', 'page');
  }
  const route = ROUTES.find((r) => r.path === path);
  if (!route) {
    clear(main, errorState(new Error(t('common.notfound', { path }))));
    return;
  }
  if (!allowed(route)) {
    clear(main, errorState(new Error(t('common.forbidden', { role: t(`role.${user.role}`) }))));
    return;
  }
  document.title = `${t(route.nav)} · ${t('app.title')}`;
  const ctx = {
    user,
    params,
    query,
    navigate,
    /** Subscribe to the live event stream for as long as this page is shown. */
    onEvent(fn) {
      listeners.add(fn);
      return () => listeners.delete(fn);
    },
  };
  try {
    const mod = await route.load();
    if (current().path !== path) return; // left while loading
    const done = await mod.default.render(main, ctx);
    if (typeof done === 'function') cleanup = done;
  } catch (e) {
    console.error(e);
    clear(main, errorState(e, () => render()));
  }
}

function start() {
  stopEvents?.();
  stopEvents = streamEvents({
    onEvent: (ev) => {
      for (const fn of listeners) {
        try {
          fn(ev);
        } catch (e) {
          console.error(e);
        }
      }
    },
    onState: (s) => {
      streamState = s;
      showStreamState();
    },
  });
  if (!location.hash) location.replace('#/overview');
  render();
}

async function boot() {
  whenUnauthenticated(() => {
    stop();
    user = null;
    loginPage(t('auth.expired'));
  });
  window.addEventListener('hashchange', () => render());
  window.addEventListener('cpn:lang', () => {
    translateStatic();
    if (user) render();
    else loginPage();
  });
  translateStatic();
  if (!token()) {
    loginPage();
    return;
  }
  try {
    user = await get('/api/v1/auth/whoami');
    start();
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) loginPage();
    else clear(app, errorState(e, boot));
  }
}

window.addEventListener('unhandledrejection', (e) => {
  if (e.reason instanceof ApiError) {
    if (e.reason.code !== LOGGED_OUT) toast(e.reason.message, 'bad');
    e.preventDefault();
  }
});

// The deferred vendor scripts run before module scripts, so echarts is ready here.
boot();
