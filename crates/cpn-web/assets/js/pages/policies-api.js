// JSON calls for the policies page; api.js's ApiError carries the `field` a form needs.
import { api } from '../api.js';

export const call = (method, path, body) => api(method, path, body);

/** The path segment for a name or id. */
export const seg = (s) => encodeURIComponent(s);
