// Overview: the federation at a glance. Sites and their health, registered capacity by
// chip type, live capacity and utilisation of the nodes agents and Slurm report, tasks by
// state and the latest alarms; task and alarm events from the stream update it in place.
import { get, listAll } from '../api.js';
import { t, register, fmtNumber, fmtPct, fmtTime } from '../i18n.js';
import { h, clear, kpi, table, badge, chart, errorState, loading, empty, debounce } from '../ui.js';
// The task states' names in both languages.
import './tasks-common.js';

register({
  en: {
    'ov.title': 'Overview',
    'ov.sites': 'Sites',
    'ov.sites.sub': '{healthy} healthy · {hubs} hubs',
    'ov.nodes': 'Live nodes',
    'ov.nodes.sub': '{ready} ready',
    'ov.nodes.sub.emulated': '{ready} ready, {emulated} emulated',
    'ov.cpu': 'CPU cores (live)',
    'ov.cpu.sub': '{used} allocated · {util} busy',
    'ov.gpu': 'Accelerators (registered)',
    'ov.gpu.sub': '{gpus} GPU · {npus} NPU',
    'ov.tasks': 'Tasks',
    'ov.tasks.sub': '{running} running · {pending} waiting',
    'ov.capacity': 'Registered capacity by site',
    'ov.capacity.cpu': 'CPU cores',
    'ov.capacity.gpu': 'GPUs',
    'ov.capacity.npu': 'NPUs',
    'ov.live': 'Live sites: allocation and load',
    'ov.live.empty': 'No agent or Slurm node has reported yet. Issue a join token (`cpn site join-token create SITE`) and run `cpn agent --join TOKEN` on a machine, or add a Slurm site.',
    'ov.live.alloc_cpu': 'CPU allocated',
    'ov.live.alloc_gpu': 'GPU allocated',
    'ov.live.util': 'CPU busy',
    'ov.taskstates': 'Tasks by state',
    'ov.alarms': 'Recent alarms',
    'ov.alarms.empty': 'No alarms. Task failures, lost nodes and unschedulable tasks appear here as they happen.',
    'ov.col.kind': 'Kind',
    'ov.col.subject': 'Subject',
    'ov.col.message': 'Message',
    'ov.col.region': 'Region',
    'ov.col.health': 'Health',
    'ov.col.supplier': 'Supplier',
    'ov.sitelist': 'Sites',
  },
  zh: {
    'ov.title': '总览',
    'ov.sites': '资源节点',
    'ov.sites.sub': '{healthy} 个健康 · {hubs} 个枢纽',
    'ov.nodes': '在线计算节点',
    'ov.nodes.sub': '{ready} 个就绪',
    'ov.nodes.sub.emulated': '{ready} 个就绪，{emulated} 个模拟',
    'ov.cpu': 'CPU 核（在线）',
    'ov.cpu.sub': '已分配 {used} · 忙碌 {util}',
    'ov.gpu': '加速卡（已注册）',
    'ov.gpu.sub': 'GPU {gpus} · NPU {npus}',
    'ov.tasks': '任务',
    'ov.tasks.sub': '{running} 个运行中 · {pending} 个等待中',
    'ov.capacity': '各资源节点注册算力',
    'ov.capacity.cpu': 'CPU 核',
    'ov.capacity.gpu': 'GPU',
    'ov.capacity.npu': 'NPU',
    'ov.live': '在线资源节点：分配与负载',
    'ov.live.empty': '尚无 agent 或 Slurm 节点上报。请签发加入令牌（`cpn site join-token create SITE`）并在机器上运行 `cpn agent --join TOKEN`，或添加 Slurm 资源节点。',
    'ov.live.alloc_cpu': 'CPU 已分配',
    'ov.live.alloc_gpu': 'GPU 已分配',
    'ov.live.util': 'CPU 忙碌',
    'ov.taskstates': '各状态任务数',
    'ov.alarms': '最近告警',
    'ov.alarms.empty': '暂无告警。任务失败、节点失联和无法调度的任务会实时显示在这里。',
    'ov.col.kind': '类型',
    'ov.col.subject': '对象',
    'ov.col.message': '信息',
    'ov.col.region': '地区',
    'ov.col.health': '健康状态',
    'ov.col.supplier': '供应商',
    'ov.sitelist': '资源节点列表',
  },
});

export const TASK_STATES = ['pending', 'scheduled', 'running', 'succeeded', 'failed', 'cancelled', 'lost'];

/** Task counts by state, over the tasks the signed-in user may see (all, for operators). */
export async function taskCounts() {
  const byState = await get('/api/v1/tasks/counts');
  const counts = Object.fromEntries(TASK_STATES.map((s) => [s, Number(byState[s] || 0)]));
  return { counts };
}

/** Each site's real-time status (null for one that cannot be read), in the sites' order. */
function siteStatuses(sites) {
  return Promise.all(sites.map((st) => get(`/api/v1/sites/${encodeURIComponent(st.name)}/status`).catch(() => null)));
}

/** The newest `n` alarms. */
export async function recentAlarms(n = 8) {
  return get(`/api/v1/events/log?types=alarm&order=newest&limit=${n}`);
}

export default {
  async render(main, ctx) {
    clear(main, h('h1', {}, t('ov.title')), loading());
    let data;
    try {
      const [sites, platforms, resources, nodes, tasks] = await Promise.all([
        listAll('/api/v1/sites'),
        listAll('/api/v1/platforms'),
        listAll('/api/v1/resources'),
        get('/api/v1/nodes'),
        taskCounts(ctx.user?.role),
      ]);
      const statuses = await siteStatuses(sites);
      const alarms = await recentAlarms();
      data = { sites, platforms, resources, nodes, tasks, statuses, alarms };
    } catch (e) {
      clear(main, h('h1', {}, t('ov.title')), errorState(e, () => this.render(main, ctx)));
      return;
    }
    const { sites, platforms, resources, nodes, statuses } = data;
    let { counts } = data.tasks;
    let alarms = data.alarms;

    // Registered capacity per site and chip type, from the compute resources.
    const bySite = new Map(sites.map((s) => [s.id, { name: s.name, cpu: 0, gpu: 0, npu: 0 }]));
    for (const r of resources) {
      const c = r.spec?.compute;
      const row = bySite.get(r.spec?.site);
      if (!c || !row) continue;
      if (c.chip_type === 'cpu') row.cpu += c.count;
      else if (c.chip_type === 'gpu') row.gpu += c.count;
      else if (c.chip_type === 'npu') row.npu += c.count;
    }
    const capRows = [...bySite.values()].filter((r) => r.cpu + r.gpu + r.npu > 0);
    const sum = (xs, f) => xs.reduce((a, x) => a + (f(x) || 0), 0);
    const hubs = platforms.filter((p) => p.spec?.level === 'hub').length;
    const healthy = statuses.filter(Boolean).length && sites.filter((s) => (s.spec?.health || 'healthy') === 'healthy').length;

    const taskKpi = kpi(t('ov.tasks'), '', '');
    const paintTaskKpi = () => {
      const total = sum(TASK_STATES, (s) => counts[s]);
      taskKpi.querySelector('.value').textContent = fmtNumber(total, 0);
      taskKpi.querySelector('.sub').textContent = t('ov.tasks.sub', { running: counts.running, pending: counts.pending + counts.scheduled });
    };
    taskKpi.append(h('div', { class: 'sub' }));
    paintTaskKpi();

    const capChart = h('div', { class: 'chart', role: 'img', 'aria-label': t('ov.capacity') });
    const stateChart = h('div', { class: 'chart', role: 'img', 'aria-label': t('ov.taskstates') });
    const liveChart = h('div', { class: 'chart', role: 'img', 'aria-label': t('ov.live') });
    const liveBox = h('div');
    const nodesKpi = kpi(t('ov.nodes'), '–', ' ');
    const cpuKpi = kpi(t('ov.cpu'), '–', ' ');
    let liveInstance = null;
    // The live part: nodes agents and Slurm report, their allocation and load.
    const paintLive = (nodeList, statusList) => {
      const live = statusList.filter((st) => st && st.nodes > 0);
      const cpuCap = sum(live, (st) => st.capacity.cpu_cores);
      const cpuUsed = sum(live, (st) => st.allocated.cpu_cores);
      const busy = cpuCap ? sum(live, (st) => (st.cpu_util_pct / 100) * st.capacity.cpu_cores) / cpuCap : null;
      nodesKpi.querySelector('.value').textContent = fmtNumber(nodeList.length, 0);
      const ready = nodeList.filter((n) => n.state === 'ready').length;
      const emulated = nodeList.filter((n) => n.emulated).length;
      nodesKpi.querySelector('.sub').textContent = emulated
        ? t('ov.nodes.sub.emulated', { ready, emulated })
        : t('ov.nodes.sub', { ready });
      cpuKpi.querySelector('.value').textContent = fmtNumber(cpuCap, 0);
      cpuKpi.querySelector('.sub').textContent = t('ov.cpu.sub', { used: fmtNumber(cpuUsed, 1), util: fmtPct(busy) });
      if (!live.length) {
        clear(liveBox, empty(t('ov.live.empty')));
        return;
      }
      if (!liveChart.isConnected) clear(liveBox, liveChart);
      liveInstance ||= chart(liveChart, {});
      liveInstance.setOption({
        tooltip: { trigger: 'axis', valueFormatter: (v) => `${fmtNumber(v, 1)} %` },
        legend: { top: 0 },
        grid: { left: 40, right: 10, top: 30, bottom: 30 },
        xAxis: { type: 'category', data: live.map((st) => st.site) },
        yAxis: { type: 'value', max: 100, axisLabel: { formatter: '{value} %' } },
        series: [
          { name: t('ov.live.alloc_cpu'), type: 'bar', data: live.map((st) => (st.capacity.cpu_cores ? (100 * st.allocated.cpu_cores) / st.capacity.cpu_cores : 0)) },
          { name: t('ov.live.alloc_gpu'), type: 'bar', data: live.map((st) => (st.capacity.gpus ? (100 * st.allocated.gpus) / st.capacity.gpus : 0)) },
          { name: t('ov.live.util'), type: 'bar', data: live.map((st) => st.cpu_util_pct) },
        ],
      });
    };
    const alarmBox = h('div');
    const severity = { warning: 'warn', critical: 'bad', info: 'info' };
    const subject = (e) => (e.subject.startsWith('task-')
      ? h('a', { href: `#/tasks/${encodeURIComponent(e.subject)}` }, e.subject)
      : h('span', { class: 'mono' }, e.subject));
    const paintAlarms = () => clear(alarmBox, table([
      { title: t('common.time'), value: (e) => fmtTime(e.at) },
      { title: t('ov.col.kind'), value: (e) => badge(severity[e.severity] || e.severity, e.data?.kind || e.type) },
      { title: t('ov.col.message'), value: (e) => h('div', { class: 'ov-alarm' }, h('div', {}, e.message), h('div', { class: 'muted' }, subject(e))) },
    ], alarms, { emptyText: t('ov.alarms.empty') }));
    paintAlarms();

    clear(main,
      h('h1', {}, t('ov.title')),
      h('div', { class: 'grid cols-4', style: { marginBottom: '16px' } },
        kpi(t('ov.sites'), fmtNumber(sites.length, 0), t('ov.sites.sub', { healthy, hubs })),
        nodesKpi,
        cpuKpi,
        kpi(t('ov.gpu'), fmtNumber(sum(capRows, (r) => r.gpu + r.npu), 0), t('ov.gpu.sub', { gpus: fmtNumber(sum(capRows, (r) => r.gpu), 0), npus: fmtNumber(sum(capRows, (r) => r.npu), 0) })),
      ),
      h('div', { class: 'grid cols-2' },
        h('section', { class: 'panel' }, h('h2', {}, t('ov.capacity')), capRows.length ? capChart : empty()),
        h('section', { class: 'panel' }, h('h2', {}, t('ov.taskstates')), taskKpi, stateChart),
      ),
      h('div', { class: 'grid cols-2' },
        h('section', { class: 'panel' }, h('h2', {}, t('ov.live')), liveBox),
        h('section', { class: 'panel' }, h('h2', {}, t('ov.alarms')), alarmBox),
      ),
    );

    if (capRows.length) {
      chart(capChart, {
        tooltip: { trigger: 'axis' },
        legend: { top: 0 },
        grid: { left: 50, right: 50, top: 30, bottom: 60 },
        xAxis: { type: 'category', data: capRows.map((r) => r.name), axisLabel: { rotate: 30 } },
        yAxis: [{ type: 'value', name: t('ov.capacity.gpu') }, { type: 'value', name: t('ov.capacity.cpu') }],
        series: [
          { name: t('ov.capacity.gpu'), type: 'bar', stack: 'acc', data: capRows.map((r) => r.gpu) },
          { name: t('ov.capacity.npu'), type: 'bar', stack: 'acc', data: capRows.map((r) => r.npu) },
          { name: t('ov.capacity.cpu'), type: 'line', yAxisIndex: 1, data: capRows.map((r) => r.cpu) },
        ],
      });
    }
    const states = chart(stateChart, {});
    const paintStates = () => states.setOption({
      tooltip: {},
      grid: { left: 40, right: 10, top: 10, bottom: 30 },
      xAxis: { type: 'category', data: TASK_STATES.map((s) => t(`tasks.state.${s}`)), axisLabel: { interval: 0 } },
      yAxis: { type: 'value', minInterval: 1 },
      series: [{ type: 'bar', data: TASK_STATES.map((s) => counts[s]), itemStyle: { color: '#2f74d0' } }],
    });
    paintStates();
    paintLive(nodes, statuses);

    // Live: task changes refresh the counts (one fetch per burst), alarms are prepended.
    const refreshCounts = debounce(async () => {
      try {
        counts = (await taskCounts(ctx.user?.role)).counts;
        paintTaskKpi();
        paintStates();
      } catch {
        // the next event tries again
      }
    }, 300);
    // Nodes come and go with events; their load changes all the time, so it is also polled.
    const refreshLive = debounce(async () => {
      try {
        const nodeList = await get('/api/v1/nodes');
        const statusList = await siteStatuses(sites);
        if (main.isConnected) paintLive(nodeList, statusList);
      } catch {
        // the next tick tries again
      }
    }, 500);
    const timer = setInterval(refreshLive, 10000);
    ctx.onEvent((ev) => {
      if (ev.type === 'node.state') refreshLive();
      if (ev.type === 'task.state') {
        refreshCounts();
        refreshLive(); // what tasks hold changes with their state
      }
      if (ev.type === 'alarm') {
        alarms = [ev, ...alarms].slice(0, 8);
        paintAlarms();
      }
    });
    return () => clearInterval(timer);
  },
};
