// The operator's review queue (issue #14): marketplace registrations of organizations waiting
// for their business licence to be checked. The licence is fetched with the operator's token
// (it is not a public link) and opened from a local object URL; approve lets the account log
// in, reject sends the reason to its owner. #/reviews.
import { get, post, token } from '../api.js';
import { t, register } from '../i18n.js';
import { h, clear, table, errorState, loading, empty, toast } from '../ui.js';

register({
  en: {
    'rv.title': 'Registration reviews',
    'rv.intro': 'Organizations that registered for the marketplace and wait for an operator to check their business licence. Approving lets the account log in; a rejection\'s reason is sent to its owner, who can fix it and resubmit.',
    'rv.none': 'No registration waits for review.',
    'rv.col.account': 'Account',
    'rv.col.kind': 'Kind',
    'rv.col.organization': 'Organization',
    'rv.col.region': 'Region',
    'rv.col.identifiers': 'Identifiers (masked)',
    'rv.col.licence': 'Licence',
    'rv.col.actions': 'Decision',
    'rv.licence': 'Open licence',
    'rv.no_licence': 'none on file',
    'rv.approve': 'Approve',
    'rv.reject': 'Reject',
    'rv.reject.reason': 'Why reject {name}? The owner reads this reason.',
    'rv.approved': '{name} approved.',
    'rv.rejected': '{name} rejected.',
  },
  zh: {
    'rv.title': '注册审核',
    'rv.intro': '在算力市场注册、等待运营方核验营业执照的机构。批准后账户即可登录；驳回原因会发送给注册人，注册人修改后可重新提交。',
    'rv.none': '没有待审核的注册。',
    'rv.col.account': '账户',
    'rv.col.kind': '类型',
    'rv.col.organization': '机构',
    'rv.col.region': '地区',
    'rv.col.identifiers': '证件号（已脱敏）',
    'rv.col.licence': '营业执照',
    'rv.col.actions': '审核',
    'rv.licence': '查看执照',
    'rv.no_licence': '未上传',
    'rv.approve': '批准',
    'rv.reject': '驳回',
    'rv.reject.reason': '驳回 {name} 的原因？注册人会看到此原因。',
    'rv.approved': '{name} 已批准。',
    'rv.rejected': '{name} 已驳回。',
  },
});

async function openLicence(a, urls) {
  try {
    const res = await fetch(`/api/v1/market/accounts/${a.id}/licence`, { headers: { Authorization: `Bearer ${token()}` } });
    if (!res.ok) throw new Error(`${res.status} ${res.statusText}`);
    const url = URL.createObjectURL(await res.blob());
    urls.push(url);
    window.open(url, '_blank', 'noopener');
  } catch (err) {
    toast(err.message, 'bad');
  }
}

async function decide(main, ctx, a, verb) {
  let body = {};
  if (verb === 'reject') {
    const reason = prompt(t('rv.reject.reason', { name: a.username }));
    if (reason === null || !reason.trim()) return;
    body = { reason: reason.trim() };
  }
  try {
    await post(`/api/v1/market/accounts/${a.id}/${verb}`, body);
    toast(t(verb === 'approve' ? 'rv.approved' : 'rv.rejected', { name: a.username }), 'ok');
    render(main, ctx);
  } catch (err) {
    toast(err.message, 'bad');
  }
}

const urls = [];

async function render(main, ctx) {
  clear(main, loading());
  let queue;
  try {
    queue = await get('/api/v1/market/reviews');
  } catch (err) {
    clear(main, errorState(err, () => render(main, ctx)));
    return undefined;
  }
  clear(main, h('div', { class: 'reviews' },
    h('div', { class: 'page-head' }, h('h1', {}, t('rv.title'))),
    h('p', { class: 'muted' }, t('rv.intro')),
    h('section', { class: 'panel', 'data-test': 'reviews' }, queue.length ? table([
      { title: t('rv.col.account'), value: (a) => `${a.username}${a.display_name ? ` (${a.display_name})` : ''}` },
      { title: t('rv.col.kind'), value: (a) => a.kind },
      { title: t('rv.col.organization'), value: (a) => a.organization_name || '–' },
      { title: t('rv.col.region'), value: (a) => a.region || '–' },
      { title: t('rv.col.identifiers'), value: (a) => a.identifiers.map((i) => `${i.field}: ${i.masked}`).join(', ') || '–' },
      { title: t('rv.col.licence'), value: (a) => (a.has_licence
        ? h('button', { type: 'button', class: 'secondary', on: { click: () => openLicence(a, urls) } }, t('rv.licence'))
        : t('rv.no_licence')) },
      { title: t('rv.col.actions'), value: (a) => h('div', { class: 'row' },
        h('button', { type: 'button', 'data-test': 'approve', on: { click: () => decide(main, ctx, a, 'approve') } }, t('rv.approve')),
        h('button', { type: 'button', class: 'danger', 'data-test': 'reject', on: { click: () => decide(main, ctx, a, 'reject') } }, t('rv.reject'))) },
    ], queue, { scrollLabel: t('rv.title') }) : empty(t('rv.none')))));
  return () => urls.splice(0).forEach((u) => URL.revokeObjectURL(u));
}

export default { render };
