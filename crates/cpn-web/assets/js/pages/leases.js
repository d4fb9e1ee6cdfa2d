// My leases (issue #14): the leases the caller holds (a supplier: supplies), and one lease's
// detail with how to reach it. A class A lease waits for the supplier's authorization code,
// entered here with the user's SSH public key; once the node's agent has made the account,
// the lease carries the SSH command. #/leases or #/leases/<id>.
import { get, post } from '../api.js';
import { t, fmtTime } from '../i18n.js';
import { h, clear, table, field, errorState, loading, empty, props, toast } from '../ui.js';
import { money, stateBadge } from './market-common.js';
import { evaluationProps, monitoringPanel } from './market-eval.js';

function columns() {
  return [
    { title: t('ls.col.id'), value: (l) => h('a', { href: `#/leases/${l.id}` }, String(l.id)), num: true },
    { title: t('ls.col.listing'), value: (l) => h('a', { href: `#/market/${encodeURIComponent(l.listing)}` }, l.listing) },
    { title: t('ls.col.cards'), value: (l) => l.cards.length, num: true },
    { title: t('ls.col.mode'), value: (l) => t(`mode.${l.mode}`) },
    { title: t('ls.col.price'), value: (l) => money(l.unit_price_minor), num: true },
    { title: t('ls.col.state'), value: (l) => stateBadge('state', l.state) },
    { title: t('ls.col.started'), value: (l) => fmtTime(l.started_at) },
    { title: t('ls.col.ends'), value: (l) => (l.ends_at ? fmtTime(l.ends_at) : '–') },
    { title: t('ls.col.charged'), value: (l) => money(l.charged_minor), num: true },
  ];
}

async function listPage(main, ctx) {
  clear(main, loading());
  let leases;
  try {
    leases = await get('/api/v1/market/leases');
  } catch (err) {
    clear(main, errorState(err, () => listPage(main, ctx)));
    return;
  }
  // Newest first: the lease just ordered is the one people look for.
  leases.sort((a, b) => b.id - a.id);
  clear(main, h('div', { class: 'leases' },
    h('div', { class: 'page-head' }, h('h1', {}, t('ls.title'))),
    h('p', { class: 'muted' }, t('ls.intro')),
    h('section', { class: 'panel', 'data-test': 'lease-list' },
      leases.length ? table(columns(), leases, { onRow: (l) => ctx.navigate(`#/leases/${l.id}`), scrollLabel: t('ls.title') }) : empty(t('ls.none')))));
}

/** SSH access as the agent reported it: one ready-to-copy command per node. */
function sshCommands(ssh) {
  return h('ul', { class: 'plain' }, ssh.map((a) => h('li', {},
    h('code', { class: 'ssh-command' }, `ssh -p ${a.port} ${a.username}@${a.host}`),
    h('div', { class: 'muted' }, `${a.host_key_type} ${a.host_key_fingerprint}`))));
}

function codeForm(main, ctx, lease) {
  const code = h('input', { name: 'code', autocomplete: 'off', required: true, spellcheck: false });
  const key = h('textarea', { name: 'public_key', rows: 2, spellcheck: false });
  const error = h('div', { class: 'form-error', role: 'alert' });
  const submit = h('button', { type: 'submit' }, t('ls.code.submit'));
  return h('form', {
    on: {
      submit: async (e) => {
        e.preventDefault();
        error.textContent = '';
        submit.disabled = true;
        try {
          const body = { code: code.value.trim() };
          if (key.value.trim()) body.public_key = key.value.trim();
          await post(`/api/v1/market/leases/${lease.id}/code`, body);
          toast(t('ls.code.ok'), 'ok');
          detailPage(main, ctx, lease.id);
        } catch (err) {
          error.textContent = err.message;
        } finally {
          submit.disabled = false;
        }
      },
    },
  }, field(t('ls.code'), code), field(t('ls.key'), key), error, h('div', { class: 'form-actions' }, submit));
}

/** The supplier's side of a class A lease: issue the code the user enters. The server keeps
 * only its hash, so it is shown here once and never again: once shown (or after a restart),
 * or when the lease is locked, the button issues a new one, which replaces it. */
function codeIssuer(lease) {
  const out = h('div', { 'aria-live': 'polite' });
  // A locked lease needs a new code; one whose code was shown can only have it replaced.
  let reissue = lease.state === 'locked';
  let shown = false;
  const label = () => {
    if (shown) return t('ls.code.replace');
    return t(reissue ? 'ls.code.reissue' : 'ls.code.issue');
  };
  const button = h('button', {
    type: 'button', 'data-test': 'issue-code',
    on: {
      click: async () => {
        button.disabled = true;
        try {
          const c = await post(`/api/v1/market/leases/${lease.id}/authorization-code${reissue ? '?reissue=true' : ''}`, {});
          clear(out, h('p', {}, h('code', { class: 'ssh-command', 'data-test': 'code' }, c.code)),
            h('p', { class: 'form-error' }, t('ls.code.once')));
          // Shown now, so the next press can only replace it.
          reissue = true;
          shown = true;
        } catch (err) {
          clear(out, h('p', { class: 'form-error', role: 'alert' }, err.message));
          // Shown already: the server cannot show it again, only replace it.
          if (err.code === 'invalid_state') {
            reissue = true;
            shown = true;
          }
        }
        button.textContent = label();
        button.disabled = false;
      },
    },
  }, label());
  return h('div', {}, h('h3', {}, t('ls.code.for_user')), button, out);
}

async function detailPage(main, ctx, id) {
  clear(main, loading());
  let l;
  try {
    l = await get(`/api/v1/market/leases/${encodeURIComponent(id)}`);
  } catch (err) {
    clear(main, errorState(err, () => detailPage(main, ctx, id)));
    return;
  }
  const mine = l.user === ctx.user.username;
  const release = mine && l.state !== 'ended'
    ? h('button', {
      type: 'button', class: 'danger', 'data-test': 'release',
      on: {
        click: async (e) => {
          if (!confirm(t('ls.release.confirm', { id: l.id }))) return;
          e.target.disabled = true;
          try {
            await post(`/api/v1/market/leases/${l.id}/release`, {});
            toast(t('ls.released', { id: l.id }), 'ok');
            detailPage(main, ctx, l.id);
          } catch (err) {
            toast(err.message, 'bad');
            e.target.disabled = false;
          }
        },
      },
    }, t('ls.release'))
    : null;
  const access = [h('p', {}, l.access)];
  if (l.ssh?.length) access.push(h('h3', {}, t('ls.ssh')), sshCommands(l.ssh));
  if (mine && l.class === 'a' && l.state === 'awaiting_access') access.push(codeForm(main, ctx, l));
  if (l.supplier === ctx.user.username && l.class === 'a' && (l.state === 'awaiting_access' || l.state === 'locked')) access.push(codeIssuer(l));
  clear(main, h('div', { class: 'lease-detail', 'data-test': 'lease', dataset: { state: l.state } },
    h('p', {}, h('a', { href: '#/leases' }, t('ls.back'))),
    h('div', { class: 'page-head' }, h('h1', {}, t('ls.lease', { id: l.id })), stateBadge('state', l.state), release),
    h('div', { class: 'grid cols-2' },
      h('section', { class: 'panel' }, props([
        [t('ls.col.listing'), h('a', { href: `#/market/${encodeURIComponent(l.listing)}` }, l.listing)],
        [t('mk.class'), t(`mk.class.${l.class}`)],
        [t('ls.user'), `${l.user} (${l.tenant})`],
        [t('ls.supplier'), l.supplier],
        [t('ls.col.mode'), t(`mode.${l.mode}`)],
        [t('ls.col.price'), money(l.unit_price_minor)],
        [t('ls.col.started'), fmtTime(l.started_at)],
        [t('ls.col.ends'), l.ends_at ? fmtTime(l.ends_at) : '–'],
        l.ended_at ? [t('ls.ended'), fmtTime(l.ended_at)] : null,
        l.end_reason ? [t('ls.end_reason'), l.end_reason] : null,
        [t('ls.col.charged'), money(l.charged_minor)],
        [t('ls.col.cards'), l.cards.map((c) => `#${c.id} ${c.node} GPU ${c.index}`).join(', ')],
      ])),
      h('section', { class: 'panel' }, h('h2', {}, t('ls.access')), access)),
    l.class === 'b' && l.state === 'active' ? monitoringPanel(l) : null,
    l.evaluation ? h('section', { class: 'panel', 'data-test': 'evaluation' }, h('h2', {}, t('ev.title')), evaluationProps(l.evaluation)) : null));
}

export default {
  render(main, ctx) {
    if (ctx.params[0]) return detailPage(main, ctx, ctx.params[0]);
    return listPage(main, ctx);
  },
};
