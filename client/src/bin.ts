#!/usr/bin/env node
// The `diffid` command (cli.ts); sets the exit code it returns.
import { main } from './cli.ts';

process.exitCode = await main(process.argv.slice(2));
