// Simulation view of the policies page (#/policies/simulate[/<id>]): replay an Alibaba GPU
// trace on the shipped openb cluster under several GPU placement policies (the FGD paper's
// protocol), follow the job's progress (or cancel it), and compare the policies' unallocated
// GPU curves.
import { get, post } from '../api.js';
import { t, register, fmtNumber, fmtTime, fmtDuration } from '../i18n.js';
import { h, clear, field, table, badge, chart, errorState, loading, empty } from '../ui.js';
import { call, seg } from './policies-api.js';
import { GPU_POLICIES, gpuPolicyLabel, loadCatalog } from './policies-common.js';

register({
  en: {
    'pol.sim.intro': 'Replays a trace of the Alibaba GPU cluster (openb) on its GPU nodes under each chosen GPU placement policy, as in the FGD paper (USENIX ATC \'23). Lower unallocated GPU at 100 % arrived workload means less fragmentation.',
    'pol.sim.new': 'New simulation',
    'pol.sim.policies': 'GPU placement policies (1 to 6)',
    'pol.sim.seeds': 'Seeds',
    'pol.sim.seeds.help': 'Whole numbers separated by commas, at most 10. Each seed is one run per policy.',
    'pol.sim.trace': 'Workload trace',
    'pol.sim.trace.help': 'A trace shipped with the server: default, cpu050, gpushare40, …',
    'pol.sim.cluster.shipped': 'Cluster: the openb GPU nodes shipped with the server.',
    'pol.sim.start': 'Start simulation',
    'pol.sim.err.policies': 'Choose between 1 and 6 policies.',
    'pol.sim.err.seeds': 'Give 1 to 10 whole numbers of 0 or more, e.g. 42, 7.',
    'pol.sim.earlier': 'Simulations',
    'pol.sim.earlier.empty': 'No simulations yet. Choose policies and a trace, then start one. The server keeps the newest 100; one still running when the server stops ends as failed.',
    'pol.sim.col.created': 'Started',
    'pol.sim.col.state': 'State',
    'pol.sim.col.policies': 'Policies',
    'pol.sim.col.workload': 'Workload',
    'pol.sim.col.seeds': 'Seeds',
    'pol.sim.col.progress': 'Runs',
    'pol.sim.detail': 'Simulation {id}',
    'pol.sim.progress': 'Progress',
    'pol.sim.progress.text': '{done} of {total} runs done',
    'pol.sim.elapsed': 'Elapsed',
    'pol.sim.size': 'Size',
    'pol.sim.size.value': '{pods} tasks · {nodes} nodes · {gpus} GPUs',
    'pol.sim.failed': 'The simulation failed: {message}',
    'pol.sim.cancel': 'Cancel simulation',
    'pol.sim.cancel.failed': 'Could not cancel the simulation: {message}',
    'pol.sim.cancelled': 'The simulation was cancelled after {done} of {total} runs; it has no results.',
    'pol.sim.waiting': 'Results appear here when every run is done. This page checks every 2 seconds.',
    'pol.sim.plot': 'Unallocated GPU as the workload arrives',
    'pol.sim.plot.label': 'Line chart: unallocated GPU percentage against arrived workload percentage, one line per policy',
    'pol.sim.x': 'Arrived workload (% of cluster GPU capacity)',
    'pol.sim.y': 'Unallocated GPU (%)',
    'pol.sim.compare': 'Comparison at 100 % arrived workload',
    'pol.sim.col.policy': 'Policy',
    'pol.sim.col.unalloc': 'Unallocated GPU (mean %)',
    'pol.sim.col.sd': 'Std. dev.',
    'pol.sim.col.fragamt': 'Fragmented GPU (% of capacity)',
    'pol.sim.col.fragrate': 'Fragmentation rate (% of idle)',
    'pol.sim.col.nseeds': 'Seeds',
    'pol.sim.best': 'best',
    'pol.sim.notfound': 'This simulation does not exist: the server keeps only the newest 100, or the link is wrong.',
    'pol.sim.state.queued': 'queued',
    'pol.sim.state.running': 'running',
    'pol.sim.state.succeeded': 'succeeded',
    'pol.sim.state.failed': 'failed',
    'pol.sim.state.cancelled': 'cancelled',
    'pol.sim.at100': '100 % arrived',
  },
  zh: {
    'pol.sim.intro': '按 FGD 论文（USENIX ATC \'23）的方法，在阿里巴巴 GPU 集群（openb）的 GPU 节点上，用所选的各 GPU 放置策略回放一段负载轨迹。到达负载为 100 % 时未分配 GPU 越少，说明碎片越少。',
    'pol.sim.new': '新建仿真',
    'pol.sim.policies': 'GPU 放置策略（1 至 6 个）',
    'pol.sim.seeds': '随机种子',
    'pol.sim.seeds.help': '用逗号分隔的整数，最多 10 个。每个种子对每个策略运行一次。',
    'pol.sim.trace': '负载轨迹',
    'pol.sim.trace.help': '服务器自带的轨迹：default、cpu050、gpushare40 等。',
    'pol.sim.cluster.shipped': '集群：服务器自带的 openb GPU 节点。',
    'pol.sim.start': '开始仿真',
    'pol.sim.err.policies': '请选择 1 至 6 个策略。',
    'pol.sim.err.seeds': '请填写 1 至 10 个不小于 0 的整数，例如 42, 7。',
    'pol.sim.earlier': '仿真记录',
    'pol.sim.earlier.empty': '尚无仿真。选择策略和负载轨迹后即可开始。服务器保留最新的 100 个仿真；服务器停止时仍在运行的仿真将以失败结束。',
    'pol.sim.col.created': '开始时间',
    'pol.sim.col.state': '状态',
    'pol.sim.col.policies': '策略',
    'pol.sim.col.workload': '负载',
    'pol.sim.col.seeds': '种子',
    'pol.sim.col.progress': '运行次数',
    'pol.sim.detail': '仿真 {id}',
    'pol.sim.progress': '进度',
    'pol.sim.progress.text': '已完成 {done} / {total} 次运行',
    'pol.sim.elapsed': '已用时间',
    'pol.sim.size': '规模',
    'pol.sim.size.value': '{pods} 个任务 · {nodes} 个节点 · {gpus} 块 GPU',
    'pol.sim.failed': '仿真失败：{message}',
    'pol.sim.cancel': '取消仿真',
    'pol.sim.cancel.failed': '无法取消仿真：{message}',
    'pol.sim.cancelled': '仿真已在完成 {done} / {total} 次运行后取消，没有结果。',
    'pol.sim.waiting': '所有运行完成后在此显示结果。本页每 2 秒刷新一次。',
    'pol.sim.plot': '负载到达过程中的未分配 GPU',
    'pol.sim.plot.label': '折线图：未分配 GPU 百分比随到达负载百分比的变化，每个策略一条线',
    'pol.sim.x': '到达负载（占集群 GPU 容量的 %）',
    'pol.sim.y': '未分配 GPU（%）',
    'pol.sim.compare': '到达负载 100 % 时的对比',
    'pol.sim.col.policy': '策略',
    'pol.sim.col.unalloc': '未分配 GPU（均值 %）',
    'pol.sim.col.sd': '标准差',
    'pol.sim.col.fragamt': '碎片 GPU（占容量 %）',
    'pol.sim.col.fragrate': '碎片率（占空闲 %）',
    'pol.sim.col.nseeds': '种子数',
    'pol.sim.best': '最优',
    'pol.sim.notfound': '此仿真不存在：服务器只保留最新的 100 个仿真，或链接有误。',
    'pol.sim.state.queued': '排队中',
    'pol.sim.state.running': '运行中',
    'pol.sim.state.succeeded': '已完成',
    'pol.sim.state.failed': '失败',
    'pol.sim.state.cancelled': '已取消',
    'pol.sim.at100': '到达 100 %',
  },
});

const TRACES = ['default', 'cpu0', 'cpu037', 'cpu050', 'cpu072', 'cpu100', 'gpushare20', 'gpushare40', 'gpushare60', 'gpushare80', 'gpushare100'];
const POLL_MS = 2000;
const active = (s) => s.state === 'queued' || s.state === 'running';
const stateBadge = (s) => badge(s, t(`pol.sim.state.${s}`));
const pct = (x, d = 2) => (x === null || x === undefined ? '–' : fmtNumber(x, d));
const workloadName = (w) => String(w || '').replace(/^trace:/, '');

function elapsed(sim) {
  if (!sim.started_at) return '–';
  const end = sim.finished_at ? new Date(sim.finished_at) : new Date();
  return fmtDuration((end - new Date(sim.started_at)) / 1000);
}

function simForm(ctx, previous) {
  const chosen = new Set(previous?.request?.policies || ['fgd', 'bestfit', 'packing']);
  const boxes = GPU_POLICIES.map((p) => h('input', { type: 'checkbox', name: 'policies', value: p, checked: chosen.has(p) }));
  const policyErr = h('div', { class: 'error', role: 'alert' });
  const fieldset = h('fieldset', { class: 'pol-checks' },
    h('legend', {}, t('pol.sim.policies')),
    boxes.map((b) => h('label', { class: 'pol-check' }, b, ' ', gpuPolicyLabel(b.value))),
    policyErr);
  const seeds = h('input', { name: 'seeds', value: (previous?.request?.seeds || [42]).join(', '), autocomplete: 'off' });
  const trace = h('input', { name: 'trace', value: workloadName(previous?.request?.workload) || 'default', list: 'pol-traces', autocomplete: 'off' });
  const seedsField = field(t('pol.sim.seeds'), seeds, t('pol.sim.seeds.help'));
  const traceField = field(t('pol.sim.trace'), trace, t('pol.sim.trace.help'));
  const formError = h('div', { class: 'form-error', role: 'alert' });
  const submit = h('button', { type: 'submit' }, t('pol.sim.start'));
  return h('form', {
    class: 'panel pol-sim-form',
    'data-test': 'sim-form',
    novalidate: true,
    on: {
      submit: async (e) => {
        e.preventDefault();
        formError.textContent = '';
        policyErr.textContent = '';
        seedsField.setError('');
        traceField.setError('');
        const policies = boxes.filter((b) => b.checked).map((b) => b.value);
        const parts = seeds.value.split(/[\s,]+/).filter(Boolean);
        const seedList = parts.map(Number);
        let bad = false;
        if (policies.length < 1 || policies.length > 6) {
          policyErr.textContent = t('pol.sim.err.policies');
          bad = true;
        }
        if (!seedList.length || seedList.length > 10 || seedList.some((s) => !Number.isInteger(s) || s < 0)) {
          seedsField.setError(t('pol.sim.err.seeds'));
          bad = true;
        }
        if (bad) return;
        submit.disabled = true;
        try {
          const sim = await call('POST', '/api/v1/simulations', {
            policies, seeds: seedList, workload: { trace: trace.value.trim() || 'default' }, cluster: { shipped: true },
          });
          ctx.navigate(`#/policies/simulate/${encodeURIComponent(sim.id)}`);
        } catch (err) {
          formError.textContent = err.message;
          const f = String(err.field || '');
          if (f.startsWith('workload')) traceField.setError(err.message);
          else if (f.startsWith('seeds')) seedsField.setError(err.message);
          else if (f.startsWith('policies')) policyErr.textContent = err.message;
        } finally {
          submit.disabled = false;
        }
      },
    },
  },
  h('h2', {}, t('pol.sim.new')),
  h('p', { class: 'muted' }, t('pol.sim.intro')),
  fieldset,
  h('div', { class: 'pol-form-grid' }, seedsField, traceField),
  h('datalist', { id: 'pol-traces' }, TRACES.map((x) => h('option', { value: x }))),
  h('p', { class: 'muted' }, t('pol.sim.cluster.shipped')),
  formError,
  h('div', { class: 'form-actions' }, submit));
}

function simList(el, ctx, sims, current) {
  const rows = [...sims].sort((a, b) => String(b.created_at).localeCompare(String(a.created_at)));
  const tbl = table([
    { title: t('pol.sim.col.created'), value: (s) => fmtTime(s.created_at) },
    { title: t('pol.sim.col.state'), value: (s) => stateBadge(s.state) },
    { title: t('pol.sim.col.policies'), value: (s) => s.request.policies.join(', ') },
    { title: t('pol.sim.col.workload'), value: (s) => workloadName(s.request.workload) },
    { title: t('pol.sim.col.seeds'), value: (s) => s.request.seeds.join(', ') },
    { title: t('pol.sim.col.progress'), num: true, value: (s) => `${s.progress.done}/${s.progress.total}` },
  ], rows, { onRow: (s) => ctx.navigate(`#/policies/simulate/${encodeURIComponent(s.id)}`), emptyText: t('pol.sim.earlier.empty') });
  tbl.querySelectorAll?.('tbody tr').forEach((tr, i) => {
    tr.dataset.sim = rows[i].id;
    if (rows[i].id === current) tr.setAttribute('aria-current', 'true');
  });
  clear(el, h('h2', {}, t('pol.sim.earlier')), tbl);
}

function results(sim) {
  const rs = sim.results || [];
  const best = rs.reduce((b, r) => (r.mean_unallocated_gpu_pct_at_100 !== null && r.mean_unallocated_gpu_pct_at_100 !== undefined
    && (b === null || r.mean_unallocated_gpu_pct_at_100 < b.mean_unallocated_gpu_pct_at_100) ? r : b), null);
  const plot = h('div', { class: 'chart pol-sim-plot', 'data-test': 'sim-plot', role: 'img', 'aria-label': t('pol.sim.plot.label') });
  const tbl = table([
    { title: t('pol.sim.col.policy'), value: (r) => [gpuPolicyLabel(r.policy), r === best ? [' ', badge('ok', t('pol.sim.best'))] : null] },
    { title: t('pol.sim.col.unalloc'), num: true, value: (r) => pct(r.mean_unallocated_gpu_pct_at_100) },
    { title: t('pol.sim.col.sd'), num: true, value: (r) => pct(r.sd) },
    { title: t('pol.sim.col.fragamt'), num: true, value: (r) => pct(r.mean_frag_amount_pct_at_100) },
    { title: t('pol.sim.col.fragrate'), num: true, value: (r) => pct(r.mean_frag_rate_pct_at_100) },
    { title: t('pol.sim.col.nseeds'), num: true, value: (r) => r.seeds },
  ], rs);
  tbl.querySelectorAll?.('tbody tr').forEach((tr, i) => {
    tr.dataset.policy = rs[i].policy;
    if (rs[i] === best) tr.classList.add('pol-row-best');
  });
  const box = h('div', {},
    h('section', { class: 'panel' }, h('h2', {}, t('pol.sim.plot')), plot),
    h('section', { class: 'panel', 'data-test': 'sim-table' }, h('h2', {}, t('pol.sim.compare')), tbl));
  box.draw = () => {
    const maxX = Math.max(100, ...rs.flatMap((r) => r.curve.map((p) => p[0])));
    chart(plot, {
      tooltip: { trigger: 'axis', valueFormatter: (v) => `${fmtNumber(v, 2)} %` },
      legend: { top: 0 },
      grid: { left: 64, right: 28, top: 58, bottom: 90 },
      xAxis: {
        type: 'value', min: 0, max: maxX, name: t('pol.sim.x'), nameLocation: 'middle', nameGap: 28,
        axisLabel: { formatter: '{value} %' },
      },
      yAxis: {
        type: 'value', min: 0, name: t('pol.sim.y'), nameLocation: 'middle', nameGap: 48,
        axisLabel: { formatter: '{value} %' },
      },
      dataZoom: [
        { type: 'slider', xAxisIndex: 0, startValue: 60, endValue: maxX, bottom: 8, height: 22, filterMode: 'filter' },
        { type: 'inside', xAxisIndex: 0, filterMode: 'filter' },
      ],
      series: rs.map((r, i) => ({
        name: gpuPolicyLabel(r.policy),
        type: 'line',
        showSymbol: false,
        lineStyle: { width: r === best ? 3 : 2 },
        data: r.curve,
        markLine: i === 0 ? {
          silent: true, symbol: 'none', lineStyle: { type: 'dashed', color: '#888' },
          label: { formatter: t('pol.sim.at100') }, data: [{ xAxis: 100 }],
        } : undefined,
      })),
    });
  };
  return box;
}

export async function renderSimulate(el, ctx, id) {
  try {
    await loadCatalog();
  } catch (e) {
    clear(el, errorState(e, () => renderSimulate(el, ctx, id)));
    return null;
  }
  const detailBox = h('div', { class: 'pol-sim-detail' });
  const listBox = h('section', { class: 'panel pol-sim-list' }, loading());
  let timer = null;
  let stopped = false;
  let sims = [];
  let first = null;

  const loadList = async () => {
    try {
      sims = await get('/api/v1/simulations');
      simList(listBox, ctx, Array.isArray(sims) ? sims : sims.items || [], id);
    } catch (e) {
      clear(listBox, h('h2', {}, t('pol.sim.earlier')), errorState(e, loadList));
    }
  };

  let shownState = null;
  let current = null;
  let cancelling = false;
  let cancelError = '';
  const cancel = async () => {
    if (cancelling) return;
    cancelling = true;
    cancelError = '';
    if (current) paint(current);
    try {
      const sim = await post(`/api/v1/simulations/${seg(id)}/cancel`);
      if (stopped) return;
      cancelling = false;
      paint(sim);
      loadList();
    } catch (e) {
      if (stopped) return;
      cancelling = false;
      cancelError = t('pol.sim.cancel.failed', { message: e.message });
      if (e.status === 409) {
        // It ended meanwhile: show how.
        if (timer) clearTimeout(timer);
        poll();
      } else if (current) {
        paint(current);
      }
    }
  };

  const paint = (sim) => {
    current = sim;
    const prog = h('progress', { max: String(Math.max(1, sim.progress.total)), value: String(sim.progress.done), 'aria-label': t('pol.sim.progress') });
    const head = h('section', { class: 'panel' },
      h('div', { class: 'row pol-sim-head' }, h('h2', {}, t('pol.sim.detail', { id: sim.id })), stateBadge(sim.state),
        active(sim) ? h('button', {
          type: 'button', class: 'secondary', disabled: cancelling, 'data-test': 'sim-cancel', on: { click: cancel },
        }, t('pol.sim.cancel')) : null),
      cancelError ? h('div', { class: 'form-error', role: 'alert' }, cancelError) : null,
      h('div', { class: 'pol-progress' }, prog, h('span', {}, t('pol.sim.progress.text', sim.progress))),
      h('dl', { class: 'props' },
        h('dt', {}, t('pol.sim.col.policies')), h('dd', {}, sim.request.policies.map(gpuPolicyLabel).join(', ')),
        h('dt', {}, t('pol.sim.col.workload')), h('dd', {}, workloadName(sim.request.workload)),
        h('dt', {}, t('pol.sim.col.seeds')), h('dd', {}, sim.request.seeds.join(', ')),
        h('dt', {}, t('pol.sim.size')), h('dd', {}, t('pol.sim.size.value', {
          pods: fmtNumber(sim.request.pods, 0), nodes: fmtNumber(sim.request.nodes, 0), gpus: fmtNumber(sim.request.gpus, 0),
        })),
        h('dt', {}, t('pol.sim.col.created')), h('dd', {}, fmtTime(sim.created_at)),
        h('dt', {}, t('pol.sim.elapsed')), h('dd', {}, elapsed(sim))),
      sim.state === 'failed' ? h('div', { class: 'error-state', role: 'alert' }, t('pol.sim.failed', { message: sim.error || '' })) : null,
      sim.state === 'cancelled' ? h('p', { class: 'muted', 'data-test': 'sim-cancelled' }, t('pol.sim.cancelled', sim.progress)) : null,
      active(sim) ? h('p', { class: 'muted' }, t('pol.sim.waiting')) : null);
    if (sim.state === 'succeeded' && shownState !== 'succeeded') {
      const res = results(sim);
      clear(detailBox, head, res);
      res.draw();
    } else if (sim.state === 'succeeded') {
      detailBox.firstChild.replaceWith(head);
    } else {
      clear(detailBox, head);
    }
    shownState = sim.state;
  };

  const poll = async () => {
    timer = null;
    if (stopped || !el.isConnected) return;
    try {
      const sim = await get(`/api/v1/simulations/${seg(id)}`);
      if (stopped) return;
      const changed = shownState !== sim.state;
      paint(sim);
      if (changed || active(sim)) loadList();
      if (active(sim)) timer = setTimeout(poll, POLL_MS);
    } catch (e) {
      if (stopped) return;
      const gone = e.status === 404;
      clear(detailBox, h('section', { class: 'panel' }, h('h2', {}, t('pol.sim.detail', { id })),
        errorState(gone ? new Error(t('pol.sim.notfound')) : e, gone ? null : () => poll())));
    }
  };

  clear(el, loading());
  if (id) {
    try {
      first = await get(`/api/v1/simulations/${seg(id)}`);
    } catch (e) {
      first = null;
      if (e.status !== 404) {
        clear(el, errorState(e, () => renderSimulate(el, ctx, id)));
        return () => {};
      }
    }
  }
  clear(el, id ? detailBox : null, h('div', { class: 'grid cols-2 pol-sim-grid' }, simForm(ctx, first), listBox));
  loadList();
  if (id) {
    if (first) {
      paint(first);
      if (active(first)) timer = setTimeout(poll, POLL_MS);
    } else {
      clear(detailBox, h('section', { class: 'panel' }, h('h2', {}, t('pol.sim.detail', { id })), errorState(new Error(t('pol.sim.notfound')))));
    }
  }
  return () => {
    stopped = true;
    if (timer) clearTimeout(timer);
  };
}
