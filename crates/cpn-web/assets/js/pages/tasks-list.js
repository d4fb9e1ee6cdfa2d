// Tasks page, the list (#/tasks): newest first, filtered by state and name, live.
import { get } from '../api.js';
import { t, fmtTime, fmtDuration, fmtNumber } from '../i18n.js';
import { h, clear, errorState, loading, empty, select, debounce } from '../ui.js';
import { STATES, stateBadge, isUnschedulable, reasonText, where, fetchTask } from './tasks-common.js';

const PAGE = 50;
// The newest tasks (GET /api/v1/tasks?order=newest, following next_cursor) up to READ_MAX;
// filters and "Load more" work on those, and the list says when older ones were left out.
const READ_LIMIT = 1000;
const READ_MAX = 2000;

async function readAll() {
  const out = [];
  let cursor = null;
  do {
    const page = await get(`/api/v1/tasks?order=newest&limit=${READ_LIMIT}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`);
    out.push(...(page.items || []));
    cursor = page.next_cursor;
  } while (cursor && out.length < READ_MAX);
  return { tasks: out, truncated: Boolean(cursor) };
}

const newestFirst = (a, b) => (a.submitted_at < b.submitted_at ? 1 : a.submitted_at > b.submitted_at ? -1 : (a.id < b.id ? 1 : -1));

export async function renderList(main, ctx) {
  const head = h('div', { class: 'page-head' },
    h('h1', {}, t('tasks.title')),
    h('a', { class: 'button', href: '#/tasks/new', dataset: { test: 'new-task' } }, t('tasks.new')));
  clear(main, head, loading());

  let data;
  try {
    data = await readAll();
  } catch (e) {
    if (main.isConnected) clear(main, head, errorState(e, () => renderList(main, ctx)));
    return null;
  }
  if (!main.isConnected) return null; // left while loading
  let all = data.tasks;
  let shown = PAGE;
  const filter = { state: ctx.query.get('state') || '', name: ctx.query.get('name') || '' };

  const stateSel = select([['', t('tasks.filter.state.all')], ...STATES.map((s) => [s, t(`tasks.state.${s}`)])], filter.state, { name: 'state', id: 'tk-filter-state' });
  const nameIn = h('input', { name: 'name', id: 'tk-filter-name', type: 'search', value: filter.name, placeholder: t('tasks.filter.name.ph'), autocomplete: 'off' });
  const clearBtn = h('button', { type: 'button', class: 'secondary' }, t('tasks.filter.clear'));
  const filters = h('div', { class: 'tk-filters', role: 'search' },
    h('div', { class: 'field' }, h('label', { for: 'tk-filter-state' }, t('tasks.filter.state')), stateSel),
    h('div', { class: 'field' }, h('label', { for: 'tk-filter-name' }, t('tasks.filter.name')), nameIn),
    clearBtn);
  const body = h('div');
  const foot = h('div', { class: 'tk-foot row' });
  clear(main, head, h('section', { class: 'panel' }, filters,
    data.truncated ? h('p', { class: 'muted' }, t('tasks.list.truncated', { n: READ_MAX })) : null,
    body, foot));

  const matches = (task) => {
    if (filter.state && task.state !== filter.state) return false;
    const q = filter.name.trim().toLowerCase();
    return !q || task.name.toLowerCase().includes(q) || task.id.toLowerCase().includes(q);
  };
  const open = (task) => ctx.navigate(`#/tasks/${encodeURIComponent(task.id)}`);

  function row(task) {
    const reason = task.reason && task.state !== 'succeeded'
      ? h('div', { class: isUnschedulable(task) ? 'tk-reason warn' : 'tk-reason' },
        isUnschedulable(task) ? h('strong', {}, t('tasks.unschedulable'), ': ') : null,
        reasonText(task))
      : null;
    const tr = h('tr', {
      class: 'clickable', tabindex: '0', dataset: { task: task.id },
      on: {
        click: (e) => {
          if (!e.target.closest('a')) open(task);
        },
        keydown: (e) => {
          if (e.key === 'Enter') open(task);
        },
      },
    },
    h('td', {}, h('a', { href: `#/tasks/${encodeURIComponent(task.id)}`, tabindex: '-1', class: 'tk-name' }, task.name),
      h('div', { class: 'mono muted tk-id' }, task.id)),
    h('td', {}, stateBadge(task.state), reason),
    h('td', {}, where(task)),
    h('td', {}, fmtTime(task.submitted_at)),
    h('td', { class: 'num' }, fmtDuration(task.kpis?.run_time_s)),
    h('td', { class: 'num' }, fmtNumber(task.kpis?.attempts ?? 0, 0)));
    return tr;
  }

  let tbody = null;
  function paint() {
    const visible = all.filter(matches);
    filters.hidden = !all.length;
    if (!all.length) {
      tbody = null;
      clear(body, h('div', { class: 'empty', role: 'status' },
        h('p', {}, t('tasks.list.empty')),
        h('a', { class: 'button', href: '#/tasks/new' }, t('tasks.list.new_one'))));
      clear(foot);
      return;
    }
    if (!visible.length) {
      tbody = null;
      clear(body, empty(t('tasks.list.empty.filtered')));
      clear(foot);
      return;
    }
    tbody = h('tbody', {}, visible.slice(0, shown).map(row));
    clear(body, h('div', { class: 'table-wrap tk-table' }, h('table', { class: 'data' },
      h('caption', { class: 'muted' }, t('tasks.list.caption')),
      h('thead', {}, h('tr', {},
        h('th', { scope: 'col' }, t('tasks.col.name')),
        h('th', { scope: 'col' }, t('tasks.col.state')),
        h('th', { scope: 'col' }, t('tasks.col.where')),
        h('th', { scope: 'col' }, t('tasks.col.submitted')),
        h('th', { scope: 'col', class: 'num' }, t('tasks.col.runtime')),
        h('th', { scope: 'col', class: 'num' }, t('tasks.col.attempts')))),
      tbody)));
    paintFoot(visible.length);
  }
  function paintFoot(total) {
    const count = Math.min(shown, total);
    clear(foot,
      h('span', { class: 'muted', role: 'status' }, t('tasks.list.count', { shown: count, total })),
      count < total ? h('button', {
        type: 'button', class: 'secondary',
        on: {
          click: () => {
            shown += PAGE;
            paint();
          },
        },
      }, t('tasks.list.more')) : null);
  }

  const applyFilters = () => {
    shown = PAGE;
    const q = new URLSearchParams();
    if (filter.state) q.set('state', filter.state);
    if (filter.name.trim()) q.set('name', filter.name.trim());
    history.replaceState(null, '', `#/tasks${q.toString() ? `?${q}` : ''}`);
    paint();
  };
  stateSel.addEventListener('change', () => {
    filter.state = stateSel.value;
    applyFilters();
  });
  nameIn.addEventListener('input', debounce(() => {
    filter.name = nameIn.value;
    applyFilters();
  }, 250));
  clearBtn.addEventListener('click', () => {
    filter.state = '';
    filter.name = '';
    stateSel.value = '';
    nameIn.value = '';
    applyFilters();
  });
  paint();

  // Live: each task.state event refetches that task; its row is replaced in place, a new
  // task goes on top, a task that no longer matches the filter leaves.
  const dirty = new Set();
  let stopped = false;
  const flush = debounce(async () => {
    const ids = [...dirty];
    dirty.clear();
    if (stopped || !ids.length) return;
    if (ids.length > 40) {
      try {
        all = (await readAll()).tasks;
        if (!stopped) paint();
      } catch {
        // the next event tries again
      }
      return;
    }
    const fresh = await Promise.all(ids.map((id) => fetchTask(id).catch(() => null)));
    if (stopped) return;
    let repaint = false;
    for (const task of fresh) {
      if (!task) continue;
      const i = all.findIndex((x) => x.id === task.id);
      if (i >= 0) all[i] = task;
      else {
        all.push(task);
        all.sort(newestFirst);
      }
      if (!tbody) {
        repaint = true;
        continue;
      }
      const tr = [...tbody.rows].find((r) => r.dataset.task === task.id);
      if (tr && matches(task)) {
        const focused = document.activeElement === tr;
        const next = row(task);
        tr.replaceWith(next);
        if (focused) next.focus();
      } else if (tr) {
        tr.remove();
      } else if (matches(task) && i < 0) {
        tbody.prepend(row(task));
        shown += 1;
      }
    }
    if (repaint) paint();
    else if (tbody) paintFoot(all.filter(matches).length);
  }, 400);
  ctx.onEvent((ev) => {
    // An alarm (e.g. unschedulable) may change a task's reason without a state change.
    if ((ev.type === 'task.state' || (ev.type === 'alarm' && ev.subject?.startsWith('task-'))) && ev.subject) {
      dirty.add(ev.subject);
      flush();
    }
  });
  return () => {
    stopped = true;
  };
}
