// Topology (RM-TOPO-04): the federation drawn by geography on a neutral land map. Zoom goes
// from hubs (one marker per hub-level platform, at its sites' centroid) to sites (health,
// links coloured by latency) to nodes (each site's live nodes and registered compute
// resources around it), by the level buttons or by zooming the map. A site opens a side
// panel with its properties, tags, resources, live status and metric charts; the time
// slider redraws the federation as it was at a past moment (GET /api/v1/topology?at=…).
// Live: node.state events refresh nodes and health; the open panel polls every 2 s.
import { get, listAll } from '../api.js';
import { t, register, lang, fmtNumber, fmtTime } from '../i18n.js';
import { h, clear, table, badge, chart, errorState, loading, kpi, toast, debounce, quiet } from '../ui.js';
import {
  ensureLand, baseOption, buildSeries, levelFor, aliasOf, healthOf, healthLabel,
  HEALTH_COLORS, LATENCY, NODE_COLORS, CHIP_COLORS, HUB_ZOOM, NODE_ZOOM, FRAME_CENTER,
} from './topology-map.js';
import { makePanel } from './topology-panel.js';

register({
  en: {
    'topo.title': 'Topology',
    'topo.level': 'Level',
    'topo.level.prefix': 'Level:',
    'topo.level.hubs': 'Hubs',
    'topo.level.sites': 'Sites',
    'topo.level.nodes': 'Nodes',
    'topo.zoom.in': 'Zoom in',
    'topo.zoom.out': 'Zoom out',
    'topo.zoom.reset': 'Reset view',
    'topo.map.aria': 'Map of the federation: {sites} sites in {hubs} hubs, joined by {links} links. The table of sites lists the same sites.',
    'topo.time': 'Time',
    'topo.time.now': 'Now',
    'topo.time.now.label': 'Back to the live view',
    'topo.time.live': 'live',
    'topo.time.help': 'Drag or use the arrow keys to see the federation as it was.',
    'topo.asof': 'As of {time}',
    'topo.asof.nodes': 'Live nodes are shown for the present only.',
    'topo.list': 'Sites',
    'topo.list.count': '{n} sites',
    'topo.list.count.one': '1 site',
    'topo.list.empty': 'No sites at this time. Register sites on the Resources & tags page, or move the time slider later.',
    'topo.col.name': 'Name',
    'topo.col.region': 'Region',
    'topo.col.hub': 'Hub',
    'topo.col.health': 'Health',
    'topo.col.nodes': 'Live nodes',
    'topo.col.links': 'Links',
    'topo.intro': 'Federation',
    'topo.intro.hubs': 'Hubs',
    'topo.intro.sites': 'Sites',
    'topo.intro.links': 'Links',
    'topo.intro.nodes': 'Live nodes',
    'topo.intro.hint': 'Choose a site on the map or in the list to see its properties, resources and live charts. Zoom out for hubs, zoom in for the nodes of each site, or use the level buttons.',
    'topo.legend': 'Legend',
    'topo.legend.health': 'Site health',
    'topo.legend.links': 'Links (width: bandwidth; dashed: internet)',
    'topo.legend.markers': 'Markers at the node level',
    'topo.legend.node.ready': 'live node, ready',
    'topo.legend.node.not_ready': 'live node, not ready',
    'topo.legend.res.gpu': 'registered GPUs',
    'topo.legend.res.npu': 'registered NPUs',
    'topo.legend.res.cpu': 'registered CPUs',
    'topo.nohub': '–',
    'topo.refresh.failed': 'Could not refresh the topology: {message}',
    'topo.time.failed': 'Could not load the topology at that time: {message}',
  },
  zh: {
    'topo.title': '拓扑',
    'topo.level': '层级',
    'topo.level.prefix': '层级：',
    'topo.level.hubs': '枢纽',
    'topo.level.sites': '资源节点',
    'topo.level.nodes': '计算节点',
    'topo.zoom.in': '放大',
    'topo.zoom.out': '缩小',
    'topo.zoom.reset': '复位视图',
    'topo.map.aria': '算力网络地图：{hubs} 个枢纽中的 {sites} 个资源节点，由 {links} 条链路相连。资源节点列表中列出了相同的资源节点。',
    'topo.time': '时间',
    'topo.time.now': '回到现在',
    'topo.time.now.label': '回到实时视图',
    'topo.time.live': '实时',
    'topo.time.help': '拖动滑块或使用方向键，查看算力网络在过去某一时刻的状态。',
    'topo.asof': '历史视图：{time}',
    'topo.asof.nodes': '在线计算节点仅在实时视图中显示。',
    'topo.list': '资源节点',
    'topo.list.count': '共 {n} 个资源节点',
    'topo.list.count.one': '共 1 个资源节点',
    'topo.list.empty': '该时刻没有资源节点。请在“资源与标签”页面注册资源节点，或将时间滑块向后移动。',
    'topo.col.name': '名称',
    'topo.col.region': '地区',
    'topo.col.hub': '所属枢纽',
    'topo.col.health': '健康状态',
    'topo.col.nodes': '在线计算节点',
    'topo.col.links': '链路数',
    'topo.intro': '算力网络概况',
    'topo.intro.hubs': '枢纽',
    'topo.intro.sites': '资源节点',
    'topo.intro.links': '链路',
    'topo.intro.nodes': '在线计算节点',
    'topo.intro.hint': '在地图或列表中选择一个资源节点，查看其属性、资源和实时图表。缩小地图查看枢纽，放大地图查看各资源节点的计算节点，也可以使用层级按钮切换。',
    'topo.legend': '图例',
    'topo.legend.health': '资源节点健康状态',
    'topo.legend.links': '链路（线宽表示带宽，虚线为互联网）',
    'topo.legend.markers': '计算节点层级的标记',
    'topo.legend.node.ready': '在线计算节点（就绪）',
    'topo.legend.node.not_ready': '在线计算节点（未就绪）',
    'topo.legend.res.gpu': '已注册 GPU',
    'topo.legend.res.npu': '已注册 NPU',
    'topo.legend.res.cpu': '已注册 CPU',
    'topo.nohub': '–',
    'topo.refresh.failed': '拓扑刷新失败：{message}',
    'topo.time.failed': '无法加载该时刻的拓扑：{message}',
  },
});

const LEVELS = ['hubs', 'sites', 'nodes'];
const RING_PX = 30; // radius of the ring of nodes around a site, in pixels
const REFRESH_MS = 30000;
const HEALTH_RANK = { healthy: 0, unknown: 1, degraded: 2, down: 3 };
const enc = encodeURIComponent;

function worst(list) {
  return list.reduce((w, s) => (HEALTH_RANK[healthOf(s.health)] > HEALTH_RANK[w] ? healthOf(s.health) : w), 'healthy');
}

function hubLabel(p) {
  if (lang === 'zh') return aliasOf(p.spec?.description) || p.spec?.region || p.name;
  return p.spec?.region || p.name;
}

export default {
  async render(main, ctx) {
    const title = h('h1', {}, t('topo.title'));
    clear(main, title, loading());
    let topo;
    let sites;
    let platforms;
    let resources;
    let nodes;
    try {
      [, topo, sites, platforms, resources, nodes] = await Promise.all([
        ensureLand(),
        get('/api/v1/topology'),
        listAll('/api/v1/sites'),
        listAll('/api/v1/platforms').catch(() => []),
        listAll('/api/v1/resources').catch(() => []),
        get('/api/v1/nodes').catch(() => []),
      ]);
    } catch (e) {
      clear(main, title, errorState(e, () => ctx.navigate(location.hash)));
      return undefined;
    }

    const S = {
      level: 'sites', // shown level
      lastAuto: 'sites', // the level the zoom last called for
      topo, // the federation drawn: live, or as of S.at
      at: null, // null: live; else ms since the epoch
      sites, platforms, resources, nodes,
      selected: null, // site name of the open panel
      selectedNode: null,
    };
    const registry = () => new Map(S.sites.map((s) => [s.id, s]));
    const hubsById = () => new Map(S.platforms.filter((p) => p.spec?.level === 'hub').map((p) => [p.id, p]));

    /** Everything drawn, derived from the state: sites with their info, hubs, groupings. */
    function model() {
      const reg = registry();
      const hubPlatforms = hubsById();
      const liveNodes = S.at ? [] : S.nodes;
      const nodesBySite = new Map();
      for (const n of liveNodes) nodesBySite.set(n.site, [...(nodesBySite.get(n.site) || []), n]);
      const resBySite = new Map();
      for (const r of S.resources) {
        if (r.spec?.type !== 'compute' || !r.spec.compute) continue;
        if (S.at && Date.parse(r.created_at) >= S.at) continue;
        resBySite.set(r.spec.site, [...(resBySite.get(r.spec.site) || []), r]);
      }
      const linkCount = new Map();
      for (const l of S.topo.links) {
        linkCount.set(l.from, (linkCount.get(l.from) || 0) + 1);
        linkCount.set(l.to, (linkCount.get(l.to) || 0) + 1);
      }
      const hubs = new Map();
      const drawn = S.topo.sites.filter((s) => Number.isFinite(s.location?.lat) && Number.isFinite(s.location?.lon)).map((s) => {
        const obj = reg.get(s.id);
        const p = s.platform ? hubPlatforms.get(s.platform) : null;
        let hub = null;
        if (p) {
          hub = hubs.get(p.id) || { id: p.id, platform: p, label: hubLabel(p), sites: [] };
          hub.sites.push(s);
          hubs.set(p.id, hub);
        }
        // Resources name their site by id (or, when registered so, by name).
        const res = [...(resBySite.get(s.id) || []), ...(resBySite.get(s.name) || [])];
        resBySite.set(s.id, res);
        s.info = {
          alias: aliasOf(obj?.spec?.description),
          hub,
          links: linkCount.get(s.id) || 0,
          nodes: (nodesBySite.get(s.name) || []).length,
          scale: obj?.spec?.scale,
          object: obj,
        };
        return s;
      });
      for (const hub of hubs.values()) {
        hub.lon = hub.sites.reduce((a, s) => a + s.location.lon, 0) / hub.sites.length;
        hub.lat = hub.sites.reduce((a, s) => a + s.location.lat, 0) / hub.sites.length;
        hub.health = worst(hub.sites);
      }
      return { sites: drawn, links: S.topo.links, hubs: [...hubs.values()], nodesBySite, resBySite };
    }
    let M = model();

    // ---- the page ----
    const levelButtons = LEVELS.map((l) => h('button', {
      type: 'button', class: 'secondary', dataset: { level: l }, 'aria-pressed': String(l === S.level),
      on: { click: () => setLevel(l) },
    }, t(`topo.level.${l}`)));
    const zoomButtons = [
      h('button', { type: 'button', class: 'secondary topo-icon', 'aria-label': t('topo.zoom.out'), title: t('topo.zoom.out'), on: { click: () => zoomBy(1 / 1.5) } }, '−'),
      h('button', { type: 'button', class: 'secondary topo-icon', 'aria-label': t('topo.zoom.in'), title: t('topo.zoom.in'), on: { click: () => zoomBy(1.5) } }, '+'),
      h('button', { type: 'button', class: 'secondary', on: { click: resetView } }, t('topo.zoom.reset')),
    ];
    const mapEl = h('div', { class: 'topo-map', 'data-test': 'topology-map', role: 'img', 'aria-label': '' });
    const asOf = h('div', { class: 'topo-asof', role: 'status', hidden: true });

    // The first registration, rounded up to the millisecond: the API's times carry microseconds,
    // and the slider's start must include that first site.
    const t0 = Math.min(...S.sites.map((s) => Date.parse(s.created_at) + 1).filter(Number.isFinite), Date.now());
    let tMax = Date.now();
    const slider = h('input', { type: 'range', id: 'topo-time', 'data-test': 'time-slider', min: '0', 'aria-describedby': 'topo-time-help' });
    const timeOut = h('output', { for: 'topo-time', class: 'topo-time-value' });
    const nowButton = h('button', { type: 'button', class: 'secondary', 'data-test': 'time-now', title: t('topo.time.now.label'), on: { click: goLive } }, t('topo.time.now'));
    const setSliderRange = () => {
      // The maximum is a whole number of steps, so that the end of the slider is reachable.
      const span = Math.max(0, tMax - t0);
      const step = Math.max(1, Math.floor(span / 400));
      slider.step = String(step);
      slider.max = String(Math.ceil(span / step) * step);
      slider.disabled = span <= 0;
    };
    const paintTime = () => {
      const live = S.at === null;
      const at = live ? tMax : S.at;
      timeOut.textContent = live ? `${fmtTime(new Date(at).toISOString())} (${t('topo.time.live')})` : fmtTime(new Date(at).toISOString());
      slider.setAttribute('aria-valuetext', timeOut.textContent);
      nowButton.disabled = live;
      asOf.hidden = live;
      clear(asOf, live ? null : [h('strong', {}, t('topo.asof', { time: fmtTime(new Date(at).toISOString()) })),
        S.level === 'nodes' ? h('span', {}, ` ${t('topo.asof.nodes')}`) : null]);
    };
    setSliderRange();
    slider.value = slider.max;

    const listBox = h('div', { 'data-test': 'site-list' });
    const listCount = h('span', { class: 'muted topo-count' });
    const sideHost = h('div', { class: 'topo-side-host' });

    clear(main,
      h('div', { class: 'page-head' }, title,
        h('div', { class: 'topo-levels', role: 'group', 'aria-label': t('topo.level') },
          h('span', { class: 'muted', 'aria-hidden': 'true' }, t('topo.level.prefix')), levelButtons),
        h('div', { class: 'row' }, zoomButtons)),
      h('div', { class: 'topo-layout' },
        h('div', { class: 'topo-left' },
          h('section', { class: 'panel topo-map-panel' },
            h('div', { class: 'topo-map-wrap' }, mapEl, asOf),
            h('div', { class: 'topo-time' },
              h('label', { for: 'topo-time' }, t('topo.time')),
              slider, timeOut, nowButton),
            h('p', { id: 'topo-time-help', class: 'muted topo-help' }, t('topo.time.help'))),
          h('section', { class: 'panel' },
            h('div', { class: 'topo-list-head' }, h('h2', {}, t('topo.list')), listCount),
            listBox)),
        sideHost));

    // ---- the map ----
    let payloads = new Map();
    const map = chart(mapEl, baseOption((key) => payloads.get(key)));
    const zoomOf = () => map.getOption().geo?.[0]?.zoom ?? 1;
    function ringDeg() {
      const a = map.convertToPixel({ geoIndex: 0 }, [104, 35]);
      const b = map.convertToPixel({ geoIndex: 0 }, [105, 34]);
      const px = Math.abs(b[0] - a[0]) || 10;
      const py = Math.abs(b[1] - a[1]) || 10;
      return [RING_PX / px, RING_PX / py];
    }

    function draw({ data = false } = {}) {
      if (data) M = model();
      const built = buildSeries({
        ...M,
        level: S.level,
        ringDeg: S.level === 'nodes' ? ringDeg() : [0, 0],
        selected: S.selected,
        selectedNode: S.selectedNode,
        pixel: (pos) => map.convertToPixel({ geoIndex: 0 }, pos),
        width: map.getWidth(),
        height: map.getHeight(),
        ringPx: RING_PX,
      });
      payloads = built.payloads;
      map.setOption({ series: built.series });
      main.dataset.sites = String(M.sites.length);
      main.dataset.level = S.level;
      for (const b of levelButtons) b.setAttribute('aria-pressed', String(b.dataset.level === S.level));
      mapEl.setAttribute('aria-label', t('topo.map.aria', { sites: M.sites.length, hubs: M.hubs.length, links: M.links.length }));
      paintTime();
      if (data) {
        paintList();
        if (!panel.current) clear(sideHost, intro());
      }
    }

    function setLevel(level) {
      if (S.level === level) return;
      S.level = level;
      // Nodes need room: the button zooms in (on the open site, if any) as far as the
      // zoom that would have switched to them.
      if (level === 'nodes' && zoomOf() < NODE_ZOOM) {
        const site = M.sites.find((x) => x.name === S.selected);
        zoomTo(NODE_ZOOM, site ? [site.location.lon, site.location.lat] : undefined);
        return;
      }
      draw();
    }

    function onZoomChanged() {
      const auto = levelFor(zoomOf());
      if (auto !== S.lastAuto) {
        S.lastAuto = auto;
        S.level = auto;
      }
      draw(); // labels are placed, and node rings sized, in pixels
    }
    map.on('georoam', debounce(onZoomChanged, 120));

    function zoomTo(zoom, center) {
      const geo = { zoom };
      if (center) geo.center = center;
      map.setOption({ geo });
      onZoomChanged();
    }
    function zoomBy(f) {
      zoomTo(Math.min(40, Math.max(0.6, zoomOf() * f)));
    }
    function resetView() {
      zoomTo(1, FRAME_CENTER);
    }
    function zoomToHub(hub) {
      const lons = hub.sites.map((s) => s.location.lon);
      const lats = hub.sites.map((s) => s.location.lat);
      const span = Math.max(Math.max(...lons) - Math.min(...lons), 1.3 * (Math.max(...lats) - Math.min(...lats)), 4);
      const zoom = Math.min(NODE_ZOOM - 0.2, Math.max(HUB_ZOOM + 0.6, 18 / span));
      S.level = 'sites';
      zoomTo(zoom, [hub.lon, hub.lat]);
      S.lastAuto = levelFor(zoom);
      if (S.level !== 'sites') {
        S.level = 'sites';
        draw();
      }
    }

    map.on('click', (p) => {
      const d = payloads.get(p.data?.key);
      if (!d) return;
      if (d.kind === 'site') openSite(d.site.name);
      else if (d.kind === 'hub') zoomToHub(d.hub);
      else if (d.kind === 'node') openNode(d.node.id);
      else if (d.kind === 'resource') openSite(d.siteName);
    });

    // ---- the list ----
    function paintList() {
      const rows = [...M.sites].sort((a, b) => {
        const ha = a.info.hub?.label ?? '\uffff';
        const hb = b.info.hub?.label ?? '\uffff';
        return ha === hb ? a.name.localeCompare(b.name) : ha.localeCompare(hb);
      });
      listCount.textContent = rows.length === 1 ? t('topo.list.count.one') : t('topo.list.count', { n: rows.length });
      const el = table([
        { title: t('topo.col.name'), value: (s) => [h('strong', {}, s.name), s.info.alias ? h('span', { class: 'muted topo-alias' }, s.info.alias) : null] },
        { title: t('topo.col.region'), value: (s) => s.region },
        { title: t('topo.col.hub'), value: (s) => s.info.hub?.label ?? t('topo.nohub') },
        { title: t('topo.col.health'), value: (s) => badge(healthOf(s.health), healthLabel(s.health)) },
        { title: t('topo.col.nodes'), num: true, value: (s) => (S.at ? '–' : fmtNumber(s.info.nodes, 0)) },
        { title: t('topo.col.links'), num: true, value: (s) => fmtNumber(s.info.links, 0) },
      ], rows, {
        onRow: (s) => openSite(s.name, { focus: true }),
        emptyText: t('topo.list.empty'),
        caption: S.at ? t('topo.asof', { time: fmtTime(new Date(S.at).toISOString()) }) : null,
      });
      el.querySelectorAll('tbody tr').forEach((tr, i) => {
        tr.dataset.site = rows[i].name;
        if (rows[i].name === S.selected) tr.setAttribute('aria-current', 'true');
      });
      clear(listBox, el);
    }
    const markRow = () => listBox.querySelectorAll('tbody tr').forEach((tr) => {
      if (tr.dataset.site === S.selected) tr.setAttribute('aria-current', 'true');
      else tr.removeAttribute('aria-current');
    });

    // ---- the side panel ----
    function intro() {
      const swatch = (color, shape = 'dot') => h('span', { class: `topo-swatch ${shape}`, style: { background: color }, 'aria-hidden': 'true' });
      const liveNodes = S.at ? 0 : S.nodes.length;
      return h('section', { class: 'panel topo-side topo-intro', 'aria-labelledby': 'topo-intro-title' },
        h('h2', { id: 'topo-intro-title' }, t('topo.intro')),
        h('div', { class: 'topo-kpis' },
          kpi(t('topo.intro.hubs'), fmtNumber(M.hubs.length, 0)),
          kpi(t('topo.intro.sites'), fmtNumber(M.sites.length, 0)),
          kpi(t('topo.intro.links'), fmtNumber(M.links.length, 0)),
          kpi(t('topo.intro.nodes'), fmtNumber(liveNodes, 0))),
        h('p', {}, t('topo.intro.hint')),
        h('h3', {}, t('topo.legend')),
        h('div', { class: 'topo-legend' },
          h('h4', {}, t('topo.legend.health')),
          h('ul', {}, ['healthy', 'degraded', 'down'].map((k) => h('li', {}, swatch(HEALTH_COLORS[k]), healthLabel(k)))),
          h('h4', {}, t('topo.legend.links')),
          h('ul', {}, LATENCY.map((p) => h('li', {}, swatch(p.color, 'bar'), t(`topo.latency.${p.key}`)))),
          h('h4', {}, t('topo.legend.markers')),
          h('ul', {},
            h('li', {}, swatch(NODE_COLORS.ready), t('topo.legend.node.ready')),
            h('li', {}, swatch(NODE_COLORS.not_ready), t('topo.legend.node.not_ready')),
            ['gpu', 'npu', 'cpu'].map((c) => h('li', {}, swatch(CHIP_COLORS[c], 'diamond'), t(`topo.legend.res.${c}`))))));
    }

    const panel = makePanel({
      host: sideHost,
      siteInfo: (name) => M.sites.find((s) => s.name === name)?.info,
      nodesOf: (name) => S.nodes.filter((n) => n.site === name),
      node: (id) => S.nodes.find((n) => n.id === id),
      resourcesOf: (id) => S.resources.filter((r) => r.spec?.site === id || r.spec?.site === S.sites.find((s) => s.id === id)?.name),
      onOpenSite: (name) => openSite(name, { focus: true }),
      onOpenNode: (id) => openNode(id, { focus: true }),
      onClose: closePanel,
      intro,
    });

    const setHash = (hash) => history.replaceState(null, '', hash);
    function reveal(focus) {
      const section = sideHost.querySelector('section');
      if (!section) return;
      section.tabIndex = -1;
      if (focus) section.focus({ preventScroll: true });
      const r = sideHost.getBoundingClientRect();
      if (r.top < 0 || r.top > window.innerHeight - 80) sideHost.scrollIntoView({ block: 'start', behavior: quiet ? 'auto' : 'smooth' });
    }
    function openSite(name, { focus = false } = {}) {
      S.selected = name;
      S.selectedNode = null;
      setHash(`#/topology/${enc(name)}`);
      panel.openSite(name);
      markRow();
      draw();
      reveal(focus);
    }
    function openNode(id, { focus = false } = {}) {
      const n = S.nodes.find((x) => x.id === id);
      S.selected = n?.site ?? null;
      S.selectedNode = id;
      setHash(`#/topology/node/${enc(id)}`);
      panel.openNode(id);
      markRow();
      draw();
      reveal(focus);
    }
    function closePanel() {
      S.selected = null;
      S.selectedNode = null;
      setHash('#/topology');
      panel.close();
      markRow();
      draw();
    }

    // ---- time ----
    let timeSeq = 0;
    let timeTimer = null;
    async function loadAt(at) {
      const seq = ++timeSeq;
      try {
        const past = await get(`/api/v1/topology?at=${enc(new Date(at).toISOString())}`);
        if (seq !== timeSeq) return;
        S.topo = past;
        S.at = at;
        draw({ data: true });
      } catch (e) {
        if (seq === timeSeq) toast(t('topo.time.failed', { message: e.message }), 'bad');
      }
    }
    slider.addEventListener('input', () => {
      clearTimeout(timeTimer);
      const v = Number(slider.value);
      if (v >= Number(slider.max)) {
        goLive();
        return;
      }
      const at = t0 + v;
      timeOut.textContent = fmtTime(new Date(at).toISOString());
      slider.setAttribute('aria-valuetext', timeOut.textContent);
      timeTimer = setTimeout(() => loadAt(at), 300);
    });

    async function goLive() {
      clearTimeout(timeTimer);
      const seq = ++timeSeq;
      tMax = Date.now();
      setSliderRange();
      slider.value = slider.max;
      S.at = null;
      paintTime();
      try {
        const [live, liveNodes] = await Promise.all([get('/api/v1/topology'), get('/api/v1/nodes').catch(() => S.nodes)]);
        if (seq !== timeSeq) return;
        S.topo = live;
        S.nodes = liveNodes;
      } catch (e) {
        toast(t('topo.refresh.failed', { message: e.message }), 'bad');
      }
      draw({ data: true });
    }

    // ---- live ----
    let stopped = false;
    const refresh = debounce(async () => {
      if (stopped) return;
      try {
        const [liveNodes, live] = await Promise.all([
          get('/api/v1/nodes').catch(() => S.nodes),
          S.at === null ? get('/api/v1/topology') : null,
        ]);
        if (stopped) return;
        S.nodes = liveNodes;
        if (live && S.at === null) {
          S.topo = live;
          tMax = Date.now();
          setSliderRange();
          slider.value = slider.max;
        }
        draw({ data: true });
      } catch {
        // the next event or tick tries again
      }
    }, 500);
    ctx.onEvent((ev) => {
      if (ev.type === 'node.state') refresh();
    });
    const timer = setInterval(refresh, REFRESH_MS);

    // ---- first paint ----
    draw({ data: true });
    const [first, second] = ctx.params;
    if (first === 'node' && second) openNode(second);
    else if (first) openSite(first);

    return () => {
      stopped = true;
      clearInterval(timer);
      timeSeq++;
      clearTimeout(timeTimer);
      panel.stop();
    };
  },
};
