// Tasks: the list (#/tasks), the submit form (#/tasks/new) and one task (#/tasks/<id>, with
// ?tab=summary|logs|events|explain). Each view is its own module; this one picks the view.
import './tasks-common.js';
import { renderList } from './tasks-list.js';
import { renderForm } from './tasks-form.js';
import { renderDetail } from './tasks-detail.js';

export default {
  render(main, ctx) {
    const [arg] = ctx.params;
    if (!arg) return renderList(main, ctx);
    if (arg === 'new') return renderForm(main, ctx);
    return renderDetail(main, ctx, arg);
  },
};
