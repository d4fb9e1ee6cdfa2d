// The instruction set of a confirmed plan (#/design/instructions/<plan id>): its ordered
// instructions as a dependency graph and a table, each editable (description, dependencies,
// parameters as JSON) or deletable before execution; "Execute" starts the workflow and opens
// it (#/flows/<id>); a 409 because the registry changed since planning is shown with a way
// to re-plan.
import { get, del } from '../api.js';
import { t, fmtTime } from '../i18n.js';
import { h, clear, badge, errorState, loading, empty, field, chart, toast, debounce } from '../ui.js';
import {
  KIND_COLORS, kindLabel, objectiveLabel, stateLabel, esc, plain, layered, dagOption, send, issues, alertBox,
  modal, confirmDialog, backLink, say, money, flowStateLabel,
} from './design-common.js';

function paramsSummary(params) {
  const entries = Object.entries(params || {}).filter(([, v]) => v !== null && v !== undefined);
  if (!entries.length) return h('span', { class: 'muted' }, '–');
  return h('ul', { class: 'design-params' }, entries.map(([k, v]) => {
    let text;
    if (Array.isArray(v)) text = v.map((x) => (typeof x === 'object' ? JSON.stringify(x) : String(x))).join(k === 'command' ? ' ' : ', ');
    else if (k === 'cost_per_hour' && typeof v === 'number') text = `${money(v, 3)}/h`;
    else if (typeof v === 'object') text = Object.entries(v || {}).map(([a, b]) => `${a}=${typeof b === 'object' ? JSON.stringify(b) : b}`).join(', ') || JSON.stringify(v);
    else text = String(v);
    return h('li', {}, h('span', { class: 'muted' }, `${k}: `), h('code', {}, text));
  }));
}

function drawDag(el, list, onPick) {
  const ids = list.map((i) => i.id);
  const byId = new Map(list.map((i) => [i.id, i]));
  const { pos, layers, maxRows } = layered(ids, (id) => byId.get(id).depends_on || []);
  const kinds = [...new Set(list.map((i) => i.kind))];
  const dense = list.length > 40;
  el.style.height = `${Math.max(240, Math.min(760, 60 + maxRows * (dense ? 24 : 44)))}px`;
  const c = chart(el, dagOption({
    nodes: list.map((i) => {
      const p = pos.get(i.id);
      return {
        id: i.id,
        name: i.id,
        x: p.x,
        y: p.y,
        category: kinds.indexOf(i.kind),
        label: { formatter: plain(i.id) },
        tip: [`<b>${esc(i.id)}</b> · ${esc(kindLabel(i.kind))}`, esc(say(i.description)), i.site ? esc(`${t('common.site')}: ${i.site}`) : null,
          i.depends_on?.length ? esc(`${t('design.ins.deps')}: ${i.depends_on.join(', ')}`) : null].filter(Boolean).join('<br>'),
      };
    }),
    links: list.flatMap((i) => (i.depends_on || []).filter((d) => byId.has(d)).map((d) => ({
      source: d, target: i.id, tip: esc(t('design.ins.edge', { a: i.id, b: d })),
    }))),
    categories: kinds.map((k) => ({ name: kindLabel(k), itemStyle: { color: KIND_COLORS[k] || '#718096' } })),
    layers,
    maxRows,
    symbolSize: dense ? [120, 18] : [164, 30],
    label: { fontSize: dense ? 9 : 11, overflow: 'truncate', width: dense ? 114 : 158 },
  }));
  c.on('click', (p) => {
    if (p.dataType === 'node') onPick(p.data.id);
  });
  return c;
}

function editDialog(plan, ins, done) {
  const desc = h('input', { name: 'description', value: ins.description, autocomplete: 'off' });
  const others = plan.instructions.filter((x) => x.id !== ins.id);
  const deps = h('select', { name: 'depends_on', multiple: true, size: Math.min(8, Math.max(3, others.length)) },
    others.map((x) => h('option', { value: x.id, selected: ins.depends_on.includes(x.id) }, `${x.id} (${kindLabel(x.kind)})`)));
  const params = h('textarea', { name: 'params', rows: 12, spellcheck: false }, JSON.stringify(ins.params ?? {}, null, 2));
  const fDesc = field(t('design.ins.description'), desc);
  const fDeps = field(t('design.ins.deps'), deps, t('design.ins.deps.help'));
  const fParams = field(t('design.ins.params'), params, ins.kind === 'deploy_app' ? t('design.ins.params.help.deploy') : t('design.ins.params.help'));
  const error = h('div', { class: 'form-error', role: 'alert' });
  const save = h('button', { type: 'submit' }, t('common.save'));
  const form = h('form', {
    novalidate: true,
    on: {
      submit: async (e) => {
        e.preventDefault();
        [fDesc, fDeps, fParams].forEach((f) => f.setError(''));
        error.textContent = '';
        let value;
        try {
          value = JSON.parse(params.value);
        } catch (err) {
          fParams.setError(t('design.err.json', { message: err.message }));
          params.focus();
          return;
        }
        if (!value || typeof value !== 'object' || Array.isArray(value)) {
          fParams.setError(t('design.err.jsonobject'));
          params.focus();
          return;
        }
        save.disabled = true;
        try {
          await send('PUT', `/api/v1/plans/${encodeURIComponent(plan.id)}/instructions/${encodeURIComponent(ins.id)}`, {
            version: plan.version,
            description: desc.value,
            depends_on: [...deps.selectedOptions].map((o) => o.value),
            params: value,
          });
          close();
          toast(t('design.ins.saved', { id: ins.id }), 'ok');
          done();
        } catch (err) {
          const f = issues(err)[0]?.path || err.field || '';
          if (err.status === 409) error.textContent = t('design.err.conflict', { message: err.message });
          else if (f.startsWith('params')) fParams.setError(`${f}: ${err.message}`);
          else if (f.startsWith('depends_on')) fDeps.setError(err.message);
          else if (f.startsWith('description')) fDesc.setError(err.message);
          else error.textContent = err.message;
        } finally {
          save.disabled = false;
        }
      },
    },
  },
  h('p', { class: 'muted' }, `${kindLabel(ins.kind)} · ${ins.node}${ins.site ? ` · ${ins.site}` : ''}`),
  fDesc, fDeps, fParams, error,
  h('div', { class: 'form-actions' }, save, h('button', { type: 'button', class: 'secondary', on: { click: () => close() } }, t('common.cancel'))));
  const { close } = modal(t('design.ins.edit.title', { id: ins.id }), form, { wide: true });
  params.focus();
}

function instructionTable(plan, editable, reload) {
  const list = plan.instructions || [];
  const remove = async (ins) => {
    if (!(await confirmDialog(t('design.ins.delete.confirm', { id: ins.id }), t('common.delete')))) return;
    try {
      await del(`/api/v1/plans/${encodeURIComponent(plan.id)}/instructions/${encodeURIComponent(ins.id)}`);
      toast(t('design.ins.deleted', { id: ins.id }), 'ok');
      reload();
    } catch (e) {
      toast(e.message, 'bad');
    }
  };
  const rows = list.map((ins, n) => h('tr', { dataset: { instruction: ins.id }, id: `ins-${ins.id}`, tabindex: '-1' },
    h('td', { class: 'num' }, String(n + 1)),
    h('td', { class: 'design-ins-id' }, h('code', {}, ins.id)),
    h('td', {}, h('span', { class: 'design-type' }, h('i', { style: { background: KIND_COLORS[ins.kind] || '#718096' }, 'aria-hidden': 'true' }), kindLabel(ins.kind)),
      // Only deploy_app has a controller behind it (a real task); the rest is simulated.
      ins.kind === 'deploy_app' ? null : h('div', { class: 'design-row-sub' }, badge('simulated', t('design.ins.simulated')))),
    h('td', {}, ins.node, ins.site ? h('div', { class: 'design-row-sub' }, ins.site) : null),
    h('td', {}, ins.depends_on?.length ? h('ul', { class: 'design-deps' }, ins.depends_on.map((d) => h('li', {}, h('a', { href: `#ins-${d}`, on: { click: (e) => { e.preventDefault(); focusRow(d); } } }, d)))) : h('span', { class: 'muted' }, '–')),
    h('td', {}, say(ins.description)),
    h('td', {}, paramsSummary(ins.params)),
    editable ? h('td', { class: 'design-row-actions' },
      h('button', { type: 'button', class: 'secondary', 'aria-label': t('design.ins.edit.label', { id: ins.id }), on: { click: () => editDialog(plan, ins, reload) } }, t('common.edit')),
      h('button', { type: 'button', class: 'secondary danger-text', 'aria-label': t('design.ins.delete.label', { id: ins.id }), on: { click: () => remove(ins) } }, t('common.delete'))) : null));
  if (!list.length) return empty(t('design.ins.none'));
  return h('div', { class: 'table-wrap design-ins-wrap' },
    h('table', { class: 'data design-ins', dataset: { test: 'instructions' } },
      h('caption', { class: 'design-sr' }, t('design.ins.caption')),
      h('thead', {}, h('tr', {},
        [t('design.ins.order'), 'ID', t('design.ins.kind'), t('design.ins.node'), t('design.ins.deps'), t('design.ins.description'), t('design.ins.params')]
          .map((x, i) => h('th', { scope: 'col', class: i === 0 ? 'num' : null }, x)),
        editable ? h('th', { scope: 'col' }, h('span', { class: 'design-sr' }, t('design.ins.actions'))) : null)),
      h('tbody', {}, rows)));
}

/** The badge class of a plan state. */
function planBadge(state) {
  return { confirmed: 'info', executing: 'running', completed: 'succeeded', failed: 'failed', cancelled: 'cancelled' }[state] || 'pending';
}

/** How an executed plan ended: what ran for real, what was only simulated, what failed. */
function executionPanel(ex) {
  const line = (label, ids, cls) => (ids?.length
    ? h('li', {}, badge(cls, label), ' ', ids.map((id, i) => [i ? ', ' : '', h('code', {}, id)]))
    : null);
  return h('section', { class: 'panel', dataset: { test: 'plan-execution' }, 'aria-labelledby': 'design-exec-h' },
    h('h2', { id: 'design-exec-h' }, t('design.exec.title')),
    h('p', {}, say(ex.summary)),
    ex.simulated?.length ? h('p', { class: 'design-note', role: 'note' }, t('design.exec.simulated.note')) : null,
    h('ul', { class: 'design-exec' },
      line(t('design.exec.ran'), ex.succeeded, 'succeeded'),
      line(t('design.exec.simulated'), ex.simulated, 'simulated'),
      line(t('design.exec.failed'), ex.failed, 'failed'),
      line(t('design.exec.other'), ex.other, 'pending')),
    ex.error ? h('p', { class: 'design-alert-detail' }, ex.error) : null);
}

function focusRow(id) {
  const tr = document.getElementById(`ins-${id}`);
  if (!tr) return;
  tr.scrollIntoView({ block: 'center' });
  tr.focus();
  tr.classList.add('flash');
  setTimeout(() => tr.classList.remove('flash'), 1500);
}

export async function renderInstructions(main, ctx, id) {
  const back = backLink(`#/design/plan/${encodeURIComponent(id)}`, t('design.back.plans'));
  clear(main, back, loading());
  let plan;
  try {
    plan = await get(`/api/v1/plans/${encodeURIComponent(id)}`);
  } catch (e) {
    clear(main, back, h('h1', {}, t('design.ins.title')), errorState(e, () => renderInstructions(main, ctx, id)));
    return;
  }
  const reload = () => ctx.navigate(`#/design/instructions/${encodeURIComponent(id)}`);
  const alert = alertBox();
  const replanHref = `#/design/template/${encodeURIComponent(plan.template_id)}?plan=1`;
  const editable = plan.state === 'confirmed';
  const list = plan.instructions || [];

  const flowState = h('span', { class: 'design-flow-state' });
  const execute = async (btn) => {
    btn.disabled = true;
    alert.show(null);
    try {
      const flow = await send('POST', `/api/v1/plans/${encodeURIComponent(id)}/execute`);
      toast(t('design.ins.started'), 'ok');
      ctx.navigate(`#/flows/${encodeURIComponent(flow.id)}`);
    } catch (e) {
      btn.disabled = false;
      if (e.status === 409 && /inventory changed/i.test(e.message)) {
        alert.show(
          h('h2', {}, t('design.ins.stale.title')),
          h('p', {}, t('design.ins.stale.text')),
          h('p', { class: 'mono design-alert-detail' }, e.message),
          h('a', { class: 'button', href: replanHref }, t('design.replan')));
      } else {
        alert.show(h('h2', {}, t('design.ins.failed')), h('p', { class: 'design-alert-detail' }, e.message));
      }
    }
  };

  let actions;
  if (plan.state === 'confirmed') {
    actions = h('button', { type: 'button', disabled: !list.length, dataset: { test: 'execute' }, on: { click: (e) => execute(e.currentTarget) } }, t('design.ins.execute'));
  } else if (plan.flow_id) {
    actions = [h('a', { class: 'button', href: `#/flows/${encodeURIComponent(plan.flow_id)}` }, t('design.cmp.flow')), plan.state === 'executing' ? flowState : null];
  } else actions = null;

  const dagEl = h('div', { class: 'chart design-dag', role: 'img', 'aria-label': t('design.ins.dag.label', { n: list.length }) });
  document.title = `${t('design.ins.title')} · ${plan.template_name}`;
  clear(main,
    back,
    h('div', { class: 'page-head' },
      h('h1', {}, t('design.ins.heading', { name: plan.template_name, obj: objectiveLabel(plan.objective) })),
      h('span', { dataset: { test: 'plan-state', state: plan.state } }, badge(planBadge(plan.state), stateLabel(plan.state))),
      actions),
    h('div', { class: 'muted design-meta' },
      h('span', {}, t('design.ins.count', { n: list.length })),
      h('span', {}, t('design.ins.planver', { v: plan.version })),
      h('span', {}, `${money(plan.cost_per_hour)}/h · ${money(plan.total_cost)}`),
      h('span', {}, t('design.plans.made', { at: fmtTime(plan.created_at) }))),
    alert,
    plan.state === 'proposed'
      ? h('section', { class: 'panel' },
        empty(t('design.ins.notconfirmed')),
        h('div', { class: 'form-actions' }, h('a', { class: 'button', href: `#/design/plan/${encodeURIComponent(id)}` }, t('design.back.plans'))))
      : [
        editable ? h('p', { class: 'design-note', role: 'note' }, t('design.ins.editable'))
          : plan.execution ? executionPanel(plan.execution)
            : h('p', { class: 'design-note', role: 'note' }, t('design.ins.locked')),
        h('section', { class: 'panel', 'aria-labelledby': 'design-dag-h' },
          h('h2', { id: 'design-dag-h' }, t('design.ins.dag')),
          list.length ? dagEl : empty(t('design.ins.none'))),
        h('section', { class: 'panel', 'aria-labelledby': 'design-ins-h' },
          h('h2', { id: 'design-ins-h' }, t('design.ins.list')),
          instructionTable(plan, editable, reload)),
      ]);
  if (list.length && dagEl.isConnected) drawDag(dagEl, list, focusRow);

  if (plan.state === 'executing' && plan.flow_id) {
    const paintFlow = async () => {
      try {
        const f = await get(`/api/v1/flows/${encodeURIComponent(plan.flow_id)}`);
        clear(flowState, t('design.ins.flowstate'), ' ', badge(f.state, flowStateLabel(f.state)));
        // The plan follows its workflow to the end: show how it ended.
        if (['succeeded', 'failed', 'cancelled'].includes(f.state)) reload();
      } catch {
        clear(flowState);
      }
    };
    paintFlow();
    const again = debounce(paintFlow, 500);
    ctx.onEvent((ev) => {
      if (ev.type === 'flow.state' && (ev.subject === plan.flow_id || ev.data?.flow === plan.flow_id)) again();
    });
  }
}
