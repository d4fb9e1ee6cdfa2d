// What the policies page's views share: the score plugins and their default weights, the GPU
// placement policies and their readable names.
import { get } from '../api.js';
import { t, register, has } from '../i18n.js';

/**
 * The score plugins a policy may weigh, as [name, built-in weight] (a weight left out of a
 * policy is inherited from its parent or these), and the GPU placement policies, both from
 * the scheduler (GET /api/v1/schedule/plugins): call loadCatalog() before using them.
 */
export let SCORE_PLUGINS = [];
export let DEFAULT_WEIGHTS = {};
export let GPU_POLICIES = [];

let catalog = null;
export function loadCatalog() {
  catalog ||= get('/api/v1/schedule/plugins').then((c) => {
    SCORE_PLUGINS = c.scores.map((p) => [p.name, p.default_weight]);
    DEFAULT_WEIGHTS = Object.fromEntries(SCORE_PLUGINS);
    GPU_POLICIES = c.gpu_policies;
    return c;
  }).catch((e) => {
    catalog = null; // a later page load tries again
    throw e;
  });
  return catalog;
}

/** A plugin's readable name (the raw name for plugins this page does not know, e.g. CEL). */
export function pluginLabel(name) {
  return has(`pol.plugin.${name}`) ? t(`pol.plugin.${name}`) : name;
}

export function gpuPolicyLabel(name) {
  return has(`pol.gpu.${name}`) ? t(`pol.gpu.${name}`) : name;
}

/**
 * The weights a policy inherits (parent chain, then the built-in defaults), given the list of
 * policies; `parent` is the name of the direct parent (or empty).
 */
export function inheritedWeights(parent, policies) {
  const byName = new Map(policies.map((p) => [p.name, p]));
  const chain = [];
  const seen = new Set();
  let name = parent;
  while (name && byName.has(name) && !seen.has(name)) {
    seen.add(name);
    const p = byName.get(name);
    chain.unshift(p);
    name = p.spec?.parent;
  }
  const out = { ...DEFAULT_WEIGHTS };
  for (const p of chain) Object.assign(out, p.spec?.weights || {});
  return out;
}

register({
  en: {
    'pol.plugin.model_preference': 'Model preference',
    'pol.plugin.performance': 'Performance',
    'pol.plugin.energy': 'Energy cost',
    'pol.plugin.carbon': 'Carbon intensity',
    'pol.plugin.latency': 'Network latency',
    'pol.plugin.location_affinity': 'Location affinity',
    'pol.plugin.price': 'Price',
    'pol.plugin.free_capacity': 'Free capacity',
    'pol.plugin.bin_pack': 'Bin packing',
    'pol.plugin.spread': 'Spread',
    'pol.plugin.help.model_preference': 'Sites with the task\'s preferred chip models',
    'pol.plugin.help.performance': 'More TFLOPS for the task',
    'pol.plugin.help.energy': 'Lower electricity cost (power × PUE × price)',
    'pol.plugin.help.carbon': 'Lower grid carbon intensity',
    'pol.plugin.help.latency': 'Closer to the task\'s origin region',
    'pol.plugin.help.location_affinity': 'Regions the task asks to be near',
    'pol.plugin.help.price': 'Cheaper compute',
    'pol.plugin.help.free_capacity': 'More room left after placing',
    'pol.plugin.help.bin_pack': 'Fill busy sites first',
    'pol.plugin.help.spread': 'Spread replicas over sites',
    'pol.gpu.fgd': 'FGD (fragmentation gradient descent)',
    'pol.gpu.bestfit': 'Best fit',
    'pol.gpu.packing': 'Packing',
    'pol.gpu.clustering': 'Clustering',
    'pol.gpu.dotprod': 'Dot product',
    'pol.gpu.random': 'Random',
    'pol.gpu.fgd_plus': 'FGD+ (cpn)',
  },
  zh: {
    'pol.plugin.model_preference': '型号偏好',
    'pol.plugin.performance': '性能',
    'pol.plugin.energy': '能耗成本',
    'pol.plugin.carbon': '碳排放强度',
    'pol.plugin.latency': '网络时延',
    'pol.plugin.location_affinity': '位置亲和',
    'pol.plugin.price': '价格',
    'pol.plugin.free_capacity': '剩余算力',
    'pol.plugin.bin_pack': '装箱紧凑',
    'pol.plugin.spread': '分散部署',
    'pol.plugin.help.model_preference': '优先选择任务偏好芯片型号的资源节点',
    'pol.plugin.help.performance': '为任务提供更高的 TFLOPS',
    'pol.plugin.help.energy': '电费更低（功耗 × PUE × 电价）',
    'pol.plugin.help.carbon': '电网碳排放强度更低',
    'pol.plugin.help.latency': '离任务来源地区更近',
    'pol.plugin.help.location_affinity': '任务指定希望靠近的地区',
    'pol.plugin.help.price': '算力价格更低',
    'pol.plugin.help.free_capacity': '放置后剩余算力更多',
    'pol.plugin.help.bin_pack': '优先填满已繁忙的资源节点',
    'pol.plugin.help.spread': '副本分散到多个资源节点',
    'pol.gpu.fgd': 'FGD（碎片梯度下降）',
    'pol.gpu.bestfit': '最佳适配',
    'pol.gpu.packing': '紧凑放置',
    'pol.gpu.clustering': '聚类',
    'pol.gpu.dotprod': '点积',
    'pol.gpu.random': '随机',
    'pol.gpu.fgd_plus': 'FGD+（cpn）',
  },
});
