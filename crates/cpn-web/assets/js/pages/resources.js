// Resources & tags (RM-REG, RM-TAG): the registry of sites, resources, platforms, clouds,
// links and the tag library. One tab per kind (kept in the hash: #/resources/<kind>[/<name>]
// [?selector=…&q=…]), a label-selector filter and a name filter above each table, a detail
// panel per object (envelope, own and inherited labels, spec, related objects), register /
// edit forms with the API's validation errors at the field, deletion with a confirm step,
// and batch tagging from the Tags tab. Suppliers see the same page without the actions the
// API would refuse them (creating platforms, clouds and tags; changing others' objects).
import { listAll, ApiError } from '../api.js';
import { t, fmtNumber, fmtTime } from '../i18n.js';
import { h, clear, table, field, props, badge, tabs, toast, errorState, loading, debounce } from '../ui.js';
import './resources-i18n.js';
import {
  KINDS, kindOf, Lookups, columns, canCreate, canModify, enumText, objLink, related, labelUse, fetchObject, resourceSummary,
} from './resources-kinds.js';
import { objectForm, errTitle } from './resources-form.js';
import { applySection } from './resources-tags.js';
import { send } from './resources-api.js';

const OWN_KINDS = ['sites', 'resources', 'links'];

export default {
  async render(main, ctx) {
    const user = ctx.user;
    const L = new Lookups();
    const st = {
      kind: kindOf(ctx.params[0]) ? ctx.params[0] : 'sites',
      selected: kindOf(ctx.params[0]) ? ctx.params[1] || null : null,
      selector: ctx.query.get('selector') || '',
      q: ctx.query.get('q') || '',
      mine: user.role === 'supplier' && ctx.query.get('mine') !== '0',
    };
    let gone = false;
    const head = h('div', { class: 'page-head' }, h('h1', {}, t('res.title')));
    const intro = h('p', { class: 'muted res-intro' }, t(user.role === 'supplier' ? 'res.intro.supplier' : 'res.intro'));
    clear(main, head, intro, loading());
    try {
      await L.load();
    } catch (e) {
      clear(main, head, errorState(e, () => this.render(main, ctx)));
      return undefined;
    }
    if (gone) return undefined;

    const hashFor = (kind, name) => {
      const q = new URLSearchParams();
      if (st.selector) q.set('selector', st.selector);
      if (st.q) q.set('q', st.q);
      if (user.role === 'supplier' && !st.mine) q.set('mine', '0');
      const qs = q.toString();
      return `#/resources/${kind}${name ? `/${encodeURIComponent(name)}` : ''}${qs ? `?${qs}` : ''}`;
    };
    /** Reflects the view in the address bar without re-rendering (push for tab changes). */
    const writeHash = (push = false) => {
      const want = hashFor(st.kind, st.selected);
      if (location.hash !== want) history[push ? 'pushState' : 'replaceState'](null, '', want);
    };

    const tabEl = tabs(KINDS.map((k) => ({ id: k.id, label: t(`res.kind.${k.id}`), render: (el) => showKind(el, k.id) })), st.kind);
    const bar = tabEl.querySelector('[role=tablist]');
    bar.dataset.test = 'kind-tabs';
    bar.setAttribute('aria-label', t('res.tabs.label'));
    clear(main, head, intro, tabEl);
    writeHash();
    return () => {
      gone = true;
    };

    // ------------------------------------------------------------------ one tab

    function showKind(el, kind) {
      if (kind !== st.kind) {
        st.kind = kind;
        st.selected = null;
        writeHash(true);
      }
      let data = [];
      let seq = 0;
      let shownName = null;

      // toolbar: selector, name filter, only-mine, count, refresh, register
      const selIn = h('input', { name: 'selector', value: st.selector, autocomplete: 'off', spellcheck: 'false', placeholder: 'zone=west,gpu.model in (A100,H800),!deprecated' });
      const fSel = field(t('res.filter.selector'), selIn, t('res.filter.selector.help'));
      const qIn = h('input', { name: 'q', type: 'search', value: st.q, autocomplete: 'off', placeholder: t('res.filter.name.placeholder') });
      const fQ = field(t('res.filter.name'), qIn);
      const count = h('span', { class: 'muted res-count', role: 'status' });
      const mineBox = user.role === 'supplier' && OWN_KINDS.includes(kind)
        ? h('label', { class: 'res-check' }, h('input', {
          type: 'checkbox', name: 'mine', checked: st.mine,
          on: { change: (e) => { st.mine = e.target.checked; writeHash(); paintTable(); } },
        }), t('res.filter.mine'))
        : null;
      const registerBtn = canCreate(user, kind)
        ? h('button', { type: 'button', dataset: { test: 'register' }, on: { click: () => openForm(null) } }, (kind === 'tags' ? t('res.register.tag') : t('res.register', { kind: t(`res.kind1.${kind}`) })))
        : null;
      const toolbar = h('div', { class: 'res-toolbar' },
        fSel, fQ,
        h('div', { class: 'res-toolbar-end' },
          mineBox, count,
          h('button', { type: 'button', class: 'secondary', on: { click: () => reloadAll() } }, t('common.refresh')),
          registerBtn));
      const listBox = h('div', { class: 'res-list' });
      const side = h('div', { class: 'res-side' });
      side.addEventListener('keydown', (e) => {
        // Escape leaves the panel (a form keeps its input only while open, so not from there)
        if (e.key === 'Escape' && !side.querySelector('form')) {
          const row = listBox.querySelector('tbody tr[aria-current="true"]');
          closeSide();
          row?.focus();
        }
      });
      const grid = h('div', { class: 'res-grid' }, listBox, side);
      clear(el, toolbar, grid);

      const applySelector = () => {
        const v = selIn.value.trim();
        if (v === st.selector) return;
        st.selector = v;
        writeHash();
        loadList();
      };
      // While typing, a selector that is clearly unfinished (an open list, a trailing comma or
      // operator) is not sent; Enter sends whatever is there and shows the API's verdict.
      const unfinished = (v) => (v.match(/\(/g) || []).length > (v.match(/\)/g) || []).length
        || /(,|!|\s(in|notin))\s*$/.test(v);
      const typed = debounce(() => {
        const v = selIn.value.trim();
        if (unfinished(v)) fSel.setError(t('res.filter.unfinished'));
        else applySelector();
      }, 700);
      selIn.addEventListener('input', typed);
      selIn.addEventListener('keydown', (e) => {
        if (e.key === 'Enter') {
          e.preventDefault();
          st.selector = null; // force a reload even when unchanged
          applySelector();
        }
      });
      qIn.addEventListener('input', debounce(() => {
        st.q = qIn.value.trim();
        writeHash();
        paintTable();
      }, 150));

      async function loadList({ reopen = false } = {}) {
        const my = ++seq;
        if (!data.length) clear(listBox, loading());
        try {
          const path = `/api/v1/${kind}${st.selector ? `?selector=${encodeURIComponent(st.selector)}` : ''}`;
          const rows = await listAll(path);
          if (my !== seq || gone) return;
          fSel.setError('');
          data = rows;
          paintTable();
          if (reopen && st.selected) openByName(st.selected);
        } catch (e) {
          if (my !== seq || gone) return;
          data = [];
          count.textContent = '';
          if (e instanceof ApiError && e.status === 400) {
            fSel.setError(e.message);
            clear(listBox, h('div', { class: 'empty', role: 'status' },
              h('p', {}, t('res.list.badselector')),
              h('button', { type: 'button', class: 'secondary', on: { click: clearFilters } }, t('res.filter.clear'))));
          } else {
            clear(listBox, errorState(e, () => loadList()));
          }
        }
      }

      function clearFilters() {
        selIn.value = '';
        qIn.value = '';
        st.selector = '';
        st.q = '';
        writeHash();
        loadList();
      }

      function visibleRows() {
        const q = st.q.toLowerCase();
        return data.filter((o) => (!st.mine || !OWN_KINDS.includes(kind) || o.owner === user.username)
          && (!q || o.name.toLowerCase().includes(q)));
      }

      function paintTable() {
        const rows = visibleRows();
        count.textContent = rows.length === data.length
          ? t('res.list.count', { n: fmtNumber(rows.length, 0) })
          : t('res.list.countof', { n: fmtNumber(rows.length, 0), total: fmtNumber(data.length, 0) });
        if (!rows.length) {
          const filtered = st.selector || st.q || (st.mine && data.length);
          clear(listBox, h('div', { class: 'empty', role: 'status' },
            h('p', {}, filtered ? t('res.empty.filtered', { kind: t(`res.kindn.${kind}`) }) : t(`res.empty.${kind}${user.role === 'supplier' && canCreate(user, kind) ? '.supplier' : ''}`)),
            filtered && (st.selector || st.q) ? h('button', { type: 'button', class: 'secondary', on: { click: clearFilters } }, t('res.filter.clear')) : null));
          return;
        }
        // The labels column only where some row has labels.
        const anyLabels = rows.some((o) => Object.keys(o.effective_labels || {}).length);
        const cols = columns(kind, L).filter((c) => anyLabels || !c.labels);
        const tbl = table(cols, rows, { onRow: (o) => open(o, true), caption: t('res.list.caption', { kind: t(`res.kind.${kind}`) }) });
        tbl.querySelectorAll('tbody tr').forEach((tr, i) => {
          tr.dataset.name = rows[i].name;
        });
        // Columns marked opt make room for the side panel when it is open.
        cols.forEach((c, i) => {
          if (c.opt) for (const cell of tbl.querySelectorAll(`tr > :nth-child(${i + 1})`)) cell.classList.add('res-opt');
        });
        clear(listBox, tbl);
        markRows();
      }

      function markRows() {
        for (const tr of listBox.querySelectorAll('tbody tr')) {
          if (tr.dataset.name === shownName) tr.setAttribute('aria-current', 'true');
          else tr.removeAttribute('aria-current');
        }
      }

      function setSide(node, focus) {
        clear(side, node);
        grid.classList.toggle('has-side', !!node);
        markRows();
        if (focus && node) (node.focusFirst ? node.focusFirst() : node.querySelector('h2')?.focus());
      }

      function closeSide() {
        shownName = null;
        st.selected = null;
        writeHash();
        setSide(null);
      }

      function open(obj, focus) {
        st.selected = obj.name;
        shownName = obj.name;
        writeHash();
        setSide(detailPanel(obj), focus);
      }

      async function openByName(name) {
        const obj = data.find((o) => o.name === name || o.id === name);
        if (obj) {
          open(obj, false);
          return;
        }
        try {
          open(await fetchObject(kind, name), false);
        } catch (e) {
          st.selected = null;
          writeHash();
          setSide(h('section', { class: 'panel res-panel', 'data-test': 'object-panel' }, errorState(e)));
        }
      }

      async function reloadAll(then) {
        try {
          await L.reload();
        } catch {
          // the list load below reports the problem
        }
        await loadList();
        then?.();
      }

      async function openForm(obj) {
        let fresh = obj;
        if (obj) {
          try {
            fresh = await fetchObject(kind, obj.id);
          } catch (e) {
            toast(e.message, 'bad');
            return;
          }
        }
        const form = objectForm({
          kind, obj: fresh, L, user,
          onSaved: (saved) => {
            toast(obj ? t('res.saved', { name: saved.name }) : t('res.created', { kind: t(`res.kind1.${kind}`), name: saved.name }), 'ok');
            open(saved, false);
            reloadAll(() => {
              // the panel shows the saved object; repaint it with fresh lookups (inherited labels)
              const again = data.find((o) => o.id === saved.id);
              if (again && shownName === again.name) setSide(detailPanel(again));
            });
          },
          onCancel: () => (obj ? open(obj, true) : closeSide()),
        });
        shownName = obj ? obj.name : null;
        setSide(form, true);
      }

      // -------------------------------------------------------------- detail panel

      function detailPanel(obj) {
        const mayChange = canModify(user, obj);
        const titleId = `res-p-${obj.id}`;
        const errBox = h('div', { class: 'res-panel-error', role: 'alert' });
        const confirmBox = h('div');
        const applyBox = h('div');
        const actions = h('div', { class: 'row res-actions' },
          mayChange ? h('button', { type: 'button', dataset: { test: 'edit' }, on: { click: () => openForm(obj) } }, t('common.edit')) : null,
          mayChange ? h('button', { type: 'button', class: 'secondary danger-text', dataset: { test: 'delete' }, on: { click: askDelete } }, t('common.delete')) : null,
          kind === 'tags' ? h('button', {
            type: 'button', class: 'secondary', 'aria-expanded': 'false', dataset: { test: 'apply-open' },
            on: { click: (e) => toggleApply(e.currentTarget) },
          }, t('res.apply.open')) : null,
          !mayChange && kind !== 'tags' ? h('span', { class: 'muted' }, t('res.readonly', { owner: obj.owner })) : null);

        function toggleApply(btn) {
          const expanded = btn.getAttribute('aria-expanded') !== 'true';
          btn.setAttribute('aria-expanded', String(expanded));
          clear(applyBox, expanded ? applySection({ tag: obj, user, onChanged: () => { L.reload().catch(() => {}); paintUse(); } }) : null);
          if (expanded) applyBox.querySelector('select, input')?.focus();
        }

        function askDelete() {
          clear(errBox);
          const yes = h('button', { type: 'button', class: 'danger', dataset: { test: 'confirm-delete' }, on: { click: doDelete } }, t('res.delete.yes', { kind: t(`res.kind1.${kind}`) }));
          clear(confirmBox, h('div', { class: 'res-confirm', role: 'alertdialog', 'aria-label': t('res.delete.title') },
            h('p', {}, t('res.delete.confirm', { kind: t(`res.kind1.${kind}`), name: obj.name })),
            h('div', { class: 'row' }, yes, h('button', { type: 'button', class: 'secondary', on: { click: () => clear(confirmBox) } }, t('common.cancel')))));
          yes.focus();

          async function doDelete() {
            yes.disabled = true;
            try {
              await send('DELETE', `/api/v1/${kind}/${encodeURIComponent(obj.id)}`, undefined, { ifMatch: obj.generation });
              toast(t('res.deleted', { kind: t(`res.kind1.${kind}`), name: obj.name }), 'ok');
              closeSide();
              reloadAll();
            } catch (e) {
              clear(confirmBox);
              clear(errBox,
                h('strong', {}, errTitle(e)), ' ', e.message,
                e.code === 'generation_conflict' ? h('div', {}, h('button', { type: 'button', class: 'secondary', on: { click: () => reloadAll(() => openByName(obj.name)) } }, t('res.form.reload'))) : null);
            }
          }
        }

        // Labels: own ones, then the effective ones with where each comes from.
        const own = Object.entries(obj.labels || {});
        const eff = Object.entries(obj.effective_labels || {});
        const effTable = eff.length ? h('table', { class: 'data res-eff' },
          h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, t('res.labels.key')), h('th', { scope: 'col' }, t('res.labels.value')), h('th', { scope: 'col' }, t('res.labels.source')))),
          h('tbody', {}, eff.map(([k, v]) => {
            const o = L.origin(kind, obj, k);
            return h('tr', { class: o ? 'res-inherited' : null },
              h('td', {}, h('code', {}, k)), h('td', {}, v),
              h('td', {}, o === null ? h('span', { class: 'badge ok' }, t('res.labels.own'))
                : h('span', {}, h('span', { class: 'badge' }, t('res.labels.inheritedfrom')), ' ',
                  o[0] ? [t(`res.kind1.${o[0]}`), ' ', objLink(o[0], o[1])] : '')));
          }))) : null;

        const refs = [];
        const s = obj.spec || {};
        if (kind === 'resources') refs.push([t('common.site'), objLink('sites', L.find('sites', s.site), L.name('sites', s.site))], [t('res.col.what'), resourceSummary(s)]);
        if (kind === 'sites') {
          if (s.platform) refs.push([t('res.prop.platform'), objLink('platforms', L.find('platforms', s.platform), L.name('platforms', s.platform))]);
          if (s.cloud) refs.push([t('res.prop.cloud'), objLink('clouds', L.find('clouds', s.cloud), L.name('clouds', s.cloud))]);
          refs.push([t('res.col.health'), badge(s.health || 'healthy', enumText('health', s.health || 'healthy'))]);
        }
        if (kind === 'links') {
          refs.push([t('res.col.from'), objLink('sites', L.find('sites', s.from), L.name('sites', s.from))], [t('res.col.to'), objLink('sites', L.find('sites', s.to), L.name('sites', s.to))]);
        }

        const relBox = h('div');
        const useBox = h('div', { class: 'res-use' });
        const paintUse = async () => {
          if (kind !== 'tags') return;
          clear(useBox, loading());
          try {
            const use = await labelUse(obj.name);
            const sel = encodeURIComponent(obj.name);
            clear(useBox, h('ul', { class: 'res-uselist' }, use.map(([k, n]) => h('li', {},
              n ? h('a', { href: `#/resources/${k}?selector=${sel}` }, t(`res.kind.${k}`)) : t(`res.kind.${k}`), ' ', h('strong', {}, fmtNumber(n, 0))))));
          } catch (e) {
            clear(useBox, errorState(e, paintUse));
          }
        };
        paintUse();
        paintRelated(kind, obj, relBox);

        return h('section', { class: 'panel res-panel', 'data-test': 'object-panel', 'aria-labelledby': titleId },
          h('div', { class: 'res-panel-head' },
            h('h2', { id: titleId, tabindex: '-1' }, h('span', { class: 'muted res-kindword' }, t(`res.kind1.${kind}`)), ' ', obj.name),
            h('button', { type: 'button', class: 'secondary res-close', 'aria-label': t('common.close'), title: t('common.close'), on: { click: closeSide } }, '×')),
          obj.spec?.description ? h('p', { class: 'muted res-desc' }, obj.spec.description) : null,
          actions, confirmBox, errBox, applyBox,
          props([
            ...refs,
            [t('res.prop.id'), h('code', {}, obj.id)],
            [t('res.prop.tenant'), obj.tenant],
            [t('res.prop.owner'), obj.owner],
            [t('res.prop.visibility'), enumText('visibility', obj.visibility)],
            [t('res.prop.generation'), fmtNumber(obj.generation, 0)],
            [t('res.prop.created'), fmtTime(obj.created_at)],
            [t('res.prop.updated'), fmtTime(obj.updated_at)],
          ]),
          kind === 'tags' ? [h('h3', {}, t('res.tag.use')), useBox] : null,
          h('h3', {}, t('res.labels.own.title')),
          own.length ? h('div', { class: 'res-labels' }, own.map(([k, v]) => h('span', { class: 'badge res-label' }, `${k}=${v}`))) : h('p', { class: 'muted' }, t('res.labels.none')),
          eff.length ? [h('h3', {}, t('res.labels.effective.title')), effTable] : null,
          relBox,
          h('h3', {}, t('res.spec')),
          h('pre', { class: 'res-json', tabindex: '0', 'aria-label': t('res.spec') }, JSON.stringify(obj.spec, null, 2)));
      }

      /** Sites: their resources and links; platforms and clouds: their sites. */
      async function paintRelated(k, obj, box) {
        if (!['sites', 'platforms', 'clouds'].includes(k)) return;
        clear(box, loading());
        try {
          const rel = await related(k, obj, L);
          const go = (kk) => (o) => ctx.navigate(`#/resources/${kk}/${encodeURIComponent(o.name)}`);
          const small = (title, kk, rows, cols, emptyText) => [
            h('h3', {}, title, ' ', h('span', { class: 'muted' }, `(${fmtNumber(rows.length, 0)})`)),
            rows.length ? table(cols, rows, { onRow: go(kk) }) : h('p', { class: 'muted' }, emptyText),
          ];
          if (k === 'sites') {
            clear(box,
              small(t('res.rel.resources'), 'resources', rel.resources, [
                { title: t('common.name'), value: (o) => o.name },
                { title: t('res.col.what'), value: (o) => resourceSummary(o.spec) },
              ], t('res.rel.noresources')),
              small(t('res.rel.links'), 'links', rel.links, [
                { title: t('res.rel.peer'), value: (o) => L.name('sites', [o.spec.from, o.spec.to].find((x) => x !== obj.id && x !== obj.name)) },
                { title: t('res.col.latency'), num: true, value: (o) => fmtNumber(o.spec.latency_ms, 1) },
                { title: t('res.col.bandwidth'), num: true, value: (o) => fmtNumber(o.spec.bandwidth_gbps, 1) },
              ], t('res.rel.nolinks')));
          } else {
            clear(box, small(t('res.rel.sites'), 'sites', rel.sites, [
              { title: t('common.name'), value: (o) => o.name },
              { title: t('res.col.region'), value: (o) => o.spec?.region },
            ], t('res.rel.nosites')));
          }
        } catch (e) {
          clear(box, errorState(e, () => paintRelated(k, obj, box)));
        }
      }

      loadList({ reopen: true });
    }
  },
};
