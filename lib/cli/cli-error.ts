/** The CLI's own failure: a message, a stable code (for --json) and the exit code. */
export const EXIT_FAILED = 1;
export const EXIT_USAGE = 2;

export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode: number,
    readonly code: string = exitCode === EXIT_USAGE ? 'ERR_USAGE' : 'ERR_FAILED',
  ) {
    super(message);
  }
}

/** What `--json` prints (on stdout) when a command fails. */
export interface JsonError {
  error: { code: string; message: string; exitCode: number };
}

export function jsonError(code: string, message: string, exitCode: number): JsonError {
  return { error: { code, message, exitCode } };
}
