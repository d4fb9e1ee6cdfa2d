// Topology page, the side panel: a site's properties, tags, resources, live status and
// metric charts (per live node: CPU and memory, GPUs, network; per site: the posted load
// history), or one node's. Node history comes from GET /api/v1/nodes/{id}/metrics when the
// server has it; samples polled every 2 s from GET /api/v1/nodes/{id} are appended either
// way, so the charts also fill up on a server without the history endpoint.
import { get, items, ApiError } from '../api.js';
import { t, register, fmtNumber, fmtPct, fmtTime } from '../i18n.js';
import { h, clear, props, kpi, table, badge, chart, errorState, loading, empty } from '../ui.js';
import { healthLabel, healthOf, nodeStateOf, fmtRate, aliasOf } from './topology-map.js';

register({
  en: {
    'topo.panel.close': 'Close the panel',
    'topo.panel.properties': 'Properties',
    'topo.panel.region': 'Region',
    'topo.panel.city': 'City',
    'topo.panel.supplier': 'Supplier',
    'topo.panel.hub': 'Hub',
    'topo.panel.nohub': 'none',
    'topo.panel.location': 'Location',
    'topo.panel.pue': 'PUE',
    'topo.panel.price': 'Electricity price',
    'topo.panel.price.value': '¥{price} per kWh',
    'topo.panel.carbon': 'Carbon intensity',
    'topo.panel.carbon.value': '{value} gCO₂/kWh',
    'topo.panel.scale': 'Registered scale',
    'topo.panel.scale.value': '{cpus} CPU cores · {gpus} GPU · {npus} NPU · {mem} GiB memory · {storage} TiB storage',
    'topo.panel.health': 'Health',
    'topo.panel.description': 'Description',
    'topo.panel.created': 'Registered',
    'topo.panel.tags': 'Labels',
    'topo.panel.tags.none': 'No labels. Tags applied on the Resources & tags page appear here.',
    'topo.panel.tags.inherited': 'inherited from the platform or cloud',
    'topo.panel.status': 'Live status',
    'topo.panel.status.nodes': 'Nodes ready',
    'topo.panel.status.cpu': 'CPU cores held',
    'topo.panel.status.gpu': 'GPUs held',
    'topo.panel.status.idle': 'Idle rate',
    'topo.panel.status.util': 'CPU busy',
    'topo.panel.status.load': 'Load (1 min)',
    'topo.panel.status.tasks': 'Tasks running',
    'topo.panel.status.tasks.sub': '{pending} waiting',
    'topo.panel.status.power': 'Power',
    'topo.panel.status.of': 'of {total}',
    'topo.panel.status.error': 'Live status unavailable: {message}',
    'topo.panel.status.health': 'Measured health',
    'topo.panel.offers': 'Offers and live machines',
    'topo.panel.offers.intro': 'Per registered compute resource, in its unit (chips, or cores for CPU offers): registered is a planning target; live counts the answering machines that fulfil it, the only capacity real tasks are placed on.',
    'topo.panel.offers.empty': 'No compute resource is registered at this site.',
    'topo.panel.offers.error': 'Offers unavailable: {message}',
    'topo.panel.offers.resource': 'Resource',
    'topo.panel.offers.unit': 'Unit',
    'topo.panel.offers.registered': 'Registered',
    'topo.panel.offers.live': 'Live',
    'topo.panel.offers.allocated': 'Allocated',
    'topo.panel.offers.free': 'Free',
    'topo.panel.offers.nodes': 'Machines',
    'topo.panel.offers.planning': 'planning only',
    'topo.panel.offers.unregistered': 'Unregistered machines (unknown price, performance and energy: scored as the mean of the sites that know theirs)',
    'topo.panel.offers.emulated': '{n} emulated',
    'topo.panel.offers.reason': 'Why',
    'topo.panel.resources': 'Resources',
    'topo.panel.resources.empty': 'No resources are registered at this site. Register them on the Resources & tags page.',
    'topo.panel.res.name': 'Name',
    'topo.panel.res.type': 'Type',
    'topo.panel.res.what': 'Capacity',
    'topo.panel.res.price': 'Price',
    'topo.panel.res.type.compute': 'compute',
    'topo.panel.res.type.storage': 'storage',
    'topo.panel.res.type.network': 'network',
    'topo.panel.res.type.security': 'security',
    'topo.panel.res.price.value': '¥{price}/h',
    'topo.panel.nodes': 'Live nodes',
    'topo.panel.nodes.empty': 'No agent reports from this site: it has registered resources only. Issue a join token with `cpn site join-token create {site}` and run `cpn agent --join TOKEN` on a machine there to see live charts.',
    'topo.panel.node.open': 'Node details',
    'topo.panel.sitemetrics': 'Site load history',
    'topo.panel.sitemetrics.empty': 'No samples yet. Samples appear here when monitoring posts them to POST /api/v1/sites/{site}/metrics.',
    'topo.panel.node': 'Node',
    'topo.panel.node.site': 'Site',
    'topo.panel.node.open.site': 'Open site {site}',
    'topo.panel.node.state': 'State',
    'topo.panel.node.executor': 'Executor',
    'topo.panel.node.emulated': 'emulated',
    'topo.panel.node.emulated.note': 'An emulated node: a demo offer scaled down by cpn serve. Its tasks run as real processes on the server\'s machine; its GPUs exist by index only (CUDA_VISIBLE_DEVICES, no device) and its metrics are not measured.',
    'topo.panel.node.host': 'Host',
    'topo.panel.node.cpu': 'CPU',
    'topo.panel.node.cpu.value': '{model} · {cores} cores',
    'topo.panel.node.memory': 'Memory',
    'topo.panel.node.gpus': 'GPUs',
    'topo.panel.node.capacity': 'Capacity',
    'topo.panel.node.capacity.value': '{cpu} cores · {mem} GiB · {gpus} GPU',
    'topo.panel.node.allocated': 'Held',
    'topo.panel.node.idle': 'Idle rate',
    'topo.panel.node.tasks': 'Tasks running',
    'topo.panel.node.heartbeat': 'Last heartbeat',
    'topo.panel.node.gone': 'This node is no longer reported.',
    'topo.panel.charts': 'Metrics',
    'topo.panel.charts.window': 'last 30 minutes, every 2 s',
    'topo.chart.cpumem': 'CPU and memory',
    'topo.chart.cpu': 'CPU',
    'topo.chart.mem': 'Memory',
    'topo.chart.gpu': 'GPU utilisation and temperature',
    'topo.chart.gpu.util': 'GPU {i} util',
    'topo.chart.gpu.temp': 'GPU {i} °C',
    'topo.chart.gpu.none': 'No GPUs reported on this node.',
    'topo.chart.net': 'Network',
    'topo.chart.net.rx': 'received',
    'topo.chart.net.tx': 'sent',
    'topo.chart.site.cpu': 'CPU',
    'topo.chart.site.gpu': 'GPU',
    'topo.chart.site.mem': 'Memory',
    'topo.chart.site.power': 'Power (kW)',
    'topo.chart.aria': '{what} of {name} over time',
  },
  zh: {
    'topo.panel.close': '关闭面板',
    'topo.panel.properties': '属性',
    'topo.panel.region': '地区',
    'topo.panel.city': '城市',
    'topo.panel.supplier': '供应商',
    'topo.panel.hub': '所属枢纽',
    'topo.panel.nohub': '无',
    'topo.panel.location': '位置',
    'topo.panel.pue': 'PUE',
    'topo.panel.price': '电价',
    'topo.panel.price.value': '¥{price}/千瓦时',
    'topo.panel.carbon': '碳排放强度',
    'topo.panel.carbon.value': '{value} gCO₂/千瓦时',
    'topo.panel.scale': '注册规模',
    'topo.panel.scale.value': 'CPU {cpus} 核 · GPU {gpus} 块 · NPU {npus} 块 · 内存 {mem} GiB · 存储 {storage} TiB',
    'topo.panel.health': '健康状态',
    'topo.panel.description': '说明',
    'topo.panel.created': '注册时间',
    'topo.panel.tags': '标签',
    'topo.panel.tags.none': '暂无标签。在“资源与标签”页面打上的标签会显示在这里。',
    'topo.panel.tags.inherited': '继承自调度平台或云平台',
    'topo.panel.status': '实时状态',
    'topo.panel.status.nodes': '就绪计算节点',
    'topo.panel.status.cpu': '已占用 CPU 核',
    'topo.panel.status.gpu': '已占用 GPU',
    'topo.panel.status.idle': '空闲率',
    'topo.panel.status.util': 'CPU 忙碌',
    'topo.panel.status.load': '负载（1 分钟）',
    'topo.panel.status.tasks': '运行中任务',
    'topo.panel.status.tasks.sub': '{pending} 个等待中',
    'topo.panel.status.power': '功率',
    'topo.panel.status.of': '共 {total}',
    'topo.panel.status.error': '无法获取实时状态：{message}',
    'topo.panel.status.health': '实测健康状态',
    'topo.panel.offers': '已注册算力与在线机器',
    'topo.panel.offers.intro': '按已注册的计算资源及其单位（芯片，CPU 资源为核）：已注册量是规划目标；在线量只计满足该资源且仍在响应的机器，真实任务只会放到这些容量上。',
    'topo.panel.offers.empty': '该资源节点未注册计算资源。',
    'topo.panel.offers.error': '无法获取算力：{message}',
    'topo.panel.offers.resource': '资源',
    'topo.panel.offers.unit': '单位',
    'topo.panel.offers.registered': '已注册',
    'topo.panel.offers.live': '在线',
    'topo.panel.offers.allocated': '已分配',
    'topo.panel.offers.free': '空闲',
    'topo.panel.offers.nodes': '机器',
    'topo.panel.offers.planning': '仅规划',
    'topo.panel.offers.unregistered': '未注册的机器（价格、性能与能耗未知：按已知站点的平均值计分）',
    'topo.panel.offers.emulated': '{n} 台模拟',
    'topo.panel.offers.reason': '原因',
    'topo.panel.resources': '资源',
    'topo.panel.resources.empty': '该资源节点尚未注册资源。请在“资源与标签”页面注册。',
    'topo.panel.res.name': '名称',
    'topo.panel.res.type': '类型',
    'topo.panel.res.what': '容量',
    'topo.panel.res.price': '单价',
    'topo.panel.res.type.compute': '算力',
    'topo.panel.res.type.storage': '存储',
    'topo.panel.res.type.network': '网络',
    'topo.panel.res.type.security': '安全',
    'topo.panel.res.price.value': '¥{price}/卡时',
    'topo.panel.nodes': '在线计算节点',
    'topo.panel.nodes.empty': '该资源节点没有 agent 上报，仅有已注册资源。用 `cpn site join-token create {site}` 签发加入令牌，并在该处的机器上运行 `cpn agent --join TOKEN` 即可看到实时图表。',
    'topo.panel.node.open': '节点详情',
    'topo.panel.sitemetrics': '资源节点负载历史',
    'topo.panel.sitemetrics.empty': '暂无样本。监控系统向 POST /api/v1/sites/{site}/metrics 上报后，样本会显示在这里。',
    'topo.panel.node': '计算节点',
    'topo.panel.node.site': '资源节点',
    'topo.panel.node.open.site': '打开资源节点 {site}',
    'topo.panel.node.state': '状态',
    'topo.panel.node.executor': '执行方式',
    'topo.panel.node.emulated': '模拟',
    'topo.panel.node.emulated.note': '模拟节点：cpn serve 按比例缩小的演示资源。其任务作为真实进程在服务器本机运行；GPU 仅按编号模拟（CUDA_VISIBLE_DEVICES，无真实设备），指标不做测量。',
    'topo.panel.node.host': '主机',
    'topo.panel.node.cpu': 'CPU',
    'topo.panel.node.cpu.value': '{model} · {cores} 核',
    'topo.panel.node.memory': '内存',
    'topo.panel.node.gpus': 'GPU',
    'topo.panel.node.capacity': '容量',
    'topo.panel.node.capacity.value': '{cpu} 核 · {mem} GiB · GPU {gpus} 块',
    'topo.panel.node.allocated': '已占用',
    'topo.panel.node.idle': '空闲率',
    'topo.panel.node.tasks': '运行中任务',
    'topo.panel.node.heartbeat': '最近心跳',
    'topo.panel.node.gone': '该计算节点已不再上报。',
    'topo.panel.charts': '监控指标',
    'topo.panel.charts.window': '最近 30 分钟，每 2 秒更新',
    'topo.chart.cpumem': 'CPU 与内存',
    'topo.chart.cpu': 'CPU',
    'topo.chart.mem': '内存',
    'topo.chart.gpu': 'GPU 利用率与温度',
    'topo.chart.gpu.util': 'GPU {i} 利用率',
    'topo.chart.gpu.temp': 'GPU {i} 温度',
    'topo.chart.gpu.none': '该计算节点未上报 GPU。',
    'topo.chart.net': '网络',
    'topo.chart.net.rx': '接收',
    'topo.chart.net.tx': '发送',
    'topo.chart.site.cpu': 'CPU',
    'topo.chart.site.gpu': 'GPU',
    'topo.chart.site.mem': '内存',
    'topo.chart.site.power': '功率（kW）',
    'topo.chart.aria': '{name} 的{what}随时间变化',
  },
});

// False once the server answered 404 for the node history (an older server): asked once.
let historyEndpoint = true;

const POLL_MS = 2000;
const WINDOW_MS = 30 * 60 * 1000;
const enc = encodeURIComponent;

const axisTime = { type: 'time', axisLabel: { fontSize: 10, hideOverlap: true }, splitLine: { show: false } };
const grid = { left: 46, right: 46, top: 30, bottom: 22 };
const legend = { top: 0, left: 0, type: 'scroll', itemWidth: 14, itemHeight: 8, textStyle: { fontSize: 11 } };
const line = (id, name, data, extra = {}) => ({ id, name, type: 'line', showSymbol: data.length < 3, symbolSize: 4, data, ...extra });
const pctText = (v) => (v === null || v === undefined ? '–' : `${fmtNumber(v, 1)} %`);

function cpuMemOption(samples) {
  return {
    grid,
    legend,
    tooltip: { trigger: 'axis', valueFormatter: pctText },
    xAxis: axisTime,
    yAxis: { type: 'value', min: 0, max: 100, axisLabel: { fontSize: 10, formatter: '{value} %' } },
    series: [
      line('cpu', t('topo.chart.cpu'), samples.map((s) => [s.at, s.cpu_util_pct]), { color: '#2f74d0' }),
      line('mem', t('topo.chart.mem'), samples.map((s) => [s.at, s.memory_util_pct]), { color: '#7b4fd6' }),
    ],
  };
}

function gpuOption(samples) {
  const indices = [...new Set(samples.flatMap((s) => (s.gpus || []).map((g) => g.index)))].sort((a, b) => a - b);
  const series = [];
  for (const i of indices) {
    const of = (s) => (s.gpus || []).find((g) => g.index === i);
    series.push(line(`u${i}`, t('topo.chart.gpu.util', { i }), samples.filter(of).map((s) => [s.at, of(s).util_pct])));
    series.push(line(`t${i}`, t('topo.chart.gpu.temp', { i }), samples.filter((s) => of(s)?.temperature_c != null).map((s) => [s.at, of(s).temperature_c]),
      { yAxisIndex: 1, lineStyle: { type: 'dashed', width: 1.2 } }));
  }
  return {
    grid,
    legend,
    tooltip: { trigger: 'axis', valueFormatter: (v) => fmtNumber(v, 1) },
    xAxis: axisTime,
    yAxis: [
      { type: 'value', min: 0, max: 100, axisLabel: { fontSize: 10, formatter: '{value} %' } },
      { type: 'value', min: 0, max: (v) => Math.max(100, Math.ceil(v.max / 10) * 10), axisLabel: { fontSize: 10, formatter: '{value} °C' }, splitLine: { show: false } },
    ],
    series,
  };
}

function netOption(samples) {
  return {
    grid: { ...grid, left: 70 },
    legend,
    tooltip: { trigger: 'axis', valueFormatter: fmtRate },
    xAxis: axisTime,
    yAxis: { type: 'value', min: 0, axisLabel: { fontSize: 10, formatter: (v) => fmtRate(v) } },
    series: [
      line('rx', t('topo.chart.net.rx'), samples.map((s) => [s.at, s.net_rx_bytes_per_s ?? 0]), { color: '#0f8f8a', areaStyle: { opacity: 0.12 } }),
      line('tx', t('topo.chart.net.tx'), samples.map((s) => [s.at, s.net_tx_bytes_per_s ?? 0]), { color: '#dd8a14', lineStyle: { type: 'dashed' } }),
    ],
  };
}

function siteMetricsOption(samples) {
  const v = (s, k) => (s.value?.[k] === null || s.value?.[k] === undefined ? null : s.value[k] * 100);
  const power = samples.filter((s) => s.value?.power_kw !== null && s.value?.power_kw !== undefined);
  return {
    grid,
    legend,
    tooltip: { trigger: 'axis', valueFormatter: (x) => fmtNumber(x, 1) },
    xAxis: axisTime,
    yAxis: [
      { type: 'value', min: 0, max: 100, axisLabel: { fontSize: 10, formatter: '{value} %' } },
      { type: 'value', min: 0, axisLabel: { fontSize: 10, formatter: '{value} kW' }, splitLine: { show: false } },
    ],
    series: [
      line('cpu', t('topo.chart.site.cpu'), samples.map((s) => [s.at, v(s, 'cpu_util')])),
      line('gpu', t('topo.chart.site.gpu'), samples.map((s) => [s.at, v(s, 'gpu_util')])),
      line('mem', t('topo.chart.site.mem'), samples.map((s) => [s.at, v(s, 'mem_util')])),
      line('power', t('topo.chart.site.power'), power.map((s) => [s.at, s.value.power_kw]), { yAxisIndex: 1, lineStyle: { type: 'dashed' } }),
    ],
  };
}

function resourceSummary(r) {
  const s = r.spec || {};
  if (s.compute) {
    const c = s.compute;
    return `${fmtNumber(c.count, 0)} × ${c.model} (${String(c.chip_type).toUpperCase()}, ${c.architecture}, ${c.supply_mode})`;
  }
  if (s.storage) return `${s.storage.kind} · ${fmtNumber((s.storage.capacity_gib || 0) / 1024, 0)} TiB`;
  if (s.network) return `${s.network.kind} · ${fmtNumber((s.network.bandwidth_mbps || 0) / 1000, 0)} Gbps`;
  if (s.security) return `${s.security.kind}${s.security.spec ? ` · ${s.security.spec}` : ''}`;
  return '–';
}

/**
 * The side panel. env = {host, siteInfo(name) → {site (topology), object?, hub, ...},
 * nodesOf(siteName) → NodeView[], node(id) → NodeView, resourcesOf(siteId) → resources,
 * onOpenSite(name), onOpenNode(id), onClose(), intro() → element}.
 */
export function makePanel(env) {
  const history = new Map(); // node id → samples, oldest first
  let gen = 0;
  let timer = null;
  let charts = [];
  let current = null;

  function stop() {
    gen++;
    clearTimeout(timer);
    timer = null;
    for (const c of charts) {
      c.__ro?.disconnect();
      c.dispose();
    }
    charts = [];
  }

  function addSamples(id, samples) {
    const list = history.get(id) || [];
    const seen = new Set(list.map((s) => s.at));
    for (const s of samples) if (s && s.at && !seen.has(s.at)) list.push(s);
    list.sort((a, b) => (a.at < b.at ? -1 : a.at > b.at ? 1 : 0));
    const cutoff = Date.now() - WINDOW_MS;
    while (list.length && Date.parse(list[0].at) < cutoff) list.shift();
    history.set(id, list);
    return list;
  }

  async function loadHistory(node) {
    if (node.metrics) addSamples(node.id, [node.metrics]);
    if (!historyEndpoint || history.get(node.id)?.loaded) return;
    try {
      const answer = await get(`/api/v1/nodes/${enc(node.id)}/metrics`);
      addSamples(node.id, items(answer));
      history.get(node.id).loaded = true;
    } catch (e) {
      // A server without the history endpoint: the polled samples fill the charts.
      if (e instanceof ApiError && e.status === 404) historyEndpoint = false;
    }
  }

  const chartBox = (what, name) => h('div', { class: 'chart topo-chart', role: 'img', 'aria-label': t('topo.chart.aria', { what, name }) });

  /** A node's three charts; mount() once in the document, update() with new samples. */
  function nodeCharts(node) {
    const cpuEl = chartBox(t('topo.chart.cpumem'), node.name);
    const gpuEl = chartBox(t('topo.chart.gpu'), node.name);
    const netEl = chartBox(t('topo.chart.net'), node.name);
    const gpuBox = h('div');
    const el = h('div', { class: 'topo-node-charts' },
      h('h4', {}, t('topo.chart.cpumem')), cpuEl,
      h('h4', {}, t('topo.chart.gpu')), gpuBox,
      h('h4', {}, t('topo.chart.net')), netEl);
    let cpu;
    let gpu;
    let net;
    const hasGpu = (samples, n) => (n?.inventory?.gpus?.length || 0) > 0 || samples.some((s) => s.gpus?.length);
    const paintGpu = (samples, n) => {
      if (hasGpu(samples, n)) {
        if (!gpu) {
          clear(gpuBox, gpuEl);
          gpu = chart(gpuEl, gpuOption(samples));
          charts.push(gpu);
        } else gpu.setOption(gpuOption(samples), { replaceMerge: ['series'] });
      } else if (!gpuBox.firstChild) gpuBox.append(h('p', { class: 'muted topo-nogpu' }, t('topo.chart.gpu.none')));
    };
    return {
      el,
      mount() {
        const samples = history.get(node.id) || [];
        cpu = chart(cpuEl, cpuMemOption(samples));
        net = chart(netEl, netOption(samples));
        charts.push(cpu, net);
        paintGpu(samples, node);
      },
      update(n) {
        const samples = history.get(node.id) || [];
        cpu?.setOption(cpuMemOption(samples));
        net?.setOption(netOption(samples));
        paintGpu(samples, n);
      },
    };
  }

  function heading(title, sub, extra) {
    return h('div', { class: 'topo-side-head' },
      h('h2', { id: 'topo-panel-title' }, title, sub ? h('span', { class: 'muted topo-alias' }, sub) : null, extra || null),
      h('button', { type: 'button', class: 'secondary topo-close', 'aria-label': t('topo.panel.close'), title: t('topo.panel.close'), on: { click: () => env.onClose() } }, '×'));
  }

  function statusKpis(st) {
    if (!st) return null;
    const cap = st.capacity || {};
    const al = st.allocated || {};
    return h('div', { class: 'topo-kpis' },
      st.health ? kpi(t('topo.panel.status.health'), healthLabel(st.health), st.health_reason || null) : null,
      kpi(t('topo.panel.status.nodes'), `${fmtNumber(st.nodes_ready, 0)} / ${fmtNumber(st.nodes, 0)}`),
      kpi(t('topo.panel.status.cpu'), fmtNumber(al.cpu_cores, 1), t('topo.panel.status.of', { total: fmtNumber(cap.cpu_cores, 1) })),
      kpi(t('topo.panel.status.gpu'), fmtNumber(al.gpus, 0), t('topo.panel.status.of', { total: fmtNumber(cap.gpus, 0) })),
      kpi(t('topo.panel.status.idle'), fmtPct(st.idle_rate, 0)),
      kpi(t('topo.panel.status.util'), pctText(st.cpu_util_pct)),
      kpi(t('topo.panel.status.load'), fmtNumber(st.load1, 2)),
      kpi(t('topo.panel.status.tasks'), fmtNumber(st.tasks_active, 0), t('topo.panel.status.tasks.sub', { pending: fmtNumber(st.tasks_pending, 0) })),
      st.power_watts !== null && st.power_watts !== undefined ? kpi(t('topo.panel.status.power'), `${fmtNumber(st.power_watts / 1000, 2)} kW`) : null);
  }

  /** Registered offers against the live machines that fulfil them (GET /api/v1/capacity). */
  function offersBox(cap) {
    if (!cap) return null;
    if (cap.error) return errorState(cap.error);
    const site = items(cap)[0];
    if (!site) return null;
    const units = (o, x) => `${fmtNumber(x, o.unit === 'core' ? 1 : 0)}`;
    const out = [
      h('p', { class: 'muted' }, t('topo.panel.offers.intro')),
      h('div', { class: 'topo-res', 'data-test': 'site-offers' }, table([
        { title: t('topo.panel.offers.resource'), value: (o) => (o.live > 0 && site.binder_target ? o.resource : `${o.resource} (${t('topo.panel.offers.planning')})`) },
        { title: t('topo.panel.offers.unit'), value: (o) => `${o.unit} · ${o.model}` },
        { title: t('topo.panel.offers.registered'), num: true, value: (o) => units(o, o.registered) },
        { title: t('topo.panel.offers.live'), num: true, value: (o) => units(o, o.live) },
        { title: t('topo.panel.offers.allocated'), num: true, value: (o) => units(o, o.allocated) },
        { title: t('topo.panel.offers.free'), num: true, value: (o) => units(o, o.free) },
        { title: t('topo.panel.offers.nodes'), num: true, value: (o) => [`${o.nodes_live}`, o.nodes_emulated ? ` (${t('topo.panel.offers.emulated', { n: o.nodes_emulated })})` : '', o.nodes_lost ? ` (+${o.nodes_lost})` : ''].join('') },
      ], site.offers || [], { emptyText: t('topo.panel.offers.empty'), scrollLabel: t('topo.panel.offers.intro') })),
    ];
    if ((site.unregistered || []).length) {
      out.push(h('h4', {}, t('topo.panel.offers.unregistered')),
        h('div', { class: 'topo-res' }, table([
          { title: t('topo.panel.offers.nodes'), value: (u) => u.node },
          { title: t('topo.panel.offers.reason'), value: (u) => u.reason },
        ], site.unregistered)));
    }
    return h('div', {}, out);
  }

  function tags(obj) {
    const own = obj.labels || {};
    const eff = obj.effective_labels || own;
    const keys = Object.keys(eff).sort();
    if (!keys.length) return h('p', { class: 'muted' }, t('topo.panel.tags.none'));
    return h('ul', { class: 'topo-tags', 'aria-label': t('topo.panel.tags') }, keys.map((k) => {
      const inherited = !(k in own);
      return h('li', { class: inherited ? 'inherited' : null, title: inherited ? t('topo.panel.tags.inherited') : null },
        `${k}=${eff[k]}`, inherited ? h('span', { class: 'visually-hidden' }, ` (${t('topo.panel.tags.inherited')})`) : null);
    }));
  }

  /** Starts the 2 s loop: each tick polls the nodes shown (and the site's status). */
  function poll(g, work) {
    let n = 0;
    const tick = async () => {
      if (g !== gen) return;
      try {
        await work(n++);
      } catch {
        // a failed poll is retried on the next tick
      }
      if (g === gen) timer = setTimeout(tick, POLL_MS);
    };
    timer = setTimeout(tick, POLL_MS);
  }

  async function pollNode(id, view) {
    try {
      const node = await get(`/api/v1/nodes/${enc(id)}`);
      if (node.metrics) addSamples(id, [node.metrics]);
      view?.update(node);
      return node;
    } catch {
      return null;
    }
  }

  async function openSite(name) {
    stop();
    const g = gen;
    current = { kind: 'site', name };
    const info = env.siteInfo(name);
    const section = h('section', { class: 'panel topo-side', 'data-test': 'site-panel', 'aria-labelledby': 'topo-panel-title' },
      heading(name, info?.alias), loading());
    clear(env.host, section);
    let site;
    let status;
    let siteMetrics;
    let capacity;
    try {
      [site, status, siteMetrics, capacity] = await Promise.all([
        get(`/api/v1/sites/${enc(name)}`),
        get(`/api/v1/sites/${enc(name)}/status`).catch((e) => ({ error: e })),
        get(`/api/v1/sites/${enc(name)}/metrics?limit=1000`).catch(() => []),
        get(`/api/v1/capacity?site=${enc(name)}`).catch((e) => ({ error: e })),
      ]);
    } catch (e) {
      if (g !== gen) return;
      clear(section, heading(name, info?.alias), errorState(e, () => openSite(name)));
      return;
    }
    if (g !== gen) return;
    const spec = site.spec || {};
    const alias = aliasOf(spec.description);
    const hub = info?.hub;
    const scale = spec.scale || {};
    const nodes = env.nodesOf(name);
    await Promise.all(nodes.map(loadHistory));
    if (g !== gen) return;

    const statusBox = h('div', {}, status?.error ? errorState(status.error) : statusKpis(status));
    const siteChartEl = chartBox(t('topo.panel.sitemetrics'), name);
    const siteMetricsBox = h('div');
    const stateBadge = (n) => badge(nodeStateOf(n), t(`topo.state.${nodeStateOf(n)}`));
    const nodeViews = nodes.map((n) => ({ node: n, view: nodeCharts(n), state: h('span', {}, stateBadge(n)) }));
    const resources = env.resourcesOf(site.id);

    clear(section,
      heading(name, alias, badge(healthOf(spec.health), healthLabel(spec.health))),
      h('h3', {}, t('topo.panel.properties')),
      props([
        [t('topo.panel.region'), spec.region],
        spec.city ? [t('topo.panel.city'), spec.city] : null,
        [t('topo.panel.supplier'), spec.supplier],
        [t('topo.panel.hub'), hub ? `${hub.label} (${hub.platform.name})` : t('topo.panel.nohub')],
        [t('topo.panel.health'), healthLabel(spec.health)],
        spec.location ? [t('topo.panel.location'), `${fmtNumber(spec.location.lat, 4)}, ${fmtNumber(spec.location.lon, 4)}`] : null,
        spec.pue !== undefined ? [t('topo.panel.pue'), fmtNumber(spec.pue, 2)] : null,
        spec.electricity_price !== undefined ? [t('topo.panel.price'), t('topo.panel.price.value', { price: fmtNumber(spec.electricity_price, 2) })] : null,
        spec.carbon_intensity !== null && spec.carbon_intensity !== undefined ? [t('topo.panel.carbon'), t('topo.panel.carbon.value', { value: fmtNumber(spec.carbon_intensity, 0) })] : null,
        [t('topo.panel.scale'), t('topo.panel.scale.value', {
          cpus: fmtNumber(scale.cpu_cores || 0, 0), gpus: fmtNumber(scale.gpus || 0, 0), npus: fmtNumber(scale.npus || 0, 0),
          mem: fmtNumber(scale.memory_gib || 0, 0), storage: fmtNumber(scale.storage_tib || 0, 0),
        })],
        spec.description ? [t('topo.panel.description'), spec.description] : null,
        [t('topo.panel.created'), fmtTime(site.created_at)],
      ]),
      h('h3', {}, t('topo.panel.tags')),
      tags(site),
      h('h3', {}, t('topo.panel.status')),
      statusBox,
      h('h3', {}, t('topo.panel.offers')),
      offersBox(capacity),
      h('h3', {}, t('topo.panel.resources')),
      h('div', { class: 'topo-res' }, table([
        { title: t('topo.panel.res.name'), value: (r) => r.name },
        { title: t('topo.panel.res.type'), value: (r) => t(`topo.panel.res.type.${['compute', 'storage', 'network', 'security'].includes(r.spec?.type) ? r.spec.type : 'compute'}`) },
        { title: t('topo.panel.res.what'), value: resourceSummary },
        { title: t('topo.panel.res.price'), num: true, value: (r) => (r.spec?.compute?.unit_price !== undefined ? t('topo.panel.res.price.value', { price: fmtNumber(r.spec.compute.unit_price, 2) }) : '–') },
      ], resources, { emptyText: t('topo.panel.resources.empty') })),
      h('h3', {}, t('topo.panel.nodes'), nodes.length ? h('span', { class: 'muted topo-window' }, t('topo.panel.charts.window')) : null),
      nodes.length
        ? nodeViews.map(({ node, view, state }) => h('div', { class: 'topo-node' },
          h('div', { class: 'topo-node-head' },
            h('strong', {}, node.name), node.emulated ? badge('emulated', t('topo.panel.node.emulated')) : null, state,
            h('button', { type: 'button', class: 'secondary topo-small', on: { click: () => env.onOpenNode(node.id) } }, t('topo.panel.node.open'))),
          view.el))
        : empty(t('topo.panel.nodes.empty', { site: name })),
      h('h3', {}, t('topo.panel.sitemetrics')),
      siteMetricsBox);

    let siteChart = null;
    const paintSiteMetrics = (list) => {
      const samples = [...items(list)].sort((a, b) => (a.at < b.at ? -1 : 1));
      if (!samples.length) {
        if (!siteMetricsBox.querySelector('.empty')) clear(siteMetricsBox, empty(t('topo.panel.sitemetrics.empty', { site: name })));
        return;
      }
      if (!siteChart) {
        clear(siteMetricsBox, siteChartEl);
        siteChart = chart(siteChartEl, siteMetricsOption(samples));
        charts.push(siteChart);
      } else siteChart.setOption(siteMetricsOption(samples), { replaceMerge: ['series'] });
    };
    for (const { view } of nodeViews) view.mount();
    paintSiteMetrics(siteMetrics);

    poll(g, async (n) => {
      const jobs = nodeViews.map(({ node, view, state }) => pollNode(node.id, view).then((n) => {
        if (n && g === gen) clear(state, stateBadge(n));
      }));
      jobs.push(get(`/api/v1/sites/${enc(name)}/status`).then((st) => {
        if (g === gen) clear(statusBox, statusKpis(st));
      }, () => {}));
      if (n % 5 === 4) {
        jobs.push(get(`/api/v1/sites/${enc(name)}/metrics?limit=1000`).then((list) => {
          if (g === gen) paintSiteMetrics(list);
        }, () => {}));
      }
      await Promise.all(jobs);
    });
  }

  async function openNode(id) {
    stop();
    const g = gen;
    current = { kind: 'node', id };
    const known = env.node(id);
    const section = h('section', { class: 'panel topo-side', 'data-test': 'node-panel', 'aria-labelledby': 'topo-panel-title' },
      heading(known?.name || id), loading());
    clear(env.host, section);
    let node;
    try {
      node = await get(`/api/v1/nodes/${enc(id)}`);
    } catch (e) {
      if (g !== gen) return;
      clear(section, heading(known?.name || id), errorState(e, () => openNode(id)));
      return;
    }
    await loadHistory(node);
    if (g !== gen) return;
    const view = nodeCharts(node);
    const inv = node.inventory || {};
    const detail = h('div');
    const paintDetail = (n) => clear(detail, props([
      [t('topo.panel.node.state'), badge(nodeStateOf(n), t(`topo.state.${nodeStateOf(n)}`))],
      [t('topo.panel.node.executor'), n.emulated ? `${n.executor} · ${t('topo.panel.node.emulated')}` : n.executor],
      [t('topo.panel.node.host'), `${inv.hostname || n.name} · ${inv.os || ''} · ${inv.arch || ''}`],
      [t('topo.panel.node.cpu'), t('topo.panel.node.cpu.value', { model: inv.cpu_model || '–', cores: fmtNumber(inv.cpu_cores, 0) })],
      [t('topo.panel.node.memory'), `${fmtNumber((inv.memory_mib || 0) / 1024, 1)} GiB`],
      inv.gpus?.length ? [t('topo.panel.node.gpus'), inv.gpus.map((x) => x.model || x.name || '').filter(Boolean).join(', ') || fmtNumber(inv.gpus.length, 0)] : null,
      [t('topo.panel.node.capacity'), t('topo.panel.node.capacity.value', { cpu: fmtNumber(n.capacity?.cpu_cores, 1), mem: fmtNumber(n.capacity?.memory_gib, 1), gpus: fmtNumber(n.capacity?.gpus, 0) })],
      [t('topo.panel.node.allocated'), t('topo.panel.node.capacity.value', { cpu: fmtNumber(n.allocated?.cpu_cores, 1), mem: fmtNumber(n.allocated?.memory_gib, 1), gpus: fmtNumber(n.allocated?.gpus, 0) })],
      [t('topo.panel.node.idle'), fmtPct(n.idle_rate, 0)],
      [t('topo.panel.node.tasks'), fmtNumber(n.tasks_active, 0)],
      [t('topo.panel.node.heartbeat'), fmtTime(n.last_heartbeat)],
    ]));
    paintDetail(node);
    clear(section,
      heading(node.name, `${t('topo.panel.node')} · ${node.site}`, node.emulated ? badge('emulated', t('topo.panel.node.emulated')) : null),
      node.emulated ? h('p', { class: 'muted', 'data-test': 'node-emulated' }, t('topo.panel.node.emulated.note')) : null,
      h('p', {}, h('button', { type: 'button', class: 'secondary topo-small', on: { click: () => env.onOpenSite(node.site) } }, t('topo.panel.node.open.site', { site: node.site }))),
      detail,
      h('h3', {}, t('topo.panel.charts'), h('span', { class: 'muted topo-window' }, t('topo.panel.charts.window'))),
      view.el);
    view.mount();
    poll(g, async () => {
      const n = await pollNode(id, view);
      if (n && g === gen) paintDetail(n);
    });
  }

  function close() {
    stop();
    current = null;
    clear(env.host, env.intro());
  }

  return { openSite, openNode, close, stop, get current() { return current; } };
}
