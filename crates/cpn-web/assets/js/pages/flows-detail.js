// One workflow (#/flows/<id>): the process graph (steps in dependency layers, left to right,
// coloured by state, the critical path in gold), the chosen step's attempts, times, output
// and tasks, pause / resume / cancel, the lean report (KPI tiles and a wait-then-run Gantt)
// and the journal. flow.state / flow.step events of this workflow refresh it in place.
import { get, post, followLogs, ApiError } from '../api.js';
import { t, lang, fmtTime, fmtNumber, fmtPct } from '../i18n.js';
import { h, clear, table, errorState, loading, empty, props, kpi, chart, toast, debounce, quiet } from '../ui.js';
import {
  STEP_STATES, STEP_COLORS, LIGHT, CRITICAL, TERMINAL, stateBadge, stepLabel, progress, flowSeconds, dur,
} from './flows-common.js';

const esc = (s) => window.echarts.format.encodeHTML(String(s ?? ''));
const secs = (a, b) => (a && b ? Math.max(0, (Date.parse(b) - Date.parse(a)) / 1000) : null);
const taskLink = (id, label) => h('a', { href: `#/tasks/${encodeURIComponent(id)}`, class: 'mono', title: id }, label || id);
const json = (v) => JSON.stringify(v, null, 2);

const ms = (d) => String(d.getMilliseconds()).padStart(3, '0');
/** Date and time with milliseconds: journal entries are often within one second. */
function fmtStamp(iso) {
  if (!iso) return '–';
  return `${fmtTime(iso)}.${ms(new Date(iso))}`;
}
/** Time of day with milliseconds (the date is in the workflow's summary). */
function fmtClock(iso) {
  if (!iso) return '–';
  const d = new Date(iso);
  return `${d.toLocaleTimeString(lang === 'zh' ? 'zh-CN' : 'en-GB', { hour12: false })}.${ms(d)}`;
}

/**
 * Layers by dependency (longest path from a root), left to right. An edge over several layers
 * gets a waypoint in each layer it crosses (as in a Sugiyama layout), so that it runs in a
 * slot of its own rather than under the steps between; within a layer, steps and waypoints
 * are ordered by the mean position of their parents to keep crossings few.
 */
function layoutSteps(steps) {
  const byId = new Map(steps.map((s) => [s.id, s]));
  const layer = new Map();
  const visit = (id, seen = new Set()) => {
    if (layer.has(id)) return layer.get(id);
    if (seen.has(id)) return 0;
    seen.add(id);
    const deps = (byId.get(id)?.depends_on || []).filter((d) => byId.has(d));
    const l = deps.length ? 1 + Math.max(...deps.map((d) => visit(d, seen))) : 0;
    layer.set(id, l);
    return l;
  };
  steps.forEach((s) => visit(s.id));
  const parents = new Map(steps.map((s) => [s.id, (s.depends_on || []).filter((d) => byId.has(d))]));
  const layers = [];
  const add = (id, l) => (layers[l] ||= []).push(id);
  for (const s of steps) add(s.id, layer.get(s.id));
  const waypoints = new Map(); // "dep\0id" → ids of the waypoints, in order
  for (const s of steps) {
    for (const d of parents.get(s.id)) {
      if (layer.get(s.id) - layer.get(d) <= 1) continue;
      const chain = [];
      let prev = d;
      for (let l = layer.get(d) + 1; l < layer.get(s.id); l++) {
        const w = `\u0001${d}\u0000${s.id}\u0000${l}`;
        parents.set(w, [prev]);
        layer.set(w, l);
        add(w, l);
        chain.push(w);
        prev = w;
      }
      waypoints.set(`${d}\u0000${s.id}`, chain);
      const last = prev;
      parents.set(s.id, parents.get(s.id).map((x) => (x === d ? last : x)));
    }
  }
  const pos = new Map();
  layers.forEach((ids, li) => {
    if (li > 0) {
      const bary = (id) => {
        const ps = parents.get(id).filter((p) => pos.has(p));
        return ps.length ? ps.reduce((a, p) => a + pos.get(p), 0) / ps.length : 0;
      };
      const order = new Map(ids.map((id, i) => [id, i]));
      const b = new Map(ids.map((id) => [id, bary(id)]));
      ids.sort((x, y) => b.get(x) - b.get(y) || order.get(x) - order.get(y));
    }
    ids.forEach((id, i) => pos.set(id, i - (ids.length - 1) / 2));
  });
  return { layer, pos, waypoints, columns: layers.length, rows: Math.max(1, ...layers.map((l) => l.length)) };
}

/** A short description of an action. */
function actionText(a) {
  if (!a) return '–';
  switch (a.kind) {
    case 'task': return t('flows.action.task', { name: a.task?.name ?? '' });
    case 'allocate': return t('flows.action.allocate', { node: a.node });
    case 'release': return t('flows.action.release', { allocation: a.allocation });
    case 'sleep': return t('flows.action.sleep', { seconds: fmtNumber(a.seconds, 2) });
    case 'noop': return t('flows.action.noop');
    case 'notify': return t('flows.action.notify', { message: a.message });
    case 'fail': return t('flows.action.fail', { message: a.message });
    case 'simulate': return t('flows.action.simulate', { reason: a.reason || '–' });
    default: return a.kind;
  }
}

/** The command of a task action, as one line. */
function taskCommand(task) {
  if (!task) return null;
  if (task.script) return task.script;
  return (task.command || []).map((c) => (/\s/.test(c) ? JSON.stringify(c) : c)).join(' ');
}

/** Each attempt (and compensation) of a step, from the journal, with its tasks. */
function attemptsOf(stepId, journal) {
  const out = [];
  let cur = null;
  for (const e of journal) {
    if (e.step !== stepId) continue;
    switch (e.type) {
      case 'step_started':
        cur = { attempt: e.attempt, item: e.item, start: e.at, tasks: [], result: 'running' };
        out.push(cur);
        break;
      case 'compensation_started':
        cur = { compensation: true, start: e.at, tasks: [], result: 'running' };
        out.push(cur);
        break;
      case 'step_progress':
        if (cur && e.data?.task_id) cur.tasks.push(e.data.task_id);
        break;
      case 'step_succeeded':
      case 'compensation_succeeded':
        if (cur) Object.assign(cur, { end: e.at, result: 'succeeded', outputs: e.outputs });
        break;
      case 'step_simulated':
        if (cur) Object.assign(cur, { end: e.at, result: 'simulated', outputs: e.outputs });
        break;
      case 'step_failed':
      case 'compensation_failed':
        if (cur) Object.assign(cur, { end: e.at, result: e.retry_at ? 'retry' : 'failed', error: e.error, retryAt: e.retry_at });
        break;
      case 'step_cancelled':
        if (cur && cur.result === 'running') Object.assign(cur, { end: e.at, result: 'cancelled' });
        break;
      default:
    }
  }
  return out;
}

function resultBadge(a) {
  const cls = { running: 'running', succeeded: 'succeeded', simulated: 'simulated', failed: 'failed', retry: 'warn', cancelled: 'cancelled' }[a.result];
  const label = a.result === 'retry' ? t('flows.result.retry', { at: fmtClock(a.retryAt) }) : t(`flows.result.${a.result}`);
  return h('span', { class: `badge ${cls}` }, label);
}

/** One journal entry in words, with a link to the task it names. */
function journalText(e) {
  const vars = {
    step: e.step, attempt: e.attempt, item: e.item, error: e.error ?? '', reason: e.reason ?? '',
    at: fmtClock(e.retry_at), type: e.type,
    queue: dur(e.timing?.queue_s ?? 0), run: e.timing?.run_s === undefined || e.timing?.run_s === null ? '…' : dur(e.timing.run_s),
  };
  let key = `flows.j.${e.type}`;
  if (e.type === 'step_started' && e.item !== null && e.item !== undefined) key = 'flows.j.step_started.item';
  if (e.type === 'step_failed' && e.retry_at) key = 'flows.j.step_failed.retry';
  if (e.type === 'step_progress') {
    if (e.data?.task_id) return [t('flows.j.step_progress.task', vars), ' ', taskLink(e.data.task_id)];
    return t('flows.j.step_progress', { ...vars, what: JSON.stringify(e.data ?? {}) });
  }
  const known = ['flow_started', 'flow_paused', 'flow_resumed', 'flow_compensating', 'flow_succeeded', 'flow_failed',
    'flow_cancelled', 'step_ready', 'step_skipped', 'step_started', 'step_succeeded', 'step_simulated', 'step_timing', 'step_failed', 'step_cancelled',
    'compensation_started', 'compensation_succeeded', 'compensation_failed'];
  if (!known.includes(e.type)) key = 'flows.j.other';
  const text = t(key, vars);
  if (e.type === 'flow_started' && e.inputs && Object.keys(e.inputs).length) return [text, ' ', h('code', {}, JSON.stringify(e.inputs))];
  return text;
}

export async function renderDetail(main, ctx, id) {
  const back = h('a', { class: 'back', href: '#/flows' }, `← ${t('flows.back')}`);
  clear(main, h('div', { class: 'flows flow-detail' }, back, h('h1', {}, t('flows.title')), loading()));
  let flow;
  let report;
  let journal;
  try {
    // The workflow first: an unknown id then costs one 404, not three.
    flow = await get(`/api/v1/flows/${encodeURIComponent(id)}`);
    [report, journal] = await Promise.all([
      get(`/api/v1/flows/${encodeURIComponent(id)}/report`),
      get(`/api/v1/flows/${encodeURIComponent(id)}/journal`),
    ]);
  } catch (e) {
    const err = e instanceof ApiError && e.status === 404 ? new Error(t('flows.notfound', { id })) : e;
    clear(main, h('div', { class: 'flows flow-detail' }, back, h('h1', {}, t('flows.title')),
      errorState(err, () => renderDetail(main, ctx, id))));
    return undefined;
  }

  const defs = new Map(flow.definition.steps.map((s) => [s.id, s]));
  const geo = layoutSteps(flow.definition.steps);
  let selected = ctx.query.get('step');
  if (!defs.has(selected)) {
    selected = (flow.steps.find((s) => s.state === 'failed') || flow.steps.find((s) => s.state === 'running')
      || flow.steps.find((s) => s.id === report.critical_path?.at(-1)) || flow.steps[0])?.id ?? null;
  }

  // The skeleton, built once; paint() fills it from flow, report and journal.
  const title = h('h1', {});
  const stateBox = h('span', {});
  const actions = h('div', { class: 'flow-actions' });
  const actionError = h('div', { class: 'form-error', role: 'alert' });
  const staleNote = h('div', { class: 'muted small', role: 'status' });
  const errorBox = h('div', {});
  const summary = h('div', {});
  const widest = Math.max(...flow.definition.steps.map((s) => s.id.length));
  // Node geometry in pixels: the container is sized so that the graph is drawn at scale 1
  // (wide graphs scroll sideways), so nodes never overlap.
  const nodeW = Math.max(96, Math.min(200, widest * 8 + 36));
  const NODE_H = 46;
  const ROW = 78;
  const COL = nodeW + 64;
  const PAD = { top: 34, bottom: 64, side: nodeW / 2 + 14 };
  const graphEl = h('div', {
    class: 'chart flow-graph', role: 'img', 'aria-label': t('flows.graph.aria', { name: flow.name }),
    dataset: { test: 'flow-graph' },
    style: {
      height: `${Math.max(190, (geo.rows - 1) * ROW + PAD.top + PAD.bottom + 30)}px`,
      minWidth: `${(geo.columns - 1) * COL + 2 * PAD.side}px`,
    },
  });
  const stepPanel = h('section', { class: 'panel step-panel', 'aria-live': 'polite', 'aria-labelledby': 'flow-step-h' });
  const stepsBox = h('div', {});
  const kpis = h('div', { class: 'grid cols-4 flow-kpis' });
  const criticalLine = h('p', { class: 'critical-line' });
  const ganttEl = h('div', {
    class: 'chart flow-gantt', role: 'img', 'aria-label': t('flows.gantt.aria'),
    style: { height: `${Math.max(180, flow.definition.steps.length * 32 + 90)}px` },
  });
  const ganttEmpty = h('div', {});
  const journalBox = h('div', {});

  clear(main, h('div', { class: 'flows flow-detail' },
    back,
    h('div', { class: 'page-head' }, title, stateBox, actions),
    actionError,
    staleNote,
    errorBox,
    h('section', { class: 'panel flow-summary' }, summary),
    h('section', { class: 'panel', 'aria-labelledby': 'flow-graph-h' },
      h('h2', { id: 'flow-graph-h' }, t('flows.graph')),
      h('p', { class: 'muted small' }, t('flows.graph.hint'), ' ',
        h('span', { class: 'critical-swatch', 'aria-hidden': 'true' }), ' ', t('flows.graph.critical')),
      h('div', { class: 'graph-scroll' }, graphEl)),
    h('div', { class: 'split flow-split' },
      h('section', { class: 'panel', 'aria-labelledby': 'flow-steps-h' }, h('h2', { id: 'flow-steps-h' }, t('flows.steps')), stepsBox),
      stepPanel),
    h('section', { class: 'panel flow-report', dataset: { test: 'flow-report' }, 'aria-labelledby': 'flow-report-h' },
      h('h2', { id: 'flow-report-h' }, t('flows.report')),
      h('p', { class: 'muted small' }, t('flows.report.intro')),
      kpis,
      criticalLine,
      h('h3', {}, t('flows.gantt')),
      ganttEmpty,
      ganttEl),
    h('section', { class: 'panel', 'aria-labelledby': 'flow-journal-h' },
      h('h2', { id: 'flow-journal-h' }, t('flows.journal')),
      h('p', { class: 'muted small' }, t('flows.journal.intro')),
      journalBox),
    h('details', { class: 'panel flow-definition' },
      h('summary', {}, t('flows.definition')),
      h('pre', { class: 'mono' }, json(flow.definition)))));

  const graph = chart(graphEl, {});
  const gantt = chart(ganttEl, {});
  graph.on('click', (p) => {
    if (p.dataType === 'node') select(p.data.id);
  });
  gantt.on('click', (p) => {
    const sid = report.steps[p.dataIndex]?.id;
    if (sid) select(sid);
  });

  // ---- actions
  let busy = false;
  async function act(kind) {
    if (busy) return;
    busy = true;
    actionError.textContent = '';
    paintActions();
    const verb = t(`flows.action.verb.${kind === 'cancel-rollback' ? 'cancel' : kind}`);
    try {
      if (kind === 'again') {
        const inputs = journal.find((e) => e.type === 'flow_started')?.inputs;
        const f = await post('/api/v1/flows', { definition: flow.definition, ...(inputs && Object.keys(inputs).length ? { inputs } : {}) });
        toast(t('flows.start.started', { name: f.name }));
        ctx.navigate(`#/flows/${encodeURIComponent(f.id)}`);
        return;
      }
      const path = kind === 'cancel-rollback' ? 'cancel' : kind;
      const body = kind === 'cancel-rollback' ? { compensate: true } : kind === 'cancel' ? { compensate: false } : {};
      flow = await post(`/api/v1/flows/${encodeURIComponent(id)}/${path}`, body);
      toast(t(`flows.action.done.${path}`));
      paint();
      refresh();
    } catch (e) {
      actionError.textContent = t('flows.action.failed', { action: verb, message: e.message });
    } finally {
      busy = false;
      paintActions();
    }
  }
  function paintActions() {
    const b = (kind, label, cls = 'secondary') => h('button', {
      type: 'button', class: cls, disabled: busy, dataset: { action: kind }, on: { click: () => act(kind) },
    }, label);
    const s = flow.state;
    clear(actions,
      s === 'running' ? b('pause', t('flows.pause')) : null,
      s === 'paused' ? b('resume', t('flows.resume'), '') : null,
      s === 'running' || s === 'paused' ? b('cancel', t('flows.cancel')) : null,
      s === 'running' || s === 'paused' ? b('cancel-rollback', t('flows.cancel.compensate'), 'danger') : null,
      TERMINAL.has(s) ? b('again', t('flows.again')) : null);
  }

  // ---- step selection
  function select(sid) {
    selected = sid;
    const q = new URLSearchParams(ctx.query);
    q.set('step', sid);
    history.replaceState(null, '', `#/flows/${encodeURIComponent(id)}?${q}`);
    paintGraph();
    paintGantt();
    paintStep();
    paintSteps();
  }

  // ---- the graph
  function criticalSet() {
    return new Set(report.critical_path || []);
  }
  // Edges run from the right side of a step to the left side of the next, so that their
  // arrows show: "ports" are invisible nodes half a node's width from the centres, in the
  // units of the graph's view (measured after each draw, as the view fits the container).
  let portDx = nodeW / 2;
  function measurePorts() {
    if (geo.columns < 2) return false;
    const a = graph.convertToPixel({ seriesIndex: 0 }, [0, 0]);
    const b = graph.convertToPixel({ seriesIndex: 0 }, [COL, 0]);
    const scale = a && b ? (b[0] - a[0]) / COL : 0;
    if (!(scale > 0)) return false;
    const dx = (nodeW / 2 + 1) / scale;
    if (Math.abs(dx - portDx) < 0.5) return false;
    portDx = dx;
    return true;
  }
  function paintGraph() {
    drawGraph();
    if (measurePorts()) drawGraph();
  }
  function drawGraph() {
    // A graph of few layers is not stretched over a wide screen.
    const spread = (geo.columns - 1) * COL * 1.5;
    const room = graphEl.clientWidth - 2 * PAD.side;
    const side = geo.columns > 1 && room > spread ? PAD.side + (room - spread) / 2 : PAD.side;
    const crit = report.critical_path || [];
    const critSet = new Set(crit);
    const stateOf = new Map(flow.steps.map((s) => [s.id, s]));
    const at = (id) => [geo.layer.get(id) * COL, geo.pos.get(id) * ROW];
    const nodes = flow.definition.steps.map((d) => {
      const s = stateOf.get(d.id) || { state: 'waiting', attempts: 0 };
      const isCrit = critSet.has(d.id);
      const isSel = d.id === selected;
      const [x, y] = at(d.id);
      return {
        id: d.id,
        name: d.id,
        x,
        y,
        category: STEP_STATES.indexOf(s.state),
        value: s.state,
        symbolSize: [nodeW, NODE_H],
        itemStyle: {
          color: STEP_COLORS[s.state],
          borderColor: isSel ? '#1d2433' : isCrit ? CRITICAL : s.state === 'skipped' ? '#9aa5b4' : 'rgba(0,0,0,0.15)',
          borderWidth: isSel || isCrit ? 3 : 1,
          borderType: s.state === 'skipped' ? 'dashed' : 'solid',
          shadowBlur: isSel ? 10 : 0,
          shadowColor: 'rgba(0,0,0,0.35)',
        },
        label: { color: LIGHT.has(s.state) ? '#1d2433' : '#fff' },
      };
    });
    const port = (id, side) => {
      const [x, y] = at(id);
      return {
        id: `${id}\u0000${side}`, name: '', x: x + (side === 'out' ? portDx : -portDx), y,
        symbolSize: 0, silent: true, label: { show: false }, tooltip: { show: false }, itemStyle: { opacity: 0 },
      };
    };
    const ports = new Map();
    const portOf = (id, side) => {
      const key = `${id}\u0000${side}`;
      if (!ports.has(key)) ports.set(key, port(id, side));
      return key;
    };
    const links = [];
    for (const d of flow.definition.steps) {
      for (const dep of d.depends_on || []) {
        if (!defs.has(dep)) continue;
        const i = crit.indexOf(dep);
        const isCrit = i >= 0 && crit[i + 1] === d.id;
        const lineStyle = isCrit ? { color: CRITICAL, width: 4, opacity: 1 } : { color: '#8a96a8', width: 1.5, opacity: 0.9 };
        // dep's right side → through each waypoint's slot → d's left side, arrow at the end.
        const path = [portOf(dep, 'out')];
        for (const w of geo.waypoints.get(`${dep}\u0000${d.id}`) || []) path.push(portOf(w, 'in'), portOf(w, 'out'));
        path.push(portOf(d.id, 'in'));
        for (let k = 1; k < path.length; k++) {
          const last = k === path.length - 1;
          links.push({ source: path[k - 1], target: path[k], lineStyle, ...(last ? {} : { symbol: ['none', 'none'] }) });
        }
      }
    }
    graph.setOption({
      // Repaints merge (no replay of the opening animation); none under automation.
      animation: !quiet,
      animationDurationUpdate: 300,
      tooltip: {
        confine: true,
        formatter: (p) => {
          if (p.dataType !== 'node' || !defs.has(p.data.id)) return '';
          const s = stateOf.get(p.data.id) || {};
          const d = defs.get(p.data.id);
          const r = report.steps.find((x) => x.id === p.data.id);
          return [
            `<b>${esc(p.data.id)}</b> · ${esc(stepLabel(s.state || 'waiting'))}`,
            esc(actionText(d?.action)),
            `${esc(t('flows.detail.attempts'))}: ${s.attempts ?? 0}`,
            r?.start ? `${esc(t('flows.col.run'))}: ${esc(dur(r.run_s ?? r.duration_s))} · ${esc(t('flows.col.queue'))}: ${esc(dur(r.queue_s || 0))} · ${esc(t('flows.col.wait'))}: ${esc(dur(r.wait_s))}` : '',
            critSet.has(p.data.id) ? `<span style="color:${CRITICAL}">★ ${esc(t('flows.graph.critical'))}</span>` : '',
          ].filter(Boolean).join('<br>');
        },
      },
      legend: {
        bottom: 0, selectedMode: false, icon: 'roundRect', itemWidth: 14, itemHeight: 10,
        data: STEP_STATES.map(stepLabel),
      },
      series: [{
        type: 'graph',
        layout: 'none',
        roam: false,
        preserveAspect: true,
        top: PAD.top, bottom: PAD.bottom, left: side, right: side,
        symbol: 'roundRect',
        edgeSymbol: ['none', 'arrow'],
        edgeSymbolSize: [0, 10],
        categories: STEP_STATES.map((st) => ({ name: stepLabel(st), itemStyle: { color: STEP_COLORS[st] } })),
        label: {
          show: true,
          formatter: (p) => `{id|${p.data.id}}\n{st|${stepLabel(p.data.value)}}`,
          rich: { id: { fontWeight: 'bold', fontSize: 13, lineHeight: 17 }, st: { fontSize: 11, lineHeight: 14 } },
        },
        emphasis: { disabled: true },
        data: [...nodes, ...ports.values()],
        links,
      }],
    });
  }
  // The view refits when the container resizes: move the ports with it.
  const portsRo = new ResizeObserver(() => {
    if (graph.isDisposed()) return;
    graph.resize();
    paintGraph();
  });
  portsRo.observe(graphEl);

  // ---- the report
  function paintReport() {
    const crit = report.critical_path || [];
    const waits = report.steps.reduce((a, s) => a + (s.wait_s || 0), 0);
    clear(kpis,
      kpi(t('flows.kpi.makespan'), dur(report.makespan_s), t('flows.kpi.makespan.sub', { work: dur(report.work_s), queue: dur(report.queue_s || 0), wait: dur(waits) })),
      kpi(t('flows.kpi.parallel'), t('flows.kpi.parallel.v', { v: fmtNumber(report.parallel_rate, 2) }), t('flows.kpi.parallel.sub')),
      kpi(t('flows.kpi.serial'), fmtPct(report.serial_rate), t('flows.kpi.serial.sub')),
      kpi(t('flows.kpi.critical'), dur(report.critical_path_s),
        crit.length ? t('flows.kpi.critical.sub', { path: crit.join(' → ') }) : t('flows.kpi.critical.none')));
    for (const [i, k] of ['makespan', 'parallel', 'serial', 'critical'].entries()) kpis.children[i].dataset.kpi = k;
    clear(criticalLine, crit.length
      ? [h('span', { class: 'critical-swatch', 'aria-hidden': 'true' }), ' ', t('flows.graph.critical'), ': ',
        crit.map((sid, i) => [i ? ' → ' : '', h('a', {
          href: '#', class: 'mono', on: { click: (e) => { e.preventDefault(); select(sid); } },
        }, sid)])]
      : null);
    paintGantt();
  }
  function paintGantt() {
    const crit = criticalSet();
    const t0 = Date.parse(flow.created_at);
    const rows = report.steps.map((s) => {
      if (!s.start) return { s, offset: 0, wait: 0, queue: 0, run: 0 };
      const start = (Date.parse(s.start) - t0) / 1000;
      // A task step's queue for a node comes first, then its run (and the engine's overhead).
      const queue = Math.min(s.queue_s || 0, s.duration_s || 0);
      return { s, offset: Math.max(0, start - (s.wait_s || 0)), wait: s.wait_s || 0, queue, run: Math.max(0, (s.duration_s || 0) - queue) };
    });
    const started = rows.some((r) => r.s.start);
    clear(ganttEmpty, started ? null : empty(t('flows.gantt.empty')));
    ganttEl.style.display = started ? '' : 'none';
    if (!started) return;
    const ids = rows.map((r) => r.s.id);
    gantt.setOption({
      animation: !quiet,
      animationDurationUpdate: 300,
      grid: { left: 12, right: 24, top: 34, bottom: 40, containLabel: true },
      legend: { top: 0, selectedMode: false, data: [t('flows.gantt.wait'), t('flows.gantt.queue'), t('flows.gantt.run'), t('flows.gantt.critical')] },
      tooltip: {
        trigger: 'axis', axisPointer: { type: 'shadow' }, confine: true,
        formatter: (ps) => {
          const r = rows[ps[0]?.dataIndex];
          if (!r) return '';
          const s = r.s;
          return [
            `<b>${esc(s.id)}</b> · ${esc(stepLabel(s.state))}${crit.has(s.id) ? ` · <span style="color:${CRITICAL}">★ ${esc(t('flows.graph.critical'))}</span>` : ''}`,
            s.start ? esc(t('flows.gantt.tip.start', { s: fmtNumber(r.offset + r.wait, 2) })) : '',
            `${esc(t('flows.col.wait'))}: ${esc(dur(r.wait))}`,
            r.queue ? `${esc(t('flows.col.queue'))}: ${esc(dur(r.queue))}` : '',
            `${esc(t('flows.col.run'))}: ${esc(dur(r.s.run_s ?? r.run))}`,
          ].filter(Boolean).join('<br>');
        },
      },
      xAxis: {
        type: 'value', min: 0, name: t('flows.gantt.axis'), nameLocation: 'middle', nameGap: 26,
        axisLabel: { formatter: (v) => `${fmtNumber(v, 1)}` }, splitLine: { lineStyle: { color: '#eef1f5' } },
      },
      yAxis: {
        type: 'category', inverse: true, data: ids,
        axisLabel: {
          formatter: (v) => (crit.has(v) ? `{c|★ ${v}}` : v === selected ? `{s|${v}}` : v),
          rich: { c: { color: '#9c6b10', fontWeight: 'bold' }, s: { fontWeight: 'bold' } },
        },
      },
      series: [
        { name: 'offset', type: 'bar', stack: 'g', silent: true, itemStyle: { color: 'transparent' }, emphasis: { disabled: true }, data: rows.map((r) => r.offset), tooltip: { show: false } },
        {
          name: t('flows.gantt.wait'), type: 'bar', stack: 'g', barMaxWidth: 22,
          itemStyle: { color: '#f3d9a4', decal: null }, data: rows.map((r) => r.wait),
        },
        {
          name: t('flows.gantt.queue'), type: 'bar', stack: 'g', barMaxWidth: 22,
          itemStyle: { color: '#c7cfdb' }, data: rows.map((r) => r.queue),
        },
        {
          name: t('flows.gantt.run'), type: 'bar', stack: 'g', barMaxWidth: 22,
          itemStyle: { color: STEP_COLORS.running },
          data: rows.map((r) => ({
            value: r.run,
            itemStyle: {
              color: STEP_COLORS[r.s.state],
              borderColor: crit.has(r.s.id) ? CRITICAL : r.s.id === selected ? '#1d2433' : 'transparent',
              borderWidth: crit.has(r.s.id) || r.s.id === selected ? 3 : 0,
            },
          })),
        },
        // Only for its legend entry: the colour that outlines the critical path.
        { name: t('flows.gantt.critical'), type: 'line', data: [], itemStyle: { color: CRITICAL }, lineStyle: { color: CRITICAL, width: 3 } },
      ],
    });
  }

  // ---- the step table
  function paintSteps() {
    const crit = criticalSet();
    const timing = new Map(report.steps.map((s) => [s.id, s]));
    const rows = flow.steps;
    const tbl = table([
      { title: t('flows.col.step'), value: (s) => h('span', { class: 'mono step-id' }, crit.has(s.id) ? h('span', { class: 'crit-star', title: t('flows.graph.critical') }, '★ ') : null, s.id) },
      { title: t('flows.col.action'), value: (s) => actionText(defs.get(s.id)?.action) },
      { title: t('flows.col.state'), value: (s) => stateBadge(s.state, 'step') },
      { title: t('flows.col.attempts'), num: true, value: (s) => s.attempts },
      { title: t('flows.detail.started'), value: (s) => fmtClock(s.started_at) },
      { title: t('flows.col.wait'), num: true, value: (s) => (timing.get(s.id)?.start ? dur(timing.get(s.id).wait_s) : '–') },
      { title: t('flows.col.queue'), num: true, value: (s) => (timing.get(s.id)?.start ? dur(timing.get(s.id).queue_s || 0) : '–') },
      { title: t('flows.col.run'), num: true, value: (s) => (timing.get(s.id)?.start ? dur(timing.get(s.id).run_s ?? timing.get(s.id).duration_s) : '–') },
    ], rows, { onRow: (s) => select(s.id) });
    tbl.querySelectorAll('tbody tr').forEach((tr, i) => {
      tr.dataset.step = rows[i].id;
      tr.setAttribute('aria-selected', String(rows[i].id === selected));
      if (rows[i].id === selected) tr.classList.add('selected');
    });
    // Keep the keyboard focus on the same row across repaints.
    const focused = stepsBox.contains(document.activeElement) ? document.activeElement.closest('tr')?.dataset.step : null;
    clear(stepsBox, tbl);
    if (focused) tbl.querySelector(`tr[data-step="${CSS.escape(focused)}"]`)?.focus();
  }

  // ---- the chosen step
  let follow = null; // {taskId, stop, pre}
  const tails = new Map(); // task id → output text (finished tasks)
  function stopFollow() {
    follow?.stop();
    follow = null;
  }
  function logBlock(taskId, running) {
    if (running) {
      if (follow?.taskId !== taskId) {
        stopFollow();
        const pre = h('pre', { class: 'logs', dataset: { task: taskId } }, '');
        const stop = followLogs(taskId, {
          stream: 'all',
          onText: (txt) => {
            pre.textContent = (pre.textContent + txt).slice(-8192);
            pre.scrollTop = pre.scrollHeight;
          },
          onEnd: () => {},
        });
        follow = { taskId, stop, pre };
      }
      return [h('h3', {}, t('flows.detail.log.live')), follow.pre];
    }
    if (!tails.has(taskId)) {
      tails.set(taskId, null);
      get(`/api/v1/tasks/${encodeURIComponent(taskId)}/logs?stream=all`, { text: true })
        .then((txt) => {
          tails.set(taskId, String(txt).slice(-4096));
          paintStep();
        })
        .catch(() => tails.set(taskId, ''));
    }
    const txt = tails.get(taskId);
    if (txt === null || txt === undefined) return [h('h3', {}, t('flows.detail.log')), loading()];
    return [h('h3', {}, t('flows.detail.log')), h('pre', { class: 'logs' }, txt || t('flows.detail.log.empty'))];
  }

  function paintStep() {
    if (!selected || !defs.has(selected)) {
      stopFollow();
      clear(stepPanel, h('h2', { id: 'flow-step-h' }, t('flows.steps')), empty(t('flows.step.none')));
      return;
    }
    const d = defs.get(selected);
    const s = flow.steps.find((x) => x.id === selected) || { state: 'waiting', attempts: 0, outputs: {} };
    const r = report.steps.find((x) => x.id === selected);
    const crit = criticalSet();
    const history = attemptsOf(selected, journal);
    const last = history[history.length - 1];
    const lastTask = [...history].reverse().find((a) => a.tasks.length)?.tasks.at(-1);
    const lastRunning = last && last.result === 'running';
    const outputs = s.outputs || {};
    const other = Object.fromEntries(Object.entries(outputs).filter(([k]) => !['stdout', 'task_id', 'exit_code', 'node', 'site'].includes(k)));

    let log = null;
    if (typeof outputs.stdout === 'string') {
      if (follow) stopFollow();
      log = [h('h3', {}, t('flows.detail.stdout')), h('pre', { class: 'logs' }, outputs.stdout || t('flows.detail.log.empty'))];
    } else if (lastTask) {
      const running = lastRunning && last.tasks.includes(lastTask);
      if (!running && follow) stopFollow();
      log = logBlock(lastTask, running);
    } else stopFollow();

    const a = d.action;
    clear(stepPanel,
      h('div', { class: 'step-head' },
        h('h2', { id: 'flow-step-h', class: 'mono' }, selected),
        stateBadge(s.state, 'step'),
        crit.has(selected) ? h('span', { class: 'badge crit' }, `★ ${t('flows.detail.critical')}`) : null),
      s.error ? h('div', { class: 'step-error', role: 'status' }, s.error) : null,
      props([
        [t('flows.detail.action'), h('span', {}, actionText(a),
          a?.kind === 'task' ? h('code', { class: 'cmd' }, taskCommand(a.task)) : null)],
        [t('flows.detail.depends'), (d.depends_on || []).join(', ') || t('flows.detail.none')],
        d.when ? [t('flows.detail.when'), h('code', {}, d.when)] : null,
        d.for_each ? [t('flows.detail.foreach'), t('flows.detail.foreach.n', { n: d.for_each.length })] : null,
        d.retry?.max_retries ? [t('flows.detail.retry'), t('flows.detail.retry.v', { n: d.retry.max_retries, s: dur(d.retry.backoff_s) })] : null,
        d.timeout_s ? [t('flows.detail.timeout'), dur(d.timeout_s)] : null,
        d.compensate ? [t('flows.detail.compensate'), actionText(d.compensate)] : null,
        [t('flows.detail.attempts'), String(s.attempts)],
        [t('flows.detail.ready'), fmtClock(s.ready_at)],
        [t('flows.detail.started'), fmtClock(s.started_at)],
        [t('flows.detail.ended'), fmtClock(s.ended_at)],
        r?.start ? [t('flows.detail.duration'), dur(r.duration_s)] : null,
        r?.start ? [t('flows.detail.wait'), dur(r.wait_s)] : null,
        r?.start && a?.kind === 'task' ? [t('flows.detail.queue'), dur(r.queue_s || 0)] : null,
        r?.start && a?.kind === 'task' ? [t('flows.detail.run'), dur(r.run_s ?? r.duration_s)] : null,
        outputs.exit_code !== undefined ? [t('flows.detail.exit'), String(outputs.exit_code)] : null,
        outputs.node ? [t('flows.detail.node'), `${outputs.site ?? ''}/${outputs.node}`] : null,
        outputs.task_id ? [t('flows.detail.task'), taskLink(outputs.task_id)] : null,
      ]),
      log,
      Object.keys(other).length ? [h('h3', {}, t('flows.detail.outputs')), h('pre', { class: 'outputs mono' }, json(other))] : null,
      h('h3', {}, t('flows.detail.history')),
      history.length
        ? h('ol', { class: 'attempts' }, history.map((x) => h('li', {},
          h('div', { class: 'attempt-head' },
            h('strong', {}, x.compensation ? t('flows.detail.task.undo')
              : x.item !== null && x.item !== undefined ? `${t('flows.detail.task.attempt', { n: x.attempt })} · ${t('flows.col.item')} ${x.item}`
                : t('flows.detail.task.attempt', { n: x.attempt })),
            resultBadge(x)),
          h('div', { class: 'small muted' }, `${fmtClock(x.start)} → ${x.end ? fmtClock(x.end) : '…'} · ${dur(secs(x.start, x.end) ?? (Date.now() - Date.parse(x.start)) / 1000)}`),
          x.error && x.error !== s.error ? h('div', { class: 'small step-error-inline' }, x.error) : null,
          x.tasks.length ? h('div', { class: 'small' }, `${t('flows.col.task')}: `, x.tasks.map((tid, i) => [i ? ', ' : '', taskLink(tid)])) : null)))
        : h('p', { class: 'muted' }, t('flows.detail.nohistory')));
    // Re-attached, the live output would show its top: keep it at the tail.
    if (follow) follow.pre.scrollTop = follow.pre.scrollHeight;
  }

  // ---- the journal and summary
  function paintJournal() {
    clear(journalBox, table([
      { title: t('flows.journal.col.seq'), num: true, value: (e) => e.seq },
      { title: t('common.time'), value: (e) => h('span', { class: 'nowrap' }, fmtStamp(e.at)) },
      { title: t('flows.journal.col.entry'), value: (e) => journalText(e) },
    ], journal, { emptyText: t('flows.journal.empty') }));
  }
  function paintSummary() {
    const { done, total } = progress(flow);
    const inputs = journal.find((e) => e.type === 'flow_started')?.inputs;
    const ended = TERMINAL.has(flow.state);
    const simulated = flow.steps.filter((s) => s.state === 'simulated').length;
    clear(summary, props([
      [t('flows.summary.id'), h('span', { class: 'mono' }, flow.id)],
      [t('flows.summary.owner'), `${flow.owner} · ${flow.tenant}`],
      flow.plan ? [t('flows.summary.plan'), h('span', { class: 'mono' }, flow.plan)] : null,
      flow.definition.description ? [t('flows.summary.description'), flow.definition.description] : null,
      [t('flows.summary.started'), fmtStamp(flow.created_at)],
      [ended ? t('flows.summary.ended') : t('flows.summary.updated'), fmtStamp(flow.updated_at)],
      [t('flows.summary.duration'), dur(flowSeconds(flow))],
      [t('flows.summary.steps'), t('flows.progress', { done, total })],
      simulated ? [t('flows.summary.simulated'), h('span', { dataset: { test: 'flow-simulated' } }, t('flows.summary.simulated.v', { n: simulated, total }))] : null,
      [t('flows.summary.parallel'), flow.definition.max_parallel ? String(flow.definition.max_parallel) : t('flows.summary.unbounded')],
      inputs && Object.keys(inputs).length ? [t('flows.summary.inputs'), h('code', {}, JSON.stringify(inputs))] : null,
    ]));
  }

  function paint() {
    main.dataset.flowState = flow.state;
    title.textContent = flow.name;
    clear(stateBox, stateBadge(flow.state));
    paintActions();
    clear(errorBox, flow.error ? h('div', { class: 'flow-error', role: 'status' }, h('strong', {}, `${t('flows.error')}: `), flow.error) : null);
    paintSummary();
    paintGraph();
    paintReport();
    paintSteps();
    paintStep();
    paintJournal();
  }
  paint();

  // ---- live
  let inflight = false;
  let again = false;
  async function refresh() {
    if (inflight) {
      again = true;
      return;
    }
    inflight = true;
    try {
      const base = `/api/v1/flows/${encodeURIComponent(id)}`;
      [flow, report, journal] = await Promise.all([get(base), get(`${base}/report`), get(`${base}/journal`)]);
      staleNote.textContent = '';
      if (main.isConnected) paint();
    } catch (e) {
      staleNote.textContent = t('common.error', { message: e.message });
    } finally {
      inflight = false;
    }
    if (again) {
      again = false;
      refresh();
    }
  }
  const soon = debounce(refresh, 250);
  ctx.onEvent((ev) => {
    if ((ev.type === 'flow.state' || ev.type === 'flow.step') && ev.subject === id) soon();
  });
  // Durations of running steps grow between events: refresh now and then while it runs.
  const timer = setInterval(() => {
    if (!TERMINAL.has(flow.state) && !document.hidden) refresh();
  }, 4000);
  return () => {
    clearInterval(timer);
    portsRo.disconnect();
    stopFollow();
  };
}
