// Policies: the scheduling policies (list and editor with versions and roll-back), "explain"
// for a what-if task (where it would go and why), and GPU placement simulations comparing
// the FGD paper's policies on the Alibaba trace. Sub-views by hash:
//   #/policies, #/policies/<name>, #/policies/new, #/policies/explain, #/policies/simulate[/<id>]
import { listAll } from '../api.js';
import { t, register, fmtTime } from '../i18n.js';
import { h, clear, table, errorState, loading } from '../ui.js';
import { gpuPolicyLabel, pluginLabel } from './policies-common.js';
import { renderEditor } from './policies-editor.js';
import { renderExplain } from './policies-explain.js';
import { renderSimulate } from './policies-sim.js';

register({
  en: {
    'pol.title': 'Scheduling policies',
    'pol.tab.list': 'Policies',
    'pol.tab.explain': 'Explain a decision',
    'pol.tab.simulate': 'GPU placement simulation',
    'pol.subnav': 'Policies views',
    'pol.new': 'New policy',
    'pol.intro': 'A policy decides how sites are compared for the tasks it matches: the weight of each score factor, the GPU placement inside a site, and where it applies. Tasks no policy matches use the built-in default.',
    'pol.empty': 'No policies yet: every task is scheduled with the built-in default. Create one with “New policy”.',
    'pol.col.name': 'Name',
    'pol.col.priority': 'Priority',
    'pol.col.scope': 'Scope',
    'pol.col.weights': 'Main weights',
    'pol.col.gpu': 'GPU placement',
    'pol.col.gen': 'Generation',
    'pol.col.updated': 'Updated',
    'pol.scope.any': 'all tasks',
    'pol.scope.regions': 'regions: {list}',
    'pol.scope.tenants': 'tenants: {list}',
    'pol.scope.businesses': 'businesses: {list}',
    'pol.extends': 'extends {name}',
    'pol.inherited': 'inherited',
  },
  zh: {
    'pol.title': '调度策略',
    'pol.tab.list': '策略列表',
    'pol.tab.explain': '调度解释',
    'pol.tab.simulate': 'GPU 放置仿真',
    'pol.subnav': '调度策略视图',
    'pol.new': '新建策略',
    'pol.intro': '调度策略决定如何为其匹配的任务比较各资源节点：各打分因子的权重、资源节点内的 GPU 放置方式以及适用范围。没有策略匹配的任务使用内置的默认策略。',
    'pol.empty': '尚无调度策略：所有任务都按内置默认策略调度。点击“新建策略”创建一个。',
    'pol.col.name': '名称',
    'pol.col.priority': '优先级',
    'pol.col.scope': '适用范围',
    'pol.col.weights': '主要权重',
    'pol.col.gpu': 'GPU 放置',
    'pol.col.gen': '版本',
    'pol.col.updated': '更新时间',
    'pol.scope.any': '所有任务',
    'pol.scope.regions': '地区：{list}',
    'pol.scope.tenants': '租户：{list}',
    'pol.scope.businesses': '业务：{list}',
    'pol.extends': '继承自 {name}',
    'pol.inherited': '继承',
  },
});

function scopeText(spec) {
  const s = spec?.scope || {};
  const parts = [
    s.regions?.length ? t('pol.scope.regions', { list: s.regions.join(', ') }) : null,
    s.tenants?.length ? t('pol.scope.tenants', { list: s.tenants.join(', ') }) : null,
    s.businesses?.length ? t('pol.scope.businesses', { list: s.businesses.join(', ') }) : null,
  ].filter(Boolean);
  return parts.length ? parts.join(' · ') : h('span', { class: 'muted' }, t('pol.scope.any'));
}

function weightsText(spec) {
  const w = Object.entries(spec?.weights || {}).filter(([, v]) => v > 0).sort((a, b) => b[1] - a[1]).slice(0, 4);
  return w.length ? h('span', {}, w.map(([k, v]) => `${pluginLabel(k)} ${v}`).join(' · ')) : h('span', { class: 'muted' }, t('pol.inherited'));
}

async function renderList(el, ctx) {
  clear(el, loading());
  let policies;
  try {
    policies = await listAll('/api/v1/policies');
  } catch (e) {
    clear(el, errorState(e, () => renderList(el, ctx)));
    return;
  }
  policies.sort((a, b) => (b.spec?.priority ?? 0) - (a.spec?.priority ?? 0) || a.name.localeCompare(b.name));
  const open = (p) => ctx.navigate(`#/policies/${encodeURIComponent(p.name)}`);
  const tbl = table([
    {
      title: t('pol.col.name'),
      value: (p) => h('div', {},
        h('a', { href: `#/policies/${encodeURIComponent(p.name)}`, tabindex: '-1' }, p.name),
        p.spec?.description ? h('div', { class: 'muted pol-desc' }, p.spec.description) : null,
        p.spec?.parent ? h('div', { class: 'muted pol-desc' }, t('pol.extends', { name: p.spec.parent })) : null),
    },
    { title: t('pol.col.priority'), num: true, value: (p) => p.spec?.priority ?? 0 },
    { title: t('pol.col.scope'), value: (p) => scopeText(p.spec) },
    { title: t('pol.col.weights'), value: (p) => weightsText(p.spec) },
    { title: t('pol.col.gpu'), value: (p) => (p.spec?.gpu_policy ? gpuPolicyLabel(p.spec.gpu_policy) : '–') },
    { title: t('pol.col.gen'), num: true, value: (p) => p.generation },
    { title: t('pol.col.updated'), value: (p) => fmtTime(p.updated_at) },
  ], policies, { onRow: open, emptyText: t('pol.empty') });
  tbl.querySelectorAll('tbody tr').forEach((tr, i) => {
    tr.dataset.policy = policies[i].name;
  });
  clear(el,
    h('div', { class: 'row pol-list-head' },
      h('p', { class: 'muted pol-intro' }, t('pol.intro')),
      ctx.user.role === 'operator' ? h('a', { class: 'button', href: '#/policies/new', 'data-test': 'policy-new' }, `+ ${t('pol.new')}`) : null),
    h('section', { class: 'panel' }, tbl));
}

function subnav(view) {
  const tab = (id, href) => h('a', { href, class: 'pol-tab', 'aria-current': view === id ? 'page' : null }, t(`pol.tab.${id}`));
  return h('nav', { class: 'pol-subnav', 'aria-label': t('pol.subnav') },
    tab('list', '#/policies'), tab('explain', '#/policies/explain'), tab('simulate', '#/policies/simulate'));
}

export default {
  render(main, ctx) {
    const [sub, arg] = ctx.params;
    const view = sub === 'explain' ? 'explain' : sub === 'simulate' ? 'simulate' : 'list';
    const body = h('div', { class: 'pol-body' });
    clear(main, h('div', { class: 'page-head' }, h('h1', {}, t('pol.title'))), subnav(view), body);
    if (view === 'explain') return renderExplain(body, ctx);
    if (view === 'simulate') return renderSimulate(body, ctx, arg);
    if (sub) return renderEditor(body, ctx, sub === 'new' ? null : sub);
    return renderList(body, ctx);
  },
};
