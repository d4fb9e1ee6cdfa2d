// Shared pieces of the "Templates & plans" page: labels and colours of node types and
// instruction kinds, the layered layout of dependency graphs, money and error helpers, a
// confirmation dialog, and the translation of the API's explanation sentences (plan
// reasons, feasibility details, recommendation reasons) into Chinese.
import { api } from '../api.js';
import { t, has, lang, fmtNumber } from '../i18n.js';
import { h } from '../ui.js';
import './design-strings.js';

export const OBJECTIVES = ['lowest_cost', 'lowest_latency', 'greenest', 'balanced'];

export const NODE_COLORS = {
  compute: '#2f74d0',
  vm: '#6b46c1',
  container: '#0f8f82',
  gpu: '#d9480f',
  storage: '#b7791f',
  network: '#4a6fa5',
  security: '#c53030',
  app: '#2f855a',
};

export const KIND_COLORS = {
  create_resource: '#2f74d0',
  configure_network: '#4a6fa5',
  configure_security: '#c53030',
  mount_storage: '#b7791f',
  deploy_app: '#2f855a',
};

const label = (prefix, v) => (has(`${prefix}.${v}`) ? t(`${prefix}.${v}`) : String(v ?? '–'));
export const typeLabel = (ty) => label('design.type', ty);
export const kindLabel = (k) => label('design.kind', k);
export const stateLabel = (s) => label('design.state', s);
export const flowStateLabel = (s) => label('design.fstate', s);
export const objectiveLabel = (o) => label('design.obj', o);
export const objectiveDesc = (o, fallback) => (has(`design.obj.${o}.desc`) ? t(`design.obj.${o}.desc`) : fallback || '');

export const money = (n, digits = 2) => (n === null || n === undefined ? '–' : `¥${fmtNumber(n, digits)}`);

/** Escapes text for ECharts tooltips, which render HTML. */
export function esc(s) {
  return String(s ?? '').replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);
}

/** Text safe inside an ECharts rich-text label (no template braces or separators). */
export const plain = (s) => String(s ?? '').replace(/[{}|]/g, '');

/**
 * Layered layout of a dependency graph: a node's layer is one more than its deepest
 * dependency's; within a layer nodes are ordered by the mean row of their dependencies.
 * Returns {pos: Map(id → {x: layer, y: row centred on 0}), layers, maxRows}.
 */
export function layered(ids, depsOf) {
  const known = new Set(ids);
  const layer = new Map();
  const visiting = new Set();
  const deps = (id) => depsOf(id).filter((d) => known.has(d) && d !== id);
  const depth = (id) => {
    if (layer.has(id)) return layer.get(id);
    if (visiting.has(id)) return 0; // a cycle: the API refuses them, but never loop
    visiting.add(id);
    const ds = deps(id);
    const v = ds.length ? 1 + Math.max(...ds.map(depth)) : 0;
    visiting.delete(id);
    layer.set(id, v);
    return v;
  };
  ids.forEach(depth);
  const cols = [];
  for (const id of ids) (cols[layer.get(id)] ||= []).push(id);
  const row = new Map();
  const pos = new Map();
  const dense = cols.filter(Boolean);
  dense.forEach((col, li) => {
    if (li > 0) {
      const bary = (id) => {
        const rs = deps(id).map((d) => row.get(d)).filter((r) => r !== undefined);
        return rs.length ? rs.reduce((a, b) => a + b, 0) / rs.length : 0;
      };
      col.sort((a, b) => bary(a) - bary(b));
    }
    col.forEach((id, i) => {
      const y = i - (col.length - 1) / 2;
      row.set(id, y);
      pos.set(id, { x: li, y });
    });
  });
  return { pos, layers: dense.length, maxRows: Math.max(1, ...dense.map((c) => c.length)) };
}

/** A JSON call; errors are ApiErrors with the API's `error.field` for forms. */
export const send = (method, path, body) => api(method, path, body);

/**
 * The problems an error names, as [{path, message}]: "N error(s): a.b: why; c: why" is
 * split into its parts; a single-field error gives its field.
 */
export function issues(err) {
  const msg = String(err?.message || '');
  const m = msg.match(/^(?:(\w+): )?\d+ error\(s\): (.*)$/s);
  if (m) {
    return m[2].split(/; (?=(?:inputs|node_templates|outputs|description|source|name|tags|category|params|depends_on|version)\b[\w.[\]-]*: )/).map((part) => {
      const i = part.indexOf(': ');
      const path = i > 0 ? part.slice(0, i) : '';
      return { path: m[1] && path ? `${m[1]}.${path}` : path, message: i > 0 ? part.slice(i + 2) : part };
    });
  }
  return [{ path: err?.field || '', message: msg }];
}

/** An alert box whose content is set with .show(nodeOrText) and cleared with .show(null). */
export function alertBox(cls = '') {
  const el = h('div', { class: `design-alert ${cls}`, role: 'alert', hidden: true });
  el.show = (...content) => {
    el.replaceChildren(...content.flat().filter((c) => c !== null && c !== undefined && c !== false));
    el.hidden = !el.childNodes.length;
    if (!el.hidden) el.scrollIntoView?.({ block: 'nearest' });
  };
  return el;
}

/** A modal dialog built from content; returns {dialog, close}. Removed from the page on close. */
export function modal(titleText, content, { wide = false } = {}) {
  const id = `dlg-${Math.random().toString(36).slice(2, 8)}`;
  const dialog = h('dialog', { class: `design-dialog${wide ? ' wide' : ''}`, 'aria-labelledby': id },
    h('h2', { id }, titleText), content);
  dialog.addEventListener('close', () => dialog.remove());
  document.body.append(dialog);
  dialog.showModal();
  return { dialog, close: () => dialog.close() };
}

/** Asks before something irreversible; resolves true when confirmed. */
export function confirmDialog(message, okLabel) {
  return new Promise((resolve) => {
    let answer = false;
    const ok = h('button', { type: 'button', class: 'danger', on: { click: () => { answer = true; close(); } } }, okLabel);
    const cancel = h('button', { type: 'button', class: 'secondary', on: { click: () => close() } }, t('common.cancel'));
    const { dialog, close } = modal(t('design.confirm.title'), [h('p', {}, message), h('div', { class: 'form-actions' }, ok, cancel)]);
    dialog.addEventListener('close', () => resolve(answer));
    cancel.focus();
  });
}

// The API explains itself in English sentences of fixed forms; in Chinese they are
// rewritten from these patterns (anything else is shown as sent).
const DIMS = { compute: '算力', network: '网络', application: '应用', cost: '成本', business: '业务' };
const viol = (v) => (v ? '（不满足）' : '');
const ZH = [
  [/^you planned (\d+) time\(s\) in category "(.*)"$/, (m) => `您在类别“${m[2]}”下做过 ${m[1]} 次方案`],
  [/^you planned (\d+) time\(s\) with tag "(.*)"$/, (m) => `您用标签“${m[2]}”的模板做过 ${m[1]} 次方案`],
  [/^used in (\d+) plan\(s\) overall$/, (m) => `累计被用于 ${m[1]} 次方案`],
  [/^feasible in all five dimensions$/, () => '五个维度均可行'],
  [/^infeasible in: (.*)$/, (m) => `不可行的维度：${m[1].split(', ').map((d) => DIMS[d] || d).join('、')}`],
  [/^recommended: the feasible plan with the best combined rank of cost, latency and carbon$/, () => '推荐：在可行方案中成本、时延与碳排放的综合排名最佳'],
  [/^cost ([\d.]+)\/h ranks (\d+) of (\d+); worst latency (.+?) ranks (\d+); green score (\d+) ranks (\d+)$/,
    (m) => `每小时成本 ${m[1]}，在 ${m[3]} 个方案中排第 ${m[2]}；最大时延 ${m[4] === 'n/a' ? '无' : m[4]}，排第 ${m[5]}；绿色评分 ${m[6]}，排第 ${m[7]}`],
  [/^all (\d+) replica\(s\) placed$/, (m) => `全部 ${m[1]} 个副本均已放置`],
  [/^(.+)#(\d+) not placed: (.*)$/, (m) => `${m[1]}#${m[2]} 未能放置：${m[3]}`],
  [/^(\S+) -> (\S+): (ok|VIOLATED) latency ([\d.]+) ms \(max (.+?)\), bandwidth (.+?) \(min (.+?)\)$/,
    (m) => `${m[1]} → ${m[2]}：${m[3] === 'ok' ? '满足' : '不满足'}，时延 ${m[4]} ms（上限 ${m[5] === '-' ? '无' : `${m[5]} ms`}），带宽 ${m[6] === 'unlimited' ? '不限' : m[6]}（下限 ${m[7] === '-' ? '无' : `${m[7]} Gbps`}）`],
  [/^no connects_to requirements$/, () => '无网络连接要求'],
  [/^(\d+) dependencies resolvable, no cycle; order: (.*)$/, (m) => `${m[1]} 个依赖均可解析，无环；顺序：${m[2]}`],
  [/^([\d.]+)\/h x ([\d.]+) h = ([\d.]+)$/, (m) => `每小时 ${m[1]} × ${m[2]} 小时 = ${m[3]}`],
  [/^(.+): (\d+)\/(\d+) replicas( \(VIOLATED\))?$/, (m) => `${m[1]}：已放置 ${m[2]}/${m[3]} 个副本${viol(m[4])}`],
  [/^(.+): runs ([\d.]+) h within deadline ([\d.]+) h( \(VIOLATED\))?$/, (m) => `${m[1]}：运行 ${m[2]} 小时，期限 ${m[3]} 小时${viol(m[4])}`],
  [/^(.+): region (.*) (kept|VIOLATED)$/, (m) => `${m[1]}：地域 ${m[2]}${m[3] === 'kept' ? ' 已满足' : ' 不满足'}`],
  [/^hold capacity for (\S+) on (\S+)$/, (m) => `在 ${m[2]} 为 ${m[1]} 预留算力`],
  [/^mount ([\d.]+) GiB volume (\S+) for its users$/, (m) => `为使用方挂载 ${m[1]} GiB 存储卷 ${m[2]}`],
  [/^network (\S+) between the sites of its users$/, (m) => `在使用方所在资源节点之间配置网络 ${m[1]}`],
  [/^security policy (\S+) on the sites of its users$/, (m) => `在使用方所在资源节点上配置安全策略 ${m[1]}`],
  [/^connect (\S+) to (\S+)$/, (m) => `连接 ${m[1]} 与 ${m[2]}`],
  [/^deploy (\S+) on (\S*)$/, (m) => `在 ${m[2]} 部署 ${m[1]}`],
];

/** An API sentence in the page's language. */
export function say(text) {
  const s = String(text ?? '');
  if (lang !== 'zh') return s;
  for (const [re, fn] of ZH) {
    const m = s.match(re);
    if (m) return fn(m);
  }
  return s;
}

/** The back link at the top of a sub-view. */
export const backLink = (href, text) => h('a', { class: 'design-back', href }, `← ${text}`);

/** {get_input: x} → the input's default (or its name), for display. */
export function resolve(v, inputs = {}) {
  if (v && typeof v === 'object' && !Array.isArray(v) && 'get_input' in v) {
    const d = inputs[v.get_input]?.default;
    return d === undefined || d === null ? `‹${v.get_input}›` : d;
  }
  return v;
}

/** A property value as text: {get_input: x} reads "input x". */
export function showValue(v) {
  if (v === null || v === undefined) return '–';
  if (typeof v === 'object' && !Array.isArray(v)) {
    if ('get_input' in v) return t('design.val.input', { name: v.get_input });
    if ('get_site' in v) return t('design.val.site', { name: v.get_site });
    return JSON.stringify(v);
  }
  if (Array.isArray(v)) return v.map((x) => (typeof x === 'string' ? x : JSON.stringify(x))).join(' ');
  return String(v);
}


export const fmtKg = (n) => (n === null || n === undefined ? '–' : `${fmtNumber(n, 3)} kg`);

const roundBox = (w, hgt, r = 7) => `path://M${r},0 H${w - r} A${r},${r} 0 0 1 ${w},${r} V${hgt - r} A${r},${r} 0 0 1 ${w - r},${hgt} H${r} A${r},${r} 0 0 1 0,${hgt - r} V${r} A${r},${r} 0 0 1 ${r},0 Z`;

/**
 * A left-to-right dependency graph: an ECharts `graph` series on hidden cartesian axes, so
 * the layered positions from layered() map to fixed places and node sizes stay in pixels.
 * nodes: [{id, x (layer), y (row), category, label, tip}]; links: ECharts links.
 */
export function dagOption({ nodes, links, categories, layers, maxRows, symbolSize, label, top = 40 }) {
  const half = Math.max(1, maxRows) / 2;
  const axis = { show: false, type: 'value', splitLine: { show: false } };
  return {
    tooltip: { confine: true, formatter: (p) => p.data?.tip || '' },
    legend: { top: 0, data: categories.map((c) => c.name), selectedMode: false },
    grid: { left: 8, right: 8, top, bottom: 8, containLabel: false },
    xAxis: { ...axis, min: -0.5, max: Math.max(1, layers) - 0.5 },
    yAxis: { ...axis, min: -half, max: half, inverse: true },
    series: [{
      type: 'graph',
      coordinateSystem: 'cartesian2d',
      // A rounded box drawn inside a square symbol (aspect kept): ECharts shortens edges
      // by half the mean symbol size, so arrows then end at the box's side, not under it.
      symbol: roundBox(symbolSize[0], symbolSize[1]),
      symbolKeepAspect: true,
      symbolSize: [symbolSize[0] + 10, symbolSize[0] + 10],
      categories,
      label: { show: true, position: 'inside', color: '#fff', ...label },
      emphasis: { focus: 'adjacency', lineStyle: { width: 2.5 } },
      edgeSymbol: ['none', 'arrow'],
      edgeSymbolSize: [0, 9],
      lineStyle: { color: '#8a94a6', width: 1.4, curveness: 0.06, opacity: 0.95 },
      data: nodes.map((n) => ({ ...n, value: [n.x, n.y] })),
      links,
    }],
  };
}
