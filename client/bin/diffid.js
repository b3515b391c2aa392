#!/usr/bin/env node
// The `diffid` command. This file is committed so that npm can link it when it installs (the
// compiled CLI does not exist yet then); it runs the CLI that the install's build compiled.
import '../dist/bin.js';
