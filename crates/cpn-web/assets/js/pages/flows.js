// Placeholder until this page is written: says so rather than showing nothing.
import { h, clear, empty } from '../ui.js';

export default {
  render(main) {
    clear(main, h('h1', {}, 'flows'), empty('This page is being built.'));
  },
};
