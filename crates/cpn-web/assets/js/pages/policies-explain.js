// Explain view of the policies page (#/policies/explain): a what-if task and a policy (or the
// one the server's match rules pick) → POST /schedule/explain → where it would go and why.
import { listAll } from '../api.js';
import { t, register } from '../i18n.js';
import { h, clear, field, errorState, loading, empty } from '../ui.js';
import { call } from './policies-api.js';
// The explanation renderer shared with the Tasks page.
import { renderExplanation } from './explain-view.js';

register({
  en: {
    'pol.xp.intro': 'Describe a task and see where the scheduler would put it, with every candidate\'s score and why the others were rejected. Nothing is submitted.',
    'pol.xp.task': 'What-if task',
    'pol.xp.name': 'Task name',
    'pol.xp.cpu': 'CPU cores',
    'pol.xp.mem': 'Memory (GiB)',
    'pol.xp.gpus': 'GPUs / accelerators',
    'pol.xp.chip': 'Chip type',
    'pol.xp.chip.any': 'any',
    'pol.xp.model': 'Chip model',
    'pol.xp.model.help': 'Leave empty for any model.',
    'pol.xp.origin': 'Origin region',
    'pol.xp.origin.none': '(none: latency is neutral)',
    'pol.xp.hours': 'Expected hours',
    'pol.xp.policy': 'Policy',
    'pol.xp.policy.auto': 'Chosen by match rules',
    'pol.xp.policy.default': 'default (built-in)',
    'pol.xp.submit': 'Explain',
    'pol.xp.running': 'Asking the scheduler…',
    'pol.xp.result': 'Decision',
    'pol.xp.none': 'Fill in a task and press Explain to see the scheduler\'s decision.',
    'pol.xp.failed': 'The scheduler could not explain this task: {message}',
  },
  zh: {
    'pol.xp.intro': '描述一个任务，查看调度器会把它放到哪里，以及每个候选的得分和其他候选被拒绝的原因。不会真正提交任务。',
    'pol.xp.task': '假设任务',
    'pol.xp.name': '任务名称',
    'pol.xp.cpu': 'CPU 核数',
    'pol.xp.mem': '内存（GiB）',
    'pol.xp.gpus': 'GPU / 加速卡数',
    'pol.xp.chip': '芯片类型',
    'pol.xp.chip.any': '不限',
    'pol.xp.model': '芯片型号',
    'pol.xp.model.help': '留空表示不限型号。',
    'pol.xp.origin': '来源地区',
    'pol.xp.origin.none': '（无：时延因子不起作用）',
    'pol.xp.hours': '预计时长（小时）',
    'pol.xp.policy': '调度策略',
    'pol.xp.policy.auto': '按匹配规则自动选择',
    'pol.xp.policy.default': 'default（内置）',
    'pol.xp.submit': '解释调度',
    'pol.xp.running': '正在询问调度器…',
    'pol.xp.result': '调度决策',
    'pol.xp.none': '填写任务并点击“解释调度”，查看调度器的决策。',
    'pol.xp.failed': '调度器无法解释此任务：{message}',
  },
});

const CHIPS = ['gpu', 'npu', 'cpu', 'dcu', 'fpga'];
// The last task asked about, so a language switch or a visit elsewhere keeps it.
const KEY = 'cpn.policies.explain';

function saved() {
  try {
    return JSON.parse(sessionStorage.getItem(KEY)) || {};
  } catch {
    return {};
  }
}

export async function renderExplain(el, ctx) {
  clear(el, loading());
  let policies;
  let sites;
  let resources;
  try {
    [policies, sites, resources] = await Promise.all([
      listAll('/api/v1/policies'),
      listAll('/api/v1/sites'),
      listAll('/api/v1/resources'),
    ]);
  } catch (e) {
    clear(el, errorState(e, () => renderExplain(el, ctx)));
    return;
  }
  const regions = [...new Set(sites.map((s) => s.spec?.region).filter(Boolean))].sort();
  const models = [...new Set(resources.map((r) => r.spec?.compute?.model).filter(Boolean))].sort();
  const last = saved();
  const v = (k, d) => (last[k] !== undefined ? last[k] : d);

  const inp = (name, value, attrs = {}) => h('input', { name, value: String(value), ...attrs });
  const name = inp('name', v('name', 'what-if'), { autocomplete: 'off' });
  const cpu = inp('cpu_cores', v('cpu_cores', 4), { type: 'number', step: 'any', min: '0' });
  const mem = inp('memory_gib', v('memory_gib', 16), { type: 'number', step: 'any', min: '0' });
  const gpus = inp('gpus', v('gpus', 1), { type: 'number', step: '1', min: '0' });
  const chip = h('select', { name: 'chip' },
    h('option', { value: '' }, t('pol.xp.chip.any')),
    CHIPS.map((c) => h('option', { value: c, selected: c === v('chip', 'gpu') }, c.toUpperCase())));
  const listId = 'pol-models';
  const model = inp('model', v('model', ''), { list: listId, autocomplete: 'off', placeholder: models[0] || '' });
  const origin = h('select', { name: 'origin_region' },
    h('option', { value: '' }, t('pol.xp.origin.none')),
    regions.map((r) => h('option', { value: r, selected: r === v('origin_region', '') }, r)));
  const hours = inp('est_hours', v('est_hours', 1), { type: 'number', step: 'any', min: '0' });
  const wanted = ctx.query.get('policy') ?? v('policy', '');
  const policy = h('select', { name: 'policy' },
    h('option', { value: '' }, t('pol.xp.policy.auto')),
    h('option', { value: 'default', selected: wanted === 'default' }, t('pol.xp.policy.default')),
    policies.map((p) => h('option', { value: p.name, selected: p.name === wanted }, p.name)));

  const fields = {
    name: field(t('pol.xp.name'), name),
    cpu_cores: field(t('pol.xp.cpu'), cpu),
    memory_gib: field(t('pol.xp.mem'), mem),
    gpus: field(t('pol.xp.gpus'), gpus),
    chip: field(t('pol.xp.chip'), chip),
    models: field(t('pol.xp.model'), model, t('pol.xp.model.help')),
    origin_region: field(t('pol.xp.origin'), origin),
    est_hours: field(t('pol.xp.hours'), hours),
    policy: field(t('pol.xp.policy'), policy),
  };
  const formError = h('div', { class: 'form-error', role: 'alert' });
  const submit = h('button', { type: 'submit' }, t('pol.xp.submit'));
  const result = h('div', { 'data-test': 'explain-result', 'aria-live': 'polite' }, empty(t('pol.xp.none')));

  let asked = 0; // only the newest answer is shown
  const numOr = (input, d) => (input.value.trim() === '' ? d : Number(input.value));
  const form = h('form', {
    class: 'panel pol-explain-form',
    'data-test': 'explain-form',
    novalidate: true,
    on: {
      submit: async (e) => {
        e.preventDefault();
        formError.textContent = '';
        Object.values(fields).forEach((f) => f.setError(''));
        const state = {
          name: name.value.trim(), cpu_cores: cpu.value, memory_gib: mem.value, gpus: gpus.value, chip: chip.value,
          model: model.value.trim(), origin_region: origin.value, est_hours: hours.value, policy: policy.value,
        };
        sessionStorage.setItem(KEY, JSON.stringify(state));
        const task = {
          name: state.name || 'what-if',
          resources: { cpu_cores: numOr(cpu, 0), memory_gib: numOr(mem, 0), gpus: numOr(gpus, 0) },
          est_hours: numOr(hours, 1),
        };
        if (state.chip) task.chip = state.chip;
        if (state.model) task.models = [state.model];
        if (state.origin_region) task.origin_region = state.origin_region;
        const body = { task };
        if (state.policy) body.policy = state.policy;
        const mine = ++asked;
        submit.disabled = true;
        delete result.dataset.chosenSite;
        clear(result, h('p', { class: 'loading', role: 'status' }, t('pol.xp.running')));
        try {
          const ex = await call('POST', '/api/v1/schedule/explain', body);
          if (mine !== asked) return;
          if (ex.decision?.chosen_site) result.dataset.chosenSite = ex.decision.chosen_site;
          renderExplanation(result, ex);
        } catch (err) {
          if (mine !== asked) return;
          formError.textContent = t('pol.xp.failed', { message: err.message });
          const f = String(err.field || '');
          const key = f.replace(/^task\.(resources\.)?/, '').replace(/\.\d+$/, '');
          if (fields[key]) fields[key].setError(err.message);
          else if (f === 'policy') fields.policy.setError(err.message);
          clear(result, empty(t('pol.xp.none')));
        } finally {
          submit.disabled = false;
        }
      },
    },
  },
  h('h2', {}, t('pol.xp.task')),
  h('p', { class: 'muted' }, t('pol.xp.intro')),
  h('div', { class: 'pol-form-grid' }, Object.values(fields)),
  h('datalist', { id: listId }, models.map((m) => h('option', { value: m }))),
  formError,
  h('div', { class: 'form-actions' }, submit));

  clear(el, form, h('h2', { class: 'pol-section-title' }, t('pol.xp.result')), result);
  if (last.name !== undefined || ctx.query.get('policy')) {
    // Coming back to the view (or from a policy's "explain"): show the answer straight away.
    form.requestSubmit();
  }
}
