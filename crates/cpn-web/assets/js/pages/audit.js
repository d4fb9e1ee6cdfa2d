// Audit log (operators): every change made through the API and every login, newest first,
// filtered by actor, action and result, paged back with "Older".
import { get } from '../api.js';
import { t, register, fmtTime } from '../i18n.js';
import { h, clear, table, badge, field, errorState, loading, empty } from '../ui.js';

register({
  en: {
    'audit.title': 'Audit log',
    'audit.intro': 'Every change made through the API and every login, successful or not. The log is append-only and outlives the objects it names.',
    'audit.actor': 'Actor',
    'audit.action': 'Action (e.g. sites.update, or auth. for every login)',
    'audit.result': 'Result',
    'audit.any': 'any',
    'audit.apply': 'Filter',
    'audit.older': 'Older',
    'audit.empty': 'No entries match.',
    'audit.col.time': 'Time',
    'audit.col.actor': 'Actor',
    'audit.col.source': 'Source',
    'audit.col.action': 'Action',
    'audit.col.object': 'Object',
    'audit.col.generation': 'Generation',
    'audit.col.result': 'Result',
    'audit.col.detail': 'Detail',
  },
  zh: {
    'audit.title': '审计日志',
    'audit.intro': '通过 API 进行的每一次变更和每一次登录（无论成功与否）。日志只追加，对象删除后依然保留。',
    'audit.actor': '操作者',
    'audit.action': '操作（例如 sites.update；auth. 表示所有登录）',
    'audit.result': '结果',
    'audit.any': '全部',
    'audit.apply': '筛选',
    'audit.older': '更早',
    'audit.empty': '没有匹配的记录。',
    'audit.col.time': '时间',
    'audit.col.actor': '操作者',
    'audit.col.source': '来源地址',
    'audit.col.action': '操作',
    'audit.col.object': '对象',
    'audit.col.generation': '版本',
    'audit.col.result': '结果',
    'audit.col.detail': '详情',
  },
});

const RESULTS = ['success', 'denied', 'rejected', 'error', 'failure', 'locked', 'busy'];

function generation(e) {
  if (e.generation_before == null && e.generation_after == null) return '—';
  return `${e.generation_before ?? ''}→${e.generation_after ?? ''}`;
}

export default {
  async render(main, ctx) {
    const actor = h('input', { name: 'actor', value: ctx.query.get('actor') || '' });
    const action = h('input', { name: 'action', value: ctx.query.get('action') || '' });
    const result = h('select', { name: 'result' },
      h('option', { value: '' }, t('audit.any')),
      RESULTS.map((r) => h('option', { value: r, selected: ctx.query.get('result') === r }, r)));
    const listBox = h('div', {}, loading());
    const more = h('div', { class: 'form-actions' });
    const form = h('form', {
      class: 'audit-filter',
      on: {
        submit: (e) => {
          e.preventDefault();
          const q = new URLSearchParams();
          for (const [k, el] of [['actor', actor], ['action', action], ['result', result]]) {
            if (el.value.trim()) q.set(k, el.value.trim());
          }
          history.replaceState(null, '', `#/audit${q.size ? `?${q}` : ''}`);
          load(null, true);
        },
      },
    },
    field(t('audit.actor'), actor), field(t('audit.action'), action), field(t('audit.result'), result),
    h('div', { class: 'form-actions' }, h('button', { type: 'submit' }, t('audit.apply'))));
    clear(main, h('div', { class: 'audit' },
      h('div', { class: 'page-head' }, h('h1', {}, t('audit.title'))),
      h('p', { class: 'muted' }, t('audit.intro')),
      h('section', { class: 'panel' }, form),
      h('section', { class: 'panel', 'aria-live': 'polite' }, listBox, more)));

    let rows = [];
    async function load(cursor, fresh) {
      const q = new URLSearchParams({ limit: '100' });
      for (const [k, el] of [['actor', actor], ['action', action], ['result', result]]) {
        if (el.value.trim()) q.set(k, el.value.trim());
      }
      if (cursor) q.set('cursor', cursor);
      if (fresh) clear(listBox, loading());
      let page;
      try {
        page = await get(`/api/v1/audit?${q}`);
      } catch (err) {
        clear(listBox, errorState(err, () => load(cursor, fresh)));
        return;
      }
      rows = fresh ? page.items : rows.concat(page.items);
      clear(listBox, rows.length ? table([
        { title: t('audit.col.time'), value: (e) => fmtTime(e.at) },
        { title: t('audit.col.actor'), value: (e) => (e.tenant ? `${e.actor} (${e.tenant})` : e.actor) },
        { title: t('audit.col.source'), value: (e) => e.source },
        { title: t('audit.col.action'), value: (e) => h('code', {}, e.action) },
        { title: t('audit.col.object'), value: (e) => e.object_id || '—' },
        { title: t('audit.col.generation'), value: generation },
        { title: t('audit.col.result'), value: (e) => badge(e.result === 'success' ? 'ok' : 'failed', `${e.result} ${e.status}`) },
        { title: t('audit.col.detail'), value: (e) => e.detail || '' },
      ], rows) : empty(t('audit.empty')));
      clear(more, page.next_cursor
        ? h('button', { type: 'button', class: 'secondary', on: { click: () => load(page.next_cursor, false) } }, t('audit.older'))
        : null);
    }
    await load(null, true);
  },
};
