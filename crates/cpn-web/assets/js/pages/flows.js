// Workflows (DO-OPS graphical orchestration, 表8): the list of workflows with their state and
// progress, live from the flow.* events, and the forms that start one (a process template,
// or a pasted YAML / JSON definition). #/flows/<id> is the detail view (flows-detail.js):
// the process graph, the lean report and the journal.
import { get, post, api, ApiError } from '../api.js';
import { t, fmtTime } from '../i18n.js';
import { h, clear, table, errorState, loading, empty, field, select, debounce, toast } from '../ui.js';
import { FLOW_STATES, TERMINAL, stateBadge, flowLabel, progressBar, flowSeconds, dur } from './flows-common.js';
import { load as parseYaml } from '../../vendor/js-yaml.mjs';

/** A pasted definition: YAML, of which JSON is a subset. */
function parseDefinition(text) {
  if (!String(text).trim()) throw new Error(t('flows.start.empty'));
  return parseYaml(text);
}
import { renderDetail } from './flows-detail.js';

const EXAMPLE = () => `# ${t('flows.example.description')}
name: ${t('flows.example.name')}
max_parallel: 4
steps:
  - id: fetch
    action:
      kind: task
      task:
        name: fetch
        script: echo fetching sources; sleep 2
        resources: {cpu_cores: 0.1, memory_gib: 0.1}
  - id: build
    depends_on: [fetch]
    retry: {max_retries: 1, backoff_s: 2}
    action:
      kind: task
      task:
        name: build
        script: echo building; sleep 4
        resources: {cpu_cores: 0.1, memory_gib: 0.1}
    compensate: {kind: notify, message: "undo build of \${inputs.version}"}
  - id: test
    depends_on: [fetch]
    timeout_s: 60
    action:
      kind: task
      task:
        name: test
        script: echo testing; sleep 2
        resources: {cpu_cores: 0.1, memory_gib: 0.1}
  - id: publish
    depends_on: [build, test]
    when: steps.test.status == 'succeeded'
    action: {kind: notify, message: "published \${inputs.version}"}
inputs: {version: "1.0"}
`;

/** The value of an input field: JSON when it parses, else the text itself. */
function inputValue(text) {
  const s = text.trim();
  if (s === '') return '';
  try {
    return JSON.parse(s);
  } catch {
    return text;
  }
}

const shown = (v) => (typeof v === 'string' ? v : JSON.stringify(v));

/** The forms that start a workflow. */
function startSection(ctx) {
  // From a definition.
  const textarea = h('textarea', {
    name: 'definition', rows: 16, spellcheck: 'false', autocomplete: 'off',
    placeholder: 'name: my-flow\nsteps:\n  - id: hello\n    action: {kind: notify, message: hi}',
  });
  const defField = field(t('flows.start.definition.label'), textarea, t('flows.start.definition.help'));
  const formError = h('div', { class: 'form-error', role: 'alert' });
  const submit = h('button', { type: 'submit' }, t('flows.start.submit'));
  const save = h('button', { type: 'button', class: 'secondary', dataset: { action: 'save-template' } }, t('flows.start.save'));
  const example = h('button', { type: 'button', class: 'secondary', dataset: { action: 'example' } }, t('flows.start.example'));
  const busy = (on) => [submit, save, example].forEach((b) => { b.disabled = on; });
  const showError = (msg) => {
    defField.setError(msg);
    formError.textContent = '';
  };

  /** The parsed text as {body: {definition, inputs?}, wrapped}, or null after showing why not. */
  function readBody() {
    let parsed;
    try {
      parsed = parseDefinition(textarea.value);
    } catch (e) {
      showError(t('flows.start.parse', { message: e.message }));
      return null;
    }
    if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) {
      showError(t('flows.start.notobject'));
      return null;
    }
    const wrapped = 'definition' in parsed && !('steps' in parsed);
    return { body: wrapped ? parsed : { definition: parsed }, wrapped };
  }

  const defForm = h('form', {
    class: 'flow-start', dataset: { test: 'flow-start' }, novalidate: true,
    on: {
      submit: async (e) => {
        e.preventDefault();
        showError('');
        const read = readBody();
        if (!read) return;
        busy(true);
        try {
          const flow = await post('/api/v1/flows', read.body);
          toast(t('flows.start.started', { name: flow.name }));
          ctx.navigate(`#/flows/${encodeURIComponent(flow.id)}`);
        } catch (err) {
          showError(t('flows.start.error', { message: err.message }));
          textarea.focus();
        } finally {
          busy(false);
        }
      },
    },
  },
  h('h3', {}, t('flows.start.definition')),
  defField,
  formError,
  h('div', { class: 'form-actions' }, submit, save, example));

  example.addEventListener('click', () => {
    textarea.value = EXAMPLE();
    showError('');
    textarea.focus();
  });
  save.addEventListener('click', async () => {
    showError('');
    const read = readBody();
    if (!read) return;
    busy(true);
    try {
      // YAML goes to the server as written (its parser names the lines of errors); JSON and
      // a start body {definition, inputs} go as the parsed definition.
      const json = /^\s*[{[]/.test(textarea.value);
      const p = json || read.wrapped
        ? await post('/api/v1/processes', read.body.definition)
        : await api('POST', '/api/v1/processes', textarea.value, { contentType: 'application/yaml' });
      toast(t('flows.start.saved', { name: p.name }));
      await loadTemplates(p.id);
    } catch (err) {
      showError(t('flows.start.error', { message: err.message }));
    } finally {
      busy(false);
    }
  });

  // From a process template.
  const tplBox = h('div', {}, loading());
  let templates = [];
  async function loadTemplates(chosen) {
    try {
      templates = await get('/api/v1/processes');
    } catch (e) {
      clear(tplBox, errorState(e, () => loadTemplates(chosen)));
      return;
    }
    paintTemplates(chosen);
  }
  function paintTemplates(chosen) {
    if (!templates.length) {
      clear(tplBox, empty(t('flows.start.template.none')));
      return;
    }
    const pick = select(templates.map((p) => [p.id, t('flows.start.template.option', { name: p.name, version: p.version ?? 1 })]),
      chosen && templates.some((p) => p.id === chosen) ? chosen : templates[0].id, { name: 'template' });
    const about = h('p', { class: 'muted tpl-about' });
    const inputsBox = h('div', { class: 'tpl-inputs' });
    const error = h('div', { class: 'form-error', role: 'alert' });
    const run = h('button', { type: 'submit' }, t('flows.start.run'));
    const load = h('button', { type: 'button', class: 'secondary', dataset: { action: 'load-template' } }, t('flows.start.load'));
    let inputFields = [];
    const paintInputs = () => {
      const p = templates.find((x) => x.id === pick.value);
      const def = p?.definition || {};
      about.textContent = [def.description, t('flows.start.template.steps', { n: (def.steps || []).length })].filter(Boolean).join(' · ');
      inputFields = Object.entries(def.inputs || {}).map(([name, v]) => {
        const input = h('input', { name: `input-${name}`, value: shown(v), autocomplete: 'off' });
        const f = field(name, input);
        return { name, input, f };
      });
      clear(inputsBox, inputFields.length
        ? h('fieldset', {}, h('legend', {}, t('flows.start.inputs')), inputFields.map((x) => x.f), h('div', { class: 'help muted' }, t('flows.start.inputs.help')))
        : null);
    };
    pick.addEventListener('change', paintInputs);
    paintInputs();
    load.addEventListener('click', async () => {
      error.textContent = '';
      try {
        textarea.value = await get(`/api/v1/processes/${encodeURIComponent(pick.value)}?format=yaml`, { text: true });
        showError('');
        textarea.focus();
      } catch (err) {
        error.textContent = t('flows.start.error', { message: err.message });
      }
    });
    const form = h('form', {
      dataset: { test: 'flow-run-template' }, novalidate: true,
      on: {
        submit: async (e) => {
          e.preventDefault();
          error.textContent = '';
          const inputs = {};
          for (const x of inputFields) {
            x.f.setError('');
            inputs[x.name] = inputValue(x.input.value);
          }
          run.disabled = true;
          try {
            const flow = await post(`/api/v1/processes/${encodeURIComponent(pick.value)}/run`, inputFields.length ? { inputs } : {});
            toast(t('flows.start.started', { name: flow.name }));
            ctx.navigate(`#/flows/${encodeURIComponent(flow.id)}`);
          } catch (err) {
            const bad = err instanceof ApiError && inputFields.find((x) => err.message.includes(`inputs.${x.name}`));
            if (bad) bad.f.setError(err.message);
            error.textContent = t('flows.start.error', { message: err.message });
          } finally {
            run.disabled = false;
          }
        },
      },
    }, field(t('flows.start.template.pick'), pick), about, inputsBox, error, h('div', { class: 'form-actions' }, run, load));
    clear(tplBox, form);
  }
  loadTemplates();

  return h('section', { class: 'panel flows-start', 'aria-labelledby': 'flows-start-h' },
    h('h2', { id: 'flows-start-h' }, t('flows.start.title')),
    h('p', { class: 'muted' }, t('flows.start.intro')),
    h('div', { class: 'grid flows-start-grid' },
      h('div', { class: 'tpl-col' }, h('h3', {}, t('flows.start.template')), tplBox),
      defForm));
}

async function renderList(main, ctx) {
  delete main.dataset.flowState;
  const filter = ctx.query.get('state') || '';
  const listBox = h('div', {}, loading());
  const filterBox = h('div', { class: 'flows-filter' });
  const root = h('div', { class: 'flows' },
    h('div', { class: 'page-head' }, h('h1', {}, t('flows.title')), filterBox),
    h('section', { class: 'panel', 'aria-labelledby': 'flows-list-h' }, h('h2', { id: 'flows-list-h' }, t('flows.list')), listBox),
    startSection(ctx));
  clear(main, root);

  let flows = null;
  let state = FLOW_STATES.includes(filter) ? filter : '';
  const filterSel = select([['', ''], ...FLOW_STATES.map((s) => [s, ''])], state, { name: 'state' });
  filterSel.addEventListener('change', () => {
    state = filterSel.value;
    history.replaceState(null, '', state ? `#/flows?state=${state}` : '#/flows');
    paint();
  });
  filterBox.append(field(t('flows.filter'), filterSel));
  function paintFilter() {
    const counts = {};
    for (const f of flows) counts[f.state] = (counts[f.state] || 0) + 1;
    for (const o of filterSel.options) {
      o.textContent = o.value
        ? t('flows.filter.one', { state: flowLabel(o.value), n: counts[o.value] || 0 })
        : t('flows.filter.all', { n: flows.length });
    }
  }
  let durationCells = [];
  function paintDurations() {
    const now = Date.now();
    for (const [f, td] of durationCells) td.textContent = dur(flowSeconds(f, now));
  }
  function paint() {
    paintFilter();
    durationCells = [];
    if (!flows.length) {
      clear(listBox, empty(t('flows.empty')));
      return;
    }
    const rows = flows.filter((f) => !state || f.state === state).slice().reverse();
    const tbl = table([
      {
        title: t('flows.col.name'),
        value: (f) => h('div', {},
          h('a', { href: `#/flows/${encodeURIComponent(f.id)}`, class: 'flow-name', tabindex: '-1', on: { click: (e) => e.stopPropagation() } }, f.name),
          f.plan ? h('span', { class: 'badge info plan-tag', title: f.plan }, t('flows.plan')) : null,
          h('div', { class: 'muted mono small' }, f.id)),
      },
      { title: t('flows.col.state'), value: (f) => stateBadge(f.state) },
      { title: t('flows.col.progress'), value: (f) => progressBar(f) },
      { title: t('flows.col.started'), value: (f) => fmtTime(f.created_at) },
      { title: t('flows.col.duration'), num: true, value: () => '' },
      { title: t('flows.col.owner'), value: (f) => `${f.owner} · ${f.tenant}` },
    ], rows, { onRow: (f) => ctx.navigate(`#/flows/${encodeURIComponent(f.id)}`), emptyText: t('flows.empty.filter') });
    tbl.querySelectorAll('tbody tr').forEach((tr, i) => {
      tr.dataset.flow = rows[i].id;
      tr.dataset.state = rows[i].state;
      durationCells.push([rows[i], tr.cells[4]]);
    });
    paintDurations();
    clear(listBox, tbl);
  }
  async function load() {
    try {
      flows = await get('/api/v1/flows');
    } catch (e) {
      if (!flows) clear(listBox, errorState(e, load));
      return;
    }
    paint();
  }
  await load();
  const reload = debounce(load, 400);
  ctx.onEvent((ev) => {
    if (ev.type === 'flow.state' || ev.type === 'flow.step') reload();
  });
  // Durations of running workflows go on: repaint them now and then (no fetch).
  const timer = setInterval(() => {
    if (flows?.some((f) => !TERMINAL.has(f.state))) paintDurations();
  }, 5000);
  return () => clearInterval(timer);
}

export default {
  render(main, ctx) {
    if (ctx.params[0]) return renderDetail(main, ctx, ctx.params[0]);
    return renderList(main, ctx);
  },
};
