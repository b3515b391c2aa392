// Command-line arguments of the project's own CLIs (npm run bundle, npm run eval): parsed
// strictly. A problem with the command line is answered with the message, the usage and exit
// status 2; a problem with what it names (a model file, a sidecar, a photo) with the message
// alone and status 1 — the usage would bury the one line that says what to fix.
import { parseArgs, type ParseArgsConfig } from 'node:util';

/** Prints the problem and the usage, and exits with status 2. */
export function usageError(usage: string, message: string): never {
  process.stderr.write(`${message}\n${usage}\n`);
  process.exit(2);
}

/** Prints what is wrong with an input the command line named, and exits with status 1. */
export function inputError(message: string): never {
  process.stderr.write(`${message}\n`);
  process.exit(1);
}

/** The parsed options; an unknown option, a missing value or a stray argument is a usage error. */
export function cliArgs<const O extends NonNullable<ParseArgsConfig['options']>>(usage: string, options: O): ReturnType<typeof parseArgs<{ options: O; strict: true }>>['values'] {
  try {
    return parseArgs({ options, strict: true }).values;
  } catch (err) {
    return usageError(usage, (err as Error).message);
  }
}

/** The parsed options and the arguments after them (file names); otherwise as cliArgs. */
export function cliArgsAndFiles<const O extends NonNullable<ParseArgsConfig['options']>>(usage: string, options: O): { values: ReturnType<typeof cliArgs<O>>; files: string[] } {
  try {
    const { values, positionals } = parseArgs({ options, strict: true, allowPositionals: true });
    return { values, files: positionals };
  } catch (err) {
    return usageError(usage, (err as Error).message);
  }
}
