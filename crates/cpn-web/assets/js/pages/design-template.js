// One template (#/design/template/<id>): its node graph (layers by depends_on, dashed
// connects_to links with their latency/bandwidth bounds), inputs, outputs, nodes, the YAML
// source (editable by its owner: every save is a new version), the versions with rollback,
// and the "Make plans" form generated from the inputs.
import { get, del } from '../api.js';
import { t, fmtNumber, fmtTime } from '../i18n.js';
import { h, clear, badge, errorState, loading, empty, field, table, tabs, chart, toast } from '../ui.js';
import { load as parseYaml } from '../../vendor/js-yaml.mjs';
import {
  NODE_COLORS, typeLabel, stateLabel, esc, plain, layered, dagOption, send, issues, modal, confirmDialog,
  backLink, resolve, showValue, OBJECTIVES,
} from './design-common.js';
import { stateButtons } from './design-market.js';

const mayChange = (user, tpl) => user.role === 'operator' || (tpl.tenant === user.tenant && (tpl.owner === user.username || user.role === 'supplier'));

const reqs = (node) => node?.requirements || {};
const dependsOn = (node) => [...(reqs(node).depends_on || []), ...(node?.depends_on || [])].map(String);
const connectsTo = (node) => [...(reqs(node).connects_to || []), ...(node?.connects_to || [])].filter((c) => c && typeof c === 'object' && c.node);

/** "≤ 100 ms · ≥ 1 Gbps", bounds from inputs read as the input's name and default. */
function linkText(c, inputs) {
  const part = (v, unit, sign) => {
    if (v === null || v === undefined) return null;
    if (typeof v === 'object' && 'get_input' in v) {
      const d = resolve(v, inputs);
      return typeof d === 'number' ? `${sign} ${fmtNumber(d, 1)} ${unit} (${v.get_input})` : `${sign} ${v.get_input}`;
    }
    return `${sign} ${fmtNumber(Number(v), 1)} ${unit}`;
  };
  return [part(c.max_latency_ms, 'ms', '≤'), part(c.min_bandwidth_gbps, 'Gbps', '≥')].filter(Boolean).join(' · ');
}

/** What a node asks for, in a few words. */
function needs(props, inputs) {
  const r = (k) => resolve(props?.[k], inputs);
  const out = [];
  if (r('cores') != null) out.push(t('design.need.cores', { n: showNum(r('cores')) }));
  if (r('memory_gib') != null) out.push(t('design.need.mem', { n: showNum(r('memory_gib')) }));
  if (r('gpus') != null && r('gpus') !== 0) out.push(t('design.need.gpus', { n: showNum(r('gpus')), model: props.gpu_model ? ` ${props.gpu_model}` : '' }));
  if (r('storage_gib') != null) out.push(t('design.need.storage', { n: showNum(r('storage_gib')) }));
  if (r('bandwidth_gbps') != null) out.push(t('design.need.bw', { n: showNum(r('bandwidth_gbps')) }));
  if (r('deadline_hours') != null) out.push(t('design.need.deadline', { n: showNum(r('deadline_hours')) }));
  if (props?.region !== undefined) {
    const reg = r('region');
    if (reg) out.push(t('design.need.region', { r: reg }));
  }
  return out;
}
/** A value, and where it comes from when it is an input's. */
function fromInput(v, inputs) {
  if (v && typeof v === 'object' && 'get_input' in v) return t('design.val.fromInput', { v: showValue(resolve(v, inputs)), name: v.get_input });
  return showValue(v);
}
const showNum = (v) => (typeof v === 'number' ? fmtNumber(v, 2) : String(v));

/** Draws the template's node graph into el (an ECharts graph with fixed, layered positions). */
export function drawTemplateGraph(el, doc) {
  const nt = doc.node_templates || {};
  const inputs = doc.inputs || {};
  const names = Object.keys(nt);
  const { pos, layers, maxRows } = layered(names, (n) => dependsOn(nt[n]));
  const types = [...new Set(names.map((n) => String(nt[n]?.type ?? '?')))];
  el.style.height = `${Math.max(280, Math.min(640, 70 + maxRows * 100))}px`;
  const nodes = names.map((n) => {
    const node = nt[n] || {};
    const ty = String(node.type ?? '?');
    const p = pos.get(n);
    const replicas = resolve(node.properties?.replicas, inputs);
    return {
      id: n,
      name: n,
      x: p.x,
      y: p.y,
      category: types.indexOf(ty),
      label: {
        formatter: `{n|${plain(n)}}\n{t|${plain(typeLabel(ty))}${replicas != null && replicas !== 1 ? ` ×${plain(replicas)}` : ''}}`,
      },
      tip: [
        `<b>${esc(n)}</b> · ${esc(typeLabel(ty))}`,
        node.description ? esc(node.description) : null,
        ...Object.entries(node.properties || {}).map(([k, v]) => `${esc(k)}: ${esc(showValue(v))}`),
      ].filter(Boolean).join('<br>'),
    };
  });
  const links = [];
  for (const n of names) {
    for (const d of dependsOn(nt[n])) {
      if (!nt[d]) continue;
      links.push({
        source: d, target: n,
        lineStyle: { color: '#8a94a6', width: 1.8, curveness: 0 },
        tip: esc(t('design.graph.dep.tip', { a: n, b: d })),
      });
    }
    for (const c of connectsTo(nt[n])) {
      if (!nt[c.node]) continue;
      const text = linkText(c, inputs);
      links.push({
        source: n, target: String(c.node),
        symbol: ['none', 'none'],
        lineStyle: { color: '#2f74d0', width: 1.8, type: 'dashed', curveness: 0.45 },
        label: { show: true, formatter: () => text || t('design.graph.link'), color: '#1f4e8c', fontSize: 11, backgroundColor: 'rgba(255,255,255,.9)', padding: [1, 4], borderRadius: 3 },
        tip: esc(`${t('design.graph.link.tip', { a: n, b: c.node })}${text ? ` (${text})` : ''}`),
      });
    }
  }
  return chart(el, dagOption({
    nodes,
    links,
    categories: types.map((ty) => ({ name: typeLabel(ty), itemStyle: { color: NODE_COLORS[ty] || '#718096' } })),
    layers,
    maxRows,
    symbolSize: [136, 46],
    label: { rich: { n: { fontWeight: 'bold', fontSize: 13, color: '#fff', lineHeight: 18 }, t: { fontSize: 11, color: '#fff', lineHeight: 15 } } },
  }));
}

function inputsTable(doc) {
  const inputs = Object.entries(doc.inputs || {});
  const rows = inputs.map(([name, d]) => ({ name, ...(d || {}) }));
  return table([
    { title: t('common.name'), value: (r) => h('code', {}, r.name) },
    { title: t('design.in.type'), value: (r) => inputType(r.type) },
    { title: t('design.in.default'), value: (r) => (r.default === undefined ? '–' : r.default === '' ? t('design.in.emptystr') : showValue(r.default)) },
    { title: t('design.in.constraints'), value: (r) => constraintText(r.constraints) || '–' },
    { title: t('design.description'), value: (r) => r.description || '' },
  ], rows, { emptyText: t('design.in.none') });
}

const inputType = (ty) => (['string', 'integer', 'number', 'boolean'].includes(ty) ? t(`design.plan.type.${ty}`) : ty || '–');

export function constraintText(c) {
  if (!c) return '';
  const out = [];
  if (c.min !== undefined && c.min !== null) out.push(t('design.in.min', { n: c.min }));
  if (c.max !== undefined && c.max !== null) out.push(t('design.in.max', { n: c.max }));
  if (Array.isArray(c.allowed_values)) out.push(t('design.in.allowed', { v: c.allowed_values.map((v) => JSON.stringify(v)).join(', ') }));
  return out.join(' · ');
}

function outputsTable(doc) {
  const rows = Object.entries(doc.outputs || {}).map(([name, d]) => ({ name, ...(d || {}) }));
  return table([
    { title: t('common.name'), value: (r) => h('code', {}, r.name) },
    { title: t('design.out.value'), value: (r) => showValue(r.value) },
    { title: t('design.description'), value: (r) => r.description || '' },
  ], rows, { emptyText: t('design.out.none') });
}

function nodesTable(doc) {
  const nt = doc.node_templates || {};
  const rows = Object.entries(nt).map(([name, n]) => ({ name, n: n || {} }));
  return table([
    { title: t('common.name'), value: (r) => h('code', {}, r.name) },
    { title: t('design.node.type'), value: (r) => h('span', { class: 'design-type' }, h('i', { style: { background: NODE_COLORS[r.n.type] || '#718096' }, 'aria-hidden': 'true' }), typeLabel(r.n.type)) },
    { title: t('design.node.needs'), value: (r) => h('ul', { class: 'design-needs' }, needs(r.n.properties, doc.inputs).map((x) => h('li', {}, x))) },
    { title: t('design.node.replicas'), value: (r) => fromInput(r.n.properties?.replicas ?? 1, doc.inputs), num: true },
    { title: t('design.node.depends'), value: (r) => dependsOn(r.n).join(', ') || '–' },
    { title: t('design.node.connects'), value: (r) => connectsTo(r.n).map((c) => `${c.node}${linkText(c, doc.inputs) ? ` (${linkText(c, doc.inputs)})` : ''}`).join('; ') || '–' },
  ], rows, { emptyText: t('design.node.none') });
}

/** The input form of "Make plans": one field per input, with defaults and constraint checks. */
function planDialog(tpl, doc, ctx) {
  const inputs = Object.entries(doc?.inputs || {});
  const controls = new Map();
  const fields = new Map();
  for (const [name, d] of inputs) {
    const def = d?.default;
    const c = d?.constraints || {};
    let input;
    if (Array.isArray(c.allowed_values)) {
      input = h('select', { name }, c.allowed_values.map((v) => h('option', { value: JSON.stringify(v), selected: JSON.stringify(v) === JSON.stringify(def) }, String(v))));
      if (def === undefined) input.prepend(h('option', { value: '', selected: true }, t('design.plan.choose')));
    } else if (d?.type === 'boolean') {
      input = h('input', { type: 'checkbox', name, checked: def === true });
    } else if (d?.type === 'integer' || d?.type === 'number') {
      input = h('input', {
        type: 'number', name, inputmode: d.type === 'integer' ? 'numeric' : 'decimal',
        step: d.type === 'integer' ? '1' : 'any',
        min: c.min ?? null, max: c.max ?? null,
        value: def ?? '',
      });
    } else {
      input = h('input', { type: 'text', name, value: def ?? '', autocomplete: 'off' });
    }
    controls.set(name, input);
    const help = [
      d?.description,
      [d?.type ? inputType(d.type) : null, constraintText(c), def !== undefined && def !== '' ? t('design.plan.default', { v: showValue(def) }) : null].filter(Boolean).join(' · '),
    ].filter(Boolean).join(' — ');
    fields.set(name, field(name, input, help));
  }

  const check = () => {
    const out = {};
    let bad = null;
    for (const [name, d] of inputs) {
      const input = controls.get(name);
      const f = fields.get(name);
      f.setError('');
      const c = d?.constraints || {};
      let v;
      if (input.tagName === 'SELECT') {
        if (input.value === '') {
          if (d?.default === undefined) {
            f.setError(t('design.err.required'));
            bad ||= input;
          }
          continue;
        }
        v = JSON.parse(input.value);
      } else if (input.type === 'checkbox') v = input.checked;
      else if (input.type === 'number') {
        if (input.value.trim() === '') {
          if (d?.default === undefined || d?.default === null) {
            f.setError(t('design.err.required'));
            bad ||= input;
          }
          continue;
        }
        v = Number(input.value);
        if (!Number.isFinite(v) || (d.type === 'integer' && !Number.isInteger(v))) {
          f.setError(t(d.type === 'integer' ? 'design.err.integer' : 'design.err.number'));
          bad ||= input;
          continue;
        }
        if (c.min !== undefined && c.min !== null && v < c.min) {
          f.setError(t('design.err.min', { n: c.min }));
          bad ||= input;
          continue;
        }
        if (c.max !== undefined && c.max !== null && v > c.max) {
          f.setError(t('design.err.max', { n: c.max }));
          bad ||= input;
          continue;
        }
      } else v = input.value;
      out[name] = v;
    }
    return { out, bad };
  };

  const error = h('div', { class: 'form-error', role: 'alert' });
  const submit = h('button', { type: 'submit' }, t('design.makeplans'));
  const form = h('form', {
    novalidate: true,
    on: {
      submit: async (e) => {
        e.preventDefault();
        error.textContent = '';
        const { out, bad } = check();
        if (bad) {
          bad.focus();
          return;
        }
        submit.disabled = true;
        submit.textContent = t('design.plan.working');
        try {
          const plans = await send('POST', `/api/v1/templates/${encodeURIComponent(tpl.id)}/plans`, { inputs: out });
          const rec = plans.find((p) => p.recommended) || plans[0];
          close();
          ctx.navigate(`#/design/plan/${encodeURIComponent(rec.id)}`);
        } catch (err) {
          let shown = false;
          for (const i of issues(err)) {
            const m = i.path.match(/^inputs\.(.+)$/);
            if (m && fields.has(m[1])) {
              fields.get(m[1]).setError(i.message);
              shown = true;
            }
          }
          error.textContent = shown ? t('design.err.fix') : err.message;
        } finally {
          submit.disabled = false;
          submit.textContent = t('design.makeplans');
        }
      },
    },
  },
  inputs.length ? h('div', { class: 'grid cols-2 design-form-grid' }, [...fields.values()]) : h('p', { class: 'muted' }, t('design.plan.noinputs')),
  error,
  h('div', { class: 'form-actions' }, submit, h('button', { type: 'button', class: 'secondary', on: { click: () => close() } }, t('common.cancel'))));
  const { close } = modal(t('design.plan.title', { name: tpl.name }), [
    h('p', { class: 'muted' }, t('design.plan.intro', { objectives: OBJECTIVES.map((o) => t(`design.obj.${o}`)).join(t('design.listsep')) })),
    form,
  ], { wide: inputs.length > 2 });
  (controls.values().next().value || submit).focus();
}

function sourceTab(el, tpl, ctx, editable, reload) {
  const pre = h('pre', { class: 'design-source', tabindex: '0', 'aria-label': t('design.source') }, tpl.source);
  if (!editable) {
    clear(el, pre);
    return;
  }
  const edit = h('button', { type: 'button', class: 'secondary', on: { click: () => editing() } }, t('design.source.edit'));
  clear(el, h('div', { class: 'row design-tab-actions' }, edit, h('span', { class: 'muted' }, t('design.source.versioned'))), pre);
  function editing() {
    const area = h('textarea', { name: 'source', rows: Math.min(40, tpl.source.split('\n').length + 2), spellcheck: false }, tpl.source);
    const f = field(t('design.source'), area, t('design.source.help'));
    const error = h('div', { class: 'form-error', role: 'alert' });
    const save = h('button', { type: 'submit' }, t('common.save'));
    const form = h('form', {
      on: {
        submit: async (e) => {
          e.preventDefault();
          f.setError('');
          error.textContent = '';
          save.disabled = true;
          try {
            await send('PUT', `/api/v1/templates/${encodeURIComponent(tpl.id)}`, { version: tpl.version, source: area.value });
            toast(t('common.saved'), 'ok');
            reload('source');
          } catch (err) {
            if (err.status === 409) error.textContent = t('design.err.conflict', { message: err.message });
            else f.setError(issues(err).map((i) => (i.path ? `${i.path}: ${i.message}` : i.message)).join('\n'));
          } finally {
            save.disabled = false;
          }
        },
      },
    }, f, error, h('div', { class: 'form-actions' }, save, h('button', { type: 'button', class: 'secondary', on: { click: () => sourceTab(el, tpl, ctx, editable, reload) } }, t('common.cancel'))));
    clear(el, form);
    area.focus();
  }
}

function versionsTab(el, tpl, versions, editable, reload) {
  const rows = [...versions].sort((a, b) => b.version - a.version);
  const roll = async (v, btn) => {
    btn.disabled = true;
    try {
      await send('POST', `/api/v1/templates/${encodeURIComponent(tpl.id)}/rollback`, { to_version: v.version, version: tpl.version });
      toast(t('design.rolledback', { v: v.version }), 'ok');
      reload('versions');
    } catch (err) {
      toast(err.status === 409 ? t('design.err.conflict', { message: err.message }) : err.message, 'bad');
      btn.disabled = false;
    }
  };
  clear(el, table([
    { title: t('design.ver.version'), value: (v) => h('span', {}, `v${v.version}`, v.version === tpl.version ? h('span', { class: 'badge info design-current' }, t('design.ver.current')) : null), num: false },
    { title: t('common.time'), value: (v) => fmtTime(v.at) },
    { title: t('common.state'), value: (v) => badge(v.state, stateLabel(v.state)) },
    { title: t('design.source'), value: (v) => h('details', {}, h('summary', {}, t('design.ver.show')), h('pre', { class: 'design-source small' }, v.source)) },
    {
      title: '',
      value: (v) => (editable && v.version !== tpl.version
        ? h('button', { type: 'button', class: 'secondary', on: { click: (e) => roll(v, e.currentTarget) } }, t('design.ver.rollback', { v: v.version }))
        : null),
    },
  ], rows, { emptyText: t('design.ver.none') }));
}

export async function renderTemplate(main, ctx, id) {
  const back = backLink('#/design', t('design.back.market'));
  clear(main, back, loading());
  let tpl;
  let versions;
  try {
    [tpl, versions] = await Promise.all([
      get(`/api/v1/templates/${encodeURIComponent(id)}`),
      get(`/api/v1/templates/${encodeURIComponent(id)}/versions`).catch(() => []),
    ]);
  } catch (e) {
    clear(main, back, h('h1', {}, t('design.template')), errorState(e, () => renderTemplate(main, ctx, id)));
    return;
  }
  let doc = null;
  let parseError = null;
  try {
    doc = parseYaml(tpl.source);
    if (!doc || typeof doc !== 'object' || Array.isArray(doc)) throw new Error(t('design.yaml.notmap'));
  } catch (e) {
    parseError = e;
  }
  document.title = `${tpl.name} · ${t('nav.design')}`;
  const editable = mayChange(ctx.user, tpl);
  const reload = (tab) => ctx.navigate(`#/design/template/${encodeURIComponent(id)}?tab=${tab}`);

  const planBtn = h('button', {
    type: 'button', disabled: tpl.state === 'offline', title: tpl.state === 'offline' ? t('design.offline.hint') : null,
    on: { click: () => planDialog(tpl, doc, ctx) },
  }, t('design.makeplans'));
  const delBtn = editable ? h('button', {
    type: 'button', class: 'secondary', on: {
      click: async () => {
        if (!(await confirmDialog(t('design.delete.confirm', { name: tpl.name }), t('common.delete')))) return;
        try {
          await del(`/api/v1/templates/${encodeURIComponent(id)}`);
          toast(t('design.deleted', { name: tpl.name }), 'ok');
          ctx.navigate('#/design');
        } catch (e) {
          toast(e.message, 'bad');
        }
      },
    },
  }, t('common.delete')) : null;

  const graphEl = h('div', { class: 'chart design-graph', dataset: { test: 'template-graph' }, role: 'img', 'aria-label': t('design.graph.label', { name: tpl.name }) });
  const graphPanel = h('section', { class: 'panel', 'aria-labelledby': 'design-graph-h' },
    h('div', { class: 'design-panel-head' },
      h('h2', { id: 'design-graph-h' }, t('design.graph')),
      h('span', { class: 'muted design-graph-key' },
        h('span', { class: 'design-key-dep', 'aria-hidden': 'true' }), t('design.graph.key.dep'),
        h('span', { class: 'design-key-link', 'aria-hidden': 'true' }), t('design.graph.key.link'))),
    parseError
      ? h('div', { class: 'error-state', role: 'alert' }, t('design.yaml.error', { message: parseError.message }))
      : Object.keys(doc.node_templates || {}).length ? graphEl : empty(t('design.node.none')));

  const tabList = [
    {
      id: 'structure',
      label: t('design.tab.structure'),
      render: (el) => clear(el, parseError ? empty(t('design.yaml.see')) : h('div', {},
        h('h3', {}, t('design.inputs')), inputsTable(doc),
        h('h3', {}, t('design.nodes')), nodesTable(doc),
        h('h3', {}, t('design.outputs')), outputsTable(doc))),
    },
    { id: 'source', label: t('design.tab.source'), render: (el) => sourceTab(el, tpl, ctx, editable, reload) },
    { id: 'versions', label: t('design.tab.versions', { n: versions.length }), render: (el) => versionsTab(el, tpl, versions, editable, reload) },
  ];
  const initial = ctx.query?.get('tab');

  clear(main,
    back,
    h('div', { class: 'page-head' },
      h('h1', {}, tpl.name),
      badge(tpl.state, stateLabel(tpl.state)),
      planBtn,
      stateButtons(ctx.user, tpl, () => reload(initial || 'structure')),
      delBtn),
    h('div', { class: 'muted design-meta design-tpl-meta' },
      h('span', {}, `${t('design.category')}: ${tpl.category || t('design.nocategory')}`),
      h('span', {}, t('design.version', { v: tpl.version })),
      h('span', {}, t('design.usage', { n: fmtNumber(tpl.usage_count, 0) })),
      h('span', {}, t('design.owner', { owner: tpl.owner, tenant: tpl.tenant })),
      h('span', {}, t('design.updated', { at: fmtTime(tpl.updated_at) }))),
    tpl.description ? h('p', { class: 'design-desc' }, tpl.description) : null,
    tpl.tags?.length ? h('ul', { class: 'design-tags', 'aria-label': t('design.tags') }, tpl.tags.map((g) => h('li', {}, g))) : null,
    graphPanel,
    h('section', { class: 'panel' }, tabs(tabList, tabList.some((x) => x.id === initial) ? initial : 'structure')));

  if (!parseError && graphEl.isConnected) drawTemplateGraph(graphEl, doc);
  if (ctx.query?.get('plan') === '1' && tpl.state !== 'offline') {
    history.replaceState(null, '', `#/design/template/${encodeURIComponent(id)}`);
    planDialog(tpl, doc, ctx);
  }
}
