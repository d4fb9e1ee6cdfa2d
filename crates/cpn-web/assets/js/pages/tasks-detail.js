// Tasks page, one task (#/tasks/<id>[?tab=logs]): header with state and cancel, and tabs for
// the summary and KPIs, the output (followed live), the state history and alarms, and the
// scheduler's explanation of where it runs ("why here"). Live from the event stream.
import { get, post, followLogs } from '../api.js';
import { t, has, fmtTime, fmtDuration, fmtNumber } from '../i18n.js';
import { h, clear, errorState, loading, empty, props, kpi, tabs, badge, toast, debounce } from '../ui.js';
import { FINISHED, stateBadge, isUnschedulable, reasonText, where, taskPath, fetchTask, backLink } from './tasks-common.js';
import { renderExplanation } from './explain-view.js';

const TABS = ['summary', 'logs', 'events', 'explain'];
const POLL_MS = 5000;

/** Alarms about this task, newest first. */
async function alarmsOf(id) {
  return get(`/api/v1/events/log?types=alarm&subject=${encodeURIComponent(id)}&order=newest&limit=200`);
}

const SEVERITY = { info: 'info', warning: 'warn', warn: 'warn', error: 'bad', critical: 'bad' };
const alarmKind = (a) => (a.data?.kind && has(`tasks.alarm.${a.data.kind}`) ? t(`tasks.alarm.${a.data.kind}`) : a.data?.kind || a.type);

const pct = (v) => (v === null || v === undefined ? '–' : `${fmtNumber(v, 1)} %`);

export async function renderDetail(main, ctx, id) {
  clear(main, backLink(t('tasks.detail.back')), loading());
  let task;
  try {
    task = await fetchTask(id);
  } catch (e) {
    if (main.isConnected) clear(main, backLink(t('tasks.detail.back')), errorState(e, () => renderDetail(main, ctx, id)));
    return null;
  }
  if (!main.isConnected) return null; // left while loading

  let stopped = false;
  let current = TABS.includes(ctx.query.get('tab')) ? ctx.query.get('tab') : 'summary';
  let alarms = null; // loaded when the Events tab is first opened
  const liveAlarms = [];
  let logs = null; // the Logs tab's controller while it is shown

  const header = h('div', { class: 'tk-head' });
  const banner = h('div');
  let confirming = false;

  function paintHeader() {
    const finished = FINISHED.has(task.state);
    const cancelBtn = finished ? null : confirming
      ? h('span', { class: 'row tk-confirm', role: 'group', 'aria-label': t('tasks.detail.cancel') },
        h('span', {}, t('tasks.detail.cancel.confirm', { name: task.name })),
        h('button', { type: 'button', class: 'danger', dataset: { test: 'task-cancel-confirm' }, on: { click: doCancel } }, t('tasks.detail.cancel.yes')),
        h('button', {
          type: 'button', class: 'secondary',
          on: {
            click: () => {
              confirming = false;
              paintHeader();
            },
          },
        }, t('tasks.detail.cancel.keep')))
      : h('button', {
        type: 'button', class: 'danger', dataset: { test: 'task-cancel' },
        on: {
          click: () => {
            confirming = true;
            paintHeader();
            header.querySelector('[data-test=task-cancel-confirm]')?.focus();
          },
        },
      }, t('tasks.detail.cancel'));
    clear(header,
      backLink(t('tasks.detail.back')),
      h('div', { class: 'page-head' },
        h('h1', {}, task.name),
        stateBadge(task.state, { 'data-test': 'task-state', 'data-state': task.state }),
        h('span', { class: 'mono muted tk-id' }, task.id),
        cancelBtn));

    const r = task.reason;
    let b = null;
    if (isUnschedulable(task)) {
      b = h('div', { class: 'tk-banner warn', role: 'status' },
        h('strong', {}, t('tasks.unschedulable')), h('span', {}, reasonText(task)),
        task.not_before ? h('span', { class: 'muted' }, t('tasks.detail.retry_at', { time: fmtTime(task.not_before) })) : null);
    } else if (r && (task.state === 'failed' || task.state === 'lost')) {
      b = h('div', { class: 'tk-banner bad', role: 'status' }, h('strong', {}, t(`tasks.banner.${task.state}`)), h('span', {}, r));
    } else if (r && task.state !== 'succeeded') {
      b = h('div', { class: 'tk-banner', role: 'status' }, h('strong', {}, t('tasks.detail.reason')), h('span', {}, r),
        task.state === 'pending' && task.not_before ? h('span', { class: 'muted' }, t('tasks.detail.retry_at', { time: fmtTime(task.not_before) })) : null);
    }
    clear(banner, b);
  }

  async function doCancel(e) {
    e.target.disabled = true;
    try {
      task = await post(`${taskPath(id)}/cancel`);
      toast(t('tasks.detail.cancelled', { name: task.name }));
    } catch (err) {
      toast(t('tasks.detail.cancel_failed', { message: err.message }), 'bad');
    }
    confirming = false;
    if (!stopped) update();
  }

  // Summary.
  function renderSummary(el) {
    const k = task.kpis || {};
    const spec = task.spec || {};
    const res = spec.resources || {};
    const cons = Object.entries(spec.constraints || {}).filter(([, v]) => v !== null && v !== undefined && !(Array.isArray(v) && !v.length));
    const program = spec.script ?? (spec.command || []).join(' ');
    clear(el,
      h('h2', { class: 'sr-only' }, t('tasks.summary.kpis')),
      h('div', { class: 'grid cols-3 tk-kpis' },
        kpi(t('tasks.kpi.queue_wait'), fmtDuration(k.queue_wait_s)),
        kpi(t('tasks.kpi.run_time'), fmtDuration(k.run_time_s), k.attempts ? t('tasks.kpi.attempts', { n: k.attempts }) : null),
        kpi(t('tasks.kpi.cpu_seconds'), k.cpu_seconds === null || k.cpu_seconds === undefined ? '–' : `${fmtNumber(k.cpu_seconds, 2)} s`),
        kpi(t('tasks.kpi.cpu_util'), pct(k.cpu_util_pct), t('tasks.kpi.cpu_util.sub')),
        kpi(t('tasks.kpi.max_rss'), k.max_rss_mib === null || k.max_rss_mib === undefined ? '–' : `${fmtNumber(k.max_rss_mib, 1)} MiB`),
        kpi(t('tasks.kpi.gpu_util'), pct(k.gpu_util_pct))),
      h('div', { class: 'grid cols-2' },
        h('section', { class: 'panel' }, h('h2', {}, t('tasks.summary.props')), props([
          [t('tasks.prop.id'), h('span', { class: 'mono' }, task.id)],
          [t('tasks.prop.state'), stateBadge(task.state)],
          [t('tasks.prop.where'), where(task)],
          [t('tasks.prop.attempt'), fmtNumber(task.attempt, 0)],
          [t('tasks.prop.policy'), task.policy || spec.policy || '–'],
          [t('tasks.prop.priority'), fmtNumber(task.priority, 0)],
          task.gpus?.length ? [t('tasks.prop.gpus'), task.gpus.join(', ')] : null,
          task.exit_code !== null && task.exit_code !== undefined ? [t('tasks.prop.exit_code'), String(task.exit_code)] : null,
          task.reason ? [t('tasks.prop.reason'), task.reason] : null,
          [t('tasks.prop.submitted'), fmtTime(task.submitted_at)],
          [t('tasks.prop.updated'), fmtTime(task.updated_at)],
          [t('tasks.prop.tenant'), `${task.tenant} / ${task.owner}`],
          task.group !== task.id || task.replica ? [t('tasks.prop.replica'), t('tasks.prop.replica.v', { n: task.replica, group: task.group })] : null,
          task.external_id ? [t('tasks.prop.external'), h('span', { class: 'mono' }, task.external_id)] : null,
        ])),
        h('section', { class: 'panel' }, h('h2', {}, t('tasks.summary.program')),
          h('pre', { class: 'tk-program' }, program || '–'),
          props([
            [t('tasks.prop.resources'), t('tasks.prop.resources.v', { cpu: fmtNumber(res.cpu_cores, 2), mem: fmtNumber(res.memory_gib, 2), gpus: fmtNumber(res.gpus ?? 0, 0) })],
            [t('tasks.prop.constraints'), cons.length
              ? h('span', { class: 'mono' }, cons.map(([key, v]) => `${key}=${Array.isArray(v) ? v.join(',') : v}`).join(' · '))
              : t('tasks.prop.none')],
            [t('tasks.prop.retry'), t('tasks.prop.retry.v', { n: spec.retry?.max_retries ?? 0, backoff: fmtDuration(spec.retry?.backoff_s) })],
          ]))));
  }

  // Logs: the last attempt's output; followed while it runs.
  function renderLogs(el) {
    let stream = 'stdout';
    let mode = 'waiting'; // waiting | follow | ended | final
    let shownAttempt = null;
    let stop = null;
    let seq = 0; // which start() a callback belongs to
    const pre = h('pre', { class: 'logs', dataset: { test: 'task-logs' }, tabindex: '0', 'aria-label': t('tasks.tab.logs') });
    const status = h('p', { class: 'muted tk-log-status', role: 'status' });
    const buttons = ['stdout', 'stderr'].map((s) => h('button', {
      type: 'button', class: 'secondary', dataset: { stream: s }, 'aria-pressed': String(s === stream),
      on: {
        click: () => {
          if (stream === s) return;
          stream = s;
          buttons.forEach((b) => b.setAttribute('aria-pressed', String(b.dataset.stream === s)));
          start();
        },
      },
    }, s));
    clear(el,
      h('div', { class: 'row tk-log-bar' },
        h('span', { class: 'tk-seg', role: 'group', 'aria-label': t('tasks.logs.stream') }, buttons),
        status),
      pre);

    const append = (text) => {
      const atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 8;
      pre.append(document.createTextNode(text));
      if (atEnd) pre.scrollTop = pre.scrollHeight;
    };
    const finalStatus = () => {
      status.textContent = `${t('tasks.logs.final', { n: shownAttempt })}${pre.textContent ? '' : ` ${t('tasks.logs.none')}`}`;
    };

    function readFinal() {
      const mine = ++seq;
      mode = 'final';
      status.textContent = t('common.loading');
      get(`${taskPath(id)}/logs?stream=${stream}`, { text: true }).then((text) => {
        if (stopped || mine !== seq) return;
        pre.textContent = text;
        pre.scrollTop = pre.scrollHeight;
        finalStatus();
      }).catch((err) => {
        if (!stopped && mine === seq) status.textContent = t('tasks.logs.error', { message: err.message });
      });
    }

    function start() {
      stop?.();
      stop = null;
      const mine = ++seq;
      pre.replaceChildren();
      shownAttempt = task.attempt;
      if (!task.attempt) {
        mode = 'waiting';
        status.textContent = t('tasks.logs.waiting');
        return;
      }
      if (task.state === 'running' || task.state === 'scheduled') {
        mode = 'follow';
        status.textContent = t('tasks.logs.following', { n: task.attempt });
        stop = followLogs(id, {
          stream,
          onText: (text) => {
            if (mine === seq) append(text);
          },
          onEnd: (err) => {
            if (stopped || mine !== seq) return;
            mode = 'ended';
            if (err) status.textContent = t('tasks.logs.error', { message: err.message });
            else if (FINISHED.has(task.state)) readFinal();
            else finalStatus();
          },
        });
        return;
      }
      readFinal();
    }
    start();
    return {
      // Called when the task changed: follow a new attempt, and read the whole output once
      // an attempt that was followed has ended.
      update() {
        const active = task.state === 'running' || task.state === 'scheduled';
        if (mode === 'follow' && task.attempt === shownAttempt) return;
        if (active && (mode !== 'follow' || task.attempt !== shownAttempt)) start();
        else if (!active && task.attempt && (mode === 'waiting' || mode === 'ended' || task.attempt !== shownAttempt)) start();
      },
      stop() {
        seq += 1;
        stop?.();
        stop = null;
      },
    };
  }

  // Events: the state history as a timeline, and the alarms about the task.
  function renderEvents(el) {
    const history = task.history || [];
    const alarmBox = h('div');
    const paintAlarms = () => {
      if (alarms === null) return clear(alarmBox, loading());
      const seen = new Set();
      const list = [...alarms, ...liveAlarms].filter((a) => !seen.has(a.id) && seen.add(a.id)).sort((a, b) => b.id - a.id);
      return clear(alarmBox, list.length
        ? h('ul', { class: 'tk-alarms' }, list.map((a) => h('li', {},
          badge(SEVERITY[a.severity] || 'info', alarmKind(a)), ' ',
          h('time', { datetime: a.at, class: 'muted' }, fmtTime(a.at)),
          h('div', {}, a.message))))
        : empty(t('tasks.events.alarms.empty')));
    };
    clear(el, h('div', { class: 'grid cols-2' },
      h('section', { class: 'panel' }, h('h2', {}, t('tasks.events.history')),
        h('ol', { class: 'tk-timeline' }, history.map((c) => h('li', { class: `tk-step ${c.state}` },
          h('div', { class: 'tk-step-head' }, stateBadge(c.state),
            h('time', { datetime: c.at }, fmtTime(c.at)),
            c.attempt ? h('span', { class: 'muted' }, t('tasks.events.attempt', { n: c.attempt })) : null),
          c.reason ? h('div', { class: 'tk-step-reason' }, c.reason) : null)))),
      h('section', { class: 'panel' }, h('h2', {}, t('tasks.events.alarms')), alarmBox)));
    paintAlarms();
    if (alarms === null) {
      alarmsOf(id).then((list) => {
        alarms = list;
      }).catch((err) => {
        alarms = [];
        if (alarmBox.isConnected) clear(alarmBox, errorState(err));
        return 'failed';
      }).then((r) => {
        if (r !== 'failed' && alarmBox.isConnected) paintAlarms();
      });
    }
  }

  // Why here: the binder's stored record of the binding, or "explain now" against the
  // live nodes (also what a waiting task gets).
  function renderExplain(el) {
    const box = h('div', { class: 'tk-explain-body' });
    const load = (now) => {
      clear(box, loading());
      get(`${taskPath(id)}/explain${now ? '?now=true' : ''}`).then((ex) => {
        if (!box.isConnected) return;
        const note = h('p', { class: 'muted', dataset: { test: 'task-explain-when' } },
          ex.decided_at ? t('tasks.explain.decided', { at: ex.decided_at }) : t('tasks.explain.current'));
        clear(box, note);
        const body = h('div');
        box.append(body);
        renderExplanation(body, ex);
      }).catch((err) => {
        if (box.isConnected) clear(box, errorState(err, () => load(now)));
      });
    };
    clear(el, h('div', { dataset: { test: 'task-explain' } },
      h('div', { class: 'row tk-explain-head' },
        h('p', { class: 'muted' }, t('tasks.explain.intro')),
        h('button', { type: 'button', class: 'secondary', on: { click: () => load(false) } }, t('tasks.explain.refresh')),
        h('button', { type: 'button', class: 'secondary', dataset: { test: 'task-explain-now' }, on: { click: () => load(true) } }, t('tasks.explain.now'))),
      box));
    load(false);
  }

  const RENDER = { summary: renderSummary, logs: renderLogs, events: renderEvents, explain: renderExplain };
  const tabEl = tabs(TABS.map((tab) => ({
    id: tab,
    label: t(`tasks.tab.${tab}`),
    render: (el) => {
      logs?.stop();
      logs = null;
      current = tab;
      const q = tab === 'summary' ? '' : `?tab=${tab}`;
      const want = `#/tasks/${encodeURIComponent(id)}${q}`;
      if (location.hash !== want) history.replaceState(null, '', want);
      const r = RENDER[tab](el);
      if (tab === 'logs') logs = r;
    },
  })), current);
  tabEl.classList.add('tk-tabs');

  paintHeader();
  clear(main, header, banner, tabEl);

  // Live: this task's state events refresh it (one fetch per burst); while it is not
  // finished a slow poll keeps the run time and usage current.
  function update() {
    paintHeader();
    if (current === 'summary' || current === 'events') {
      const panel = tabEl.querySelector('[role=tabpanel]');
      const scroll = main.scrollTop;
      RENDER[current](panel);
      main.scrollTop = scroll;
    } else if (current === 'logs') logs?.update();
  }
  const refresh = debounce(async () => {
    try {
      const fresh = await fetchTask(id);
      if (stopped) return;
      task = fresh;
      update();
    } catch {
      // the next event or poll tries again
    }
  }, 200);
  ctx.onEvent((ev) => {
    if (ev.type === 'task.state' && ev.subject === id) refresh();
    if (ev.type === 'alarm' && (ev.subject === id || ev.data?.task === id)) {
      liveAlarms.push(ev);
      refresh(); // an alarm may come with a new reason and no state change
      if (current === 'events') update();
    }
  });
  const timer = setInterval(() => {
    if (!main.isConnected || !header.isConnected) {
      // left (also when this view was shown by a retry, whose cleanup the shell never got)
      clearInterval(timer);
      stopped = true;
      logs?.stop();
      return;
    }
    if (!FINISHED.has(task.state) && !document.hidden) refresh();
  }, POLL_MS);
  return () => {
    stopped = true;
    clearInterval(timer);
    logs?.stop();
  };
}
