// Prints a vitest JSON report as one count line, then each failed test with the first line of its
// message, so a CI log names what failed without scrolling through the whole run.
const file = process.argv[2] || 'test-results/results.json';
const r = require(require('node:path').resolve(file));
console.log(`${r.numPassedTests} passed, ${r.numFailedTests} failed, ${r.numPendingTests} skipped`);
for (const suite of r.testResults || []) {
  for (const t of suite.assertionResults || []) {
    if (t.status !== 'failed') continue;
    const first = String((t.failureMessages || [])[0] || '')
      .split('\n')[0]
      .slice(0, 300);
    console.log(`FAILED ${suite.name.replace(process.cwd() + '/', '')} > ${t.fullName}: ${first}`);
  }
  if ((suite.assertionResults || []).length === 0 && suite.status === 'failed') {
    console.log(
      `FAILED ${suite.name.replace(process.cwd() + '/', '')}: ${String(suite.message || '')
        .split('\n')[0]
        .slice(0, 300)}`,
    );
  }
}
