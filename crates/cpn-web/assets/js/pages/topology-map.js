// Topology page, the map: the land base map (registered once from the vendored TopoJSON),
// and the ECharts series for each zoom level: hubs (one marker per hub at its sites'
// centroid, inter-hub links aggregated), sites (the sites and their links) and nodes (each
// site with its live nodes and registered compute resources on a ring around it).
// Tooltips are built as DOM elements (never HTML strings) because names come from the API.
import { h } from '../ui.js';
import { t, register, fmtNumber, fmtTime } from '../i18n.js';

register({
  en: {
    'topo.tip.region': 'Region',
    'topo.tip.hub': 'Hub',
    'topo.tip.health': 'Health',
    'topo.tip.links': 'Links',
    'topo.tip.nodes': 'Live nodes',
    'topo.tip.scale': 'Registered',
    'topo.tip.scale.value': '{gpus} GPU · {npus} NPU · {cpus} CPU cores',
    'topo.tip.load': 'Reported load',
    'topo.tip.load.value': 'CPU {cpu} · GPU {gpu} · memory {mem}',
    'topo.tip.sites': 'Sites',
    'topo.tip.latency': 'Latency',
    'topo.tip.bandwidth': 'Bandwidth',
    'topo.tip.jitter': 'Jitter',
    'topo.tip.loss': 'Loss',
    'topo.tip.type': 'Type',
    'topo.tip.measured': 'Measured',
    'topo.tip.hublinks': '{n} links between the hubs',
    'topo.tip.hublinks.one': '1 link between the hubs',
    'topo.tip.latency.range': '{min}–{max} ms',
    'topo.tip.bandwidth.total': '{total} Gbps in all',
    'topo.tip.state': 'State',
    'topo.tip.site': 'Site',
    'topo.tip.cpu': 'CPU',
    'topo.tip.mem': 'Memory',
    'topo.tip.load1': 'Load (1 min)',
    'topo.tip.gpus': 'GPUs',
    'topo.tip.gpus.value': '{n} · mean {util} · max {temp}',
    'topo.tip.net': 'Network',
    'topo.tip.net.value': '↓ {rx} · ↑ {tx}',
    'topo.tip.chip': 'Chip',
    'topo.tip.count': 'Count',
    'topo.tip.price': 'Price',
    'topo.tip.price.value': '¥{price} per chip-hour',
    'topo.tip.resource': 'Registered resource',
    'topo.tip.livenode': 'Live node',
    'topo.tip.emulatednode': 'Emulated node (demo offer scaled down; tasks run on the server\'s machine)',
    'topo.tip.click.site': 'Click for details',
    'topo.tip.click.hub': 'Click to zoom to its sites',
    'topo.hub.count': '{n} sites',
    'topo.hub.count.one': '1 site',
    'topo.link.private_line': 'private line',
    'topo.link.internet': 'internet',
    'topo.health.healthy': 'healthy',
    'topo.health.degraded': 'degraded',
    'topo.health.down': 'down',
    'topo.health.unknown': 'unknown',
    'topo.state.ready': 'ready',
    'topo.state.not_ready': 'not ready',
    'topo.state.cordoned': 'cordoned',
    'topo.latency.good': '< 10 ms',
    'topo.latency.fair': '10–30 ms',
    'topo.latency.poor': '≥ 30 ms',
    'topo.latency.title': 'Link latency',
  },
  zh: {
    'topo.tip.region': '地区',
    'topo.tip.hub': '枢纽',
    'topo.tip.health': '健康状态',
    'topo.tip.links': '链路',
    'topo.tip.nodes': '在线计算节点',
    'topo.tip.scale': '注册算力',
    'topo.tip.scale.value': 'GPU {gpus} · NPU {npus} · CPU {cpus} 核',
    'topo.tip.load': '上报负载',
    'topo.tip.load.value': 'CPU {cpu} · GPU {gpu} · 内存 {mem}',
    'topo.tip.sites': '资源节点',
    'topo.tip.latency': '时延',
    'topo.tip.bandwidth': '带宽',
    'topo.tip.jitter': '抖动',
    'topo.tip.loss': '丢包率',
    'topo.tip.type': '类型',
    'topo.tip.measured': '测量时间',
    'topo.tip.hublinks': '枢纽间共 {n} 条链路',
    'topo.tip.hublinks.one': '枢纽间共 1 条链路',
    'topo.tip.latency.range': '{min}–{max} ms',
    'topo.tip.bandwidth.total': '合计 {total} Gbps',
    'topo.tip.state': '状态',
    'topo.tip.site': '资源节点',
    'topo.tip.cpu': 'CPU',
    'topo.tip.mem': '内存',
    'topo.tip.load1': '负载（1 分钟）',
    'topo.tip.gpus': 'GPU',
    'topo.tip.gpus.value': '{n} 块 · 平均 {util} · 最高 {temp}',
    'topo.tip.net': '网络',
    'topo.tip.net.value': '↓ {rx} · ↑ {tx}',
    'topo.tip.chip': '芯片',
    'topo.tip.count': '数量',
    'topo.tip.price': '单价',
    'topo.tip.price.value': '每卡时 ¥{price}',
    'topo.tip.resource': '已注册资源',
    'topo.tip.livenode': '在线计算节点',
    'topo.tip.emulatednode': '模拟节点（按比例缩小的演示资源；任务在服务器本机运行）',
    'topo.tip.click.site': '点击查看详情',
    'topo.tip.click.hub': '点击放大到其资源节点',
    'topo.hub.count': '{n} 个资源节点',
    'topo.hub.count.one': '1 个资源节点',
    'topo.link.private_line': '专线',
    'topo.link.internet': '互联网',
    'topo.health.healthy': '健康',
    'topo.health.degraded': '降级',
    'topo.health.down': '不可用',
    'topo.health.unknown': '未知',
    'topo.state.ready': '就绪',
    'topo.state.not_ready': '未就绪',
    'topo.state.cordoned': '已隔离',
    'topo.latency.good': '< 10 ms',
    'topo.latency.fair': '10–30 ms',
    'topo.latency.poor': '≥ 30 ms',
    'topo.latency.title': '链路时延',
  },
});

export const HEALTH_COLORS = { healthy: '#1e8a4c', degraded: '#d69e2e', down: '#c53030', unknown: '#718096' };
export const LATENCY = [
  { key: 'good', lt: 10, color: '#2f9e57' },
  { key: 'fair', gte: 10, lt: 30, color: '#dd8a14' },
  { key: 'poor', gte: 30, color: '#d64545' },
];
export const NODE_COLORS = { ready: '#1e8a4c', not_ready: '#c53030', cordoned: '#d69e2e' };
export const CHIP_COLORS = { gpu: '#7b4fd6', npu: '#0f8f8a', cpu: '#2f74d0', other: '#718096' };

/** Zoom levels of the geo component: below HUB_ZOOM hubs, from NODE_ZOOM on nodes. */
export const HUB_ZOOM = 0.9;
export const NODE_ZOOM = 3;
export const levelFor = (zoom) => (zoom < HUB_ZOOM ? 'hubs' : zoom >= NODE_ZOOM ? 'nodes' : 'sites');

/** China, framed: [[west, north], [east, south]]. */
export const FRAME = [[73, 54], [135, 17]];
export const FRAME_CENTER = [104, 35.5];

let landPromise = null;
/** Registers the `land` map once (land shapes only: no borders, deliberately neutral). */
export function ensureLand() {
  if (window.echarts.getMap('land')) return Promise.resolve();
  landPromise ??= fetch('/assets/vendor/land-50m.json')
    .then((r) => {
      if (!r.ok) throw new Error(`land-50m.json: HTTP ${r.status}`);
      return r.json();
    })
    .then((topo) => {
      let geo = window.topojson.feature(topo, topo.objects.land);
      if (geo.type !== 'FeatureCollection') geo = { type: 'FeatureCollection', features: [geo] };
      geo.features.forEach((f, i) => {
        f.properties = { name: `land-${i}` };
      });
      window.echarts.registerMap('land', geo);
    })
    .catch((e) => {
      landPromise = null;
      throw e;
    });
  return landPromise;
}

export const healthOf = (v) => (HEALTH_COLORS[v] && v !== 'unknown' ? v : 'unknown');
export const healthLabel = (v) => t(`topo.health.${healthOf(v)}`);
export const nodeStateOf = (n) => (n.cordoned ? 'cordoned' : n.state === 'ready' ? 'ready' : 'not_ready');
export const latencyColor = (ms) => (LATENCY.find((p) => (p.lt === undefined || ms < p.lt) && (p.gte === undefined || ms >= p.gte)) || LATENCY[2]).color;

/** Bytes per second, in binary-prefixed units. */
export function fmtRate(v) {
  if (v === null || v === undefined || Number.isNaN(v)) return '–';
  const units = ['B/s', 'KiB/s', 'MiB/s', 'GiB/s'];
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${fmtNumber(v, v < 10 && i ? 1 : 0)} ${units[i]}`;
}

const pct = (v, digits = 0) => (v === null || v === undefined ? '–' : `${fmtNumber(v, digits)} %`);

/** The Chinese name an operator gave in a description: "… cluster (张家口集群), …" → 张家口集群. */
export function aliasOf(description) {
  const m = /[（(]([^()（）]*[\u4e00-\u9fff][^()（）]*)[)）]/.exec(description || '');
  return m ? m[1].trim() : null;
}

/** A map label at most 26 characters long (the list and tooltips have the whole name). */
const short = (s) => (s.length > 26 ? `${s.slice(0, 25)}…` : s);

/** Rich-text markup characters must not come from data. */
const plain = (s) => String(s ?? '').replace(/[{}|]/g, ' ');

function tipRow(label, value) {
  return h('div', { class: 'topo-tip-row' }, h('span', { class: 'k' }, label), h('span', { class: 'v' }, value));
}

function tip(title, sub, rows, hint) {
  return h('div', { class: 'topo-tip' },
    h('div', { class: 'topo-tip-title' }, title),
    sub ? h('div', { class: 'topo-tip-sub' }, sub) : null,
    rows.filter(Boolean),
    hint ? h('div', { class: 'topo-tip-hint' }, hint) : null);
}

/** The tooltip of one data item of any series. */
export function tooltipFor(d) {
  if (!d || !d.kind) return '';
  if (d.kind === 'site') {
    const { site, info } = d;
    const m = site.metrics;
    return tip(site.name, info.alias, [
      tipRow(t('topo.tip.region'), site.region),
      info.hub ? tipRow(t('topo.tip.hub'), info.hub.label) : null,
      tipRow(t('topo.tip.health'), healthLabel(site.health)),
      tipRow(t('topo.tip.links'), fmtNumber(info.links, 0)),
      info.nodes ? tipRow(t('topo.tip.nodes'), fmtNumber(info.nodes, 0)) : null,
      info.scale && (info.scale.gpus || info.scale.npus || info.scale.cpu_cores)
        ? tipRow(t('topo.tip.scale'), t('topo.tip.scale.value', { gpus: fmtNumber(info.scale.gpus, 0), npus: fmtNumber(info.scale.npus, 0), cpus: fmtNumber(info.scale.cpu_cores, 0) }))
        : null,
      m ? tipRow(t('topo.tip.load'), t('topo.tip.load.value', { cpu: pct((m.cpu_util ?? 0) * 100), gpu: pct((m.gpu_util ?? 0) * 100), mem: pct((m.mem_util ?? 0) * 100) })) : null,
    ], t('topo.tip.click.site'));
  }
  if (d.kind === 'hub') {
    const hub = d.hub;
    return tip(hub.label, hub.platform.name, [
      tipRow(t('topo.tip.sites'), hub.sites.map((s) => s.name).join(', ')),
      tipRow(t('topo.tip.health'), healthLabel(hub.health)),
    ], t('topo.tip.click.hub'));
  }
  if (d.kind === 'link') {
    const l = d.link;
    const m = l.metrics || {};
    return tip(l.name, `${d.fromName} ↔ ${d.toName}`, [
      tipRow(t('topo.tip.type'), t(`topo.link.${l.link_type === 'internet' ? 'internet' : 'private_line'}`)),
      tipRow(t('topo.tip.latency'), `${fmtNumber(m.latency_ms, 1)} ms`),
      tipRow(t('topo.tip.bandwidth'), `${fmtNumber(m.bandwidth_gbps, 0)} Gbps`),
      tipRow(t('topo.tip.jitter'), m.jitter_ms === undefined ? '–' : `${fmtNumber(m.jitter_ms, 2)} ms`),
      tipRow(t('topo.tip.loss'), m.loss_pct === undefined ? '–' : `${fmtNumber(m.loss_pct, 2)} %`),
      l.metrics_at ? tipRow(t('topo.tip.measured'), fmtTime(l.metrics_at)) : null,
    ]);
  }
  if (d.kind === 'hublink') {
    return tip(`${d.fromName} ↔ ${d.toName}`, d.count === 1 ? t('topo.tip.hublinks.one') : t('topo.tip.hublinks', { n: d.count }), [
      tipRow(t('topo.tip.latency'), d.minLat === d.maxLat ? `${fmtNumber(d.minLat, 1)} ms` : t('topo.tip.latency.range', { min: fmtNumber(d.minLat, 1), max: fmtNumber(d.maxLat, 1) })),
      tipRow(t('topo.tip.bandwidth'), t('topo.tip.bandwidth.total', { total: fmtNumber(d.bandwidth, 0) })),
    ]);
  }
  if (d.kind === 'node') {
    const n = d.node;
    const m = n.metrics || {};
    const gpus = m.gpus || [];
    const temps = gpus.map((g) => g.temperature_c).filter((x) => x !== null && x !== undefined);
    return tip(n.name, t(n.emulated ? 'topo.tip.emulatednode' : 'topo.tip.livenode'), [
      tipRow(t('topo.tip.site'), n.site),
      tipRow(t('topo.tip.state'), t(`topo.state.${nodeStateOf(n)}`)),
      tipRow(t('topo.tip.cpu'), pct(m.cpu_util_pct, 1)),
      tipRow(t('topo.tip.mem'), pct(m.memory_util_pct, 1)),
      tipRow(t('topo.tip.load1'), fmtNumber(m.load1, 2)),
      gpus.length ? tipRow(t('topo.tip.gpus'), t('topo.tip.gpus.value', {
        n: gpus.length,
        util: pct(gpus.reduce((a, g) => a + (g.util_pct || 0), 0) / gpus.length),
        temp: temps.length ? `${fmtNumber(Math.max(...temps), 0)} °C` : '–',
      })) : null,
      tipRow(t('topo.tip.net'), t('topo.tip.net.value', { rx: fmtRate(m.net_rx_bytes_per_s), tx: fmtRate(m.net_tx_bytes_per_s) })),
    ], t('topo.tip.click.site'));
  }
  if (d.kind === 'resource') {
    const c = d.resource.spec?.compute || {};
    return tip(d.resource.name, t('topo.tip.resource'), [
      tipRow(t('topo.tip.site'), d.siteName),
      tipRow(t('topo.tip.chip'), `${String(c.chip_type || '').toUpperCase()} · ${c.model || '–'}`),
      tipRow(t('topo.tip.count'), fmtNumber(c.count, 0)),
      c.unit_price !== undefined ? tipRow(t('topo.tip.price'), t('topo.tip.price.value', { price: fmtNumber(c.unit_price, 2) })) : null,
    ], t('topo.tip.click.site'));
  }
  return '';
}

/** The options that do not change with the data: base map, frame, legend of latencies. */
export function baseOption(payloadOf) {
  return {
    backgroundColor: '#eaf1f8',
    tooltip: { trigger: 'item', confine: true, enterable: false, formatter: (p) => tooltipFor(payloadOf(p.data?.key)) },
    geo: {
      map: 'land',
      roam: true,
      boundingCoords: FRAME,
      scaleLimit: { min: 0.6, max: 40 },
      itemStyle: { areaColor: '#dde4ec', borderColor: '#c4cfdc', borderWidth: 0.6 },
      emphasis: { disabled: true },
      select: { disabled: true },
      label: { show: false },
      // Land is not interactive (no tooltip: a geo tooltip setting would also apply to
      // every series drawn on it); roaming still works.
      silent: true,
    },
    visualMap: {
      type: 'piecewise',
      seriesIndex: 0,
      dimension: 0,
      orient: 'vertical',
      left: 10,
      bottom: 10,
      itemWidth: 18,
      itemHeight: 8,
      itemSymbol: 'rect',
      text: [t('topo.latency.title')],
      showLabel: true,
      inverse: true,
      textGap: 6,
      textStyle: { fontSize: 11, color: '#4a5568' },
      backgroundColor: 'rgba(255,255,255,.85)',
      padding: 8,
      pieces: LATENCY.map((p) => ({ lt: p.lt, gte: p.gte, color: p.color, label: t(`topo.latency.${p.key}`) })),
    },
    series: [
      { id: 'links', type: 'lines', coordinateSystem: 'geo', data: [] },
      { id: 'spokes', type: 'lines', coordinateSystem: 'geo', data: [] },
      { id: 'sites', type: 'scatter', coordinateSystem: 'geo', data: [] },
      { id: 'hubs', type: 'scatter', coordinateSystem: 'geo', data: [] },
      { id: 'nodes', type: 'scatter', coordinateSystem: 'geo', data: [] },
    ],
  };
}

/**
 * Where each label goes so that it runs over no marker and no label placed before it:
 * right, left, above or below, else the side that overlaps least. labelled = [{key, text,
 * pos, h}], markers = [[lon, lat]] (all drawn), pixel([lon, lat]) → [x, y].
 */
function placeLabels(labelled, markers, pixel, width, height, far) {
  const textWidth = (s) => Math.max(...String(s).split('\n').map((line) => [...line].reduce((w, c) => w + (/[\u2e80-\uffff]/.test(c) ? 13 : 7), 0)));
  const boxes = markers.map((m) => pixel(m)).filter(Boolean).map(([x, y]) => [x - 7, y - 7, 14, 14]);
  const overlap = (a, b) => Math.max(0, Math.min(a[0] + a[2], b[0] + b[2]) - Math.max(a[0], b[0])) * Math.max(0, Math.min(a[1] + a[3], b[1] + b[3]) - Math.max(a[1], b[1]));
  const outside = (r) => (r[0] < 0 || r[1] < 0 || r[0] + r[2] > width || r[1] + r[3] > height ? r[2] * r[3] : 0);
  const out = new Map();
  for (const it of labelled) {
    const p = pixel(it.pos);
    if (!p) continue;
    const [x, y] = p;
    const w = textWidth(it.text) + 4;
    const h = it.h || 16;
    const own = (b) => Math.abs(b[0] + 7 - x) < 0.5 && Math.abs(b[1] + 7 - y) < 0.5;
    // Beside the marker, or (around a ring of nodes) beyond the ring.
    const candidates = [];
    for (const d of far ? [6, far] : [6]) {
      const o = d + 3;
      candidates.push(
        { position: 'right', distance: d, r: [x + o, y - h / 2, w, h] },
        { position: 'left', distance: d, r: [x - o - w, y - h / 2, w, h] },
        { position: 'top', distance: d, r: [x - w / 2, y - o - 4 - h, w, h] },
        { position: 'bottom', distance: d, r: [x - w / 2, y + o + 4, w, h] },
      );
    }
    let best = candidates[0];
    let bestCost = Infinity;
    for (const c of candidates) {
      const cost = outside(c.r) * 2 + boxes.reduce((a, b) => a + (own(b) ? 0 : overlap(c.r, b)), 0);
      if (cost < bestCost) {
        best = c;
        bestCost = cost;
      }
      if (cost === 0) break;
    }
    out.set(it.key, { position: best.position, distance: best.distance });
    boxes.push(best.r);
  }
  return out;
}

const bandwidthWidth = (gbps) => (gbps >= 400 ? 3.2 : gbps >= 100 ? 2.2 : 1.4);

/** Points spread on a ring (or two) of radius [dx, dy] degrees around [lon, lat]. */
function ring([lon, lat], n, [dx, dy]) {
  const out = [];
  const inner = n > 10 ? Math.ceil(n / 2) : n;
  for (let i = 0; i < n; i++) {
    const onInner = i < inner;
    const k = onInner ? i : i - inner;
    const count = onInner ? inner : n - inner;
    const r = onInner ? 1 : 1.55;
    const a = -Math.PI / 2 + (2 * Math.PI * k) / count + (onInner ? 0 : Math.PI / count);
    out.push([lon + r * dx * Math.cos(a), lat - r * dy * Math.sin(a)]);
  }
  return out;
}

/**
 * The five series for a level, and the payload of each data item by its `key`: ECharts
 * clones data items, so they carry only the key, never the (cyclic) objects themselves.
 * m = {level, sites: [topology site with .info], links,
 * hubs: [{id, label, platform, sites, lon, lat, health}], nodesBySite: Map(name → nodes),
 * resBySite: Map(id → compute resources), ringDeg: [dx, dy], selected: site name | null,
 * selectedNode: node id | null, pixel: [lon, lat] → [x, y], width and height (to place the
 * labels), ringPx: the ring's radius in pixels}.
 */
export function buildSeries(m) {
  const payloads = new Map();
  const put = (payload) => {
    const key = `k${payloads.size}`;
    payloads.set(key, payload);
    return key;
  };
  const byId = new Map(m.sites.map((s) => [s.id, s]));
  const pos = (s) => [s.location.lon, s.location.lat];
  const label = { show: true, position: 'right', distance: 6, fontSize: 12, color: '#1d2433', textBorderColor: '#fff', textBorderWidth: 3 };

  // Links: site to site, or hub to hub (aggregated) at the hub level.
  let links = [];
  if (m.level === 'hubs') {
    const groupOf = new Map();
    for (const hub of m.hubs) for (const s of hub.sites) groupOf.set(s.id, hub);
    const pairs = new Map();
    for (const l of m.links) {
      const a = byId.get(l.from);
      const b = byId.get(l.to);
      if (!a || !b) continue;
      const ga = groupOf.get(a.id) || a;
      const gb = groupOf.get(b.id) || b;
      if (ga === gb) continue;
      const [x, y] = [ga, gb].sort((p, q) => (p.id < q.id ? -1 : 1));
      const key = `${x.id}|${y.id}`;
      const lat = l.metrics?.latency_ms ?? 0;
      const agg = pairs.get(key) || { x, y, count: 0, sum: 0, minLat: Infinity, maxLat: -Infinity, bandwidth: 0 };
      agg.count++;
      agg.sum += lat;
      agg.minLat = Math.min(agg.minLat, lat);
      agg.maxLat = Math.max(agg.maxLat, lat);
      agg.bandwidth += l.metrics?.bandwidth_gbps ?? 0;
      pairs.set(key, agg);
    }
    const where = (g) => (g.platform ? [g.lon, g.lat] : pos(g));
    const nameOf = (g) => (g.platform ? g.label : g.name);
    links = [...pairs.values()].map((p) => ({
      key: put({
        kind: 'hublink',
        fromName: nameOf(p.x),
        toName: nameOf(p.y),
        count: p.count,
        minLat: p.minLat,
        maxLat: p.maxLat,
        bandwidth: p.bandwidth,
      }),
      coords: [where(p.x), where(p.y)],
      value: p.sum / p.count,
      lineStyle: { width: Math.min(1 + p.count, 5) },
    }));
  } else {
    for (const l of m.links) {
      const a = byId.get(l.from);
      const b = byId.get(l.to);
      if (!a || !b) continue;
      links.push({
        key: put({ kind: 'link', link: l, fromName: a.name, toName: b.name }),
        name: l.name,
        coords: [pos(a), pos(b)],
        value: l.metrics?.latency_ms ?? 0,
        lineStyle: { width: bandwidthWidth(l.metrics?.bandwidth_gbps ?? 0), type: l.link_type === 'internet' ? 'dashed' : 'solid' },
      });
    }
  }

  // Sites: all of them, or at the hub level only those that belong to no hub.
  const inHub = new Set(m.hubs.flatMap((hub) => hub.sites.map((s) => s.id)));
  const siteList = m.level === 'hubs' ? m.sites.filter((s) => !inHub.has(s.id)) : m.sites;
  const small = m.level === 'nodes';
  const sites = siteList.map((s) => {
    const sel = s.name === m.selected;
    return {
      key: put({ kind: 'site', site: s, info: s.info }),
      name: s.name,
      value: pos(s),
      symbolSize: (small ? 12 : 15) + (sel ? 6 : 0),
      itemStyle: { color: HEALTH_COLORS[healthOf(s.health)], borderColor: sel ? '#1d2433' : '#fff', borderWidth: sel ? 2.5 : 1.5 },
      label: sel ? { fontWeight: 'bold' } : undefined,
    };
  });

  const hubs = m.level === 'hubs' ? m.hubs.map((hub) => ({
    key: put({ kind: 'hub', hub }),
    name: hub.label,
    value: [hub.lon, hub.lat],
    symbolSize: 20 + 5 * hub.sites.length,
    itemStyle: { color: HEALTH_COLORS[healthOf(hub.health)], borderColor: '#fff', borderWidth: 2, opacity: 0.9 },
    countText: hub.sites.length === 1 ? t('topo.hub.count.one') : t('topo.hub.count', { n: hub.sites.length }),
    label: {
      formatter: `{n|${plain(short(hub.label))}}\n{c|${plain(hub.sites.length === 1 ? t('topo.hub.count.one') : t('topo.hub.count', { n: hub.sites.length }))}}`,
    },
  })) : [];

  // Nodes: the live nodes and registered compute resources of each site, on a ring.
  const nodes = [];
  const spokes = [];
  if (m.level === 'nodes') {
    for (const s of m.sites) {
      const live = m.nodesBySite.get(s.name) || [];
      const res = m.resBySite.get(s.id) || [];
      const items = [...live.map((n) => ({ node: n })), ...res.map((r) => ({ resource: r }))];
      const points = ring(pos(s), items.length, m.ringDeg);
      items.forEach((it, i) => {
        spokes.push({ coords: [pos(s), points[i]] });
        if (it.node) {
          const sel = it.node.id === m.selectedNode;
          nodes.push({
            key: put({ kind: 'node', node: it.node, siteName: s.name }), name: it.node.name, value: points[i],
            symbol: 'circle',
            symbolSize: sel ? 15 : 11,
            itemStyle: { color: NODE_COLORS[nodeStateOf(it.node)], borderColor: sel ? '#1d2433' : '#fff', borderWidth: sel ? 2.5 : 1.5 },
            label: { show: true, position: 'bottom', distance: 3, fontSize: 10, color: '#1d2433', textBorderColor: '#fff', textBorderWidth: 2 },
          });
        } else {
          const chip = it.resource.spec?.compute?.chip_type;
          nodes.push({
            key: put({ kind: 'resource', resource: it.resource, siteName: s.name }), name: it.resource.name, value: points[i],
            symbol: 'diamond',
            symbolSize: 11,
            itemStyle: { color: CHIP_COLORS[chip] || CHIP_COLORS.other, borderColor: '#fff', borderWidth: 1 },
            label: { show: false },
          });
        }
      });
    }
  }

  if (m.pixel) {
    // Nodes' own labels (below them) count as part of their markers.
    const markers = [...sites, ...hubs, ...nodes].map((d) => d.value);
    for (const d of nodes) if (d.label?.show) markers.push([d.value[0], d.value[1] - m.ringDeg[1] * 0.35]);
    const sides = placeLabels([
      ...sites.filter((d) => d.name === m.selected),
      ...hubs.map((d) => ({ ...d, text: `${short(payloads.get(d.key).hub.label)}\n${d.countText}`, h: 30 })),
      ...sites.filter((d) => d.name !== m.selected),
    ].map((d) => ({ key: d.key, text: d.text || d.name, pos: d.value, h: d.h })), markers, m.pixel, m.width || Infinity, m.height || Infinity,
    nodes.length ? (m.ringPx || 30) + 6 : 0);
    for (const d of [...sites, ...hubs]) d.label = { ...(d.label || {}), ...(sides.get(d.key) || { position: 'right' }) };
    for (const d of hubs) delete d.countText;
  }

  const series = [
    {
      id: 'links', type: 'lines', coordinateSystem: 'geo', z: 2,
      lineStyle: { curveness: 0.12, opacity: 0.85 },
      emphasis: { lineStyle: { width: 5, opacity: 1 } },
      data: links,
    },
    {
      id: 'spokes', type: 'lines', coordinateSystem: 'geo', z: 3, silent: true,
      lineStyle: { color: '#8894a6', width: 0.8, opacity: 0.7, curveness: 0 },
      data: spokes,
    },
    {
      id: 'sites', type: 'scatter', coordinateSystem: 'geo', z: 5,
      label: { ...label, formatter: '{b}' },
      labelLayout: { moveOverlap: 'shiftY' },
      emphasis: { scale: 1.3, label: { fontWeight: 'bold' } },
      data: sites,
    },
    {
      id: 'hubs', type: 'scatter', coordinateSystem: 'geo', z: 4,
      label: {
        ...label,
        rich: { n: { fontSize: 12, fontWeight: 'bold', color: '#1d2433' }, c: { fontSize: 11, color: '#4a5568', padding: [2, 0, 0, 0] } },
      },
      labelLayout: { moveOverlap: 'shiftY' },
      emphasis: { scale: 1.15 },
      data: hubs,
    },
    {
      id: 'nodes', type: 'scatter', coordinateSystem: 'geo', z: 6,
      label: { formatter: '{b}' },
      emphasis: { scale: 1.4, label: { show: true, formatter: '{b}', position: 'bottom', fontSize: 10 } },
      data: nodes,
    },
  ];
  return { series, payloads };
}
