// What bin/moat.js loads from the bundle: the CLI, and the server that keeps it warm.
export { main } from './main.js';
export { serve } from './server.js';
