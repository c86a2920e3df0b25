/**
 * A long-lived server's process starter (spawner.ts starts it, once): runs each program
 * the server asks for over IPC with runProcess's own code and sends back what it printed and how
 * it ended. Its memory is a few pages of its own, so the forks cost it little and the server none.
 */
import { spawnProcess, type ProcessOptions } from './run-process.js';

interface Request {
  id: number;
  file: string;
  args: string[];
  options: ProcessOptions;
}

// The server gone (it left, or was killed): nothing is left to start programs for.
process.on('disconnect', () => process.exit(0));
process.on('message', (request: Request) => {
  void spawnProcess(request.file, request.args, request.options).then(({ error, ...result }) => {
    const failure = error ? { message: error.message, code: (error as NodeJS.ErrnoException).code } : undefined;
    process.send?.({ id: request.id, result, error: failure });
  });
});
