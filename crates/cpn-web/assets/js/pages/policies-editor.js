// Policy editor of the policies page (#/policies/<name>, #/policies/new): weights of every
// score plugin with their relative share, priority, parent, GPU placement, scope; saved with
// the generation read (409 when someone else changed it), and the stored versions with
// "roll back to this version".
import { get, listAll } from '../api.js';
import { t, register, has, fmtTime, fmtNumber } from '../i18n.js';
import { h, clear, field, table, badge, errorState, loading, toast } from '../ui.js';
import { call, seg } from './policies-api.js';
import {
  SCORE_PLUGINS, GPU_POLICIES, pluginLabel, gpuPolicyLabel, inheritedWeights, loadCatalog,
} from './policies-common.js';

register({
  en: {
    'pol.ed.new': 'New policy',
    'pol.ed.title': 'Policy {name}',
    'pol.ed.meta': 'Generation {generation} · owner {owner} · tenant {tenant} · updated {updated}',
    'pol.ed.back': 'All policies',
    'pol.ed.explain': 'Explain a task with this policy',
    'pol.ed.basics': 'Basics',
    'pol.ed.name': 'Name',
    'pol.ed.name.help': 'Letters, digits, “-”, “_” and “.”; cannot be changed later.',
    'pol.ed.description': 'Description',
    'pol.ed.priority': 'Priority',
    'pol.ed.priority.help': 'When several policies match a task, the higher priority wins.',
    'pol.ed.parent': 'Extends',
    'pol.ed.parent.none': '(none: built-in defaults)',
    'pol.ed.parent.help': 'Everything not set here is inherited from this policy.',
    'pol.ed.gpu_policy': 'GPU placement policy',
    'pol.ed.gpu_policy.none': '(not set)',
    'pol.ed.gpu_policy.help': 'Picks the node and GPUs inside the chosen site (FGD paper policies).',
    'pol.ed.gpu_pick': 'GPU pick',
    'pol.ed.gpu_pick.none': '(not set)',
    'pol.ed.gpu_pick.best_fit': 'best fit',
    'pol.ed.gpu_pick.worst_fit': 'worst fit',
    'pol.ed.gpu_pick.first_fit': 'first fit',
    'pol.ed.sampling': 'Nodes sampled (%)',
    'pol.ed.sampling.help': 'Share of feasible nodes to find before scoring; empty means all.',
    'pol.ed.scope': 'Scope',
    'pol.ed.scope.help': 'The policy applies to tasks from these origin regions, tenants and businesses; nothing chosen means any.',
    'pol.ed.regions': 'Origin regions',
    'pol.ed.tenants': 'Tenants',
    'pol.ed.businesses': 'Businesses',
    'pol.ed.list.help': 'Separate several with commas.',
    'pol.ed.weights': 'Score weights',
    'pol.ed.weights.help': 'How much each factor counts when sites are compared. Empty inherits the value shown in grey; 0 turns the factor off.',
    'pol.ed.col.factor': 'Factor',
    'pol.ed.col.weight': 'Weight',
    'pol.ed.col.share': 'Share of the total',
    'pol.ed.inherited': 'inherited',
    'pol.ed.weight.label': 'Weight of {name}',
    'pol.ed.notnumber': 'Not a number.',
    'pol.ed.kept': 'Also in this policy (kept as they are)',
    'pol.ed.match': 'Match rules',
    'pol.ed.cel_filters': 'CEL filters',
    'pol.ed.cel_scores': 'CEL scores',
    'pol.ed.filters': 'Filters',
    'pol.ed.save': 'Save',
    'pol.ed.operators': 'Only operators create policies.',
    'pol.ed.readonly': 'Read only: operators change policies. You can use this one in "Explain a decision".',
    'pol.ed.create': 'Create policy',
    'pol.ed.reset': 'Undo changes',
    'pol.ed.delete': 'Delete',
    'pol.ed.delete.confirm': 'Delete policy {name}? Tasks it would schedule fall back to other policies.',
    'pol.ed.deleted': 'Policy {name} deleted.',
    'pol.ed.saved': 'Saved as generation {generation}.',
    'pol.ed.created': 'Policy {name} created.',
    'pol.ed.err': 'Not saved: {message}',
    'pol.ed.conflict': 'Someone changed this policy since you opened it. Your input is kept; load the latest version to redo your change on top of it.',
    'pol.ed.reload': 'Load the latest version (drops my changes)',
    'pol.ed.versions': 'Versions',
    'pol.ed.versions.empty': 'No stored versions.',
    'pol.ed.col.gen': 'Gen.',
    'pol.ed.col.at': 'Saved',
    'pol.ed.col.changes': 'Changes',
    'pol.ed.current': 'current',
    'pol.ed.created.v': 'created',
    'pol.ed.nochange': 'no change',
    'pol.ed.rollback': 'Roll back to this version',
    'pol.ed.rollback.label': 'Roll back to generation {generation}',
    'pol.ed.rolledback': 'Rolled back to generation {to}: now generation {generation}.',
    'pol.ed.rollback.err': 'Roll-back failed: {message}',
    'pol.ed.none': '(none)',
  },
  zh: {
    'pol.ed.new': '新建调度策略',
    'pol.ed.title': '调度策略 {name}',
    'pol.ed.meta': '第 {generation} 版 · 所有者 {owner} · 租户 {tenant} · 更新于 {updated}',
    'pol.ed.back': '全部调度策略',
    'pol.ed.explain': '用此策略解释任务调度',
    'pol.ed.basics': '基本信息',
    'pol.ed.name': '名称',
    'pol.ed.name.help': '可用字母、数字、“-”、“_”和“.”；创建后不能修改。',
    'pol.ed.description': '描述',
    'pol.ed.priority': '优先级',
    'pol.ed.priority.help': '多个策略同时匹配一个任务时，优先级高的生效。',
    'pol.ed.parent': '继承自',
    'pol.ed.parent.none': '（无：使用内置默认值）',
    'pol.ed.parent.help': '此处未设置的内容都从该策略继承。',
    'pol.ed.gpu_policy': 'GPU 放置策略',
    'pol.ed.gpu_policy.none': '（未设置）',
    'pol.ed.gpu_policy.help': '在选中的资源节点内挑选计算节点和 GPU（FGD 论文中的策略）。',
    'pol.ed.gpu_pick': 'GPU 选取方式',
    'pol.ed.gpu_pick.none': '（未设置）',
    'pol.ed.gpu_pick.best_fit': '最佳适配',
    'pol.ed.gpu_pick.worst_fit': '最差适配',
    'pol.ed.gpu_pick.first_fit': '首次适配',
    'pol.ed.sampling': '采样节点比例（%）',
    'pol.ed.sampling.help': '打分前需找到的可行节点比例；留空表示全部。',
    'pol.ed.scope': '适用范围',
    'pol.ed.scope.help': '策略适用于来自这些地区、租户和业务的任务；不选表示不限。',
    'pol.ed.regions': '来源地区',
    'pol.ed.tenants': '租户',
    'pol.ed.businesses': '业务',
    'pol.ed.list.help': '多个值用逗号分隔。',
    'pol.ed.weights': '打分权重',
    'pol.ed.weights.help': '比较资源节点时各因子的分量。留空则继承灰色显示的值；填 0 表示不使用该因子。',
    'pol.ed.col.factor': '因子',
    'pol.ed.col.weight': '权重',
    'pol.ed.col.share': '占总权重的比例',
    'pol.ed.inherited': '继承',
    'pol.ed.weight.label': '{name} 的权重',
    'pol.ed.notnumber': '不是数字。',
    'pol.ed.kept': '此策略的其他设置（保持不变）',
    'pol.ed.match': '匹配规则',
    'pol.ed.cel_filters': 'CEL 过滤器',
    'pol.ed.cel_scores': 'CEL 打分',
    'pol.ed.filters': '过滤器',
    'pol.ed.save': '保存',
    'pol.ed.operators': '只有运营者可以新建调度策略。',
    'pol.ed.readonly': '只读：调度策略由运营者修改。您可以在“调度解释”中使用此策略。',
    'pol.ed.create': '创建策略',
    'pol.ed.reset': '撤销修改',
    'pol.ed.delete': '删除',
    'pol.ed.delete.confirm': '确定删除调度策略 {name}？原本由它调度的任务将改由其他策略调度。',
    'pol.ed.deleted': '已删除调度策略 {name}。',
    'pol.ed.saved': '已保存为第 {generation} 版。',
    'pol.ed.created': '已创建调度策略 {name}。',
    'pol.ed.err': '未保存：{message}',
    'pol.ed.conflict': '自您打开后，此策略已被他人修改。您的输入仍保留；请加载最新版本后再重新修改。',
    'pol.ed.reload': '加载最新版本（放弃我的修改）',
    'pol.ed.versions': '历史版本',
    'pol.ed.versions.empty': '没有已保存的版本。',
    'pol.ed.col.gen': '版本',
    'pol.ed.col.at': '保存时间',
    'pol.ed.col.changes': '变更',
    'pol.ed.current': '当前',
    'pol.ed.created.v': '创建',
    'pol.ed.nochange': '无变更',
    'pol.ed.rollback': '回滚到此版本',
    'pol.ed.rollback.label': '回滚到第 {generation} 版',
    'pol.ed.rolledback': '已回滚到第 {to} 版，现为第 {generation} 版。',
    'pol.ed.rollback.err': '回滚失败：{message}',
    'pol.ed.none': '（无）',
  },
});

const GPU_PICKS = ['best_fit', 'worst_fit', 'first_fit'];
const splitList = (s) => s.split(/[,，\s]+/).map((x) => x.trim()).filter(Boolean);

/** Path → value of every leaf of a spec, for the versions' change lists. */
function flatten(obj, prefix = '', out = {}) {
  for (const [k, v] of Object.entries(obj || {})) {
    const p = prefix ? `${prefix}.${k}` : k;
    if (v && typeof v === 'object' && !Array.isArray(v)) flatten(v, p, out);
    else out[p] = JSON.stringify(v ?? null);
  }
  return out;
}

function changes(prev, spec) {
  const a = flatten(prev);
  const b = flatten(spec);
  const out = [];
  const empty = (x) => x === undefined || x === 'null' || x === '[]' || x === '""';
  for (const k of [...new Set([...Object.keys(a), ...Object.keys(b)])].sort()) {
    if (a[k] === b[k] || (empty(a[k]) && empty(b[k]))) continue;
    const show = (x) => (empty(x) ? '–' : x.replace(/^"|"$/g, ''));
    out.push(`${k}: ${show(a[k])} → ${show(b[k])}`);
  }
  return out;
}

function keptSummary(spec) {
  const m = spec.match_rules || {};
  const rules = [
    m.origin_regions?.length ? `origin_regions: ${m.origin_regions.join(', ')}` : null,
    m.tenants?.length ? `tenants: ${m.tenants.join(', ')}` : null,
    m.businesses?.length ? `businesses: ${m.businesses.join(', ')}` : null,
    m.labels ? `labels: ${m.labels}` : null,
  ].filter(Boolean);
  const pairs = [
    rules.length ? [t('pol.ed.match'), rules.join(' · ')] : null,
    spec.cel_filters?.length ? [t('pol.ed.cel_filters'), spec.cel_filters.map((c) => h('div', { class: 'mono' }, `${c.name}: ${c.expr}`))] : null,
    spec.cel_scores?.length ? [t('pol.ed.cel_scores'), spec.cel_scores.map((c) => h('div', { class: 'mono' }, `${c.name} (${c.better}, ×${c.weight}): ${c.expr}`))] : null,
    spec.filters ? [t('pol.ed.filters'), spec.filters.map(pluginLabel).join(', ') || t('pol.ed.none')] : null,
  ].filter(Boolean);
  if (!pairs.length) return null;
  return h('section', { class: 'pol-kept' }, h('h3', {}, t('pol.ed.kept')),
    h('dl', { class: 'props' }, pairs.map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)])));
}

export async function renderEditor(el, ctx, name) {
  clear(el, loading());
  let policies;
  let sites;
  let policy = null;
  let versions = [];
  try {
    [policies, sites, policy, versions] = await Promise.all([
      listAll('/api/v1/policies'),
      listAll('/api/v1/sites'),
      name ? get(`/api/v1/policies/${seg(name)}`) : null,
      name ? get(`/api/v1/policies/${seg(name)}/versions`) : [],
      loadCatalog(),
    ]);
  } catch (e) {
    clear(el, errorState(e, () => renderEditor(el, ctx, name)));
    return;
  }
  const reload = () => renderEditor(el, ctx, name);
  const spec = policy?.spec || {};
  const creating = !policy;
  // Only operators change policies (the API refuses others); everyone may read them.
  const readOnly = ctx.user.role !== 'operator';
  if (readOnly && creating) {
    clear(el, errorState(new Error(t('pol.ed.operators'))));
    return;
  }

  // Basics.
  const nameInput = h('input', { name: 'name', autocomplete: 'off', required: true });
  const description = h('input', { name: 'description', value: spec.description || '' });
  const priority = h('input', { name: 'priority', type: 'number', step: '1', value: String(spec.priority ?? 0) });
  const parent = h('select', { name: 'parent' },
    h('option', { value: '' }, t('pol.ed.parent.none')),
    policies.filter((p) => p.name !== policy?.name).map((p) => h('option', { value: p.name, selected: p.name === spec.parent }, p.name)),
    spec.parent && !policies.some((p) => p.name === spec.parent) ? h('option', { value: spec.parent, selected: true }, spec.parent) : null);
  const gpuPolicy = h('select', { name: 'gpu_policy' },
    h('option', { value: '' }, t('pol.ed.gpu_policy.none')),
    GPU_POLICIES.map((g) => h('option', { value: g, selected: g === spec.gpu_policy }, gpuPolicyLabel(g))),
    spec.gpu_policy && !GPU_POLICIES.includes(spec.gpu_policy) ? h('option', { value: spec.gpu_policy, selected: true }, spec.gpu_policy) : null);
  const gpuPick = h('select', { name: 'gpu_pick' },
    h('option', { value: '' }, t('pol.ed.gpu_pick.none')),
    GPU_PICKS.map((g) => h('option', { value: g, selected: g === spec.gpu_pick }, t(`pol.ed.gpu_pick.${g}`))));
  const sampling = h('input', { name: 'sampling_percent', type: 'number', step: 'any', value: spec.sampling_percent ?? '' });

  // Scope: the regions sites are in (and any the policy names that no site has).
  const scope = spec.scope || {};
  const regions = [...new Set([...sites.map((s) => s.spec?.region).filter(Boolean), ...(scope.regions || [])])].sort();
  const regionBoxes = regions.map((r) => h('input', { type: 'checkbox', name: 'scope_regions', value: r, checked: (scope.regions || []).includes(r) }));
  const regionErr = h('div', { class: 'error', role: 'alert' });
  const regionSet = h('fieldset', { class: 'pol-checks pol-regions' }, h('legend', {}, t('pol.ed.regions')),
    regionBoxes.map((b) => h('label', { class: 'pol-check' }, b, ' ', b.value)), regionErr);
  const tenants = h('input', { name: 'scope_tenants', value: (scope.tenants || []).join(', ') });
  const businesses = h('input', { name: 'scope_businesses', value: (scope.businesses || []).join(', ') });

  // Weights: every known score plugin, plus any other the policy weighs.
  const weights = spec.weights || {};
  const names = [...SCORE_PLUGINS.map(([n]) => n), ...Object.keys(weights).filter((n) => !SCORE_PLUGINS.some(([k]) => k === n))];
  const weightRows = names.map((n) => {
    const input = h('input', {
      type: 'number', step: 'any', name: `weight.${n}`, value: weights[n] ?? '', 'aria-label': t('pol.ed.weight.label', { name: pluginLabel(n) }),
      class: 'pol-weight-input',
    });
    const fill = h('span', { class: 'pol-bar-fill' });
    const share = h('span', { class: 'pol-bar-text' });
    const err = h('div', { class: 'error', role: 'alert' });
    const inherited = h('span', { class: 'muted pol-inherited' });
    const row = h('div', { class: 'pol-weight-row', dataset: { plugin: n } },
      h('label', { for: `pol-w-${n}` }, pluginLabel(n),
        has(`pol.plugin.help.${n}`) ? h('span', { class: 'help' }, t(`pol.plugin.help.${n}`)) : null),
      h('div', { class: 'pol-weight-cell' }, input, inherited),
      h('span', { class: 'pol-bar' }, h('span', { class: 'pol-bar-track', 'aria-hidden': 'true' }, fill), share),
      err);
    input.id = `pol-w-${n}`;
    return { name: n, input, fill, share, err, inherited, row };
  });
  const paintWeights = () => {
    const inh = inheritedWeights(parent.value, policies);
    const eff = weightRows.map((w) => {
      const v = w.input.value.trim() === '' ? (inh[w.name] ?? 0) : Number(w.input.value);
      w.input.placeholder = String(inh[w.name] ?? 0);
      w.inherited.textContent = w.input.value.trim() === '' ? t('pol.ed.inherited') : '';
      return Number.isFinite(v) && v > 0 ? v : 0;
    });
    const total = eff.reduce((a, b) => a + b, 0);
    const max = Math.max(...eff, 1e-9);
    weightRows.forEach((w, i) => {
      w.fill.style.width = `${((eff[i] / max) * 100).toFixed(1)}%`;
      w.share.textContent = total ? `${fmtNumber((eff[i] / total) * 100, 0)} %` : '–';
      w.row.classList.toggle('pol-off', eff[i] === 0);
    });
  };
  weightRows.forEach((w) => w.input.addEventListener('input', paintWeights));
  parent.addEventListener('change', paintWeights);
  paintWeights();

  const fields = {
    name: creating ? field(t('pol.ed.name'), nameInput, t('pol.ed.name.help')) : null,
    description: field(t('pol.ed.description'), description),
    priority: field(t('pol.ed.priority'), priority, t('pol.ed.priority.help')),
    parent: field(t('pol.ed.parent'), parent, t('pol.ed.parent.help')),
    gpu_policy: field(t('pol.ed.gpu_policy'), gpuPolicy, t('pol.ed.gpu_policy.help')),
    gpu_pick: field(t('pol.ed.gpu_pick'), gpuPick),
    sampling_percent: field(t('pol.ed.sampling'), sampling, t('pol.ed.sampling.help')),
    'scope.tenants': field(t('pol.ed.tenants'), tenants, t('pol.ed.list.help')),
    'scope.businesses': field(t('pol.ed.businesses'), businesses, t('pol.ed.list.help')),
  };
  const formError = h('div', { class: 'form-error pol-form-error', role: 'alert' });
  const submit = h('button', { type: 'submit' }, creating ? t('pol.ed.create') : t('pol.ed.save'));

  const clearErrors = () => {
    formError.replaceChildren();
    Object.values(fields).forEach((f) => f?.setError(''));
    regionErr.textContent = '';
    weightRows.forEach((w) => {
      w.err.textContent = '';
      w.input.removeAttribute('aria-invalid');
    });
  };
  const showFieldError = (path, message) => {
    const p = String(path || '').replace(/^spec\./, '');
    if (p.startsWith('weights.')) {
      const w = weightRows.find((x) => x.name === p.slice(8));
      if (w) {
        w.err.textContent = message;
        w.input.setAttribute('aria-invalid', 'true');
        w.input.focus();
        return;
      }
    }
    if (p.startsWith('scope.regions')) {
      regionErr.textContent = message;
      return;
    }
    const key = Object.keys(fields).find((k) => fields[k] && (p === k || p.startsWith(`${k}.`)));
    if (key) {
      fields[key].setError(message);
      fields[key].querySelector('input, select')?.focus();
    }
  };

  const collect = () => {
    const bad = [];
    const w = {};
    for (const row of weightRows) {
      if (row.input.validity.badInput) bad.push(row);
      else if (row.input.value.trim() !== '') w[row.name] = Number(row.input.value);
    }
    const out = {
      ...spec,
      description: description.value.trim() || null,
      priority: priority.value.trim() === '' ? 0 : Number(priority.value),
      parent: parent.value || null,
      gpu_policy: gpuPolicy.value || null,
      gpu_pick: gpuPick.value || null,
      sampling_percent: sampling.value.trim() === '' ? null : Number(sampling.value),
      scope: {
        ...scope,
        regions: regionBoxes.filter((b) => b.checked).map((b) => b.value),
        tenants: splitList(tenants.value),
        businesses: splitList(businesses.value),
      },
      weights: w,
    };
    return { spec: out, bad };
  };

  const form = h('form', {
    class: 'pol-editor-form',
    'data-test': 'policy-form',
    novalidate: true,
    on: {
      submit: async (e) => {
        e.preventDefault();
        clearErrors();
        const { spec: body, bad } = collect();
        if (bad.length) {
          bad.forEach((row) => {
            row.err.textContent = t('pol.ed.notnumber');
            row.input.setAttribute('aria-invalid', 'true');
          });
          bad[0].input.focus();
          return;
        }
        submit.disabled = true;
        try {
          if (creating) {
            const created = await call('POST', '/api/v1/policies', { name: nameInput.value.trim(), labels: {}, spec: body });
            toast(t('pol.ed.created', { name: created.name }), 'ok');
            ctx.navigate(`#/policies/${encodeURIComponent(created.name)}`);
          } else {
            const saved = await call('PUT', `/api/v1/policies/${seg(policy.name)}`, {
              generation: policy.generation, labels: policy.labels || {}, spec: body,
            });
            toast(t('pol.ed.saved', { generation: saved.generation }), 'ok');
            reload();
          }
        } catch (err) {
          formError.append(h('p', {}, t('pol.ed.err', { message: err.message })));
          if (err.status === 409 && !creating) {
            formError.append(h('p', {}, t('pol.ed.conflict')),
              h('button', { type: 'button', class: 'secondary', on: { click: reload } }, t('pol.ed.reload')));
          }
          if (err.field) showFieldError(err.field, err.message);
        } finally {
          submit.disabled = false;
        }
      },
    },
  },
  h('section', { class: 'panel' }, h('h2', {}, t('pol.ed.basics')),
    h('div', { class: 'pol-form-grid' }, fields.name, fields.description, fields.priority, fields.parent, fields.gpu_policy, fields.gpu_pick, fields.sampling_percent)),
  h('section', { class: 'panel' }, h('h2', {}, t('pol.ed.weights')), h('p', { class: 'muted' }, t('pol.ed.weights.help')),
    h('div', { class: 'pol-weights', role: 'group', 'aria-label': t('pol.ed.weights') },
      h('div', { class: 'pol-weight-row pol-weight-head', 'aria-hidden': 'true' },
        h('span', {}, t('pol.ed.col.factor')), h('span', {}, t('pol.ed.col.weight')), h('span', {}, t('pol.ed.col.share'))),
      weightRows.map((w) => w.row))),
  h('section', { class: 'panel' }, h('h2', {}, t('pol.ed.scope')), h('p', { class: 'muted' }, t('pol.ed.scope.help')),
    regionSet,
    h('div', { class: 'pol-form-grid' }, fields['scope.tenants'], fields['scope.businesses']),
    keptSummary(spec)),
  formError,
  h('div', { class: 'form-actions pol-sticky-actions' },
    submit,
    h('button', { type: 'button', class: 'secondary', on: { click: reload } }, t('pol.ed.reset')),
    creating ? null : h('button', {
      type: 'button',
      class: 'danger pol-delete',
      on: {
        click: async () => {
          if (!window.confirm(t('pol.ed.delete.confirm', { name: policy.name }))) return;
          clearErrors();
          try {
            await call('DELETE', `/api/v1/policies/${seg(policy.name)}`);
            toast(t('pol.ed.deleted', { name: policy.name }), 'ok');
            ctx.navigate('#/policies');
          } catch (err) {
            formError.append(h('p', {}, err.message));
          }
        },
      },
    }, t('pol.ed.delete'))));

  // Versions, newest first, each with what changed from the one before.
  const versionsError = h('div', { class: 'form-error', role: 'alert' });
  const rows = versions.map((v, i) => ({ ...v, diff: i === 0 ? null : changes(versions[i - 1].spec, v.spec) })).reverse();
  const versionsBox = creating ? null : h('section', { class: 'panel pol-versions' },
    h('h2', {}, t('pol.ed.versions')), versionsError,
    table([
      { title: t('pol.ed.col.gen'), num: true, value: (v) => v.generation },
      { title: t('pol.ed.col.at'), value: (v) => fmtTime(v.at) },
      {
        title: t('pol.ed.col.changes'),
        value: (v) => [
          v.diff === null ? h('div', { class: 'muted' }, t('pol.ed.created.v'))
            : v.diff.length ? h('ul', { class: 'pol-diff' }, v.diff.slice(0, 8).map((d) => h('li', { class: 'mono' }, d)), v.diff.length > 8 ? h('li', {}, '…') : null)
              : h('div', { class: 'muted' }, t('pol.ed.nochange')),
          v.generation === policy.generation ? badge('ok', t('pol.ed.current')) : readOnly ? null : h('button', {
            type: 'button',
            class: 'secondary pol-rollback',
            'aria-label': t('pol.ed.rollback.label', { generation: v.generation }),
            on: {
              click: async (e) => {
                const btn = e.currentTarget;
                btn.disabled = true;
                versionsError.textContent = '';
                try {
                  const back = await call('POST', `/api/v1/policies/${seg(policy.name)}/rollback`, {
                    to_generation: v.generation, generation: policy.generation,
                  });
                  toast(t('pol.ed.rolledback', { to: v.generation, generation: back.generation }), 'ok');
                  reload();
                } catch (err) {
                  versionsError.textContent = t('pol.ed.rollback.err', { message: err.message });
                  btn.disabled = false;
                }
              },
            },
          }, t('pol.ed.rollback')),
        ],
      },
    ], rows, { emptyText: t('pol.ed.versions.empty') }));

  const head = h('div', { class: 'pol-ed-head' },
    h('h2', {}, creating ? t('pol.ed.new') : t('pol.ed.title', { name: policy.name })),
    creating ? null : h('p', { class: 'muted' }, t('pol.ed.meta', {
      generation: policy.generation, owner: policy.owner, tenant: policy.tenant, updated: fmtTime(policy.updated_at),
    })),
    h('div', { class: 'row' },
      h('a', { href: '#/policies' }, `← ${t('pol.ed.back')}`),
      creating ? null : h('a', { href: `#/policies/explain?policy=${encodeURIComponent(policy.name)}` }, t('pol.ed.explain'))));

  if (readOnly) {
    for (const c of form.querySelectorAll('input, select, textarea, button')) c.disabled = true;
    form.prepend(h('p', { class: 'muted', role: 'note' }, t('pol.ed.readonly')));
  }
  clear(el, head, h('div', { class: creating ? '' : 'split pol-ed-split' }, form, versionsBox));
  if (creating) nameInput.focus();
}
