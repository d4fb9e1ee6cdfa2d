// Tasks page, the submit form (#/tasks/new): a shell script with resources, policy, site,
// retries and replicas. Checked here first; the server's refusal is shown at the form (and
// at the field it names), keeping what was typed.
import { listAll, post } from '../api.js';
import { t } from '../i18n.js';
import { h, clear, field, select, toast } from '../ui.js';
import { backLink } from './tasks-common.js';

// Where the API's error.field paths land in this form.
const FIELD_OF = {
  name: 'name',
  script: 'script',
  command: 'script',
  'resources.cpu_cores': 'cpu_cores',
  'resources.memory_gib': 'memory_gib',
  'resources.gpus': 'gpus',
  priority: 'priority',
  policy: 'policy',
  'constraints.site': 'site',
  'retry.max_retries': 'max_retries',
  replicas: 'replicas',
};

export async function renderForm(main, ctx) {
  const inputs = {
    name: h('input', { name: 'name', autocomplete: 'off', required: true, maxlength: '200' }),
    script: h('textarea', { name: 'script', required: true, rows: '8', spellcheck: 'false', placeholder: t('tasks.form.script.ph') }),
    cpu_cores: h('input', { name: 'cpu_cores', type: 'number', step: 'any', min: '0', value: '0.1', inputmode: 'decimal', required: true }),
    memory_gib: h('input', { name: 'memory_gib', type: 'number', step: 'any', min: '0', value: '0.1', inputmode: 'decimal', required: true }),
    gpus: h('input', { name: 'gpus', type: 'number', step: '1', min: '0', value: '0', inputmode: 'numeric' }),
    priority: h('input', { name: 'priority', type: 'number', step: '1', value: '0', inputmode: 'numeric' }),
    policy: select([['', t('tasks.form.policy.auto')]], '', { name: 'policy' }),
    site: select([['', t('tasks.form.site.any')]], '', { name: 'site' }),
    max_retries: h('input', { name: 'max_retries', type: 'number', step: '1', min: '0', max: '100', value: '0', inputmode: 'numeric' }),
    replicas: h('input', { name: 'replicas', type: 'number', step: '1', min: '1', max: '1000', value: '1', inputmode: 'numeric' }),
  };
  const fields = {
    name: field(t('tasks.form.name'), inputs.name, t('tasks.form.name.help')),
    script: field(t('tasks.form.script'), inputs.script, t('tasks.form.script.help')),
    cpu_cores: field(t('tasks.form.cpu'), inputs.cpu_cores),
    memory_gib: field(t('tasks.form.memory'), inputs.memory_gib),
    gpus: field(t('tasks.form.gpus'), inputs.gpus),
    priority: field(t('tasks.form.priority'), inputs.priority, t('tasks.form.priority.help')),
    policy: field(t('tasks.form.policy'), inputs.policy),
    site: field(t('tasks.form.site'), inputs.site),
    max_retries: field(t('tasks.form.retries'), inputs.max_retries, t('tasks.form.retries.help')),
    replicas: field(t('tasks.form.replicas'), inputs.replicas, t('tasks.form.replicas.help')),
  };
  const formError = h('div', { class: 'form-error', role: 'alert' });
  const note = h('p', { class: 'muted', role: 'status' });
  const submit = h('button', { type: 'submit' }, t('tasks.form.submit'));
  const form = h('form', { class: 'panel tk-form', dataset: { test: 'task-submit' }, novalidate: true },
    h('div', { class: 'tk-form-cols' },
      h('div', { class: 'tk-form-main' }, fields.name, fields.script),
      h('div', { class: 'tk-form-side' },
        h('fieldset', {}, h('legend', {}, t('tasks.form.resources')),
          h('div', { class: 'tk-form-three' }, fields.cpu_cores, fields.memory_gib, fields.gpus)),
        h('fieldset', {}, h('legend', {}, t('tasks.form.placement')),
          fields.policy, fields.site,
          h('div', { class: 'tk-form-three' }, fields.priority, fields.max_retries, fields.replicas)))),
    note,
    formError,
    h('div', { class: 'form-actions' }, submit,
      h('a', { class: 'button secondary', href: '#/tasks' }, t('tasks.form.cancel'))));

  clear(main,
    h('div', { class: 'page-head' }, h('h1', {}, t('tasks.form.title')), backLink(t('tasks.form.back'))),
    form);
  inputs.name.focus();

  // The choices of policy and site; the form works with the defaults if they fail to load.
  Promise.all([listAll('/api/v1/policies'), listAll('/api/v1/sites')]).then(([policies, sites]) => {
    if (!form.isConnected) return;
    const keepPolicy = inputs.policy.value;
    const keepSite = inputs.site.value;
    const names = policies.map((p) => p.name).filter((n) => n !== 'default').sort();
    inputs.policy.replaceChildren(...[['', t('tasks.form.policy.auto')], ...names.map((n) => [n, n])]
      .map(([v, l]) => h('option', { value: v, selected: v === keepPolicy }, l)));
    const siteNames = sites.map((s) => s.name).sort();
    inputs.site.replaceChildren(...[['', t('tasks.form.site.any')], ...siteNames.map((n) => [n, n])]
      .map(([v, l]) => h('option', { value: v, selected: v === keepSite }, l)));
  }).catch((e) => {
    if (form.isConnected) note.textContent = t('tasks.form.lists_failed', { message: e.message });
  });

  function check() {
    const errors = {};
    const v = (k) => inputs[k].value.trim();
    const num = (k) => (v(k) === '' ? NaN : Number(v(k)));
    const whole = (k) => Number.isInteger(num(k));
    if (!v('name')) errors.name = t('tasks.form.err.name');
    else if (v('name').length > 200) errors.name = t('tasks.form.err.name_long');
    if (!inputs.script.value.trim()) errors.script = t('tasks.form.err.script');
    if (!(num('cpu_cores') > 0) || !Number.isFinite(num('cpu_cores'))) errors.cpu_cores = t('tasks.form.err.cpu');
    if (!(num('memory_gib') >= 0) || !Number.isFinite(num('memory_gib'))) errors.memory_gib = t('tasks.form.err.memory');
    if (!whole('gpus') || num('gpus') < 0) errors.gpus = t('tasks.form.err.gpus');
    if (!whole('priority') || Math.abs(num('priority')) > 2147483647) errors.priority = t('tasks.form.err.priority');
    if (!whole('max_retries') || num('max_retries') < 0 || num('max_retries') > 100) errors.max_retries = t('tasks.form.err.retries');
    if (!whole('replicas') || num('replicas') < 1 || num('replicas') > 1000) errors.replicas = t('tasks.form.err.replicas');
    return errors;
  }

  function body() {
    const out = {
      name: inputs.name.value.trim(),
      script: inputs.script.value,
      priority: Number(inputs.priority.value),
      resources: {
        cpu_cores: Number(inputs.cpu_cores.value),
        memory_gib: Number(inputs.memory_gib.value),
        gpus: Number(inputs.gpus.value),
      },
      retry: { max_retries: Number(inputs.max_retries.value) },
      replicas: Number(inputs.replicas.value),
    };
    if (inputs.policy.value) out.policy = inputs.policy.value;
    if (inputs.site.value) out.constraints = { site: inputs.site.value };
    return out;
  }

  const showErrors = (errors) => {
    for (const [k, f] of Object.entries(fields)) f.setError(errors[k] || '');
  };
  // Clear a field's message once it is edited.
  for (const [k, input] of Object.entries(inputs)) {
    input.addEventListener('input', () => fields[k].setError(''));
    input.addEventListener('change', () => fields[k].setError(''));
  }

  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    formError.textContent = '';
    const errors = check();
    showErrors(errors);
    const bad = Object.keys(errors);
    if (bad.length) {
      formError.textContent = t('tasks.form.invalid');
      inputs[bad[0]].focus();
      return;
    }
    submit.disabled = true;
    submit.textContent = t('tasks.form.submitting');
    try {
      const spec = body();
      const res = await post('/api/v1/tasks', spec);
      toast(spec.replicas > 1
        ? t('tasks.form.done.replicas', { n: res.replica_ids?.length ?? spec.replicas, name: spec.name })
        : t('tasks.form.done', { name: spec.name }));
      ctx.navigate(`#/tasks/${encodeURIComponent(res.id)}`);
    } catch (err) {
      if (!form.isConnected) return;
      formError.textContent = t('tasks.form.failed', { message: err.field ? `${err.field}: ${err.message}` : err.message });
      const k = err.field && FIELD_OF[err.field];
      if (k) {
        fields[k].setError(err.message);
        inputs[k].focus();
      }
    } finally {
      submit.disabled = false;
      submit.textContent = t('tasks.form.submit');
    }
  });
  return null;
}
