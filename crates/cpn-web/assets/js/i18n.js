// Two languages, Chinese and English. Each page module registers its own strings next to its
// code (register({en: {...}, zh: {...}})), so adding a page never edits a shared table.
// Chinese is the default when the browser prefers it; the toggle's choice is remembered.

const dict = { en: {}, zh: {} };
const LANG_KEY = 'cpn.lang';

function preferred() {
  const saved = localStorage.getItem(LANG_KEY);
  if (saved === 'zh' || saved === 'en') return saved;
  const langs = navigator.languages && navigator.languages.length ? navigator.languages : [navigator.language || 'en'];
  return String(langs[0]).toLowerCase().startsWith('zh') ? 'zh' : 'en';
}

export let lang = preferred();
document.documentElement.lang = lang === 'zh' ? 'zh-CN' : 'en';

export function register(strings) {
  // Under automation (the browser tests) a string missing from one language is reported,
  // so every page module's table is checked as soon as the tests load it.
  if (navigator.webdriver) {
    const en = strings.en || {};
    const zh = strings.zh || {};
    const odd = [...Object.keys(en).filter((k) => !(k in zh)), ...Object.keys(zh).filter((k) => !(k in en))];
    if (odd.length) console.warn(`i18n: keys not in both en and zh: ${odd.join(', ')}`);
  }
  for (const l of Object.keys(dict)) Object.assign(dict[l], strings[l] || {});
}

/** The string for `key` in the current language, with {name} placeholders filled from vars. */
export function t(key, vars) {
  let s = dict[lang][key];
  if (s === undefined) {
    // Reported so the browser tests catch a string that is missing in one language.
    console.warn(`i18n: no ${lang} text for "${key}"`);
    s = dict.en[key] ?? key;
  }
  if (vars) s = s.replace(/\{(\w+)\}/g, (m, k) => (vars[k] !== undefined ? String(vars[k]) : m));
  return s;
}

/** True when `key` has a text (in the current language or English). */
export function has(key) {
  return key in dict[lang] || key in dict.en;
}

export function setLang(l) {
  lang = l;
  localStorage.setItem(LANG_KEY, l);
  document.documentElement.lang = l === 'zh' ? 'zh-CN' : 'en';
  window.dispatchEvent(new CustomEvent('cpn:lang'));
}

const locale = () => (lang === 'zh' ? 'zh-CN' : 'en-GB');

export function fmtNumber(n, digits = 1) {
  if (n === null || n === undefined || Number.isNaN(n)) return '–';
  return new Intl.NumberFormat(locale(), { maximumFractionDigits: digits }).format(n);
}

export function fmtPct(fraction, digits = 1) {
  if (fraction === null || fraction === undefined) return '–';
  return `${fmtNumber(fraction * 100, digits)} %`;
}

export function fmtTime(iso) {
  if (!iso) return '–';
  return new Date(iso).toLocaleString(locale(), { hour12: false });
}

export function fmtDuration(seconds) {
  if (seconds === null || seconds === undefined) return '–';
  if (seconds < 1) return `${fmtNumber(seconds * 1000, 0)} ms`;
  if (seconds < 120) return `${fmtNumber(seconds, 1)} s`;
  if (seconds < 7200) return `${fmtNumber(seconds / 60, 1)} min`;
  return `${fmtNumber(seconds / 3600, 1)} h`;
}

// Strings of the shell (layout, login, shared widgets).
register({
  en: {
    'app.title': 'cpn console',
    'app.subtitle': 'Computing power network',
    'app.skip': 'Skip to content',
    'nav.overview': 'Overview',
    'nav.topology': 'Topology',
    'nav.resources': 'Resources & tags',
    'nav.tasks': 'Tasks',
    'nav.policies': 'Policies',
    'nav.design': 'Templates & plans',
    'nav.flows': 'Workflows',
    'nav.audit': 'Audit log',
    'nav.market': 'Marketplace',
    'nav.listings': 'My listings',
    'nav.leases': 'My leases',
    'nav.billing': 'Billing',
    'nav.reviews': 'Registration reviews',
    'nav.main': 'Main navigation',
    'lang.toggle': '中文',
    'lang.toggle.label': 'Switch language to Chinese',
    'auth.logout': 'Log out',
    'auth.login': 'Log in',
    'auth.username': 'User name',
    'auth.password': 'Password',
    'auth.totp': 'Authenticator code (only if MFA is on)',
    'auth.title': 'Log in to cpn',
    'auth.hint': 'The first operator is admin; its password is in admin.password in the data directory.',
    'auth.failed': 'Login failed: {message}',
    'auth.expired': 'Your session ended. Please log in again.',
    'role.operator': 'operator',
    'role.supplier': 'supplier',
    'role.user': 'user',
    'common.loading': 'Loading…',
    'common.empty': 'Nothing here yet.',
    'common.error': 'Could not load: {message}',
    'common.retry': 'Retry',
    'common.save': 'Save',
    'common.cancel': 'Cancel',
    'common.close': 'Close',
    'common.delete': 'Delete',
    'common.edit': 'Edit',
    'common.create': 'Create',
    'common.refresh': 'Refresh',
    'common.submit': 'Submit',
    'common.search': 'Search',
    'common.name': 'Name',
    'common.state': 'State',
    'common.site': 'Site',
    'common.time': 'Time',
    'common.details': 'Details',
    'common.back': 'Back',
    'common.yes': 'yes',
    'common.no': 'no',
    'common.saved': 'Saved.',
    'common.live': 'live',
    'common.reconnecting': 'reconnecting…',
    'common.notfound': 'There is no page {path}.',
    'common.forbidden': 'Your role ({role}) cannot open this page.',
    'common.network': 'The server cannot be reached. Is cpn serve running?',
  },
  zh: {
    'app.title': 'cpn 控制台',
    'app.subtitle': '算力网络',
    'app.skip': '跳到主要内容',
    'nav.overview': '总览',
    'nav.topology': '拓扑',
    'nav.resources': '资源与标签',
    'nav.tasks': '任务',
    'nav.policies': '调度策略',
    'nav.design': '模板与方案',
    'nav.flows': '工作流',
    'nav.audit': '审计日志',
    'nav.market': '算力市场',
    'nav.listings': '我的挂牌',
    'nav.leases': '我的租约',
    'nav.billing': '账单',
    'nav.reviews': '注册审核',
    'nav.main': '主导航',
    'lang.toggle': 'English',
    'lang.toggle.label': '切换为英文',
    'auth.logout': '退出登录',
    'auth.login': '登录',
    'auth.username': '用户名',
    'auth.password': '密码',
    'auth.totp': '动态验证码（仅开启多因素认证时填写）',
    'auth.title': '登录 cpn',
    'auth.hint': '首个运营者账号为 admin，其密码位于数据目录的 admin.password 文件中。',
    'auth.failed': '登录失败：{message}',
    'auth.expired': '会话已结束，请重新登录。',
    'role.operator': '运营者',
    'role.supplier': '供应方',
    'role.user': '用户',
    'common.loading': '加载中…',
    'common.empty': '暂无内容。',
    'common.error': '加载失败：{message}',
    'common.retry': '重试',
    'common.save': '保存',
    'common.cancel': '取消',
    'common.close': '关闭',
    'common.delete': '删除',
    'common.edit': '编辑',
    'common.create': '新建',
    'common.refresh': '刷新',
    'common.submit': '提交',
    'common.search': '搜索',
    'common.name': '名称',
    'common.state': '状态',
    'common.site': '资源节点',
    'common.time': '时间',
    'common.details': '详情',
    'common.back': '返回',
    'common.yes': '是',
    'common.no': '否',
    'common.saved': '已保存。',
    'common.live': '实时',
    'common.reconnecting': '正在重连…',
    'common.notfound': '页面 {path} 不存在。',
    'common.forbidden': '您的角色（{role}）无权访问此页面。',
    'common.network': '无法连接服务器，请确认 cpn serve 正在运行。',
  },
});
