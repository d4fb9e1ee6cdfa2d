// Plans compared side by side (#/design/plan/<id>): the alternatives of one
// planning request as columns, rows for cost, latency, carbon, sites and the five
// feasibility dimensions, the recommended one highlighted with its reasons, where every node
// was placed, a grouped bar chart of cost/latency/carbon, and "Confirm" on each.
import { get } from '../api.js';
import { t, fmtNumber, fmtTime } from '../i18n.js';
import { h, clear, badge, errorState, loading, chart, toast } from '../ui.js';
import {
  OBJECTIVES, NODE_COLORS, objectiveLabel, objectiveDesc, stateLabel, typeLabel, money, fmtKg,
  say, esc, send, alertBox, backLink, showValue,
} from './design-common.js';

const DIMS = ['compute', 'network', 'application', 'cost', 'business'];
const PLAN_COLORS = { lowest_cost: '#2f74d0', lowest_latency: '#0f8f82', greenest: '#2f855a', balanced: '#b7791f' };

const sitesOf = (p) => [...new Set(p.placements.map((x) => x.site).filter(Boolean))];

/** Marks the best value of a row (lowest, or highest with `high`) in each cell's class. */
function bestIndex(values, high = false) {
  const xs = values.map((v) => (v === null || v === undefined || Number.isNaN(v) ? null : v));
  const real = xs.filter((v) => v !== null);
  if (real.length < 2 || real.every((v) => v === real[0])) return new Set();
  const target = high ? Math.max(...real) : Math.min(...real);
  return new Set(xs.map((v, i) => (v === target ? i : -1)).filter((i) => i >= 0));
}

function compareTable(plans, actions) {
  const col = (p) => (p.recommended ? 'rec' : '');
  const head = h('tr', {},
    h('th', { scope: 'col', class: 'dim' }, t('design.cmp.dimension')),
    plans.map((p) => h('th', { scope: 'col', class: col(p), dataset: { plan: p.id } },
      h('div', { class: 'design-obj' }, objectiveLabel(p.objective)),
      h('div', { class: 'design-obj-desc' }, objectiveDesc(p.objective, p.objective_description)),
      h('div', { class: 'design-obj-badges' },
        p.recommended ? h('span', { class: 'badge ok design-star' }, `★ ${t('design.cmp.recommended')}`) : null,
        p.state !== 'proposed' ? badge({ confirmed: 'info', executing: 'running', completed: 'succeeded', failed: 'failed', cancelled: 'cancelled' }[p.state] || 'pending', stateLabel(p.state)) : null))));
  const row = (label, cells, { best, cls = '', sub } = {}) => h('tr', { class: cls },
    h('th', { scope: 'row', class: 'dim' }, label, sub ? h('div', { class: 'design-row-sub' }, sub) : null),
    plans.map((p, i) => h('td', { class: [col(p), best?.has(i) ? 'best' : ''].filter(Boolean).join(' ') || null },
      cells(p, i), best?.has(i) ? h('span', { class: 'design-best', title: t('design.cmp.best') }, ` ${t('design.cmp.best.short')}`) : null)));
  const dimCell = (d) => (p) => {
    const dim = p.feasibility?.[d];
    if (!dim) return '–';
    return h('div', { class: `design-dim ${dim.ok ? 'ok' : 'bad'}` },
      h('span', { class: 'design-mark', 'aria-hidden': 'true' }, dim.ok ? '✓' : '✗'),
      h('span', { class: 'design-sr' }, dim.ok ? t('design.cmp.ok') : t('design.cmp.notok')),
      h('ul', {}, dim.detail.map((x) => h('li', {}, say(x)))));
  };
  const hours = plans[0]?.hours;
  const body = [
    row(t('design.cmp.cost_h'), (p) => h('strong', {}, `${money(p.cost_per_hour)}/h`), { best: bestIndex(plans.map((p) => p.cost_per_hour)) }),
    row(t('design.cmp.total'), (p) => money(p.total_cost), { best: bestIndex(plans.map((p) => p.total_cost)), sub: t('design.cmp.total.sub', { h: fmtNumber(hours, 1) }) }),
    row(t('design.cmp.latency'), (p) => (p.max_latency_ms === null || p.max_latency_ms === undefined ? h('span', { class: 'muted' }, t('design.cmp.nolinks')) : `${fmtNumber(p.max_latency_ms, 1)} ms`),
      { best: bestIndex(plans.map((p) => p.max_latency_ms)), sub: t('design.cmp.latency.sub') }),
    row(t('design.cmp.green'), (p) => h('span', {}, h('strong', {}, fmtNumber(p.green_score, 0)), ' / 100'), { best: bestIndex(plans.map((p) => p.green_score), true), sub: t('design.cmp.green.sub') }),
    row(t('design.cmp.carbon'), (p) => `${fmtKg(p.carbon_kg_per_hour)} CO₂/h`, { best: bestIndex(plans.map((p) => p.carbon_kg_per_hour)) }),
    row(t('design.cmp.power'), (p) => `${fmtNumber(p.power_kw, 3)} kW`),
    row(t('design.cmp.sites'), (p) => {
      const s = sitesOf(p);
      return s.length ? h('span', {}, h('strong', {}, String(s.length)), ` · ${s.join(', ')}`) : '–';
    }),
    ...DIMS.map((d) => row(t(`design.dim.${d}`), dimCell(d), { cls: 'feas', sub: t('design.cmp.feas.sub') })),
    row(t('design.cmp.feasible'), (p) => badge(p.feasible ? 'ok' : 'bad', p.feasible ? t('design.cmp.feasible.yes') : t('design.cmp.feasible.no'))),
    row(t('design.cmp.reasons'), (p) => h('ul', { class: 'design-reasons' }, p.reasons.map((x) => h('li', {}, say(x))))),
    row('', (p) => actions(p), { cls: 'actions' }),
  ];
  return h('div', { class: 'table-wrap design-compare-wrap' },
    h('table', { class: 'data design-compare', dataset: { test: 'plan-compare' } },
      h('caption', { class: 'design-sr' }, t('design.cmp.caption')),
      h('thead', {}, head), h('tbody', {}, body)));
}

function placementTable(plans) {
  const nodes = plans[0]?.nodes?.length ? plans[0].nodes : [...new Set(plans.flatMap((p) => p.placements.map((x) => x.node)))].map((name) => ({ name }));
  const cell = (p, node) => {
    const ps = p.placements.filter((x) => x.node === node.name);
    if (!ps.length) return h('span', { class: 'muted' }, node.type === 'network' || node.type === 'security' ? t('design.place.config') : '–');
    const bySite = new Map();
    const out = [];
    for (const x of ps) {
      if (!x.site) {
        out.push(h('div', { class: 'design-unplaced' }, t('design.place.unplaced', { r: x.replica, why: x.unplaced_reason || t('design.place.noroom') })));
        continue;
      }
      if (!bySite.has(x.site)) bySite.set(x.site, []);
      bySite.get(x.site).push(x);
    }
    for (const [site, xs] of bySite) {
      out.push(h('div', { class: 'design-place', title: xs.map((x) => `#${x.replica} ${x.host || ''} · ${money(x.cost_per_hour, 3)}/h`).join('\n') },
        h('strong', {}, site), xs.length > 1 ? ` ×${xs.length}` : '',
        h('span', { class: 'muted' }, ` · ${money(xs.reduce((a, x) => a + x.cost_per_hour, 0), 3)}/h`)));
    }
    return out;
  };
  return h('div', { class: 'table-wrap' },
    h('table', { class: 'data design-placement' },
      h('caption', { class: 'design-sr' }, t('design.place.title')),
      h('thead', {}, h('tr', {},
        h('th', { scope: 'col' }, t('design.place.node')),
        plans.map((p) => h('th', { scope: 'col', class: p.recommended ? 'rec' : null }, objectiveLabel(p.objective), p.recommended ? ' ★' : '')))),
      h('tbody', {}, nodes.map((n) => h('tr', {},
        h('th', { scope: 'row' },
          h('span', { class: 'design-type' }, h('i', { style: { background: NODE_COLORS[n.type] || '#718096' }, 'aria-hidden': 'true' }), h('code', {}, n.name)),
          n.type ? h('div', { class: 'design-row-sub' }, typeLabel(n.type), n.replicas > 1 ? ` ×${n.replicas}` : '') : null),
        plans.map((p) => h('td', { class: p.recommended ? 'rec' : null }, cell(p, n))))))));
}

function compareChart(el, plans) {
  const metrics = [
    { key: 'cost', label: t('design.chart.cost'), value: (p) => p.cost_per_hour, fmt: (v) => `${money(v)}/h`, short: (v) => fmtNumber(v, 2) },
    { key: 'latency', label: t('design.chart.latency'), value: (p) => p.max_latency_ms ?? 0, fmt: (v) => `${fmtNumber(v, 1)} ms`, short: (v) => fmtNumber(v, 1) },
    { key: 'carbon', label: t('design.chart.carbon'), value: (p) => p.carbon_kg_per_hour, fmt: (v) => `${fmtNumber(v, 3)} kg/h`, short: (v) => fmtNumber(v, 2) },
  ];
  const max = metrics.map((m) => Math.max(0, ...plans.map(m.value)));
  chart(el, {
    tooltip: {
      trigger: 'axis',
      axisPointer: { type: 'shadow' },
      formatter: (items) => {
        const m = metrics[items[0].dataIndex];
        return [`<b>${esc(m.label)}</b>`, ...items.map((it) => `${it.marker}${esc(it.seriesName)}: ${esc(m.fmt(it.data.real))} (${fmtNumber(it.data.value, 0)} %)`)].join('<br>');
      },
    },
    legend: { top: 0 },
    grid: { left: 46, right: 10, top: 56, bottom: 26 },
    xAxis: { type: 'category', data: metrics.map((m) => m.label) },
    yAxis: { type: 'value', max: 100, axisLabel: { formatter: '{value} %' } },
    series: plans.map((p) => ({
      name: `${objectiveLabel(p.objective)}${p.recommended ? ' ★' : ''}`,
      type: 'bar',
      barMaxWidth: 38,
      itemStyle: { color: PLAN_COLORS[p.objective] || '#718096', borderColor: p.recommended ? '#1d2433' : null, borderWidth: p.recommended ? 1.5 : 0 },
      label: { show: true, position: 'top', fontSize: 9.5, color: '#4a5568', formatter: (it) => metrics[it.dataIndex].short(it.data.real) },
      data: metrics.map((m, i) => ({ value: max[i] > 0 ? (100 * m.value(p)) / max[i] : 0, real: m.value(p) })),
    })),
  });
}

function inputsLine(plan) {
  const entries = Object.entries(plan.inputs || {});
  if (!entries.length) return null;
  return h('ul', { class: 'design-inputs', 'aria-label': t('design.inputs') },
    entries.map(([k, v]) => h('li', {}, h('code', {}, k), ' = ', v === '' ? h('span', { class: 'muted' }, t('design.in.emptystr')) : showValue(v))));
}

export async function renderPlans(main, ctx, id) {
  const back = backLink('#/design', t('design.back.market'));
  clear(main, back, loading());
  let plans;
  try {
    plans = await get(`/api/v1/plans/${encodeURIComponent(id)}/alternatives`);
  } catch (e) {
    clear(main, back, h('h1', {}, t('design.plans')), errorState(e, () => renderPlans(main, ctx, id)));
    return;
  }
  const order = (o) => (OBJECTIVES.indexOf(o) < 0 ? 99 : OBJECTIVES.indexOf(o));
  plans.sort((a, b) => order(a.objective) - order(b.objective));
  const p0 = plans[0];
  const rec = plans.find((p) => p.recommended);
  const alert = alertBox();

  const confirm = async (p, btn) => {
    btn.disabled = true;
    alert.show(null);
    try {
      await send('POST', `/api/v1/plans/${encodeURIComponent(p.id)}/confirm`);
      toast(t('design.confirmed', { obj: objectiveLabel(p.objective) }), 'ok');
      ctx.navigate(`#/design/instructions/${encodeURIComponent(p.id)}`);
    } catch (e) {
      alert.show(h('strong', {}, t('design.err.confirm')), ' ', e.message);
      btn.disabled = false;
    }
  };
  const actions = (p) => {
    if (p.state === 'proposed') {
      const blocked = !p.feasibility?.compute?.ok;
      return h('div', { class: 'design-actions' },
        h('button', {
          type: 'button', class: p.recommended ? '' : 'secondary', disabled: blocked,
          title: blocked ? t('design.cmp.cannot') : null,
          'aria-label': t('design.cmp.confirm.label', { obj: objectiveLabel(p.objective) }),
          dataset: { confirm: p.id },
          on: { click: (e) => confirm(p, e.currentTarget) },
        }, t('design.cmp.confirm')),
        blocked ? h('div', { class: 'design-row-sub' }, t('design.cmp.cannot')) : null);
    }
    return h('div', { class: 'design-actions' },
      h('a', { class: 'button secondary', href: `#/design/instructions/${encodeURIComponent(p.id)}` }, t('design.cmp.instructions')),
      p.flow_id ? h('a', { class: 'button secondary', href: `#/flows/${encodeURIComponent(p.flow_id)}` }, t('design.cmp.flow')) : null);
  };

  const chartEl = h('div', { class: 'chart design-cmp-chart', role: 'img', 'aria-label': t('design.chart.label') });
  document.title = `${t('design.plans')} · ${p0.template_name}`;
  clear(main,
    backLink(`#/design/template/${encodeURIComponent(p0.template_id)}`, t('design.back.template', { name: p0.template_name })),
    h('div', { class: 'page-head' },
      h('h1', {}, t('design.plans.title', { name: p0.template_name })),
      h('span', { class: 'muted' }, t('design.version', { v: p0.template_version })),
      h('a', { class: 'button secondary', href: `#/design/template/${encodeURIComponent(p0.template_id)}?plan=1` }, t('design.replan'))),
    h('div', { class: 'muted design-meta' },
      h('span', {}, t('design.plans.made', { at: fmtTime(p0.created_at) })),
      h('span', {}, t('design.plans.hours', { h: fmtNumber(p0.hours, 1) })),
      h('span', {}, t('design.plans.count', { n: plans.length }))),
    inputsLine(p0),
    alert,
    h('div', { class: 'grid cols-2 design-plan-top' },
      rec ? h('section', { class: 'panel design-rec-box', 'aria-labelledby': 'design-rec-h' },
        h('h2', { id: 'design-rec-h' }, `★ ${t('design.cmp.rec.title', { obj: objectiveLabel(rec.objective) })}`),
        h('p', { class: 'muted design-panel-note' }, objectiveDesc(rec.objective, rec.objective_description)),
        h('ul', { class: 'design-reasons' }, rec.reasons.map((x) => h('li', {}, say(x)))),
        h('div', { class: 'design-rec-figures' },
          h('div', {}, h('span', { class: 'muted' }, t('design.cmp.cost_h')), h('strong', {}, `${money(rec.cost_per_hour)}/h`)),
          h('div', {}, h('span', { class: 'muted' }, t('design.cmp.total')), h('strong', {}, money(rec.total_cost))),
          h('div', {}, h('span', { class: 'muted' }, t('design.cmp.latency')), h('strong', {}, rec.max_latency_ms == null ? '–' : `${fmtNumber(rec.max_latency_ms, 1)} ms`)),
          h('div', {}, h('span', { class: 'muted' }, t('design.cmp.sites')), h('strong', {}, String(sitesOf(rec).length)))),
        h('div', { class: 'form-actions' }, actions(rec)))
        : h('section', { class: 'panel design-rec-box none' }, h('p', { class: 'design-note bad', role: 'note' }, t('design.cmp.norec'))),
      h('section', { class: 'panel', 'aria-labelledby': 'design-chart-h' },
        h('h2', { id: 'design-chart-h' }, t('design.chart.title')),
        h('p', { class: 'muted design-panel-note' }, t('design.chart.note')),
        chartEl)),
    h('section', { class: 'panel', 'aria-labelledby': 'design-cmp-h' },
      h('h2', { id: 'design-cmp-h' }, t('design.cmp.title')),
      compareTable(plans, actions)),
    h('section', { class: 'panel', 'aria-labelledby': 'design-place-h' },
      h('h2', { id: 'design-place-h' }, t('design.place.title')),
      placementTable(plans)));
  compareChart(chartEl, plans);
}
