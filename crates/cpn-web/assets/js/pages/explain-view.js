// "Why here": renders a scheduler Explanation (GET /api/v1/tasks/{id}/explain, POST
// /api/v1/schedule/explain) — the chosen site and node, every candidate's total score, the
// per-plugin contributions of the best ones, the filter verdicts of the rejected ones, and
// the policy with its weights. Shared by the Tasks and Policies pages:
//   import { renderExplanation } from './explain-view.js';
//   renderExplanation(container, explanation);
import { t, has, register, fmtNumber } from '../i18n.js';
import { h, clear, kpi, badge, chart, empty } from '../ui.js';

register({
  en: {
    'tasks.explain.chosen_site': 'Chosen site',
    'tasks.explain.chosen_node': 'Chosen node',
    'tasks.explain.score': 'Score',
    'tasks.explain.margin': 'Lead over runner-up',
    'tasks.explain.margin.sub': 'points ahead of the next site',
    'tasks.explain.margin.none': 'no other feasible site',
    'tasks.explain.none': 'No site fits this task now. The filters below say what each candidate lacks.',
    'tasks.explain.nofit': 'none fits',
    'tasks.explain.feasible': '{n} of {total} sites feasible',
    'tasks.explain.policy': 'Policy',
    'tasks.explain.policy.generation': 'version {n}',
    'tasks.explain.policy.reasons': 'Why this policy',
    'tasks.explain.policy.also': 'Also matched',
    'tasks.explain.weights': 'Weights',
    'tasks.explain.weights.empty': 'This policy sets no score weights.',
    'tasks.explain.sites': 'Site scores',
    'tasks.explain.sites.aria': 'Bar chart of the total score of each feasible site',
    'tasks.explain.nodes': 'Node scores in {site}',
    'tasks.explain.nodes.aria': 'Bar chart of the total score of each node in the chosen site',
    'tasks.explain.breakdown': 'Score breakdown: top {n} sites',
    'tasks.explain.breakdown.nodes': 'Score breakdown: top {n} nodes',
    'tasks.explain.breakdown.aria': 'Stacked bar chart of each plugin’s contribution to the best candidates’ scores',
    'tasks.explain.breakdown.help': 'Each plugin rates a candidate 0–100 (100 = best among the feasible ones); times its weight that is its contribution, and the contributions add up to the total. Under each contribution: the measured value → its rating.',
    'tasks.explain.col.plugin': 'Plugin',
    'tasks.explain.col.weight': 'Weight',
    'tasks.explain.col.total': 'Total',
    'tasks.explain.col.candidate': 'Candidate',
    'tasks.explain.col.kind': 'Kind',
    'tasks.explain.col.filter': 'Filter',
    'tasks.explain.col.code': 'Code',
    'tasks.explain.col.detail': 'Detail',
    'tasks.explain.col.reason': 'Reason',
    'tasks.explain.col.count': 'Candidates',
    'tasks.explain.raw': '{raw} → {norm}',
    'tasks.explain.rejected': 'Rejected candidates',
    'tasks.explain.rejected.empty': 'Every candidate passed the filters.',
    'tasks.explain.rejections': 'Rejections by reason',
    'tasks.explain.permanent': 'until the task changes',
    'tasks.explain.transient': 'for now',
    'tasks.explain.kind.site': 'site',
    'tasks.explain.kind.node': 'node',
    'tasks.explain.total': 'total',
    'tasks.explain.more': '{n} more not shown',
    'tasks.explain.nofactors': 'No score factors were computed (a single candidate, or no score plugin with weight).',
    'tasks.plugin.site_health': 'Site health',
    'tasks.plugin.residency': 'Data residency',
    'tasks.plugin.selector': 'Selectors',
    'tasks.plugin.chip_model': 'Chip & model',
    'tasks.plugin.resources_fit': 'Free resources',
    'tasks.plugin.tenant_quota': 'Tenant quota',
    'tasks.plugin.model_preference': 'Model preference',
    'tasks.plugin.performance': 'Performance',
    'tasks.plugin.energy': 'Energy cost',
    'tasks.plugin.carbon': 'Carbon',
    'tasks.plugin.latency': 'Latency',
    'tasks.plugin.location_affinity': 'Location affinity',
    'tasks.plugin.price': 'Price',
    'tasks.plugin.free_capacity': 'Free capacity',
    'tasks.plugin.bin_pack': 'Bin packing',
    'tasks.plugin.spread': 'Spread',
    'tasks.plugin.gpu_best_fit': 'GPU best fit',
    'tasks.plugin.gpu_clustering': 'GPU clustering',
    'tasks.plugin.gpu_dot_prod': 'GPU dot product',
    'tasks.plugin.gpu_fgd': 'GPU FGD',
    'tasks.plugin.gpu_fgd_plus': 'GPU FGD+',
    'tasks.plugin.gpu_packing': 'GPU packing',
    'tasks.plugin.gpu_random': 'GPU random',
    'tasks.unit.points': 'points',
    'tasks.unit.fraction': '',
    'tasks.unit.CNY': 'CNY',
    'tasks.unit.CNY/h': 'CNY/h',
    'tasks.unit.ms': 'ms',
    'tasks.unit.TFLOPS': 'TFLOPS',
  },
  zh: {
    'tasks.explain.chosen_site': '选中的资源节点',
    'tasks.explain.chosen_node': '选中的计算节点',
    'tasks.explain.score': '得分',
    'tasks.explain.margin': '领先第二名',
    'tasks.explain.margin.sub': '比次优资源节点高出的分数',
    'tasks.explain.margin.none': '没有其他可行的资源节点',
    'tasks.explain.none': '目前没有资源节点能运行此任务。下方的过滤结果说明了每个候选缺少什么。',
    'tasks.explain.nofit': '无可行候选',
    'tasks.explain.feasible': '{total} 个资源节点中 {n} 个可行',
    'tasks.explain.policy': '调度策略',
    'tasks.explain.policy.generation': '第 {n} 版',
    'tasks.explain.policy.reasons': '选用原因',
    'tasks.explain.policy.also': '同时匹配',
    'tasks.explain.weights': '权重',
    'tasks.explain.weights.empty': '此调度策略未设置评分权重。',
    'tasks.explain.sites': '各资源节点得分',
    'tasks.explain.sites.aria': '各可行资源节点总分的条形图',
    'tasks.explain.nodes': '{site} 内各计算节点得分',
    'tasks.explain.nodes.aria': '选中资源节点内各计算节点总分的条形图',
    'tasks.explain.breakdown': '得分构成：前 {n} 个资源节点',
    'tasks.explain.breakdown.nodes': '得分构成：前 {n} 个计算节点',
    'tasks.explain.breakdown.aria': '各评分插件对最优候选得分贡献的堆叠条形图',
    'tasks.explain.breakdown.help': '每个评分插件给候选打 0–100 分（100 为可行候选中最优），乘以权重即为贡献，各项贡献之和为总分。贡献下方的小字为实测值 → 评分。',
    'tasks.explain.col.plugin': '插件',
    'tasks.explain.col.weight': '权重',
    'tasks.explain.col.total': '总分',
    'tasks.explain.col.candidate': '候选',
    'tasks.explain.col.kind': '类型',
    'tasks.explain.col.filter': '过滤器',
    'tasks.explain.col.code': '代码',
    'tasks.explain.col.detail': '详情',
    'tasks.explain.col.reason': '原因',
    'tasks.explain.col.count': '候选数',
    'tasks.explain.raw': '{raw} → {norm}',
    'tasks.explain.rejected': '被排除的候选',
    'tasks.explain.rejected.empty': '所有候选均通过了过滤。',
    'tasks.explain.rejections': '按原因统计的排除',
    'tasks.explain.permanent': '任务不变则一直不满足',
    'tasks.explain.transient': '暂时不满足',
    'tasks.explain.kind.site': '资源节点',
    'tasks.explain.kind.node': '计算节点',
    'tasks.explain.total': '总分',
    'tasks.explain.more': '另有 {n} 个未显示',
    'tasks.explain.nofactors': '未计算评分因子（只有一个候选，或没有设置权重的评分插件）。',
    'tasks.plugin.site_health': '资源节点健康',
    'tasks.plugin.residency': '数据驻留',
    'tasks.plugin.selector': '选择器',
    'tasks.plugin.chip_model': '芯片与型号',
    'tasks.plugin.resources_fit': '资源余量',
    'tasks.plugin.tenant_quota': '租户配额',
    'tasks.plugin.model_preference': '型号偏好',
    'tasks.plugin.performance': '性能',
    'tasks.plugin.energy': '能耗成本',
    'tasks.plugin.carbon': '碳排放',
    'tasks.plugin.latency': '时延',
    'tasks.plugin.location_affinity': '位置亲和',
    'tasks.plugin.price': '价格',
    'tasks.plugin.free_capacity': '空闲容量',
    'tasks.plugin.bin_pack': '装箱紧凑度',
    'tasks.plugin.spread': '分散度',
    'tasks.plugin.gpu_best_fit': 'GPU 最佳适配',
    'tasks.plugin.gpu_clustering': 'GPU 聚簇',
    'tasks.plugin.gpu_dot_prod': 'GPU 点积',
    'tasks.plugin.gpu_fgd': 'GPU FGD',
    'tasks.plugin.gpu_fgd_plus': 'GPU FGD+',
    'tasks.plugin.gpu_packing': 'GPU 紧凑放置',
    'tasks.plugin.gpu_random': 'GPU 随机',
    'tasks.unit.points': '分',
    'tasks.unit.fraction': '',
    'tasks.unit.CNY': '元',
    'tasks.unit.CNY/h': '元/小时',
    'tasks.unit.ms': '毫秒',
    'tasks.unit.TFLOPS': 'TFLOPS',
  },
});

/** A plugin's readable name (its raw name when it has none, e.g. a CEL score). */
export function pluginLabel(plugin) {
  return has(`tasks.plugin.${plugin}`) ? t(`tasks.plugin.${plugin}`) : plugin;
}

function unitLabel(unit) {
  return has(`tasks.unit.${unit}`) ? t(`tasks.unit.${unit}`) : unit;
}

// One colour per plugin, stable across the charts of one explanation.
const PALETTE = ['#2f74d0', '#1e8a4c', '#d69e2e', '#805ad5', '#dd6b20', '#319795', '#c53030', '#718096', '#b83280', '#2c5282', '#38a169', '#975a16'];

const TOP = 5;

function score(n) {
  return fmtNumber(n, 1);
}

/** The plugins in the order they first appear in the weights, then among the factors. */
function pluginOrder(explanation, candidates) {
  const seen = new Set(Object.keys(explanation.policy?.weights || {}));
  const used = new Set();
  for (const c of candidates) for (const f of c.factors || []) used.add(f.plugin);
  return [...seen, ...used].filter((p, i, all) => used.has(p) && all.indexOf(p) === i);
}

function barChart(candidates, chosen, ariaLabel, max = 20) {
  const shown = candidates.slice(0, max);
  const el = h('div', {
    class: 'chart xv-bars', role: 'img', 'aria-label': ariaLabel,
    style: { height: `${Math.max(120, 26 * shown.length + 40)}px` },
  });
  return {
    el,
    draw: () => chart(el, {
      tooltip: { trigger: 'axis', axisPointer: { type: 'shadow' }, valueFormatter: (v) => score(v) },
      grid: { left: 8, right: 48, top: 8, bottom: 24, containLabel: true },
      xAxis: { type: 'value' },
      yAxis: { type: 'category', inverse: true, data: shown.map((c) => c.name), axisLabel: { width: 180, overflow: 'truncate' } },
      series: [{
        type: 'bar',
        barMaxWidth: 18,
        label: { show: true, position: 'right', formatter: (p) => score(p.value) },
        data: shown.map((c) => ({
          value: c.total,
          itemStyle: { color: c.name === chosen ? '#1e8a4c' : '#8fb3e6' },
        })),
      }],
    }),
  };
}

function breakdown(candidates, plugins, colours, title) {
  const top = candidates.slice(0, TOP);
  // Rows the legend wraps into at the container's width (estimated from the label lengths).
  const legendRowsAt = (width) => {
    let rows = 1;
    let x = 0;
    for (const p of plugins) {
      const label = pluginLabel(p);
      const w = 25 + 5 + 12 + [...label].reduce((a, ch) => a + (ch.charCodeAt(0) > 0x2e80 ? 12 : 7), 0);
      if (x && x + w > width) {
        rows += 1;
        x = 0;
      }
      x += w;
    }
    return rows;
  };
  let legendRows = legendRowsAt(900);
  const el = h('div', {
    class: 'chart xv-stack', role: 'img', 'aria-label': t('tasks.explain.breakdown.aria'),
    style: { height: `${Math.max(160, 34 * top.length + 56 + 24 * legendRows)}px` },
  });
  const byPlugin = (c, p) => (c.factors || []).find((f) => f.plugin === p);
  const head = h('tr', {},
    h('th', { scope: 'col' }, t('tasks.explain.col.plugin')),
    h('th', { scope: 'col', class: 'num' }, t('tasks.explain.col.weight')),
    top.map((c) => h('th', { scope: 'col', class: 'num' }, c.name)));
  const rows = plugins.map((p) => {
    const weight = top.map((c) => byPlugin(c, p)).find(Boolean)?.weight;
    return h('tr', {},
      h('th', { scope: 'row' }, h('span', { class: 'xv-swatch', style: { background: colours[p] } }), pluginLabel(p)),
      h('td', { class: 'num' }, weight === undefined ? '–' : fmtNumber(weight, 2)),
      top.map((c) => {
        const f = byPlugin(c, p);
        if (!f) return h('td', { class: 'num muted' }, '–');
        const raw = `${fmtNumber(f.raw, 4)}${unitLabel(f.unit) ? ` ${unitLabel(f.unit)}` : ''}`;
        return h('td', { class: 'num' },
          h('div', {}, score(f.contribution)),
          h('div', { class: 'xv-raw' }, t('tasks.explain.raw', { raw, norm: score(f.normalized) })));
      }));
  });
  const total = h('tr', { class: 'xv-total' },
    h('th', { scope: 'row' }, t('tasks.explain.col.total')), h('td'),
    top.map((c) => h('td', { class: 'num' }, score(c.total))));
  const tableEl = h('div', { class: 'table-wrap' },
    h('table', { class: 'data xv-factors' }, h('thead', {}, head), h('tbody', {}, rows, total)));
  return {
    el: h('section', { class: 'panel' },
      h('h2', {}, title(top.length)),
      h('p', { class: 'muted xv-help' }, t('tasks.explain.breakdown.help')),
      el, tableEl),
    draw: () => {
      legendRows = legendRowsAt(el.clientWidth || 900);
      el.style.height = `${Math.max(160, 34 * top.length + 56 + 24 * legendRows)}px`;
      return drawStack();
    },
  };
  function drawStack() {
    return chart(el, {
      tooltip: { trigger: 'axis', axisPointer: { type: 'shadow' }, valueFormatter: (v) => score(v) },
      legend: { top: 0, left: 0, right: 0, type: 'plain', itemGap: 12 },
      grid: { left: 8, right: 24, top: 8 + 24 * legendRows, bottom: 24, containLabel: true },
      xAxis: { type: 'value' },
      yAxis: { type: 'category', inverse: true, data: top.map((c) => c.name), axisLabel: { width: 180, overflow: 'truncate' } },
      series: plugins.map((p) => ({
        name: pluginLabel(p),
        type: 'bar',
        stack: 'total',
        barMaxWidth: 22,
        itemStyle: { color: colours[p] },
        data: top.map((c) => byPlugin(c, p)?.contribution ?? 0),
      })),
    });
  }
}

function policyPanel(policy) {
  const weights = Object.entries(policy.weights || {}).sort((a, b) => b[1] - a[1]);
  const max = Math.max(1e-9, ...weights.map(([, w]) => Math.abs(w)));
  return h('section', { class: 'panel xv-policy' },
    h('h2', {}, t('tasks.explain.policy')),
    h('div', { class: 'row' },
      h('strong', { class: 'xv-policy-name' }, policy.name),
      policy.generation !== undefined && policy.generation !== null
        ? badge('info', t('tasks.explain.policy.generation', { n: policy.generation })) : null),
    policy.reasons?.length ? [
      h('h3', {}, t('tasks.explain.policy.reasons')),
      h('ul', { class: 'xv-list' }, policy.reasons.map((r) => h('li', {}, r))),
    ] : null,
    policy.also_matched?.length ? [
      h('h3', {}, t('tasks.explain.policy.also')),
      h('ul', { class: 'xv-list' }, policy.also_matched.map((r) => h('li', {}, r))),
    ] : null,
    h('h3', {}, t('tasks.explain.weights')),
    weights.length
      ? h('table', { class: 'data xv-weights' },
        h('thead', {}, h('tr', {},
          h('th', { scope: 'col' }, t('tasks.explain.col.plugin')),
          h('th', { scope: 'col', class: 'num' }, t('tasks.explain.col.weight')),
          h('th', { scope: 'col' }, h('span', { class: 'sr-only' }, t('tasks.explain.col.weight'))))),
        h('tbody', {}, weights.map(([p, w]) => h('tr', {},
          h('td', {}, pluginLabel(p), ' ', h('span', { class: 'muted mono' }, p)),
          h('td', { class: 'num' }, fmtNumber(w, 2)),
          h('td', { class: 'xv-wbar-cell' }, h('span', { class: 'xv-wbar', style: { width: `${(100 * Math.abs(w)) / max}%` } }))))))
      : h('p', { class: 'muted' }, t('tasks.explain.weights.empty')));
}

function rejectedPanel(sites, nodes) {
  const rows = [];
  for (const [kind, list] of [['site', sites], ['node', nodes]]) {
    for (const c of list) {
      if (c.feasible) continue;
      for (const v of c.verdicts || []) {
        if (v.fits) continue;
        rows.push({ kind, name: c.name, v });
      }
    }
  }
  const body = rows.length
    ? h('div', { class: 'table-wrap' }, h('table', { class: 'data xv-rejected' },
      h('thead', {}, h('tr', {},
        h('th', { scope: 'col' }, t('tasks.explain.col.candidate')),
        h('th', { scope: 'col' }, t('tasks.explain.col.kind')),
        h('th', { scope: 'col' }, t('tasks.explain.col.filter')),
        h('th', { scope: 'col' }, t('tasks.explain.col.detail')))),
      h('tbody', {}, rows.map(({ kind, name, v }) => h('tr', {},
        h('td', {}, name),
        h('td', {}, t(`tasks.explain.kind.${kind}`)),
        h('td', {}, pluginLabel(v.plugin), v.code ? h('div', { class: 'mono muted' }, v.code) : null),
        h('td', {}, v.detail || '–', ' ',
          badge(v.permanent ? 'bad' : 'warn', v.permanent ? t('tasks.explain.permanent') : t('tasks.explain.transient'))))))))
    : empty(t('tasks.explain.rejected.empty'));
  return h('section', { class: 'panel' }, h('h2', {}, t('tasks.explain.rejected')), body);
}

function rejectionsPanel(rejections) {
  if (!rejections?.length) return null;
  return h('section', { class: 'panel' },
    h('h2', {}, t('tasks.explain.rejections')),
    h('table', { class: 'data xv-counts' },
      h('thead', {}, h('tr', {},
        h('th', { scope: 'col' }, t('tasks.explain.col.reason')),
        h('th', { scope: 'col', class: 'num' }, t('tasks.explain.col.count')))),
      h('tbody', {}, [...rejections].sort((a, b) => b.count - a.count).map((r) => {
        const [plugin, code] = String(r.reason).split('/');
        return h('tr', {},
          h('td', {}, pluginLabel(plugin), code ? h('span', { class: 'mono muted' }, ` ${code}`) : null),
          h('td', { class: 'num' }, fmtNumber(r.count, 0)));
      }))));
}

/**
 * Renders an Explanation {task, policy, decision} into `container` (its children are
 * replaced). Charts are drawn once the elements are in the document.
 */
export function renderExplanation(container, explanation) {
  const policy = explanation?.policy || { name: '–', reasons: [], weights: {} };
  const d = explanation?.decision || { sites: [], nodes: [], rejections: [] };
  const sites = d.sites || [];
  const nodes = d.nodes || [];
  const feasibleSites = sites.filter((c) => c.feasible).sort((a, b) => b.total - a.total);
  const feasibleNodes = nodes.filter((c) => c.feasible).sort((a, b) => b.total - a.total);
  const plugins = pluginOrder(explanation || {}, [...feasibleSites, ...feasibleNodes]);
  const colours = Object.fromEntries(plugins.map((p, i) => [p, PALETTE[i % PALETTE.length]]));
  const draws = [];

  const chosen = d.chosen_site;
  const head = h('div', { class: 'grid cols-4 xv-kpis' },
    kpi(t('tasks.explain.chosen_site'), chosen || t('tasks.explain.nofit'),
      t('tasks.explain.feasible', { n: feasibleSites.length, total: sites.length })),
    kpi(t('tasks.explain.chosen_node'), d.chosen_node || '–'),
    kpi(t('tasks.explain.score'), d.score === null || d.score === undefined ? '–' : score(d.score)),
    kpi(t('tasks.explain.margin'), d.margin === null || d.margin === undefined ? '–' : score(d.margin),
      d.margin === null || d.margin === undefined ? (chosen ? t('tasks.explain.margin.none') : null) : t('tasks.explain.margin.sub')));

  const parts = [head];
  if (!chosen) parts.push(h('div', { class: 'xv-none', role: 'status' }, t('tasks.explain.none')));

  const side = [policyPanel(policy), rejectionsPanel(d.rejections)];
  const mainCol = [];
  const below = [];
  if (feasibleSites.length) {
    const bars = barChart(feasibleSites, chosen, t('tasks.explain.sites.aria'));
    draws.push(bars.draw);
    mainCol.push(h('section', { class: 'panel' }, h('h2', {}, t('tasks.explain.sites')), bars.el));
  }
  if (!feasibleSites.length) mainCol.push(rejectedPanel(sites, nodes));
  if (feasibleSites.length) {
    if (plugins.some((p) => feasibleSites.some((c) => (c.factors || []).some((f) => f.plugin === p)))) {
      const sitePlugins = plugins.filter((p) => feasibleSites.some((c) => (c.factors || []).some((f) => f.plugin === p)));
      const b = breakdown(feasibleSites, sitePlugins, colours, (n) => t('tasks.explain.breakdown', { n }));
      draws.push(b.draw);
      below.push(b.el);
    } else {
      below.push(h('p', { class: 'muted' }, t('tasks.explain.nofactors')));
    }
  }
  if (feasibleNodes.length) {
    const bars = barChart(feasibleNodes, d.chosen_node, t('tasks.explain.nodes.aria'), 10);
    draws.push(bars.draw);
    below.push(h('section', { class: 'panel' }, h('h2', {}, t('tasks.explain.nodes', { site: chosen || '–' })), bars.el,
      feasibleNodes.length > 10 ? h('p', { class: 'muted xv-help' }, t('tasks.explain.more', { n: feasibleNodes.length - 10 })) : null));
    const nodePlugins = plugins.filter((p) => feasibleNodes.some((c) => (c.factors || []).some((f) => f.plugin === p)));
    if (nodePlugins.length) {
      const b = breakdown(feasibleNodes, nodePlugins, colours, (n) => t('tasks.explain.breakdown.nodes', { n }));
      draws.push(b.draw);
      below.push(b.el);
    }
  }
  if (feasibleSites.length) below.push(rejectedPanel(sites, nodes));

  clear(container, h('div', { class: 'xv' }, parts,
    h('div', { class: 'xv-cols' }, h('div', { class: 'xv-main' }, mainCol), h('div', { class: 'xv-side' }, side)),
    below));
  // ECharts needs the containers laid out; draw when they are (now, if already attached).
  const draw = () => draws.forEach((fn) => fn());
  if (container.isConnected) draw();
  else requestAnimationFrame(draw);
  return container;
}
